//! Logins end to end over real sockets: the samlgate binary, a test IdP that really
//! signs (xmlsec1) and the mock panel with its lookup API. SP-initiated and
//! IdP-initiated flows, the "not linked" page, a lookup outage, certificate rollover,
//! two tabs logging in at once, and a comment-split NameID.

mod support;

use std::time::{Duration, Instant};

use base64::Engine as _;
use samlgate::identity::Algorithm;
use serde_json::Value;
use support::idp::{
    self, decode_authn_request, start_login, tenant_toml, ResponseSpec, TestIdp, ACS_URL,
    SP_ENTITY_ID,
};
use support::panel::{LookupMode, Panel};
use support::{config_toml, get, post_form, set_cookie, Browser, Keys, RawResponse, Samlgate};

const ISSUER: &str = "http://www.okta.com/exk1acme";
const ALICE: &str = "alice@acme.com";
const SESSION: &str = "samlgate_session";

struct Ctx {
    keys: Keys,
    panel: Panel,
    idp: TestIdp,
    gate: Samlgate,
    sso_url: String,
}

impl Ctx {
    async fn start() -> Option<Self> {
        let idp = TestIdp::new(ISSUER)?;
        let cert = idp.cert_path();
        Some(Self::start_with(idp, &cert).await)
    }

    /// With the tenant's certificate(s) read from `cert_file`.
    async fn start_with(idp: TestIdp, cert_file: &std::path::Path) -> Self {
        let keys = Keys::new(Algorithm::Es256);
        let panel = Panel::start().await;
        panel.add_account("acme", ALICE, "u-alice");
        let tenant = tenant_toml("acme", ISSUER, cert_file);
        let sso_url = tenant
            .lines()
            .find_map(|l| l.strip_prefix("idp_sso_url = \""))
            .unwrap()
            .trim_end_matches('"')
            .to_owned();
        let gate = Samlgate::start(&keys, &config_toml(&keys, &panel.url(), "", &tenant));
        Self {
            keys,
            panel,
            idp,
            gate,
            sso_url,
        }
    }

    async fn acs(&self, xml: &str, relay_state: &str, browser: &Browser) -> RawResponse {
        post_form(
            self.gate.addr,
            "/saml/acs",
            &[
                ("SAMLResponse", &idp::encode(xml)),
                ("RelayState", relay_state),
            ],
            &browser.cookie_header(),
        )
        .await
    }

    /// Posts to the ACS and returns the answer with its login event.
    async fn login(
        &self,
        xml: &str,
        relay_state: &str,
        browser: &mut Browser,
    ) -> (RawResponse, Value) {
        let before = self.gate.events("login").len();
        let response = self.acs(xml, relay_state, browser).await;
        let event = self.gate.next_event("login", before).await;
        browser.absorb(&response);
        (response, event)
    }
}

fn assert_logged_in(response: &RawResponse, event: &Value, location: &str) {
    assert_eq!(
        response.status,
        303,
        "event {event}; body {}",
        response.text()
    );
    assert_eq!(event["outcome"], "success", "{event}");
    assert_eq!(response.header("location"), Some(location), "{event}");
    assert!(
        set_cookie(response, SESSION).is_some_and(|v| !v.is_empty()),
        "{:?}",
        response.headers
    );
    assert_eq!(
        set_cookie(response, "samlgate_company").as_deref(),
        Some("acme")
    );
}

fn assert_no_session(response: &RawResponse) {
    if let Some(value) = set_cookie(response, SESSION) {
        assert!(
            value.is_empty() || value == "\"\"",
            "no session may be set: {:?}",
            response.headers
        );
    }
}

