//! Interoperability with SAML software nobody on this team wrote, over real sockets
//! and without a browser (cookies, redirects and forms by hand):
//!
//! - SimpleSAMLphp 1.19 as the IdP in front of samlgate: the tenant is configured
//!   from SimpleSAMLphp's own IdP metadata, SimpleSAMLphp's SP entry from samlgate's
//!   `/saml/metadata`; SP-initiated and IdP-initiated (unsolicited) logins end at
//!   the panel with the mapped account.
//! - mod_auth_mellon (Apache httpd) as the SP behind the development IdP of
//!   `samlgate demo`: the demo IdP's responses satisfy a real SP (lasso).
//!
//! Programs come from Debian packages (scripts/test installs them); without them
//! the tests skip, unless CI=true.

mod support;

use base64::Engine as _;
use samlgate::identity::Algorithm;
use serde_json::Value;
use support::demo::Demo;
use support::idp::decode_authn_request;
use support::interop::{
    decode_saml_response, element_text, form_with, parse_sp_metadata, pem_from_base64,
    signature_placement, Agent, HtmlForm, IdpMetadata, Mellon, SimpleSamlPhp, SpMetadata,
    NAMEID_EMAIL,
};
use support::panel::Panel;
use support::{config_toml, Keys, RawResponse, Samlgate};

const COMPANY: &str = "ssp";
const ACCOUNT: &str = "u-alice-ssp";
const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";

/// samlgate with a tenant served by a SimpleSAMLphp IdP, each configured from the
/// other's metadata.
struct SspCtx {
    ssp: SimpleSamlPhp,
    _keys: Keys,
    panel: Panel,
    gate: Samlgate,
    /// samlgate's public origin, `http://127.0.0.1:<port>`.
    gate_url: String,
    /// samlgate's SP metadata as SimpleSAMLphp got it.
    sp: SpMetadata,
    idp: IdpMetadata,
}

impl SspCtx {
    async fn start(sign_response: bool) -> Option<Self> {
        let ssp = SimpleSamlPhp::start(sign_response).await?;

        // The tenant: the four items of SimpleSAMLphp's IdP metadata.
        let (idp_xml, idp) = ssp.metadata().await;
        assert_eq!(idp.entity_id, ssp.entity_id(), "{idp_xml}");
        assert_eq!(
            idp.sso_url,
            ssp.url("/saml2/idp/SSOService.php"),
            "{idp_xml}"
        );
        assert_eq!(
            idp.signing_certificates.first().map(|c| pem_from_base64(c)),
            Some(pem_from_base64(&support::interop::cert_base64(
                &ssp.certificate_pem()
            ))),
            "the metadata publishes the certificate the test made: {idp_xml}"
        );
        let keys = Keys::new(Algorithm::Es256);
        let cert_file = keys.path("simplesamlphp.pem");
        let pems: String = idp
            .signing_certificates
            .iter()
            .map(|c| pem_from_base64(c))
            .collect();
        std::fs::write(&cert_file, pems).unwrap();
        let tenant = format!(
            r#"
[[tenants]]
company_id = "{COMPANY}"
idp_sso_url = "{sso}"
idp_issuer = "{issuer}"
idp_certificate_file = "{cert}"
"#,
            sso = idp.sso_url,
            issuer = idp.entity_id,
            cert = cert_file.display(),
        );

        let panel = Panel::start().await;
        panel.add_account(COMPANY, SimpleSamlPhp::EMAIL, ACCOUNT);
        // public_url must be where samlgate really listens: the test follows the
        // IdP's redirects and forms to it.
        let port = support::free_port();
        let gate_url = format!("http://127.0.0.1:{port}");
        // With SimpleSAMLphp signing the Response too, samlgate may insist on it.
        let sp_table = if sign_response {
            "\n[sp]\nrequire_signed_response = true\n"
        } else {
            ""
        };
        let config = keys.path("samlgate.toml");
        std::fs::write(
            &config,
            config_toml(&keys, &panel.url(), "", &format!("{sp_table}{tenant}")),
        )
        .unwrap();
        let listen = format!("127.0.0.1:{port}");
        let gate = Samlgate::start_with(
            &config,
            &[
                ("SAMLGATE_PUBLIC_URL", &gate_url),
                ("SAMLGATE_LISTEN", &listen),
            ],
        );
        assert_eq!(gate.addr.port(), port);

        // SimpleSAMLphp's SP entry: samlgate's own metadata, translated.
        let metadata_url = format!("{gate_url}/saml/metadata");
        let answer = Agent::new().get(&metadata_url, None).await;
        assert_eq!(answer.status, 200, "{}", answer.text());
        let sp = parse_sp_metadata(&answer.text());
        assert_eq!(sp.entity_id, format!("{gate_url}/saml/metadata"));
        assert_eq!(sp.acs_url, format!("{gate_url}/saml/acs"));
        assert!(sp.want_assertions_signed, "{}", answer.text());
        assert_eq!(
            sp.name_id_formats.first().map(String::as_str),
            Some(NAMEID_EMAIL)
        );
        ssp.register_sp(&sp);
        Some(Self {
            ssp,
            _keys: keys,
            panel,
            gate,
            gate_url,
            sp,
            idp,
        })
    }

