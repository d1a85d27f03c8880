//! The identity-aware reverse proxy over real sockets: the samlgate binary in front of
//! a mock panel.

mod support;

use std::time::Duration;

use josekit::jwk::JwkSet;
use josekit::jws::ES256;
use samlgate::identity::Algorithm;
use support::panel::Panel;
use support::{alice, config_toml, get, raw, unix_now, Keys, Samlgate};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

const COOKIE: &str = "samlgate_session";

async fn setup() -> (Keys, Panel, Samlgate) {
    let keys = Keys::new(Algorithm::Es256);
    let panel = Panel::start().await;
    let gate = Samlgate::start(&keys, &config_toml(&keys, &panel.url(), "", ""));
    (keys, panel, gate)
}

fn cookie_header(keys: &Keys) -> String {
    let value = keys.codec(COOKIE, false).seal(&alice(unix_now()));
    format!("Cookie: {COOKIE}={value}\r\n")
}

#[tokio::test]
async fn api_call_without_session_gets_the_exact_401_json() {
    let (_keys, panel, gate) = setup().await;
    let response = get(gate.addr, "/api/items", "Accept: application/json\r\n").await;
    assert_eq!(response.status, 401);
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(
        response.text(),
        r#"{"error":"unauthenticated","login_url":"/saml/login"}"#
    );
    let no_accept = get(gate.addr, "/api/items", "").await;
    assert_eq!(no_accept.status, 401);
    let star = get(gate.addr, "/reports", "Accept: */*\r\n").await;
    assert_eq!(star.status, 401, "*/* alone is not a navigation");
    assert!(panel.seen().is_empty(), "nothing reached the panel");
}

#[tokio::test]
async fn browser_navigation_without_session_is_sent_to_login_with_return_to() {
    let (_keys, panel, gate) = setup().await;
    let response = get(
        gate.addr,
        "/reports?x=1&y=a%20b",
        "Accept: text/html,application/xhtml+xml,*/*;q=0.8\r\n",
    )
    .await;
    assert_eq!(response.status, 302);
    assert_eq!(
        response.header("location"),
        Some("/saml/login?return_to=/reports%3Fx%3D1%26y%3Da%2520b")
    );
    assert!(panel.seen().is_empty());
}

#[tokio::test]
async fn public_paths_pass_without_identity_but_not_through_dot_segments() {
    let (_keys, panel, gate) = setup().await;
    let response = get(gate.addr, "/static/app.css", "").await;
    assert_eq!(response.status, 200);
    let seen = panel.last("/static/app.css");
    assert!(seen.header("x-samlgate-assertion").is_none());

    for sneaky in [
        "/static/../admin",
        "/static/%2e%2e/admin",
        "/static/..%2fadmin",
    ] {
        let response = get(gate.addr, sneaky, "").await;
        assert_eq!(response.status, 401, "{sneaky} must not count as public");
    }
    assert_eq!(panel.seen().len(), 1);
}

#[tokio::test]
async fn valid_session_is_forwarded_with_a_verifiable_identity_header() {
    let (keys, panel, gate) = setup().await;
    let response = get(gate.addr, "/reports?x=1", &cookie_header(&keys)).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.text(), "panel saw /reports?x=1");
    let seen = panel.last("/reports");
    let token = seen
        .header("x-samlgate-assertion")
        .expect("identity header");

    // Verify with josekit, an implementation independent of the signing code, using
    // the key published at /saml/jwks.json.
    let jwks = get(gate.addr, "/saml/jwks.json", "").await;
    assert_eq!(jwks.status, 200);
    assert_eq!(jwks.header("cache-control"), Some("max-age=300"));
    let set = JwkSet::from_bytes(&jwks.body).unwrap();
    let header = josekit::jwt::decode_header(token).unwrap();
    let kid = header.claim("kid").unwrap().as_str().unwrap().to_owned();
    let jwk = set.get(&kid).first().cloned().expect("kid in JWKS");
    let verifier = ES256.verifier_from_jwk(jwk).unwrap();
    let (payload, _) = josekit::jwt::decode_with_verifier(token, &verifier).unwrap();
    assert_eq!(payload.issuer(), Some("http://gate.test"));
    assert_eq!(payload.audience(), Some(vec!["backup-panel"]));
    assert_eq!(payload.subject(), Some("u-123"));
    assert_eq!(payload.claim("email").unwrap(), "alice@acme.com");
    assert_eq!(payload.claim("name_id").unwrap(), "alice@acme.com");
    assert_eq!(payload.claim("company_id").unwrap(), "acme");
    assert_eq!(
        payload.claim("roles").unwrap(),
        &serde_json::json!(["admin"])
    );
    let exp = payload.expires_at().unwrap();
    let iat = payload.issued_at().unwrap();
    assert!(exp > iat && exp.duration_since(iat).unwrap() <= Duration::from_secs(60));
}

