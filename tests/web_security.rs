//! samlgate's own pages and cookies as a browser-facing web application: CSRF on
//! state-changing POSTs, no reflected input, security headers, cookie flags, and
//! logs free of secrets after real logins.

mod support;

use samlgate::identity::Algorithm;
use support::idp::{self, start_login, tenant_toml, TestIdp};
use support::panel::Panel;
use support::{
    config_toml, get, post_form, set_cookie, set_cookie_header, Browser, Keys, Samlgate,
};

const ISSUER: &str = "http://www.okta.com/exk1web";
const ALICE: &str = "alice@acme.com";

struct Ctx {
    keys: Keys,
    idp: TestIdp,
    gate: Samlgate,
    _panel: Panel,
}

async fn start(public_url: &str) -> Option<Ctx> {
    let idp = TestIdp::new(ISSUER)?;
    let keys = Keys::new(Algorithm::Es256);
    let panel = Panel::start().await;
    panel.add_account("acme", ALICE, "u-alice");
    let toml = config_toml(
        &keys,
        &panel.url(),
        "",
        &tenant_toml("acme", ISSUER, &idp.cert_path()),
    )
    .replace(
        "public_url = \"http://gate.test\"",
        &format!("public_url = \"{public_url}\""),
    );
    let gate = Samlgate::start(&keys, &toml);
    Some(Ctx {
        keys,
        idp,
        gate,
        _panel: panel,
    })
}

#[tokio::test]
async fn cross_site_login_and_logout_posts_are_refused() {
    let Some(t) = start("http://gate.test").await else {
        return;
    };
    let fields = [("company_id", "acme"), ("return_to", "/")];
    for header in [
        "Sec-Fetch-Site: cross-site\r\n",
        "Sec-Fetch-Site: same-site\r\n",
        "Origin: https://evil.example\r\n",
        "Origin: null\r\n",
    ] {
        for path in ["/saml/login", "/saml/logout"] {
            let response = post_form(t.gate.addr, path, &fields, header).await;
            assert_eq!(response.status, 403, "{path} with {header:?}");
            assert!(set_cookie(&response, "samlgate_request").is_none());
        }
    }
    for header in [
        "Sec-Fetch-Site: same-origin\r\n",
        "Origin: http://gate.test\r\n",
        "",
    ] {
        let response = post_form(t.gate.addr, "/saml/login", &fields, header).await;
        assert_eq!(response.status, 302, "same-origin login with {header:?}");
    }
}

#[tokio::test]
async fn user_input_is_never_reflected_unescaped() {
    let Some(t) = start("http://gate.test").await else {
        return;
    };
    let evil = r#""><script>alert(1)</script>"#;
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("company_id", evil)
        .append_pair("return_to", evil)
        .finish();
    let page = get(t.gate.addr, &format!("/saml/login?{query}"), "").await;
    assert_eq!(page.status, 400);
    assert!(!page.text().contains("<script>"), "{}", page.text());
    let posted = post_form(
        t.gate.addr,
        "/saml/login",
        &[
            ("company_id", evil),
            ("return_to", "/x\"><img src=x onerror=alert(1)>"),
        ],
        "",
    )
    .await;
    assert_eq!(posted.status, 400);
    assert!(!posted.text().contains("<img"), "{}", posted.text());
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(page.header("referrer-policy"), Some("same-origin"));
    assert_eq!(page.header("cache-control"), Some("no-store"));
}

