//! SPEC §8 over real sockets: the samlgate binary's ACS against responses from a
//! test IdP that really signs (xmlsec1), valid ones and attacks built from them.
//! Every refusal must be a 403 (413 for oversize) without a session cookie, with the
//! expected closed reason code in the audit log; a positive control proves the
//! unmodified responses are accepted, so the attacks fail for the right reason.

mod support;

use samlgate::identity::Algorithm;
use serde_json::Value;
use support::idp::{
    self, start_login, tenant_toml, ResponseSpec, SigAlgs, TestIdp, CM_HOLDER_OF_KEY, EVIL_NAME_ID,
    STATUS_RESPONDER,
};
use support::panel::Panel;
use support::{
    config_toml, form, post_form, send_body, set_cookie, Browser, Keys, RawResponse, Samlgate,
};

const ISSUER: &str = "http://www.okta.com/exk1acme";
const GLOBEX_ISSUER: &str = "http://www.okta.com/exk1globex";
const ALICE: &str = "alice@acme.com";
const SESSION: &str = "samlgate_session";

struct Ctx {
    _keys: Keys,
    panel: Panel,
    idp: TestIdp,
    gate: Samlgate,
}

impl Ctx {
    async fn start() -> Option<Self> {
        Self::start_with("", "").await
    }

    /// `sp`: extra `[sp]` lines; `more_tenants`: extra `[[tenants]]` tables.
    async fn start_with(sp: &str, more_tenants: &str) -> Option<Self> {
        let idp = TestIdp::new(ISSUER)?;
        let keys = Keys::new(Algorithm::Es256);
        let panel = Panel::start().await;
        panel.add_account("acme", ALICE, "u-alice");
        panel.add_account("acme", EVIL_NAME_ID, "u-admin");
        let extra = format!(
            "\n[sp]\n{sp}\n{}{more_tenants}",
            tenant_toml("acme", ISSUER, &idp.cert_path())
        );
        let gate = Samlgate::start(&keys, &config_toml(&keys, &panel.url(), "", &extra));
        Some(Self {
            _keys: keys,
            panel,
            idp,
            gate,
        })
    }

    fn spec(&self) -> ResponseSpec {
        self.idp.spec(ALICE)
    }

    fn signed(&self, spec: &ResponseSpec) -> String {
        self.idp.response(spec)
    }