#[tokio::test]
async fn client_identity_headers_are_stripped_in_every_spelling() {
    let (keys, panel, gate) = setup().await;
    let forged = "X-Samlgate-Assertion: forged1\r\n\
                  x-samlgate-assertion: forged2\r\n\
                  X-SAMLGATE-ASSERTION: forged3\r\n\
                  X_Samlgate_Assertion: forged4\r\n\
                  X-Samlgate-Account-Id: forged5\r\n\
                  x-samlgate-email: forged6\r\n\
                  X-Samlgate-Company: forged7\r\n";
    // Unauthenticated, on a public path.
    get(gate.addr, "/static/a", forged).await;
    let seen = panel.last("/static/a");
    for (name, value) in &seen.headers {
        assert!(
            !value.starts_with("forged"),
            "{name}: {value} reached the panel"
        );
    }
    // Authenticated: only samlgate's own header remains, exactly once.
    get(
        gate.addr,
        "/app",
        &format!("{forged}{}", cookie_header(&keys)),
    )
    .await;
    let seen = panel.last("/app");
    assert_eq!(seen.headers_named("x-samlgate-assertion").len(), 1);
    for (name, value) in &seen.headers {
        assert!(
            !value.starts_with("forged"),
            "{name}: {value} reached the panel"
        );
    }
    assert!(seen.header("x_samlgate_assertion").is_none());
}

#[tokio::test]
async fn bad_cookies_are_no_session() {
    let (keys, panel, gate) = setup().await;
    let codec = keys.codec(COOKIE, false);
    let mut expired = alice(unix_now());
    expired.expires_at = unix_now() - 1;
    let good = codec.seal(&alice(unix_now()));
    let mut tampered = good.clone().into_bytes();
    let middle = tampered.len() / 2;
    tampered[middle] = if tampered[middle] == b'A' { b'B' } else { b'A' };
    let foreign = Keys::new(Algorithm::Es256)
        .codec(COOKIE, false)
        .seal(&alice(unix_now()));
    for value in [
        codec.seal(&expired),
        String::from_utf8(tampered).unwrap(),
        foreign,
        "garbage".to_owned(),
    ] {
        let response = get(gate.addr, "/app", &format!("Cookie: {COOKIE}={value}\r\n")).await;
        assert_eq!(response.status, 401);
    }
    assert!(panel.seen().is_empty());
    let whoami = get(
        gate.addr,
        "/saml/whoami",
        &format!("Cookie: {COOKIE}={good}\r\n"),
    )
    .await;
    assert_eq!(whoami.status, 200);
    assert_eq!(whoami.json()["account_id"], "u-123");
    assert_eq!(get(gate.addr, "/saml/whoami", "").await.status, 401);
}

#[tokio::test]
async fn hop_by_hop_headers_are_dropped_and_forwarded_headers_set() {
    let (keys, panel, gate) = setup().await;
    let response = get(
        gate.addr,
        "/hop",
        &format!(
            "{}Connection: x-secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=1\r\n\
             X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\n",
            cookie_header(&keys)
        ),
    )
    .await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("x-panel"), Some("1"));
    assert!(
        response.header("keep-alive").is_none(),
        "response hop header"
    );
    let seen = panel.last("/hop");
    assert!(seen.header("x-secret").is_none());
    assert!(seen.header("keep-alive").is_none());
    assert_eq!(
        seen.header("x-forwarded-for"),
        Some("203.0.113.9, 127.0.0.1")
    );
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(seen.header("x-forwarded-host"), Some("gate.test"));
    assert_eq!(seen.header("host"), Some(panel.addr.to_string().as_str()));
}