#[tokio::test]
async fn cookies_carry_the_right_flags_on_https() {
    let Some(t) = start("https://gate.test").await else {
        return;
    };
    let mut browser = Browser::new();
    let (start, request) = start_login(&t.gate, &mut browser, "acme", "/").await;
    let state = set_cookie_header(&start, "samlgate_request").unwrap();
    assert!(
        state.contains("HttpOnly") && state.contains("Secure"),
        "{state}"
    );
    assert!(state.contains("SameSite=None"), "{state}");
    let mut spec = t
        .idp
        .spec(ALICE)
        .for_request(&request.id)
        .acs_url("https://gate.test/saml/acs");
    spec.audience = Some("https://gate.test/saml/metadata".into());
    let response = post_form(
        t.gate.addr,
        "/saml/acs",
        &[
            ("SAMLResponse", &idp::encode(&t.idp.response(&spec))),
            ("RelayState", "/"),
        ],
        &browser.cookie_header(),
    )
    .await;
    assert_eq!(response.status, 303, "{}", response.text());
    assert_eq!(response.header("cache-control"), Some("no-store"));
    let session = set_cookie_header(&response, "samlgate_session").unwrap();
    for flag in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
        assert!(session.contains(flag), "{flag} missing: {session}");
    }
    let company = set_cookie_header(&response, "samlgate_company").unwrap();
    assert!(
        company.contains("HttpOnly") && company.contains("Secure"),
        "{company}"
    );
}

#[tokio::test]
async fn logs_hold_no_saml_response_cookie_or_key() {
    let Some(t) = start("http://gate.test").await else {
        return;
    };
    let mut browser = Browser::new();
    let (_, request) = start_login(&t.gate, &mut browser, "acme", "/").await;
    let encoded = idp::encode(&t.idp.response(&t.idp.spec(ALICE).for_request(&request.id)));
    let response = post_form(
        t.gate.addr,
        "/saml/acs",
        &[("SAMLResponse", &encoded), ("RelayState", "/")],
        &browser.cookie_header(),
    )
    .await;
    assert_eq!(response.status, 303);
    browser.absorb(&response);
    let session = browser.get("samlgate_session").unwrap().to_owned();
    get(t.gate.addr, "/app", &browser.cookie_header()).await;
    get(t.gate.addr, "/saml/logout", &browser.cookie_header()).await;
    // A refused one too: its body must not be logged either.
    let refused = idp::encode(
        &t.idp
            .response(&t.idp.spec(ALICE))
            .replace(ALICE, "x@acme.com"),
    );
    post_form(t.gate.addr, "/saml/acs", &[("SAMLResponse", &refused)], "").await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let logs = t.gate.logs().join("\n");
    assert!(
        logs.contains("\"message\":\"login\""),
        "the audit events are there"
    );
    for (what, secret) in [
        ("SAMLResponse", &encoded[..60]),
        ("refused SAMLResponse", &refused[..60]),
        ("session cookie", session.as_str()),
        ("session key", t.keys.session_key.as_str()),
        ("identity key", t.keys.identity_pem.lines().nth(1).unwrap()),
    ] {
        assert!(!logs.contains(secret), "the {what} reached the logs");
    }
    if let Some(state) = browser.get("samlgate_request") {
        assert!(
            !logs.contains(state),
            "the request-state cookie reached the logs"
        );
    }
}

#[tokio::test]
async fn a_cross_site_navigation_cannot_log_the_user_out() {
    let Some(t) = start("http://gate.test").await else {
        return;
    };
    let session = t
        .keys
        .codec("samlgate_session", false)
        .seal(&support::alice(support::unix_now()));
    let cookie = format!("Cookie: samlgate_session={session}\r\n");
    let forced = get(
        t.gate.addr,
        "/saml/logout",
        &format!("Sec-Fetch-Site: cross-site\r\n{cookie}"),
    )
    .await;
    assert_eq!(forced.status, 403);
    assert_eq!(get(t.gate.addr, "/saml/whoami", &cookie).await.status, 200);
    let own = get(
        t.gate.addr,
        "/saml/logout",
        &format!("Sec-Fetch-Site: same-origin\r\n{cookie}"),
    )
    .await;
    assert_eq!(own.status, 302);
    assert_eq!(get(t.gate.addr, "/saml/whoami", &cookie).await.status, 401);
}