    fn logs(&self, agent: &Agent) -> String {
        format!(
            "--- requests ---\n{}\n{}\n--- samlgate ---\n{}",
            agent.trail(),
            self.ssp.log(),
            self.gate.logs().join("\n")
        )
    }

    /// At SimpleSAMLphp's login form (reached at `url` with `response`), signs in as
    /// alice and returns the page with the form SimpleSAMLphp POSTs to samlgate's ACS.
    async fn sign_in_at_ssp(
        &self,
        agent: &mut Agent,
        url: String,
        response: RawResponse,
    ) -> (String, RawResponse) {
        let (login_url, login_page) = agent.follow(url, response).await;
        assert!(
            login_url.starts_with(&self.ssp.url("/module.php/core/loginuserpass.php")),
            "SimpleSAMLphp's own login form: {login_url}\n{}",
            self.logs(agent)
        );
        let mut form = form_with(&login_page, &login_url, "password", &|| self.logs(agent));
        assert!(form.has("username") && form.has("AuthState"), "{form:?}");
        form.set("username", SimpleSamlPhp::USERNAME);
        form.set("password", SimpleSamlPhp::PASSWORD);
        let answer = agent.submit(&form, &login_url).await;
        let (page_url, page) = agent.follow(form.action.clone(), answer).await;
        assert_eq!(page.status, 200, "{}\n{}", page.text(), self.logs(agent));
        (page_url, page)
    }

    /// Checks SimpleSAMLphp's auto-POST form and POSTs it to samlgate's ACS like a
    /// browser; returns the ACS answer, the login event and the Response XML.
    async fn post_to_acs(
        &self,
        agent: &mut Agent,
        page_url: &str,
        page: &RawResponse,
    ) -> (RawResponse, Value, String) {
        let form = form_with(page, page_url, "SAMLResponse", &|| self.logs(agent));
        assert_eq!(form.action, self.sp.acs_url, "{}", page.text());
        assert_eq!(form.method, "POST");
        let xml = decode_saml_response(form.field("SAMLResponse").unwrap());
        let before = self.gate.events("login").len();
        let answer = agent.submit(&form, page_url).await;
        let event = self.gate.next_event("login", before).await;
        assert_eq!(
            (answer.status, event["outcome"].as_str()),
            (303, Some("success")),
            "event {event}\nresponse {}\nSAMLResponse {xml}\n{}",
            answer.text(),
            self.logs(agent)
        );
        (answer, event, xml)
    }

    /// GETs `path` on samlgate with the agent's session; returns the identity
    /// claims the panel received.
    async fn panel_claims(&self, agent: &mut Agent, path: &str) -> Value {
        let page = agent.get(&format!("{}{path}", self.gate_url), None).await;
        assert_eq!(page.status, 200, "{}\n{}", page.text(), self.logs(agent));
        assert_eq!(page.text(), format!("panel saw {path}"));
        let seen = self.panel.last(path);
        let token = seen
            .header("x-samlgate-assertion")
            .unwrap_or_else(|| panic!("no identity header on {path}: {seen:?}"));
        let payload = token.split('.').nth(1).expect("a compact JWS");
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap()
    }
}

fn assert_alice(claims: &Value) {
    assert_eq!(claims["sub"], ACCOUNT, "{claims}");
    assert_eq!(claims["name_id"], SimpleSamlPhp::EMAIL, "{claims}");
    assert_eq!(claims["company_id"], COMPANY, "{claims}");
    assert_eq!(claims["email"], SimpleSamlPhp::EMAIL, "{claims}");
}