#[tokio::test]
async fn bodies_stream_both_ways() {
    let (keys, panel, gate) = setup().await;
    // Response: the first chunk arrives while the panel still holds back the second.
    let mut stream = TcpStream::connect(gate.addr).await.unwrap();
    let request = format!(
        "GET /stream HTTP/1.1\r\nHost: gate.test\r\n{}Connection: close\r\n\r\n",
        cookie_header(&keys)
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(10), async {
        while !String::from_utf8_lossy(&seen).contains("first") {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before the first chunk");
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("first chunk forwarded before the body ended");
    assert!(!String::from_utf8_lossy(&seen).contains("second"));
    panel.release_stream();
    stream.read_to_end(&mut seen).await.unwrap();
    assert!(String::from_utf8_lossy(&seen).contains("second"));

    // Request: the panel sees the first chunk before the client has sent the rest.
    let mut stream = TcpStream::connect(gate.addr).await.unwrap();
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: gate.test\r\n{}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        cookie_header(&keys)
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(b"5\r\nhello\r\n").await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), panel.first_upload_frame())
        .await
        .expect("first request chunk forwarded before the body ended");
    stream.write_all(b"6\r\n world\r\n0\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    assert!(String::from_utf8_lossy(&answer).contains("received 11"));
}

#[tokio::test]
async fn websocket_upgrade_passes_through_once_authenticated() {
    let (keys, panel, gate) = setup().await;
    let upgrade =
        "GET /ws HTTP/1.1\r\nHost: gate.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                   Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let refused = raw(gate.addr, &format!("{upgrade}Connection: close\r\n\r\n")).await;
    assert_eq!(refused.status, 401);

    let mut stream = TcpStream::connect(gate.addr).await.unwrap();
    stream
        .write_all(format!("{upgrade}{}\r\n", cookie_header(&keys)).as_bytes())
        .await
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(panel.last("/ws").header("x-samlgate-assertion").is_some());
    stream.write_all(b"ping over the tunnel").await.unwrap();
    let mut echo = [0u8; 20];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut echo))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echo, b"ping over the tunnel");
}