    async fn post(&self, xml: &str, relay_state: &str, browser: &Browser) -> RawResponse {
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

    /// Posts `xml` (IdP-initiated, no cookies) and checks it is refused for one of `reasons`.
    async fn refused(&self, xml: &str, reasons: &[&str]) -> Value {
        self.refused_in(xml, &Browser::new(), reasons).await
    }

    async fn refused_in(&self, xml: &str, browser: &Browser, reasons: &[&str]) -> Value {
        let before = self.gate.events("login").len();
        let response = self.post(xml, "/", browser).await;
        assert_refused(&self.gate, &response, before, 403, reasons).await
    }

    /// Posts `xml` and checks it is accepted: 303 to `location`, a session.
    async fn accepted(&self, xml: &str, relay_state: &str, location: &str) -> RawResponse {
        self.accepted_in(xml, relay_state, location, &mut Browser::new())
            .await
    }

    async fn accepted_in(
        &self,
        xml: &str,
        relay_state: &str,
        location: &str,
        browser: &mut Browser,
    ) -> RawResponse {
        let before = self.gate.events("login").len();
        let response = self.post(xml, relay_state, browser).await;
        let event = self.gate.next_event("login", before).await;
        assert_eq!(
            response.status,
            303,
            "expected acceptance; event {event}; body {}",
            response.text()
        );
        assert_eq!(event["outcome"], "success", "{event}");
        assert_eq!(response.header("location"), Some(location), "{event}");
        assert!(
            set_cookie(&response, SESSION).is_some_and(|v| !v.is_empty()),
            "a session cookie: {:?}",
            response.headers
        );
        assert_eq!(
            set_cookie(&response, "samlgate_company").as_deref(),
            Some("acme")
        );
        browser.absorb(&response);
        response
    }
}

/// The common shape of every refusal: the status, no session cookie, a login event
/// with outcome "failure" and a reason in `reasons`, its reference on the page.
async fn assert_refused(
    gate: &Samlgate,
    response: &RawResponse,
    before: usize,
    status: u16,
    reasons: &[&str],
) -> Value {
    let event = gate.next_event("login", before).await;
    assert_eq!(
        response.status,
        status,
        "event {event}; body {}",
        response.text()
    );
    assert_no_session(response);
    assert_eq!(event["outcome"], "failure", "{event}");
    let reason = event["reason"].as_str().unwrap_or_default();
    assert!(
        reasons.contains(&reason),
        "reason {reason:?} is not one of {reasons:?}: {event}"
    );
    if status == 403 {
        let reference = event["reference"].as_str().expect("a reference id");
        assert!(!reference.is_empty());
        assert!(
            response.text().contains(reference),
            "the page shows the reference {reference}: {}",
            response.text()
        );
        // The precise reason stays in the log (codes that are plain words, like
        // "expired", may innocently appear in a generic message).
        assert!(
            !(reason.contains('_') && response.text().contains(reason)),
            "the page names the reason {reason}"
        );
    }
    event
}

/// No `Set-Cookie: samlgate_session=<something>` (a clearing one would be tolerated).
fn assert_no_session(response: &RawResponse) {
    if let Some(value) = set_cookie(response, SESSION) {
        assert!(
            value.is_empty() || value == "\"\"",
            "a refused login set a session cookie: {:?}",
            response.headers
        );
        let header = support::set_cookie_header(response, SESSION).unwrap();
        assert!(
            header.to_ascii_lowercase().contains("max-age=0")
                || header
                    .to_ascii_lowercase()
                    .contains("expires=thu, 01 jan 1970"),
            "only a clearing cookie is tolerated: {header}"
        );
    }
}

// ---------------------------------------------------------------------------------
// The fixtures themselves and the positive control.

#[tokio::test]
async fn fixture_self_check_signatures_verify_with_xmlsec1() {
    let Some(idp) = TestIdp::new(ISSUER) else {
        return;
    };
    let Some(attacker) = TestIdp::new(ISSUER) else {
        return;
    };
    let spec = idp.spec(ALICE);
    let signed = idp.response(&spec);
    assert!(idp.verifies(&signed), "{signed}");
    assert!(signed.contains(&format!(r##"URI="#{}""##, spec.assertion_id)));
    assert!(!attacker.verifies(&signed));
    // Any change to the signed content breaks it; a comment does not.
    assert!(!idp.verifies(&idp::set_name_id(&signed, EVIL_NAME_ID)));
    let long = idp.response(&idp.spec("alice@acme.com.evil.com"));
    assert!(idp.verifies(&idp::inject_comment(&long, "alice@acme.com")));
    // Response signed, and both signed (the Response signature is the first one).
    let both = idp.response(&ResponseSpec {
        sign_response: true,
        ..idp.spec(ALICE)
    });
    assert!(idp.verifies(&both));
    assert_eq!(both.matches("<ds:Signature ").count(), 2);
    // Every variant algorithm really signs.
    for algs in [
        SigAlgs::sha1(),
        SigAlgs::with_comments_transform(),
        SigAlgs::with_comments_signed_info(),
        SigAlgs::inclusive_transform(),
        SigAlgs::inclusive_signed_info(),
        SigAlgs::xpath_transform(),
    ] {
        let xml = idp.response(&ResponseSpec {
            algs: algs.clone(),
            ..idp.spec(ALICE)
        });
        assert!(idp.verifies(&xml), "{algs:?}");
    }
    // The wrapping attacks; some of them stay cryptographically valid for a naive
    // verifier that checks the first signature it finds.
    let response_signed = idp.response(&ResponseSpec {
        sign_assertion: false,
        sign_response: true,
        ..idp.spec(ALICE)
    });
    for (name, xml) in [
        ("xsw1", idp::xsw1(&response_signed)),
        ("xsw2", idp::xsw2(&response_signed)),
        ("xsw3", idp::xsw3(&signed)),
        ("xsw4", idp::xsw4(&signed)),
        ("xsw5", idp::xsw5(&signed)),
        ("xsw6", idp::xsw6(&signed)),
        ("xsw7", idp::xsw7(&signed)),
        ("xsw8", idp::xsw8(&signed)),
        ("advice", idp::hidden_in_advice(&signed)),
        ("extensions", idp::hidden_in_extensions(&signed)),
        ("object", idp::hidden_in_object(&signed)),
    ] {
        // The evil NameID takes the visible place, the signed original is kept.
        assert!(xml.contains(&format!(">{EVIL_NAME_ID}<")), "{name}");
        assert!(xml.contains(&format!(">{ALICE}<")), "{name}");
        assert!(xml.matches("<saml2:Assertion ").count() >= 2, "{name}");
    }
    for (name, xml) in [
        ("xsw3", idp::xsw3(&signed)),
        ("xsw4", idp::xsw4(&signed)),
        ("xsw5", idp::xsw5(&signed)),
    ] {
        assert!(
            idp.verifies(&xml),
            "{name} keeps a valid first signature\n{xml}"
        );
    }
}

#[tokio::test]
async fn positive_control_unmodified_responses_are_accepted() {
    let Some(t) = Ctx::start().await else { return };
    // Assertion signed (the default), Response signed, both signed.
    t.accepted(&t.signed(&t.spec()), "/reports?x=1", "/reports?x=1")
        .await;
    t.accepted(
        &t.signed(&ResponseSpec {
            sign_assertion: false,
            sign_response: true,
            ..t.spec()
        }),
        "",
        "/",
    )
    .await;
    t.accepted(
        &t.signed(&ResponseSpec {
            sign_response: true,
            ..t.spec()
        }),
        "/",
        "/",
    )
    .await;
    let events = t.gate.events("login");
    assert_eq!(events.len(), 3);
    for event in events {
        assert_eq!(event["name_id"], ALICE, "{event}");
        assert_eq!(event["tenant"], "acme", "{event}");
    }
    // (Positive answers may be cached: at least one lookup, all of them for Alice.)
    let looked_up = t.panel.looked_up_name_ids();
    assert!(
        !looked_up.is_empty() && looked_up.iter().all(|n| n == ALICE),
        "{looked_up:?}"
    );
}

// ---------------------------------------------------------------------------------
// XML signature wrapping (SAMLRaider's XSW1–XSW8) and hidden assertions.

fn response_signed_only(t: &Ctx) -> String {
    t.signed(&ResponseSpec {
        sign_assertion: false,
        sign_response: true,
        ..t.spec()
    })
}

#[tokio::test]
async fn xsw1_signed_response_inside_its_signature() {
    let Some(t) = Ctx::start().await else { return };
    let xml = idp::xsw1(&response_signed_only(&t));
    t.refused(
        &xml,
        &[
            "assertion_count",
            "duplicate_id",
            "signature_reference",
            "signature_invalid",
        ],
    )
    .await;
}

#[tokio::test]
async fn xsw2_signed_response_before_a_detached_signature() {
    let Some(t) = Ctx::start().await else { return };
    let xml = idp::xsw2(&response_signed_only(&t));
    t.refused(
        &xml,
        &[
            "assertion_count",
            "duplicate_id",
            "signature_reference",
            "signature_invalid",
        ],
    )
    .await;
}

#[tokio::test]
async fn xsw3_unsigned_evil_assertion_before_the_signed_one() {
    let Some(t) = Ctx::start().await else { return };
    let xml = idp::xsw3(&t.signed(&t.spec()));
    t.refused(
        &xml,
        &[
            "assertion_count",
            "signature_reference",
            "signature_missing",
        ],
    )
    .await;
}

#[tokio::test]
async fn xsw4_signed_assertion_wrapped_in_an_evil_one() {
    let Some(t) = Ctx::start().await else { return };
    let xml = idp::xsw4(&t.signed(&t.spec()));
    t.refused(
        &xml,
        &[
            "assertion_count",
            "signature_reference",
            "signature_missing",
        ],
    )
    .await;
}

#[tokio::test]
async fn xsw5_evil_assertion_keeps_the_signature_original_appended() {
    let Some(t) = Ctx::start().await else { return };
    let xml = idp::xsw5(&t.signed(&t.spec()));
    t.refused(&xml, &["assertion_count", "signature_reference"])
        .await;
}

#[tokio::test]
async fn xsw6_original_inside_the_evil_assertions_signature() {
    let Some(t) = Ctx::start().await else { return };
    let xml = idp::xsw6(&t.signed(&t.spec()));
    t.refused(
        &xml,
        &[
            "assertion_count",
            "signature_reference",
            "signature_invalid",
        ],
    )
    .await;
}

#[tokio::test]
async fn xsw7_evil_copy_in_extensions() {
    let Some(t) = Ctx::start().await else { return };
    let xml = idp::xsw7(&t.signed(&t.spec()));
    t.refused(
        &xml,
        &[
            "assertion_count",
            "duplicate_id",
            "signature_reference",
            "signature_missing",
        ],
    )
    .await;
}

#[tokio::test]
async fn xsw8_original_in_an_object_of_the_evil_assertions_signature() {
    let Some(t) = Ctx::start().await else { return };
    let xml = idp::xsw8(&t.signed(&t.spec()));
    t.refused(
        &xml,
        &[
            "assertion_count",
            "duplicate_id",
            "signature_reference",
            "signature_invalid",
        ],
    )
    .await;
}

#[tokio::test]
async fn signed_assertion_hidden_in_advice() {
    let Some(t) = Ctx::start().await else { return };
    let xml = idp::hidden_in_advice(&t.signed(&t.spec()));
    t.refused(
        &xml,
        &[
            "assertion_count",
            "signature_reference",
            "signature_missing",
        ],
    )
    .await;
}

#[tokio::test]
async fn signed_assertion_hidden_in_extensions() {
    let Some(t) = Ctx::start().await else { return };
    let xml = idp::hidden_in_extensions(&t.signed(&t.spec()));
    t.refused(
        &xml,
        &[
            "assertion_count",
            "signature_reference",
            "signature_missing",
        ],
    )
    .await;
}

#[tokio::test]
async fn signed_assertion_hidden_in_a_signature_object() {
    let Some(t) = Ctx::start().await else { return };
    let xml = idp::hidden_in_object(&t.signed(&t.spec()));
    t.refused(
        &xml,
        &[
            "assertion_count",
            "signature_reference",
            "signature_invalid",
        ],
    )
    .await;
}

#[tokio::test]
async fn two_signed_assertions() {
    let Some(t) = Ctx::start().await else { return };
    let first = t.signed(&t.spec());
    let second = t.signed(&t.idp.spec(EVIL_NAME_ID));
    t.refused(
        &idp::with_second_assertion(&first, &second),
        &["assertion_count"],
    )
    .await;
    // The same with a signed Response around both is no better.
    let both = t.signed(&ResponseSpec {
        sign_response: true,
        ..t.spec()
    });
    let resigned = idp::with_second_assertion(&both, &second);
    t.refused(&resigned, &["assertion_count", "signature_invalid"])
        .await;
}

#[tokio::test]
async fn duplicate_ids() {
    let Some(t) = Ctx::start().await else { return };
    let xml = idp::response_id_same_as_assertion(&t.signed(&t.spec()));
    t.refused(
        &xml,
        &["duplicate_id", "signature_reference", "signature_invalid"],
    )
    .await;
}

// ---------------------------------------------------------------------------------
// Whose signature, over what.

#[tokio::test]
async fn signature_stripped() {
    let Some(t) = Ctx::start().await else { return };
    let assertion_signed = t.signed(&t.spec());
    t.refused(
        &idp::strip_signatures(&assertion_signed),
        &["signature_missing"],
    )
    .await;
    let both = t.signed(&ResponseSpec {
        sign_response: true,
        ..t.spec()
    });
    t.refused(&idp::strip_signatures(&both), &["signature_missing"])
        .await;
    // Never signed at all, with the evil name.
    let unsigned = t.signed(&ResponseSpec {
        sign_assertion: false,
        ..t.idp.spec(EVIL_NAME_ID)
    });
    t.refused(&unsigned, &["signature_missing"]).await;
}

#[tokio::test]
async fn keyinfo_substitution_with_an_attacker_key() {
    let Some(t) = Ctx::start().await else { return };
    let Some(attacker) = TestIdp::new(ISSUER) else {
        return;
    };
    // Re-signed by the attacker, the attacker's certificate in KeyInfo.
    let xml = attacker.response(&attacker.spec(EVIL_NAME_ID));
    assert!(xml.contains(&attacker.cert_base64()[..40]));
    t.refused(&xml, &["signature_invalid"]).await;
    let both = attacker.response(&ResponseSpec {
        sign_response: true,
        ..attacker.spec(EVIL_NAME_ID)
    });
    t.refused(&both, &["signature_invalid"]).await;
}

#[tokio::test]
async fn signed_by_a_wrong_certificate_claiming_the_right_one() {
    let Some(t) = Ctx::start().await else { return };
    let Some(other) = TestIdp::new(ISSUER) else {
        return;
    };
    let xml = idp::with_keyinfo_cert(&other.response(&other.spec(ALICE)), &t.idp.cert_base64());
    t.refused(&xml, &["signature_invalid"]).await;
    // The right key but a tampered value.
    let tampered = idp::set_name_id(&t.signed(&t.spec()), EVIL_NAME_ID);
    t.refused(&tampered, &["signature_invalid"]).await;
}

#[tokio::test]
async fn another_tenants_issuer_signed_with_this_tenants_key() {
    let Some(globex) = TestIdp::new(GLOBEX_ISSUER) else {
        return;
    };
    let more = tenant_toml("globex", GLOBEX_ISSUER, &globex.cert_path());
    let Some(t) = Ctx::start_with("", &more).await else {
        return;
    };
    t.panel
        .add_account("globex", EVIL_NAME_ID, "u-globex-admin");
    let xml = t.signed(&ResponseSpec {
        response_issuer: Some(GLOBEX_ISSUER.into()),
        assertion_issuer: GLOBEX_ISSUER.into(),
        ..t.idp.spec(EVIL_NAME_ID)
    });
    t.refused(&xml, &["signature_invalid"]).await;
    // Control: globex's own IdP is fine.
    t.accepted_for_tenant(&globex.response(&globex.spec(EVIL_NAME_ID)), "globex")
        .await;
}

impl Ctx {
    async fn accepted_for_tenant(&self, xml: &str, tenant: &str) {
        let before = self.gate.events("login").len();
        let response = self.post(xml, "/", &Browser::new()).await;
        let event = self.gate.next_event("login", before).await;
        assert_eq!(response.status, 303, "{event}");
        assert_eq!(event["tenant"], tenant, "{event}");
        assert_eq!(
            set_cookie(&response, "samlgate_company").as_deref(),
            Some(tenant)
        );
    }
}

#[tokio::test]
async fn comment_injected_into_the_name_id_uses_the_full_signed_text() {
    let Some(t) = Ctx::start().await else { return };
    // The IdP signed "alice@acme.com.evil.com" (an account nobody linked); the
    // attacker splits it with a comment hoping to be read as "alice@acme.com".
    let signed = t.signed(&t.idp.spec("alice@acme.com.evil.com"));
    let xml = idp::inject_comment(&signed, "alice@acme.com");
    assert!(xml.contains("alice@acme.com<!---->.evil.com"));
    let before = t.gate.events("login").len();
    let response = t.post(&xml, "/", &Browser::new()).await;
    let event = t.gate.next_event("login", before).await;
    assert_eq!(response.status, 403, "{event}");
    assert_no_session(&response);
    assert_eq!(event["outcome"], "not_linked", "{event}");
    assert_eq!(event["reason"], "account_not_linked", "{event}");
    assert_eq!(event["name_id"], "alice@acme.com.evil.com", "{event}");
    assert_eq!(
        t.panel.looked_up_name_ids(),
        vec!["alice@acme.com.evil.com".to_owned()],
        "the lookup got the full text, never the truncated one"
    );
}

// ---------------------------------------------------------------------------------
// Algorithms and transforms.

async fn refused_with_algs(t: &Ctx, algs: SigAlgs, reasons: &[&str]) {
    let xml = t.signed(&ResponseSpec { algs, ..t.spec() });
    t.refused(&xml, reasons).await;
}

#[tokio::test]
async fn sha1_signature_is_refused_by_default() {
    let Some(t) = Ctx::start().await else { return };
    refused_with_algs(&t, SigAlgs::sha1(), &["signature_algorithm"]).await;
    // RSA-SHA256 over a SHA-1 digest is SHA-1 all the same.
    let sha1_digest = SigAlgs {
        digest: idp::alg::SHA1.into(),
        ..SigAlgs::default()
    };
    refused_with_algs(&t, sha1_digest, &["signature_algorithm"]).await;
}

#[tokio::test]
async fn sha1_signature_is_accepted_with_allow_sha1() {
    let Some(t) = Ctx::start_with("allow_sha1 = true", "").await else {
        return;
    };
    let xml = t.signed(&ResponseSpec {
        algs: SigAlgs::sha1(),
        ..t.spec()
    });
    t.accepted(&xml, "/", "/").await;
}

#[tokio::test]
async fn with_comments_canonicalisation_is_refused() {
    let Some(t) = Ctx::start().await else { return };
    refused_with_algs(
        &t,
        SigAlgs::with_comments_transform(),
        &["signature_transform"],
    )
    .await;
    refused_with_algs(
        &t,
        SigAlgs::with_comments_signed_info(),
        &["signature_transform", "signature_algorithm"],
    )
    .await;
}

#[tokio::test]
async fn inclusive_canonicalisation_is_refused() {
    let Some(t) = Ctx::start().await else { return };
    refused_with_algs(&t, SigAlgs::inclusive_transform(), &["signature_transform"]).await;
    refused_with_algs(
        &t,
        SigAlgs::inclusive_signed_info(),
        &["signature_transform", "signature_algorithm"],
    )
    .await;
}

#[tokio::test]
async fn xpath_transform_is_refused() {
    let Some(t) = Ctx::start().await else { return };
    refused_with_algs(&t, SigAlgs::xpath_transform(), &["signature_transform"]).await;
}

#[tokio::test]
async fn whole_document_reference_is_refused() {
    let Some(t) = Ctx::start().await else { return };
    // URI="" signs the whole document: it names neither the Response nor the Assertion.
    let xml = t.signed(&ResponseSpec {
        sign_assertion: false,
        sign_response: true,
        reference_uri: Some(String::new()),
        ..t.spec()
    });
    assert!(xml.contains(r#"<ds:Reference URI="">"#));
    t.refused(&xml, &["signature_reference"]).await;
}

#[tokio::test]
async fn require_signed_response_refuses_an_assertion_only_signature() {
    let Some(t) = Ctx::start_with("require_signed_response = true", "").await else {
        return;
    };
    t.refused(&t.signed(&t.spec()), &["response_unsigned"])
        .await;
    // Control: with the Response signed too it passes.
    let both = t.signed(&ResponseSpec {
        sign_response: true,
        ..t.spec()
    });
    t.accepted(&both, "/", "/").await;
}

// ---------------------------------------------------------------------------------
// Parsing: DTDs, entities, processing instructions, size, encryption, garbage.

#[tokio::test]
async fn dtd_is_refused() {
    let Some(t) = Ctx::start().await else { return };
    let signed = t.signed(&t.spec());
    t.refused(
        &idp::with_prolog(&signed, "<!DOCTYPE saml2p:Response>"),
        &["dtd_forbidden"],
    )
    .await;
    let internal = "<!DOCTYPE saml2p:Response [<!ELEMENT saml2p:Response ANY>]>";
    t.refused(&idp::with_prolog(&signed, internal), &["dtd_forbidden"])
        .await;
}

#[tokio::test]
async fn external_entity_is_refused_and_never_fetched() {
    let Some(t) = Ctx::start().await else { return };
    let signed = t.signed(&t.spec());
    let doctype = format!(
        r#"<!DOCTYPE saml2p:Response [<!ENTITY xxe SYSTEM "{}/xxe-probe">]>"#,
        t.panel.url()
    );
    let xml = idp::with_status_message(&idp::with_prolog(&signed, &doctype), "&xxe;");
    t.refused(&xml, &["dtd_forbidden"]).await;
    let file = idp::with_status_message(
        &idp::with_prolog(
            &signed,
            r#"<!DOCTYPE saml2p:Response [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>"#,
        ),
        "&xxe;",
    );
    t.refused(&file, &["dtd_forbidden"]).await;
    // A parameter entity (out-of-band XXE).
    let oob = format!(
        r#"<!DOCTYPE saml2p:Response [<!ENTITY % p SYSTEM "{}/xxe-probe-oob"> %p;]>"#,
        t.panel.url()
    );
    t.refused(&idp::with_prolog(&signed, &oob), &["dtd_forbidden"])
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        !t.panel
            .seen()
            .iter()
            .any(|s| s.path_and_query.starts_with("/xxe-probe")),
        "samlgate fetched an external entity"
    );
}

#[tokio::test]
async fn billion_laughs_is_refused_quickly() {
    let Some(t) = Ctx::start().await else { return };
    let signed = t.signed(&t.spec());
    let mut doctype = String::from(r#"<!DOCTYPE saml2p:Response [<!ENTITY lol0 "lol">"#);
    for i in 1..10 {
        let prev = format!("&lol{};", i - 1);
        doctype += &format!(r#"<!ENTITY lol{i} "{}">"#, prev.repeat(10));
    }
    doctype += "]>";
    let xml = idp::with_status_message(&idp::with_prolog(&signed, &doctype), "&lol9;");
    let started = std::time::Instant::now();
    t.refused(&xml, &["dtd_forbidden"]).await;
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[tokio::test]
async fn processing_instructions_are_refused() {
    let Some(t) = Ctx::start().await else { return };
    let signed = t.signed(&t.spec());
    // In the prolog: outside the signed element, so the signature still verifies.
    let prolog = idp::with_prolog(
        &signed,
        r#"<?xml-stylesheet type="text/xsl" href="http://evil.test/x.xsl"?>"#,
    );
    assert!(t.idp.verifies(&prolog));
    t.refused(&prolog, &["malformed", "dtd_forbidden"]).await;
    // Inside the (unsigned) Response.
    let body = idp::before_status(&signed, "<?evil instruction?>");
    assert!(t.idp.verifies(&body));
    t.refused(&body, &["malformed", "dtd_forbidden"]).await;
}

#[tokio::test]
async fn decoded_response_over_256_kib_is_413() {
    let Some(t) = Ctx::start().await else { return };
    let xml = t.signed(&ResponseSpec {
        attributes: vec![("groups".into(), "g".repeat(263_000))],
        ..t.spec()
    });
    assert!(xml.len() > 256 * 1024);
    let body = form(&[("SAMLResponse", &idp::encode(&xml)), ("RelayState", "/")]);
    assert!(
        body.len() < 384 * 1024,
        "the body ({}) must stay under the body limit to test the decoded limit",
        body.len()
    );
    let before = t.gate.events("login").len();
    let response = post_form(
        t.gate.addr,
        "/saml/acs",
        &[("SAMLResponse", &idp::encode(&xml)), ("RelayState", "/")],
        "",
    )
    .await;
    assert_refused(&t.gate, &response, before, 413, &["body_too_large"]).await;
}

#[tokio::test]
async fn post_body_over_384_kib_is_413() {
    let Some(t) = Ctx::start().await else { return };
    let xml = t.signed(&t.spec());
    let pad = "p".repeat(400 * 1024);
    let body = form(&[
        ("SAMLResponse", &idp::encode(&xml)),
        ("RelayState", "/"),
        ("pad", &pad),
    ]);
    let before = t.gate.events("login").len();
    let response = send_body(
        t.gate.addr,
        "POST",
        "/saml/acs",
        "",
        "application/x-www-form-urlencoded",
        body.into_bytes(),
    )
    .await;
    assert_refused(&t.gate, &response, before, 413, &["body_too_large"]).await;
}

#[tokio::test]
async fn large_response_under_the_limits_is_accepted() {
    let Some(t) = Ctx::start().await else { return };
    // Many groups, as Okta sends them: ~205 KB decoded, ~275 KB as a form body.
    let xml = t.signed(&ResponseSpec {
        attributes: (0..800)
            .map(|i| {
                (
                    "groups".to_owned(),
                    format!("group-{i:04}-{}", "x".repeat(80)),
                )
            })
            .collect(),
        ..t.spec()
    });
    assert!(
        xml.len() > 180 * 1024 && xml.len() < 250 * 1024,
        "{}",
        xml.len()
    );
    t.accepted(&xml, "/", "/").await;
}

#[tokio::test]
async fn encrypted_assertion_is_refused() {
    let Some(t) = Ctx::start().await else { return };
    let xml = t.signed(&ResponseSpec {
        encrypted_assertion: true,
        sign_assertion: false,
        sign_response: true,
        ..t.spec()
    });
    assert!(xml.contains("<saml2:EncryptedAssertion"));
    t.refused(&xml, &["encrypted_assertion"]).await;
    // Next to a valid signed Assertion.
    let beside = idp::with_encrypted_assertion(&t.signed(&t.spec()));
    t.refused(&beside, &["encrypted_assertion", "assertion_count"])
        .await;
}

#[tokio::test]
async fn malformed_input_is_refused() {
    let Some(t) = Ctx::start().await else { return };
    let before = t.gate.events("login").len();
    let response = post_form(
        t.gate.addr,
        "/saml/acs",
        &[("SAMLResponse", "%%% not base64 %%%"), ("RelayState", "/")],
        "",
    )
    .await;
    assert_refused(&t.gate, &response, before, 403, &["malformed"]).await;
    let signed = t.signed(&t.spec());
    t.refused(&signed[..signed.len() / 2], &["malformed"]).await;
    t.refused("this is not XML at all", &["malformed"]).await;
}

// ---------------------------------------------------------------------------------
// Time windows (clock_skew = 90 s by default).

#[tokio::test]
async fn conditions_not_yet_valid_beyond_skew() {
    let Some(t) = Ctx::start().await else { return };
    let xml = t.signed(&ResponseSpec {
        not_before: 300,
        ..t.spec()
    });
    t.refused(&xml, &["not_yet_valid"]).await;
}

#[tokio::test]
async fn conditions_expired_beyond_skew() {
    let Some(t) = Ctx::start().await else { return };
    let xml = t.signed(&ResponseSpec {
        not_before: -900,
        not_on_or_after: -300,
        ..t.spec()
    });
    t.refused(&xml, &["expired"]).await;
}

#[tokio::test]
async fn subject_confirmation_expired_beyond_skew() {
    let Some(t) = Ctx::start().await else { return };
    let xml = t.signed(&ResponseSpec {
        subject_not_on_or_after: -300,
        ..t.spec()
    });
    t.refused(&xml, &["subject_confirmation_expired"]).await;
}

#[tokio::test]
async fn time_edges_within_skew_are_accepted() {
    let Some(t) = Ctx::start().await else { return };
    let early = t.signed(&ResponseSpec {
        not_before: 45,
        ..t.spec()
    });
    t.accepted(&early, "/", "/").await;
    let late = t.signed(&ResponseSpec {
        not_before: -600,
        not_on_or_after: -45,
        subject_not_on_or_after: -45,
        ..t.spec()
    });
    t.accepted(&late, "/", "/").await;
}

// ---------------------------------------------------------------------------------
// Who it is for, from whom, about whom.

#[tokio::test]
async fn audience_and_conditions() {
    let Some(t) = Ctx::start().await else { return };
    let wrong = t.signed(&ResponseSpec {
        audience: Some("https://other-sp.example.com/saml/metadata".into()),
        ..t.spec()
    });
    t.refused(&wrong, &["audience_mismatch"]).await;
    let no_audience = t.signed(&ResponseSpec {
        audience: None,
        ..t.spec()
    });
    t.refused(&no_audience, &["audience_mismatch", "conditions_missing"])
        .await;
    let no_conditions = t.signed(&ResponseSpec {
        include_conditions: false,
        ..t.spec()
    });
    t.refused(&no_conditions, &["conditions_missing"]).await;
}

#[tokio::test]
async fn recipient_and_subject_confirmation() {
    let Some(t) = Ctx::start().await else { return };
    let wrong = t.signed(&ResponseSpec {
        recipient: Some("https://other-sp.example.com/saml/acs".into()),
        ..t.spec()
    });
    t.refused(&wrong, &["recipient_mismatch"]).await;
    let none = t.signed(&ResponseSpec {
        subject_confirmation: None,
        ..t.spec()
    });
    t.refused(&none, &["subject_confirmation_missing"]).await;
    let holder_of_key = t.signed(&ResponseSpec {
        subject_confirmation: Some(CM_HOLDER_OF_KEY.into()),
        ..t.spec()
    });
    t.refused(&holder_of_key, &["subject_confirmation_missing"])
        .await;
}

#[tokio::test]
async fn destination_mismatch_and_absent_destination() {
    let Some(t) = Ctx::start().await else { return };
    let wrong = t.signed(&ResponseSpec {
        destination: Some("https://other-sp.example.com/saml/acs".into()),
        ..t.spec()
    });
    t.refused(&wrong, &["destination_mismatch"]).await;
    // Destination is optional ("when present").
    let absent = t.signed(&ResponseSpec {
        destination: None,
        ..t.spec()
    });
    t.accepted(&absent, "/", "/").await;
}

#[tokio::test]
async fn issuers() {
    let Some(t) = Ctx::start().await else { return };
    let Some(stranger) = TestIdp::new("http://www.okta.com/exk1unknown") else {
        return;
    };
    t.refused(
        &stranger.response(&stranger.spec(ALICE)),
        &["unknown_issuer"],
    )
    .await;
    // The tenant's Response around an Assertion from someone else.
    let assertion_other = t.signed(&ResponseSpec {
        assertion_issuer: "http://www.okta.com/exk1unknown".into(),
        ..t.spec()
    });
    t.refused(&assertion_other, &["issuer_mismatch"]).await;
    let response_other = t.signed(&ResponseSpec {
        response_issuer: Some("http://www.okta.com/exk1unknown".into()),
        ..t.spec()
    });
    t.refused(&response_other, &["issuer_mismatch", "unknown_issuer"])
        .await;
    // The Response's Issuer is optional; the Assertion's decides then.
    let no_response_issuer = t.signed(&ResponseSpec {
        response_issuer: None,
        ..t.spec()
    });
    t.accepted(&no_response_issuer, "/", "/").await;
}

#[tokio::test]
async fn status_not_success() {
    let Some(t) = Ctx::start().await else { return };
    let xml = t.signed(&ResponseSpec {
        status: STATUS_RESPONDER.into(),
        ..t.spec()
    });
    t.refused(&xml, &["status_not_success"]).await;
}

#[tokio::test]
async fn name_id_missing() {
    let Some(t) = Ctx::start().await else { return };
    // A Subject with only a SubjectConfirmation is schema-valid SAML.
    let missing = t.signed(&ResponseSpec {
        name_id: None,
        ..t.spec()
    });
    t.refused(&missing, &["name_id_missing"]).await;
    assert!(t.panel.lookups().is_empty());
}

#[tokio::test]
async fn name_id_empty() {
    let Some(t) = Ctx::start().await else { return };
    let empty = t.signed(&t.idp.spec(""));
    assert!(!empty.contains("@acme.com</saml2:NameID>"));
    t.refused(&empty, &["name_id_missing"]).await;
    assert!(t.panel.lookups().is_empty());
}

// ---------------------------------------------------------------------------------
// Replay and request binding.

#[tokio::test]
async fn replayed_idp_initiated_response() {
    let Some(t) = Ctx::start().await else { return };
    let xml = t.signed(&t.spec());
    t.accepted(&xml, "/", "/").await;
    t.refused(&xml, &["replayed"]).await;
    // Re-encoded differently (the same Assertion with a new Response ID) is the same replay.
    let new_response_id = xml.replacen(
        &format!(r#"ID="{}""#, attr_id(&xml)),
        &format!(r#"ID="{}""#, idp::new_id()),
        1,
    );
    t.refused(&new_response_id, &["replayed"]).await;
}

/// The Response ID of `xml`.
fn attr_id(xml: &str) -> String {
    let at = xml.find("<saml2p:Response").unwrap();
    let id = xml[at..].find(" ID=\"").unwrap() + at + 5;
    let end = xml[id..].find('"').unwrap() + id;
    xml[id..end].to_owned()
}

#[tokio::test]
async fn replayed_sp_initiated_response() {
    let Some(t) = Ctx::start().await else { return };
    let mut browser = Browser::new();
    let (_, request) = start_login(&t.gate, &mut browser, "acme", "/x").await;
    let xml = t.signed(&t.spec().for_request(&request.id));
    let relay = request.relay_state.clone().unwrap_or_default();
    t.accepted_in(&xml, &relay, "/x", &mut browser).await;
    let before = t.gate.events("login").len();
    let response = t.post(&xml, &relay, &browser).await;
    assert_refused(
        &t.gate,
        &response,
        before,
        403,
        &["replayed", "in_response_to_unknown"],
    )
    .await;
}

#[tokio::test]
async fn in_response_to_unknown_or_from_another_browser() {
    let Some(t) = Ctx::start().await else { return };
    // A request this samlgate never issued.
    let invented = t.signed(&t.spec().for_request(&idp::new_id()));
    t.refused(&invented, &["in_response_to_unknown"]).await;

    let mut victim = Browser::new();
    let (_, request) = start_login(&t.gate, &mut victim, "acme", "/").await;
    let mut attacker = Browser::new();
    start_login(&t.gate, &mut attacker, "acme", "/").await;
    assert!(victim.get("samlgate_request").is_some(), "{victim:?}");
    let for_victim = t.signed(&t.spec().for_request(&request.id));
    // Without the request cookie, and with another browser's.
    t.refused(&for_victim, &["in_response_to_unknown"]).await;
    t.refused_in(&for_victim, &attacker, &["in_response_to_unknown"])
        .await;
    // Only on the SubjectConfirmationData, or disagreeing with the Response's.
    let subject_only = t.signed(&ResponseSpec {
        subject_in_response_to: Some(idp::new_id()),
        ..t.spec()
    });
    t.refused_in(&subject_only, &victim, &["in_response_to_unknown"])
        .await;
    let disagreeing = t.signed(&ResponseSpec {
        subject_in_response_to: Some(idp::new_id()),
        ..t.spec().for_request(&request.id)
    });
    t.refused_in(&disagreeing, &victim, &["in_response_to_unknown"])
        .await;
    // Control: the victim's own browser gets in.
    let relay = request.relay_state.clone().unwrap_or_default();
    t.accepted_in(&for_victim, &relay, "/", &mut victim).await;
}

#[tokio::test]
async fn unsolicited_response_with_idp_initiated_disabled() {
    let Some(t) = Ctx::start_with("allow_idp_initiated = false", "").await else {
        return;
    };
    t.refused(&t.signed(&t.spec()), &["unsolicited"]).await;
    // Control: SP-initiated still works.
    let mut browser = Browser::new();
    let (_, request) = start_login(&t.gate, &mut browser, "acme", "/").await;
    let xml = t.signed(&t.spec().for_request(&request.id));
    let relay = request.relay_state.clone().unwrap_or_default();
    t.accepted_in(&xml, &relay, "/", &mut browser).await;
}

// ---------------------------------------------------------------------------------
// RelayState never leaves the origin.

#[tokio::test]
async fn relay_state_open_redirects_lead_to_root() {
    let Some(t) = Ctx::start().await else { return };
    for relay in [
        "//evil.com",
        "https://evil.com",
        "/\\evil.com",
        "%2F%2Fevil.com",
        "/%2Fevil.com",
        "/%5Cevil.com",
        "/%252F%252Fevil.com",
        "/%0d%0aSet-Cookie:%20x=y",
        "/ok\tevil",
        "javascript:alert(1)",
        "evil.com",
        "",
    ] {
        let xml = t.signed(&t.spec());
        t.accepted(&xml, relay, "/").await;
    }
    // Control: a path on this origin is kept as it was sent.
    t.accepted(&t.signed(&t.spec()), "/reports?x=1", "/reports?x=1")
        .await;
}

// ---------------------------------------------------------------------------------
// Findings of the adversarial review: each fails without its defence.

/// Inserts `what` right before the Assertion's `</ds:Signature>`: the enveloped
/// signature does not cover its own element, so the signature stays valid.
fn inside_assertion_signature(signed: &str, what: &str) -> String {
    let assertion = signed.find("<saml2:Assertion").unwrap_or(0);
    let end = assertion + signed[assertion..].find("</ds:Signature>").unwrap();
    format!("{}{what}{}", &signed[..end], &signed[end..])
}

#[tokio::test]
async fn deep_nesting_is_refused_and_the_process_survives() {
    let Some(t) = Ctx::start().await else { return };
    // Well inside the size limits; a recursive parser overflows its stack on it.
    let deep = format!("{}{}", "<a>".repeat(20_000), "</a>".repeat(20_000));
    t.refused(&deep, &["malformed"]).await;
    // Still alive and still judging correctly.
    t.accepted(&t.signed(&t.spec()), "/", "/").await;
    // 300 levels after a valid Response would be dropped by libxml2's recovery mode,
    // hiding a second Signature from the verifier (require_signed_response bypass).
    let padded = t.signed(&t.spec()).replace(
        "</saml2p:Response>",
        &format!(
            "{}{}</saml2p:Response>",
            "<x:d xmlns:x=\"urn:x\">".repeat(300),
            "</x:d>".repeat(300)
        ),
    );
    t.refused(&padded, &["malformed"]).await;
}

#[tokio::test]
async fn manifest_references_are_never_fetched() {
    let Some(t) = Ctx::start().await else { return };
    let ssrf = format!("http://{}/ssrf", t.panel.addr);
    for uri in [ssrf.as_str(), "file:///dev/zero"] {
        let manifest = format!(
            r#"<ds:Object><ds:Manifest><ds:Reference URI="{uri}"><ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><ds:DigestValue>AAAA</ds:DigestValue></ds:Reference></ds:Manifest></ds:Object>"#
        );
        let xml = inside_assertion_signature(&t.signed(&t.spec()), &manifest);
        let started = std::time::Instant::now();
        t.refused(&xml, &["signature_reference"]).await;
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{uri}"
        );
    }
    assert!(
        t.panel
            .seen()
            .iter()
            .all(|s| !s.path_and_query.starts_with("/ssrf")),
        "samlgate fetched a Manifest reference"
    );
    // The same through a prefix undeclaration that only libxml2 resolves to dsig.
    let hidden = format!(
        r#"<ds:Object xmlns:ds=""><ds:Manifest><ds:Reference URI="{ssrf}"/></ds:Manifest></ds:Object>"#
    );
    let xml = inside_assertion_signature(&t.signed(&t.spec()), &hidden);
    t.refused(&xml, &["malformed"]).await;
    let retrieval = r#"<ds:KeyInfo><ds:RetrievalMethod URI="file:///etc/passwd"/></ds:KeyInfo>"#;
    let xml = t
        .signed(&t.spec())
        .replacen("<ds:KeyInfo>", &format!("{retrieval}<ds:KeyInfo>"), 1);
    t.refused(&xml, &["signature_reference"]).await;
}

#[tokio::test]
async fn a_namespace_bomb_is_refused_cheaply_and_blocks_nothing() {
    let Some(t) = Ctx::start().await else { return };
    let declarations: String = (0..7000).map(|i| format!(" xmlns:a{i}=\"u\"")).collect();
    let children = "<b xmlns:z=\"u\"/>".repeat(1000);
    let bomb = format!("<r{declarations}>{children}</r>");
    let started = std::time::Instant::now();
    t.refused(&bomb, &["malformed"]).await;
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[tokio::test]
async fn an_unsigned_response_in_response_to_cannot_make_an_assertion_solicited() {
    let Some(t) = Ctx::start_with("allow_idp_initiated = false", "").await else {
        return;
    };
    let mut browser = Browser::new();
    let (_, request) = start_login(&t.gate, &mut browser, "acme", "/").await;
    // Signed Assertion without InResponseTo; the id added to the unsigned Response.
    let unsolicited = t.signed(&t.spec());
    let dressed = unsolicited.replacen(
        "<saml2p:Response ",
        &format!("<saml2p:Response InResponseTo=\"{}\" ", request.id),
        1,
    );
    t.refused_in(&dressed, &browser, &["unsolicited"]).await;
}