#[tokio::test(flavor = "multi_thread")]
async fn simplesamlphp_idp_sp_initiated_login() {
    let Some(t) = SspCtx::start(false).await else {
        return;
    };
    let mut agent = Agent::new();

    // samlgate's login with a known company ID: straight to SimpleSAMLphp.
    let start = format!(
        "{}/saml/login?company_id={COMPANY}&return_to=%2Freports%3Fx%3D1",
        t.gate_url
    );
    let to_idp = agent.get(&start, None).await;
    assert_eq!(to_idp.status, 302, "{}", to_idp.text());
    assert!(
        agent.jar.get("samlgate_request").is_some(),
        "samlgate's request state is bound to this browser: {:?}",
        to_idp.headers
    );
    let location = to_idp.header("location").unwrap().to_owned();
    let request = decode_authn_request(&location);
    assert_eq!(request.sso_url, t.idp.sso_url);
    assert_eq!(
        request.text_of("Issuer").as_deref(),
        Some(t.sp.entity_id.as_str())
    );

    // SimpleSAMLphp's own login form, then its POST form back to samlgate.
    let (page_url, page) = t.sign_in_at_ssp(&mut agent, start, to_idp).await;
    let (answer, event, xml) = t.post_to_acs(&mut agent, &page_url, &page).await;

    // What SimpleSAMLphp sent, as configured: an Assertion signed with RSA-SHA256
    // (the Response unsigned), answering samlgate's request, for alice's email.
    let (response_signed, assertion_signed, methods) = signature_placement(&xml);
    assert!(
        !response_signed && assertion_signed,
        "signatures on the Response {response_signed}, the Assertion {assertion_signed}:\n{xml}"
    );
    assert_eq!(methods, [RSA_SHA256], "{xml}");
    assert!(
        xml.contains(&format!("InResponseTo=\"{}\"", request.id)),
        "{xml}"
    );
    assert_eq!(
        element_text(&xml, "NameID").as_deref(),
        Some(SimpleSamlPhp::EMAIL),
        "{xml}"
    );

    // samlgate: a session for alice's account, back to the deep link.
    assert_eq!(answer.header("location"), Some("/reports?x=1"), "{event}");
    assert_eq!(event["name_id"], SimpleSamlPhp::EMAIL, "{event}");
    assert_eq!(event["tenant"], COMPANY, "{event}");
    assert!(agent.jar.get("samlgate_session").is_some());
    let claims = t.panel_claims(&mut agent, "/reports?x=1").await;
    assert_alice(&claims);
    assert_eq!(claims["iss"], t.gate_url, "{claims}");
}

#[tokio::test(flavor = "multi_thread")]
async fn simplesamlphp_idp_initiated_login_then_single_sign_on() {
    // SimpleSAMLphp's default: the Response signed as well as the Assertion.
    let Some(t) = SspCtx::start(true).await else {
        return;
    };
    let mut agent = Agent::new();

    // Unsolicited: SimpleSAMLphp's IdP-first SSO URL for samlgate's entity ID.
    let unsolicited = format!(
        "{}?{}",
        t.idp.sso_url,
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("spentityid", &t.sp.entity_id)
            .finish()
    );
    let first = agent.get(&unsolicited, None).await;
    let (page_url, page) = t.sign_in_at_ssp(&mut agent, unsolicited, first).await;
    assert!(
        agent.jar.get("samlgate_request").is_none(),
        "no request state: samlgate asked nothing"
    );
    let (answer, event, xml) = t.post_to_acs(&mut agent, &page_url, &page).await;
    let (response_signed, assertion_signed, _) = signature_placement(&xml);
    assert!(response_signed && assertion_signed, "{xml}");
    assert!(
        !xml.contains("InResponseTo="),
        "unsolicited: no InResponseTo:\n{xml}"
    );
    assert_eq!(answer.header("location"), Some("/"), "{event}");
    assert_eq!(event["name_id"], SimpleSamlPhp::EMAIL, "{event}");
    let claims = t.panel_claims(&mut agent, "/").await;
    assert_alice(&claims);
    let first_sid = claims["sid"].clone();

    // Single sign-on: an SP-initiated login now goes through SimpleSAMLphp without
    // its login form, straight to the POST form answering samlgate's new request.
    let start = format!(
        "{}/saml/login?company_id={COMPANY}&return_to=%2Fagain",
        t.gate_url
    );
    let to_idp = agent.get(&start, None).await;
    assert_eq!(to_idp.status, 302, "{}", to_idp.text());
    let request = decode_authn_request(to_idp.header("location").unwrap());
    let (page_url, page) = agent.follow(start, to_idp).await;
    assert!(
        page_url.starts_with(&t.idp.sso_url),
        "no login form this time: {page_url}\n{}",
        t.logs(&agent)
    );
    let (answer, _, xml) = t.post_to_acs(&mut agent, &page_url, &page).await;
    assert!(
        xml.contains(&format!("InResponseTo=\"{}\"", request.id)),
        "{xml}"
    );
    assert_eq!(answer.header("location"), Some("/again"));
    let claims = t.panel_claims(&mut agent, "/again").await;
    assert_alice(&claims);
    assert_ne!(claims["sid"], first_sid, "a new session: {claims}");
}

