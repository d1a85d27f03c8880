//! Two samlgate replicas sharing one real Redis: an Assertion consumed at one is
//! refused at the other, a login started at one completes at the other, a logout
//! holds everywhere, and a Redis outage fails logins closed without dropping the
//! sessions already established.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use samlgate::identity::Algorithm;
use support::idp::{self, start_login, tenant_toml, TestIdp};
use support::panel::Panel;
use support::{
    config_toml, free_port, get, post_form, program, set_cookie, wait_for_port, Browser, Keys,
    RawResponse, Samlgate,
};

const ISSUER: &str = "http://www.okta.com/exk1replicas";
const ALICE: &str = "alice@acme.com";

struct Redis {
    child: Child,
}

impl Redis {
    async fn start(binary: &std::path::Path, port: u16) -> Self {
        let child = Command::new(binary)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for_port(format!("127.0.0.1:{port}").parse().unwrap()).await;
        Self { child }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn acs(gate: &Samlgate, xml: &str, browser: &Browser) -> RawResponse {
    post_form(
        gate.addr,
        "/saml/acs",
        &[("SAMLResponse", &idp::encode(xml)), ("RelayState", "/")],
        &browser.cookie_header(),
    )
    .await
}

/// Posts to the ACS and returns the answer with the reason of its audit event.
async fn login(gate: &Samlgate, xml: &str, browser: &Browser) -> (RawResponse, String) {
    let already = gate.events("login").len();
    let response = acs(gate, xml, browser).await;
    let event = gate.next_event("login", already).await;
    (
        response,
        event["reason"].as_str().unwrap_or_default().to_owned(),
    )
}

fn session_header(response: &RawResponse) -> String {
    let value = set_cookie(response, "samlgate_session").expect("a session cookie");
    format!("Cookie: samlgate_session={value}\r\n")
}

#[tokio::test]
async fn replicas_share_replay_request_state_and_logout_through_redis() {
    let Some(redis_server) = program("redis-server", &["/usr/bin/redis-server"]) else {
        return;
    };
    let Some(idp) = TestIdp::new(ISSUER) else {
        return;
    };
    let port = free_port();
    let redis = Redis::start(&redis_server, port).await;

    let keys = Keys::new(Algorithm::Es256);
    let panel = Panel::start().await;
    panel.add_account("acme", ALICE, "u-alice");
    let extra = format!(
        "{}\n[replay]\nredis_url = \"redis://127.0.0.1:{port}/0\"\n",
        tenant_toml("acme", ISSUER, &idp.cert_path())
    );
    let toml = config_toml(&keys, &panel.url(), "", &extra);
    let a = Samlgate::start(&keys, &toml);
    let b = Samlgate::start(&keys, &toml);

    // An IdP-initiated Assertion consumed at A is a replay at B.
    let unsolicited = idp.response(&idp.spec(ALICE));
    let first = acs(&a, &unsolicited, &Browser::new()).await;
    assert_eq!(first.status, 303, "{}", first.text());
    let (replayed, reason) = login(&b, &unsolicited, &Browser::new()).await;
    assert_eq!(replayed.status, 403);
    assert!(set_cookie(&replayed, "samlgate_session").is_none());
    assert_eq!(reason, "replayed");
    let metrics = get(b.admin, "/metrics", "").await.text();
    assert!(
        metrics.contains(r#"samlgate_logins_total{outcome="failure",reason="replayed"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("samlgate_replay_rejections_total 1"),
        "{metrics}"
    );

    // A login started at A completes at B: the request state is in the sealed cookie.
    let mut browser = Browser::new();
    let (_, request) = start_login(&a, &mut browser, "acme", "/reports").await;
    let answer = idp.response(&idp.spec(ALICE).for_request(&request.id));
    let crossed = acs(&b, &answer, &browser).await;
    assert_eq!(crossed.status, 303, "{}", crossed.text());
    assert_eq!(crossed.header("location"), Some("/reports"));
    let crossed_session = session_header(&crossed);

    // A logout at A holds at B (which has never seen this session before).
    let cookie = session_header(&first);
    assert_eq!(get(b.addr, "/saml/whoami", &cookie).await.status, 200);
    let logout = get(a.addr, "/saml/logout", &cookie).await;
    assert_eq!(logout.status, 302);
    assert_eq!(get(a.addr, "/saml/whoami", &cookie).await.status, 401);
    // B trusts its last "not revoked" answer for up to 5 s.
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        if get(b.addr, "/saml/whoami", &cookie).await.status == 401 {
            break;
        }
        assert!(Instant::now() < deadline, "logout at A never reached B");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Redis down: logins fail closed with 503, established sessions keep working.
    drop(redis);
    let (during, reason) = login(&a, &idp.response(&idp.spec(ALICE)), &Browser::new()).await;
    assert_eq!(during.status, 503, "{}", during.text());
    assert!(set_cookie(&during, "samlgate_session").is_none());
    assert_eq!(reason, "replay_store_unavailable");
    assert_eq!(
        get(b.addr, "/saml/whoami", &crossed_session).await.status,
        200
    );
    // The revocation B learned from Redis outlives the 5 s recheck: with Redis down,
    // the logged-out session must not come back.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(get(b.addr, "/saml/whoami", &cookie).await.status, 401);

    // Redis back on the same port: logins recover without restarting samlgate.
    let _redis = Redis::start(&redis_server, port).await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let after = acs(&a, &idp.response(&idp.spec(ALICE)), &Browser::new()).await;
        if after.status == 303 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "logins never recovered: {}",
            after.status
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