/// The claims of the identity header the panel received for `path`.
fn identity_claims(panel: &Panel, path: &str) -> Value {
    let seen = panel.last(path);
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

#[tokio::test]
async fn sp_initiated_login_end_to_end() {
    let Some(t) = Ctx::start().await else { return };
    let mut browser = Browser::new();
    let response = get(
        t.gate.addr,
        "/saml/login?company_id=acme&return_to=/reports%3Fx%3D1",
        "Accept: text/html\r\n",
    )
    .await;
    assert_eq!(response.status, 302, "{}", response.text());
    browser.absorb(&response);
    assert!(
        browser.get("samlgate_request").is_some(),
        "the request state is bound to this browser: {:?}",
        response.headers
    );
    let location = response.header("location").unwrap();
    assert!(
        location.starts_with(&format!("{}?", t.sso_url)),
        "{location}"
    );
    let request = decode_authn_request(location);
    assert_eq!(request.sso_url, t.sso_url);
    assert!(
        request.xml.contains("AuthnRequest"),
        "an AuthnRequest: {}",
        request.xml
    );
    assert!(request
        .id
        .starts_with(|c: char| c.is_ascii_alphabetic() || c == '_'));
    assert_eq!(
        request.attr("Destination").as_deref(),
        Some(t.sso_url.as_str())
    );
    assert_eq!(
        request.attr("AssertionConsumerServiceURL").as_deref(),
        Some(ACS_URL)
    );
    assert_eq!(request.text_of("Issuer").as_deref(), Some(SP_ENTITY_ID));
    if let Some(binding) = request.attr("ProtocolBinding") {
        assert_eq!(binding, "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST");
    }
    let relay_state = request.relay_state.clone().expect("a RelayState");

    // The IdP answers the request.
    let xml = t.idp.response(&t.idp.spec(ALICE).for_request(&request.id));
    let (response, event) = t.login(&xml, &relay_state, &mut browser).await;
    assert_logged_in(&response, &event, "/reports?x=1");
    assert_eq!(event["name_id"], ALICE);
    assert_eq!(event["tenant"], "acme");

    // The session reaches the panel with the account's identity.
    let page = get(
        t.gate.addr,
        "/reports?x=1",
        &format!("Accept: text/html\r\n{}", browser.cookie_header()),
    )
    .await;
    assert_eq!(page.status, 200, "{}", page.text());
    assert_eq!(page.text(), "panel saw /reports?x=1");
    let claims = identity_claims(&t.panel, "/reports");
    assert_eq!(claims["sub"], "u-alice", "{claims}");
    assert_eq!(claims["name_id"], ALICE, "{claims}");
    assert_eq!(claims["company_id"], "acme", "{claims}");
    assert_eq!(claims["email"], ALICE, "{claims}");
    assert_eq!(claims["iss"], "http://gate.test", "{claims}");
    let auth_time = claims["auth_time"].as_i64().expect("auth_time");
    assert!(
        (auth_time - (support::unix_now() - 5)).abs() <= 5,
        "auth_time is the AuthnInstant: {claims}"
    );
    let lookup = t.panel.lookups().pop().unwrap();
    assert_eq!(
        (lookup.company_id.as_str(), lookup.name_id.as_str()),
        ("acme", ALICE)
    );
}

#[tokio::test]
async fn login_form_post_and_unknown_company() {
    let Some(t) = Ctx::start().await else { return };
    let response = post_form(
        t.gate.addr,
        "/saml/login",
        &[("company_id", "acme"), ("return_to", "/y")],
        "",
    )
    .await;
    assert_eq!(response.status, 302, "{}", response.text());
    assert!(set_cookie(&response, "samlgate_request").is_some());
    let request = decode_authn_request(response.header("location").unwrap());
    assert_eq!(request.sso_url, t.sso_url);
    // Company IDs compare case-insensitively.
    let upper = post_form(
        t.gate.addr,
        "/saml/login",
        &[("company_id", "ACME"), ("return_to", "/y")],
        "",
    )
    .await;
    assert_eq!(upper.status, 302, "{}", upper.text());

    let unknown = post_form(
        t.gate.addr,
        "/saml/login",
        &[("company_id", "nosuchco"), ("return_to", "/y")],
        "",
    )
    .await;
    assert_eq!(unknown.status, 400);
    assert!(unknown
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/html")));
    assert!(
        unknown.text().contains("name=\"company_id\""),
        "the form again: {}",
        unknown.text()
    );
    assert!(set_cookie(&unknown, "samlgate_request").is_none());
}

#[tokio::test]
async fn idp_initiated_login() {
    let Some(t) = Ctx::start().await else { return };
    let mut browser = Browser::new();
    let xml = t.idp.response(&t.idp.spec(ALICE));
    let (response, event) = t.login(&xml, "", &mut browser).await;
    assert_logged_in(&response, &event, "/");
    let whoami = get(t.gate.addr, "/saml/whoami", &browser.cookie_header()).await;
    assert_eq!(whoami.status, 200, "{}", whoami.text());
    let page = get(t.gate.addr, "/dashboard", &browser.cookie_header()).await;
    assert_eq!(page.status, 200);
    assert_eq!(identity_claims(&t.panel, "/dashboard")["sub"], "u-alice");
}

#[tokio::test]
async fn account_not_linked_page() {
    let Some(t) = Ctx::start().await else { return };
    let xml = t.idp.response(&t.idp.spec("bob@acme.com"));
    let (response, event) = t.login(&xml, "/", &mut Browser::new()).await;
    assert_eq!(response.status, 403, "{event}");
    assert_no_session(&response);
    assert_eq!(event["outcome"], "not_linked", "{event}");
    assert_eq!(event["reason"], "account_not_linked", "{event}");
    assert_eq!(event["name_id"], "bob@acme.com", "{event}");
    let page = response.text();
    assert!(page.contains("24 hours"), "{page}");
    assert!(page.to_lowercase().contains("wheel"), "{page}");
    assert!(page.contains("Google Workspace"), "{page}");
    assert_eq!(
        t.panel.looked_up_name_ids(),
        vec!["bob@acme.com".to_owned()]
    );
}

#[tokio::test]
async fn lookup_outage_is_503_without_a_session() {
    let Some(t) = Ctx::start().await else { return };
    t.panel.set_lookup_mode(LookupMode::Error);
    let xml = t.idp.response(&t.idp.spec(ALICE));
    let (response, event) = t.login(&xml, "/", &mut Browser::new()).await;
    assert_eq!(response.status, 503, "{event}");
    assert_no_session(&response);
    assert_eq!(event["outcome"], "unavailable", "{event}");
    assert_eq!(event["reason"], "lookup_unavailable", "{event}");

    // A hanging lookup API: refused within the lookup timeout (2 s), not left hanging.
    t.panel.set_lookup_mode(LookupMode::Hang);
    let started = Instant::now();
    let xml = t.idp.response(&t.idp.spec(ALICE));
    let (response, event) = t.login(&xml, "/", &mut Browser::new()).await;
    assert_eq!(response.status, 503, "{event}");
    assert_no_session(&response);
    assert_eq!(event["reason"], "lookup_unavailable", "{event}");
    assert!(started.elapsed() < Duration::from_secs(8));

    // Nothing was cached: once the panel is back, a new login succeeds.
    t.panel.set_lookup_mode(LookupMode::Normal);
    let xml = t.idp.response(&t.idp.spec(ALICE));
    let (response, event) = t.login(&xml, "/", &mut Browser::new()).await;
    assert_logged_in(&response, &event, "/");
}

#[tokio::test]
async fn certificate_rollover_accepts_either_configured_certificate() {
    let (Some(old), Some(new), Some(stranger)) = (
        TestIdp::new(ISSUER),
        TestIdp::new(ISSUER),
        TestIdp::new(ISSUER),
    ) else {
        return;
    };
    let both = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(both.path(), format!("{}{}", old.cert_pem, new.cert_pem)).unwrap();
    let t = Ctx::start_with(old, both.path()).await;
    for idp in [&t.idp, &new] {
        let xml = idp.response(&idp.spec(ALICE));
        let (response, event) = t.login(&xml, "/", &mut Browser::new()).await;
        assert_logged_in(&response, &event, "/");
    }
    let xml = stranger.response(&stranger.spec(ALICE));
    let (response, event) = t.login(&xml, "/", &mut Browser::new()).await;
    assert_eq!(response.status, 403, "{event}");
    assert_no_session(&response);
    assert_eq!(event["outcome"], "failure", "{event}");
    assert_eq!(event["reason"], "signature_invalid", "{event}");
}

#[tokio::test]
async fn two_tabs_log_in_at_once() {
    let Some(t) = Ctx::start().await else { return };
    let mut browser = Browser::new();
    let (_, first) = start_login(&t.gate, &mut browser, "acme", "/first").await;
    let (_, second) = start_login(&t.gate, &mut browser, "acme", "/second").await;
    assert_ne!(first.id, second.id);
    // Both requests are answered; the older one first, with the cookie jar as the
    // second login left it.
    let first_xml = t.idp.response(&t.idp.spec(ALICE).for_request(&first.id));
    let second_xml = t.idp.response(&t.idp.spec(ALICE).for_request(&second.id));
    let (response, event) = t
        .login(
            &first_xml,
            first.relay_state.as_deref().unwrap_or(""),
            &mut browser,
        )
        .await;
    assert_logged_in(&response, &event, "/first");
    let (response, event) = t
        .login(
            &second_xml,
            second.relay_state.as_deref().unwrap_or(""),
            &mut browser,
        )
        .await;
    assert_logged_in(&response, &event, "/second");
}

#[tokio::test]
async fn comment_split_name_id_is_looked_up_in_full() {
    let Some(t) = Ctx::start().await else { return };
    t.panel
        .add_account("acme", "alice@acme.com.evil.com", "u-evil");
    let signed = t.idp.response(&t.idp.spec("alice@acme.com.evil.com"));
    let xml = idp::inject_comment(&signed, "alice@acme.com");
    let mut browser = Browser::new();
    let (response, event) = t.login(&xml, "/", &mut browser).await;
    assert_logged_in(&response, &event, "/");
    assert_eq!(event["name_id"], "alice@acme.com.evil.com", "{event}");
    assert_eq!(
        t.panel.looked_up_name_ids(),
        vec!["alice@acme.com.evil.com".to_owned()]
    );
    get(t.gate.addr, "/me", &browser.cookie_header()).await;
    let claims = identity_claims(&t.panel, "/me");
    assert_eq!(claims["sub"], "u-evil", "{claims}");
    assert_eq!(claims["name_id"], "alice@acme.com.evil.com", "{claims}");
}

#[tokio::test]
async fn session_not_on_or_after_caps_the_session() {
    let Some(t) = Ctx::start().await else { return };
    let xml = t.idp.response(&ResponseSpec {
        session_not_on_or_after: Some(600),
        ..t.idp.spec(ALICE)
    });
    let mut browser = Browser::new();
    let (response, event) = t.login(&xml, "/", &mut browser).await;
    assert_logged_in(&response, &event, "/");
    // Open the sealed cookie with samlgate's own session key.
    let mut headers = http::HeaderMap::new();
    headers.insert(
        "cookie",
        http::HeaderValue::from_str(browser.cookie_header()["Cookie: ".len()..].trim_end())
            .unwrap(),
    );
    let now = support::unix_now();
    let session = t
        .keys
        .codec(SESSION, false)
        .open(&headers, now)
        .expect("a session samlgate sealed");
    assert!(
        session.expires_at <= now + 600 + 2,
        "SessionNotOnOrAfter (10 min) caps the 8 h session: expires in {} s",
        session.expires_at - now
    );
    assert_eq!(session.account_id, "u-alice");
}