/// The demo IdP's signing certificate (base64 DER). The demo IdP publishes no
/// metadata, so it is read from the KeyInfo of a response it signs: a dashboard
/// tile login by alice, in a browser of its own (whose response is never used).
async fn demo_signing_certificate(demo: &Demo) -> String {
    let mut agent = Agent::new();
    let tile = demo.idp_url("/app/demo/tile");
    let form_page = agent.get(&tile, None).await;
    let mut form = form_with(&form_page, &tile, "password", &|| demo.logs());
    form.set("username", "alice");
    form.set("password", "alice-password");
    let answer = agent.submit(&form, &tile).await;
    let form = form_with(&answer, &form.action, "SAMLResponse", &|| demo.logs());
    let xml = decode_saml_response(form.field("SAMLResponse").unwrap());
    element_text(&xml, "X509Certificate")
        .map(|c| c.chars().filter(|c| !c.is_whitespace()).collect())
        .unwrap_or_else(|| panic!("no KeyInfo certificate in the demo's response:\n{xml}"))
}

/// `samlgate demo` and mod_auth_mellon, with the demo IdP's metadata written for
/// mellon by the test.
struct MellonCtx {
    demo: Demo,
    mellon: Mellon,
    entity_id: String,
    acs_url: String,
    idp: IdpMetadata,
}

impl MellonCtx {
    /// `register`: start the demo with mellon registered as an extra SP
    /// (`DEMO_IDP_EXTRA_SP`). `certificate`: what mellon's IdP metadata says the
    /// demo IdP signs with (default: the certificate it really uses).
    async fn start(register: bool, certificate: Option<String>) -> Option<Self> {
        let (apache, openssl) = Mellon::installed()?;
        // The demo IdP signs for samlgate only, and for the SPs this demo-only
        // variable registers besides it: mod_auth_mellon on a port chosen now.
        let port = support::free_port();
        let (entity_id, acs_url) = (Mellon::entity_id(port), Mellon::acs_url(port));
        let extra_sp = format!("{entity_id} {acs_url}");
        let env: &[(&str, &str)] = if register {
            &[("DEMO_IDP_EXTRA_SP", &extra_sp)]
        } else {
            &[]
        };
        let demo = Demo::start_with(env);
        let certificate = match certificate {
            Some(certificate) => certificate,
            None => demo_signing_certificate(&demo).await,
        };
        let idp = IdpMetadata {
            entity_id: demo.idp_url("/app/demo"),
            sso_url: demo.idp_url("/app/demo/sso"),
            signing_certificates: vec![certificate],
        };
        let mellon = Mellon::start(&apache, &openssl, port, &idp).await;
        Some(Self {
            demo,
            mellon,
            entity_id,
            acs_url,
            idp,
        })
    }

    fn logs(&self, agent: &Agent) -> String {
        format!(
            "--- requests ---\n{}\n{}\n--- samlgate demo ---\n{}",
            agent.trail(),
            self.mellon.log(),
            self.demo.logs()
        )
    }

    /// GETs the protected page and follows mod_auth_mellon's redirects to the demo
    /// IdP; returns the IdP's URL (with mellon's AuthnRequest) and its answer.
    async fn to_idp(&self, agent: &mut Agent) -> (String, RawResponse) {
        let protected = self.mellon.url("/private/page.html");
        let first = agent.get(&protected, None).await;
        assert_eq!(first.status, 303, "{}\n{}", first.text(), self.logs(agent));
        let (at_idp, page) = agent.follow(protected, first).await;
        assert!(
            at_idp.starts_with(&format!("{}?SAMLRequest=", self.idp.sso_url)),
            "{at_idp}\n{}",
            self.logs(agent)
        );
        (at_idp, page)
    }