#[tokio::test]
async fn http2_clients_are_served() {
    let (keys, panel, gate) = setup().await;
    let stream = TcpStream::connect(gate.addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    let cookie = keys.codec(COOKIE, false).seal(&alice(unix_now()));
    let request = http::Request::get("http://gate.test/h2?x=1")
        .header("cookie", format!("{COOKIE}={cookie}"))
        .header("x-samlgate-assertion", "forged")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let seen = panel.last("/h2");
    assert_eq!(seen.path_and_query, "/h2?x=1");
    assert_ne!(seen.header("x-samlgate-assertion"), Some("forged"));
    assert_eq!(seen.header("x-forwarded-host"), Some("gate.test"));
}

#[tokio::test]
async fn upstream_down_is_a_502_not_a_hang() {
    let keys = Keys::new(Algorithm::Es256);
    let dead = format!("http://127.0.0.1:{}", support::free_port());
    let gate = Samlgate::start(&keys, &config_toml(&keys, &dead, "", ""));
    let api = get(gate.addr, "/app", &cookie_header(&keys)).await;
    assert_eq!(api.status, 502);
    assert_eq!(api.json()["error"], "bad_gateway");
    let page = get(
        gate.addr,
        "/app",
        &format!("{}Accept: text/html\r\n", cookie_header(&keys)),
    )
    .await;
    assert_eq!(page.status, 502);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
}

#[tokio::test]
async fn logs_carry_one_event_per_request_and_no_cookie_value() {
    let (keys, _panel, gate) = setup().await;
    let cookie = keys.codec(COOKIE, false).seal(&alice(unix_now()));
    get(
        gate.addr,
        "/logged?secret=1",
        &format!("Cookie: {COOKIE}={cookie}\r\n"),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = gate.logs();
    let event = logs
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["message"] == "request" && e["path"] == "/logged")
        .expect("an access event");
    assert_eq!(event["method"], "GET");
    assert_eq!(event["status"], 200);
    assert!(event["latency_ms"].is_number());
    assert!(event["upstream_ms"].is_number());
    assert!(event["session"].is_string());
    let all = logs.join("\n");
    assert!(!all.contains(&cookie), "cookie value in the logs");
    assert!(!all.contains("secret=1"), "query string in the logs");
    assert!(!all.contains(&keys.session_key));
}

#[tokio::test]
async fn h2c_upgrades_are_never_tunnelled() {
    let (keys, panel, gate) = setup().await;
    let h2c = "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n";
    // Forwarded as a plain request, on a public path and with a session alike.
    let public = get(gate.addr, "/static/x", h2c).await;
    assert_eq!(public.status, 200);
    let seen = panel.last("/static/x");
    assert!(seen.header("upgrade").is_none());
    assert!(seen.header("http2-settings").is_none());
    // Other upgrades on a public path need a session: a tunnel is not a static file.
    let websocket = get(
        gate.addr,
        "/static/ws",
        "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
    )
    .await;
    assert_eq!(websocket.status, 401);
    let response = get(gate.addr, "/app", &format!("{h2c}{}", cookie_header(&keys))).await;
    assert_eq!(response.status, 200);
    let seen = panel.last("/app");
    assert!(seen.header("upgrade").is_none());
    assert!(seen.header("http2-settings").is_none());
}

#[tokio::test]
async fn path_parameters_and_double_encoding_are_not_public() {
    let (_keys, panel, gate) = setup().await;
    for sneaky in [
        "/static/..;/admin",
        "/static/..%252fadmin",
        "/static/x;jsessionid=1",
    ] {
        assert_eq!(get(gate.addr, sneaky, "").await.status, 401, "{sneaky}");
    }
    assert!(panel.seen().is_empty());
}

#[tokio::test]
async fn samlgate_cookies_never_reach_the_panel() {
    let (keys, panel, gate) = setup().await;
    let value = keys.codec(COOKIE, false).seal(&alice(unix_now()));
    let headers = format!(
        "Cookie: theme=dark; {COOKIE}={value}\r\nCookie: samlgate_company=acme; samlgate_request=x; lang=en\r\n"
    );
    assert_eq!(get(gate.addr, "/app", &headers).await.status, 200);
    let seen = panel.last("/app");
    assert_eq!(seen.headers_named("cookie"), vec!["theme=dark; lang=en"]);
}

#[tokio::test]
async fn requests_stay_under_the_upstream_base_path() {
    let keys = Keys::new(Algorithm::Es256);
    let panel = Panel::start().await;
    let upstream = format!("{}/panel/", panel.url());
    let gate = Samlgate::start(&keys, &config_toml(&keys, &upstream, "", ""));
    let cookie = cookie_header(&keys);

    let inside = get(gate.addr, "/reports?x=1", &cookie).await;
    assert_eq!(inside.status, 200, "{}", inside.text());
    assert_eq!(inside.text(), "panel saw /panel/reports?x=1");
    // Request targets the panel could resolve beside its base path are refused.
    for target in ["/../admin", "/a/%2e%2E/admin", "*"] {
        let request = format!(
            "GET {target} HTTP/1.1\r\nHost: gate.test\r\n{cookie}Connection: close\r\n\r\n"
        );
        let answer = raw(gate.addr, &request).await;
        assert_eq!(answer.status, 400, "{target}: {}", answer.text());
        assert_eq!(answer.json()["error"], "outside_base_path");
    }
    assert!(
        panel
            .seen()
            .iter()
            .all(|seen| seen.path_and_query.starts_with("/panel/")),
        "{:?}",
        panel.seen()
    );
}
