//! `samlgate demo` end to end: the real binary on four free loopback ports, driven
//! over HTTP like a browser would (cookies, redirects, the IdP's auto-submit form).

mod support;

use std::io::Read as _;
use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine as _;
use support::demo::Demo;
use support::{get, post_form, Browser, RawResponse};

const HTML: &str = "Accept: text/html,application/xhtml+xml;q=0.9,*/*;q=0.8\r\n";

fn input(page: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker)? + marker.len();
    let len = page[start..].find('"')?;
    Some(unescape(&page[start..start + len]))
}

fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The path and query of an absolute `Location`, after checking its origin.
fn path_at(location: &str, origin: SocketAddr) -> String {
    let url = url::Url::parse(location).unwrap_or_else(|e| panic!("{location}: {e}"));
    assert_eq!(
        (url.host_str(), url.port()),
        (Some("127.0.0.1"), Some(origin.port())),
        "{location}"
    );
    match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    }
}

fn location(response: &RawResponse) -> &str {
    response
        .header("location")
        .unwrap_or_else(|| panic!("no Location in {response:?}"))
}

/// Signs in at the IdP's login form `form` (which must be on the page) as `user`
/// and returns the auto-submit page that carries the SAMLResponse.
async fn idp_login(demo: &Demo, browser: &mut Browser, form: &RawResponse, user: &str) -> String {
    assert_eq!(form.status, 200, "{}", form.text());
    let page = form.text();
    assert!(
        page.contains("name=\"password\"") && page.contains("action=\"/login\""),
        "{page}"
    );
    let handle = input(&page, "request").expect("the form carries the request handle");
    let password = format!("{user}-password");
    // What a browser sends for the IdP's own form.
    let headers = format!(
        "Origin: http://{}\r\nSec-Fetch-Site: same-origin\r\n{}",
        demo.idp(),
        browser.cookie_header()
    );
    let answer = post_form(
        demo.idp(),
        "/login",
        &[
            ("username", user),
            ("password", &password),
            ("request", &handle),
        ],
        &headers,
    )
    .await;
    browser.absorb(&answer);
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.text()
}

/// The fields the auto-submit page POSTs, after checking it is the ACS form.
fn saml_post(demo: &Demo, page: &str) -> (String, Option<String>) {
    let acs = format!("action=\"http://127.0.0.1:{}/saml/acs\"", demo.base);
    assert!(page.contains(&acs), "{page}");
    assert!(page.contains("<script src=\"/autosubmit.js\"></script>"));
    assert!(page.contains(">Continue</button>"), "a no-script fallback");
    assert!(!page.contains("<script>"), "no inline script");
    (
        input(page, "SAMLResponse").expect("a SAMLResponse"),
        input(page, "RelayState"),
    )
}

async fn post_acs(
    demo: &Demo,
    browser: &mut Browser,
    response: &str,
    relay: Option<&str>,
) -> RawResponse {
    let mut fields = vec![("SAMLResponse", response)];
    if let Some(relay) = relay {
        fields.push(("RelayState", relay));
    }
    let answer = post_form(demo.gate(), "/saml/acs", &fields, &browser.cookie_header()).await;
    browser.absorb(&answer);
    answer
}

