//! Admin endpoints, TLS on both sides, and graceful shutdown of the real binary.

mod support;

use std::sync::Arc;
use std::time::Duration;

use samlgate::identity::Algorithm;
use support::panel::Panel;
use support::{alice, config_toml, get, unix_now, Keys, Samlgate};
use tokio::net::TcpStream;

#[tokio::test]
async fn admin_endpoints_report_health_readiness_and_metrics() {
    let keys = Keys::new(Algorithm::EdDsa);
    let panel = Panel::start().await;
    let gate = Samlgate::start(&keys, &config_toml(&keys, &panel.url(), "", ""));
    assert_eq!(get(gate.admin, "/healthz", "").await.status, 200);
    assert_eq!(get(gate.admin, "/readyz", "").await.status, 200);
    get(gate.addr, "/api", "").await;
    let cookie = keys
        .codec("samlgate_session", false)
        .seal(&alice(unix_now()));
    get(
        gate.addr,
        "/ok",
        &format!("Cookie: samlgate_session={cookie}\r\n"),
    )
    .await;
    let metrics = get(gate.admin, "/metrics", "").await.text();
    assert!(
        metrics.contains(r#"samlgate_http_requests_total{route="unauthenticated",status="401"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"samlgate_http_requests_total{route="proxy",status="200"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("samlgate_upstream_request_duration_seconds_count 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("samlgate_http_requests_in_flight"),
        "{metrics}"
    );
    assert_eq!(
        get(gate.addr, "/healthz", "").await.status,
        401,
        "admin routes are not public"
    );
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests_then_exits_zero() {
    let keys = Keys::new(Algorithm::Es256);
    let panel = Panel::start().await;
    let mut gate = Samlgate::start(&keys, &config_toml(&keys, &panel.url(), "", ""));
    let cookie = keys
        .codec("samlgate_session", false)
        .seal(&alice(unix_now()));
    let addr = gate.addr;
    let slow = tokio::spawn(async move {
        get(
            addr,
            "/slow?ms=1500",
            &format!("Cookie: samlgate_session={cookie}\r\n"),
        )
        .await
    });
    // Wait until the panel has the request, so it is really in flight.
    for _ in 0..100 {
        if panel
            .seen()
            .iter()
            .any(|s| s.path_and_query.starts_with("/slow"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    gate.signal("TERM");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(get(gate.admin, "/readyz", "").await.status, 503);
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "still accepting after SIGTERM"
    );
    let response = slow.await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "slow 1500");
    let code = tokio::task::spawn_blocking(move || gate.wait(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(code, Some(0));
}

#[tokio::test]
async fn tls_termination_and_https_upstream_with_a_configured_ca() {
    let keys = Keys::new(Algorithm::Rs256);
    let panel = Panel::start().await;
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    std::fs::write(keys.path("tls.crt"), cert.cert.pem()).unwrap();
    std::fs::write(keys.path("tls.key"), cert.key_pair.serialize_pem()).unwrap();
    let tls = format!(
        "\n[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
        keys.path("tls.crt").display(),
        keys.path("tls.key").display()
    );
    // The inner samlgate terminates TLS in front of the panel.
    let inner = Samlgate::start(&keys, &config_toml(&keys, &panel.url(), "", &tls));

    // Client side: a rustls client trusting only the generated certificate.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = TcpStream::connect(inner.addr).await.unwrap();
    let stream = connector
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let response = sender
        .send_request(
            http::Request::get("/static/x.css")
                .header("host", "localhost")
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        panel.last("/static/x.css").header("x-forwarded-proto"),
        Some("https")
    );

    // The outer samlgate reaches the inner one over https, trusting upstream_tls.ca_file.
    let outer_keys = Keys::new(Algorithm::Es256);
    std::fs::write(outer_keys.path("ca.crt"), cert.cert.pem()).unwrap();
    let upstream = format!("https://localhost:{}", inner.addr.port());
    let ca = format!(
        "\n[upstream_tls]\nca_file = \"{}\"\n",
        outer_keys.path("ca.crt").display()
    );
    let outer = Samlgate::start(&outer_keys, &config_toml(&outer_keys, &upstream, "", &ca));
    let through = get(outer.addr, "/static/through", "").await;
    assert_eq!(through.status, 200, "{}", through.text());
    panel.last("/static/through");

    // Without the CA the same hop fails closed with 502.
    let untrusting_keys = Keys::new(Algorithm::Es256);
    let untrusting = Samlgate::start(
        &untrusting_keys,
        &config_toml(&untrusting_keys, &upstream, "", ""),
    );
    assert_eq!(get(untrusting.addr, "/static/nope", "").await.status, 502);
}