    /// Signs in as alice at the demo IdP's login form `page` (at `at_idp`); returns
    /// the auto-POST form for mellon's ACS, the page's URL and the Response XML.
    async fn sign_in(
        &self,
        agent: &mut Agent,
        at_idp: &str,
        page: &RawResponse,
    ) -> (HtmlForm, String, String) {
        let mut form = form_with(page, at_idp, "password", &|| self.logs(agent));
        form.set("username", "alice");
        form.set("password", "alice-password");
        let answer = agent.submit(&form, at_idp).await;
        assert_eq!(
            answer.status,
            200,
            "{}\n{}",
            answer.text(),
            self.logs(agent)
        );
        let post = form_with(&answer, &form.action, "SAMLResponse", &|| self.logs(agent));
        assert_eq!(post.action, self.acs_url, "{}", answer.text());
        let xml = decode_saml_response(post.field("SAMLResponse").unwrap());
        (post, form.action, xml)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_idp_signs_in_to_mod_auth_mellon() {
    let Some(t) = MellonCtx::start(true, None).await else {
        return;
    };
    let mut agent = Agent::new();

    // The protected page: mod_auth_mellon sends the browser to the demo IdP.
    let (at_idp, login_page) = t.to_idp(&mut agent).await;
    let request = decode_authn_request(&at_idp);
    assert_eq!(
        request.text_of("Issuer").as_deref(),
        Some(t.entity_id.as_str()),
        "mod_auth_mellon's own AuthnRequest: {}",
        request.xml
    );

    // The demo IdP's login form, then its auto-POST form to mellon's ACS.
    let (post, from, xml) = t.sign_in(&mut agent, &at_idp, &login_page).await;
    assert!(
        xml.contains(&format!("InResponseTo=\"{}\"", request.id)),
        "{xml}"
    );
    assert!(
        xml.contains(&format!("<saml:Audience>{}</saml:Audience>", t.entity_id)),
        "{xml}"
    );

    // mod_auth_mellon (lasso) accepts it and serves the page as alice.
    let accepted = agent.submit(&post, &from).await;
    assert_eq!(
        accepted.status,
        303,
        "mod_auth_mellon refused the demo IdP's response: {}\nSAMLResponse {xml}\n{}",
        accepted.text(),
        t.logs(&agent)
    );
    let (url, page) = agent.follow(t.acs_url.clone(), accepted).await;
    assert_eq!(
        url,
        t.mellon.url("/private/page.html"),
        "{}",
        t.logs(&agent)
    );
    assert_eq!(page.status, 200, "{}\n{}", page.text(), t.logs(&agent));
    assert!(
        page.text().contains("the protected page"),
        "{}",
        page.text()
    );
    assert_eq!(
        page.header("x-mellon-name-id"),
        Some("alice@demo.example"),
        "{:?}\n{}",
        page.headers,
        t.logs(&agent)
    );
    assert_eq!(page.header("x-remote-user"), Some("alice@demo.example"));
}

#[tokio::test(flavor = "multi_thread")]
async fn mod_auth_mellon_refuses_the_demo_idp_under_another_certificate() {
    // Guards the test above: mellon really verifies the demo IdP's signature.
    let Some(openssl) = support::program("openssl", &["/usr/bin/openssl"]) else {
        return;
    };
    let other = tempfile::tempdir().unwrap();
    let (_, cert) =
        support::interop::self_signed(&openssl, other.path(), "other", "not the demo IdP");
    let other_cert = support::interop::cert_base64(&std::fs::read_to_string(cert).unwrap());
    let Some(t) = MellonCtx::start(true, Some(other_cert)).await else {
        return;
    };
    let mut agent = Agent::new();
    let (at_idp, login_page) = t.to_idp(&mut agent).await;
    let (post, from, _) = t.sign_in(&mut agent, &at_idp, &login_page).await;
    let refused = agent.submit(&post, &from).await;
    assert!(
        matches!(refused.status, 400..=599),
        "status {}: {}\n{}",
        refused.status,
        refused.text(),
        t.logs(&agent)
    );
    assert!(
        t.mellon
            .error_log()
            .contains("Lasso error: [-111] Failed to verify signature"),
        "{}",
        t.logs(&agent)
    );
    let again = agent.get(&t.mellon.url("/private/page.html"), None).await;
    assert_eq!(again.status, 303, "still no session: {}", t.logs(&agent));
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_idp_refuses_service_providers_it_does_not_know() {
    // Without DEMO_IDP_EXTRA_SP the demo IdP signs for samlgate only.
    let Some(t) = MellonCtx::start(false, None).await else {
        return;
    };
    let mut agent = Agent::new();
    let (_, page) = t.to_idp(&mut agent).await;
    assert_eq!(page.status, 400, "{}\n{}", page.text(), t.logs(&agent));
    assert!(
        page.text()
            .contains("The request comes from a service provider this app does not know."),
        "{}",
        page.text()
    );
    assert!(!page.text().contains("SAMLResponse"));
}