fn with_cookies(browser: &Browser) -> String {
    format!("{HTML}{}", browser.cookie_header())
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_logs_users_in_sp_and_idp_initiated_and_stops_on_sigint() {
    let mut demo = Demo::start();
    let banner = demo.banner();
    let gate_url = format!("http://127.0.0.1:{}/", demo.base);
    assert!(banner.contains(&format!("Open {gate_url}")), "{banner}");
    for needle in [
        "demo ",
        "globex ",
        "alice-password",
        "bob-password",
        "carol-password",
        "dana-password",
    ] {
        assert!(banner.contains(needle), "{needle} missing:\n{banner}");
    }

    // --- SP-initiated, static tenant `demo`, Alice, with a deep link. ---
    let mut alice = Browser::new();
    let first = get(demo.gate(), "/reports?x=1", HTML).await;
    assert_eq!(first.status, 302, "{}", first.text());
    // Two tenants (one static, lookup on) and no remembered company: the login screen.
    let login = location(&first).to_owned();
    assert!(login.starts_with("/saml/login?return_to="), "{login}");

    let to_idp = get(
        demo.gate(),
        &format!("{login}&company_id=demo"),
        &alice.cookie_header(),
    )
    .await;
    assert_eq!(to_idp.status, 302, "{}", to_idp.text());
    alice.absorb(&to_idp);
    assert!(alice.get("samlgate_request").is_some(), "request state");
    let sso = path_at(location(&to_idp), demo.idp());
    assert!(sso.starts_with("/app/demo/sso?SAMLRequest="), "{sso}");

    let form = get(demo.idp(), &sso, &alice.cookie_header()).await;
    assert!(form.text().contains("Google Workspace Backup (Demo Inc.)"));

    // A wrong password: the form again, with an error, 401.
    let handle = input(&form.text(), "request").unwrap();
    let wrong = post_form(
        demo.idp(),
        "/login",
        &[
            ("username", "alice"),
            ("password", "bob-password"),
            ("request", &handle),
        ],
        "",
    )
    .await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.text().contains("Wrong username or password"));
    assert!(wrong.text().contains("name=\"password\""));
    assert!(wrong.header("set-cookie").is_none());
    // Login CSRF: a form on another site cannot sign a browser in at the IdP.
    for headers in [
        "Origin: http://evil.example\r\n",
        "Sec-Fetch-Site: cross-site\r\nOrigin: http://evil.example\r\n",
    ] {
        let forged = post_form(
            demo.idp(),
            "/login",
            &[("username", "alice"), ("password", "alice-password")],
            headers,
        )
        .await;
        assert_eq!(forged.status, 403, "{headers}");
        assert!(forged.header("set-cookie").is_none());
    }

    let page = idp_login(&demo, &mut alice, &form, "alice").await;
    assert!(
        alice.get("demo_idp_session").is_some(),
        "IdP session cookie"
    );
    let (response, relay) = saml_post(&demo, &page);
    assert_eq!(relay.as_deref(), Some("/reports?x=1"));
    let xml = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(&response)
            .unwrap(),
    )
    .unwrap();
    assert!(xml.contains("InResponseTo=\"_"), "solicited: {xml}");

    let acs = post_acs(&demo, &mut alice, &response, relay.as_deref()).await;
    assert_eq!(acs.status, 303, "{}\n{}", acs.text(), demo.logs());
    assert_eq!(location(&acs), "/reports?x=1");
    assert!(alice.get("samlgate_session").is_some());

    let panel = get(demo.gate(), "/reports?x=1", &with_cookies(&alice)).await;
    assert_eq!(panel.status, 200, "{}", panel.text());
    let text = panel.text();
    for needle in [
        "Google Workspace Backup",
        "Alice",
        "alice@demo.example",
        "u-1001",
        "/reports?x=1",
        "admin",
        "href=\"/saml/logout\"",
        "Protection",
        "Settings → Okta",
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }
    let css = get(demo.gate(), "/static/panel.css", "").await;
    assert_eq!(css.status, 200, "a public path");

    // The IdP session is single sign-on: the next SP-initiated login answers at once.
    let again = get(
        demo.gate(),
        "/saml/login?company_id=demo",
        &alice.cookie_header(),
    )
    .await;
    alice.absorb(&again);
    let sso_again = get(
        demo.idp(),
        &path_at(location(&again), demo.idp()),
        &alice.cookie_header(),
    )
    .await;
    assert_eq!(sso_again.status, 200);
    assert!(input(&sso_again.text(), "SAMLResponse").is_some());
    assert!(!sso_again.text().contains("name=\"password\""));

    let script = get(demo.idp(), "/autosubmit.js", "").await;
    assert_eq!(script.status, 200);
    assert!(script
        .header("content-type")
        .unwrap()
        .contains("javascript"));
    assert!(sso_again
        .header("content-security-policy")
        .unwrap()
        .contains("script-src 'self'"));

    // Logout: samlgate revokes and sends the browser to the IdP's sign-out page.
    let logout = get(demo.gate(), "/saml/logout", &alice.cookie_header()).await;
    assert_eq!(logout.status, 302);
    let slo = path_at(location(&logout), demo.idp());
    assert_eq!(slo, "/app/demo/slo");
    alice.absorb(&logout);
    let signed_out = get(demo.idp(), &slo, &alice.cookie_header()).await;
    assert_eq!(signed_out.status, 200);
    alice.absorb(&signed_out);
    assert!(alice.get("demo_idp_session").is_none());
    let after = get(demo.gate(), "/reports", &with_cookies(&alice)).await;
    assert_eq!(after.status, 302, "the session ended");

    // --- IdP-initiated, looked-up tenant `globex`, Dana, from the dashboard. ---
    let mut dana = Browser::new();
    let dashboard = get(demo.idp(), "/", "").await;
    assert_eq!(dashboard.status, 200);
    assert!(
        dashboard.text().contains("name=\"password\""),
        "login first"
    );
    let tile = get(demo.idp(), "/app/globex/tile", "").await;
    let page = idp_login(&demo, &mut dana, &tile, "dana").await;
    let (response, relay) = saml_post(&demo, &page);
    assert_eq!(relay, None, "unsolicited: no RelayState");
    let xml = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(&response)
            .unwrap(),
    )
    .unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let signed: Vec<&str> = doc
        .descendants()
        .filter(|n| n.tag_name().name() == "Signature")
        .map(|n| n.parent_element().unwrap().tag_name().name())
        .collect();
    assert_eq!(signed, ["Response", "Assertion"], "{xml}");
    assert!(!xml.contains("InResponseTo"), "{xml}");

    let acs = post_acs(&demo, &mut dana, &response, None).await;
    assert_eq!(acs.status, 303, "{}\n{}", acs.text(), demo.logs());
    assert_eq!(location(&acs), "/");
    let home = get(demo.gate(), "/settings/okta", &with_cookies(&dana)).await;
    assert_eq!(home.status, 200, "{}", home.text());
    for needle in ["Dana", "dana@globex.example", "globex", "tenant lookup"] {
        assert!(home.text().contains(needle), "{needle}:\n{}", home.text());
    }
    let apps = get(demo.idp(), "/", &dana.cookie_header()).await;
    assert!(apps.text().contains("My Applications"));
    assert!(apps.text().contains("href=\"/app/demo/tile\""));
    assert!(apps.text().contains("href=\"/app/globex/tile\""));

    // --- Carol exists in the IdP but not in the panel. ---
    let mut carol = Browser::new();
    let to_idp = get(demo.gate(), "/saml/login?company_id=demo", "").await;
    carol.absorb(&to_idp);
    let form = get(
        demo.idp(),
        &path_at(location(&to_idp), demo.idp()),
        &carol.cookie_header(),
    )
    .await;
    let page = idp_login(&demo, &mut carol, &form, "carol").await;
    let (response, relay) = saml_post(&demo, &page);
    let refused = post_acs(&demo, &mut carol, &response, relay.as_deref()).await;
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert!(refused.text().contains("24 hours"), "{}", refused.text());
    assert!(refused.text().contains("carol@demo.example"));
    assert!(carol.get("samlgate_session").is_none());

    // --- The panel itself trusts nothing but samlgate's signed header. ---
    let direct = get(demo.panel(), "/reports", HTML).await;
    assert_eq!(direct.status, 401);
    assert!(direct.text().contains("No verified identity"));
    let forged = get(
        demo.panel(),
        "/",
        "X-Samlgate-Assertion: eyJhbGciOiJIUzI1NiIsImtpZCI6IngifQ.eyJzdWIiOiJ1LTEwMDEifQ.c2ln\r\n",
    )
    .await;
    assert_eq!(forged.status, 401);
    let lookup = get(
        demo.panel(),
        "/internal/samlgate/accounts?company_id=demo&name_id=alice%40demo.example",
        "",
    )
    .await;
    assert_eq!(
        lookup.status, 401,
        "the account lookup needs the bearer token"
    );

    // --- SIGINT: everything stops, exit 0, generated files removed. ---
    let config_file = banner
        .lines()
        .find_map(|l| l.strip_prefix("Configuration: "))
        .and_then(|l| l.split(" (").next())
        .map(std::path::PathBuf::from)
        .expect("the banner names the configuration");
    assert!(config_file.exists());
    demo.signal("INT");
    assert_eq!(
        demo.wait(Duration::from_secs(35)),
        Some(0),
        "{}",
        demo.logs()
    );
    assert!(
        !config_file.parent().unwrap().exists(),
        "the temporary directory is removed"
    );
}

/// Every demo listener is bound to 127.0.0.1 only: checked in the kernel's socket
/// table, and by connecting to a non-loopback address of this machine if it has one.
#[tokio::test(flavor = "multi_thread")]
async fn demo_listens_on_loopback_only() {
    let demo = Demo::start();
    let ports: Vec<u16> = (0..4).map(|i| demo.base + i).collect();

    let v4 = listening("/proc/net/tcp");
    let v6 = listening("/proc/net/tcp6");
    for port in &ports {
        let bound: Vec<&String> = v4
            .iter()
            .filter(|(_, p)| p == port)
            .map(|(a, _)| a)
            .collect();
        assert_eq!(bound, ["0100007F"], "port {port}: {v4:?}");
        assert!(!v6.iter().any(|(_, p)| p == port), "port {port} on IPv6");
    }

    if let Some(ip) = non_loopback_ipv4() {
        for port in &ports {
            let result = tokio::time::timeout(
                Duration::from_secs(2),
                tokio::net::TcpStream::connect((ip, *port)),
            )
            .await;
            assert!(
                !matches!(result, Ok(Ok(_))),
                "{ip}:{port} accepted a connection"
            );
        }
    }
}

/// `(local address hex, port)` of each LISTEN socket in a `/proc/net/tcp*` table.
fn listening(table: &str) -> Vec<(String, u16)> {
    let mut text = String::new();
    let Ok(mut file) = std::fs::File::open(table) else {
        return Vec::new();
    };
    file.read_to_string(&mut text).unwrap();
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (addr, port) = fields.get(1)?.split_once(':')?;
            let listen = *fields.get(3)? == "0A";
            let port = u16::from_str_radix(port, 16).ok()?;
            listen.then(|| (addr.to_owned(), port))
        })
        .collect()
}

/// This machine's outbound IPv4 address, when it has a route (no packet is sent).
fn non_loopback_ipv4() -> Option<std::net::IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}
