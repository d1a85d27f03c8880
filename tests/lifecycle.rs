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

#[tokio::test]
async fn an_upstream_reset_mid_response_cuts_that_response_only() {
    let keys = Keys::new(Algorithm::Es256);
    let panel = Panel::start().await;
    let gate = Samlgate::start(&keys, &config_toml(&keys, &panel.url(), "", ""));
    let cookie = keys
        .codec("samlgate_session", false)
        .seal(&alice(unix_now()));
    let header = format!("Cookie: samlgate_session={cookie}\r\n");
    // The client sees the connection end before the promised 1000 bytes.
    let mut stream = TcpStream::connect(gate.addr).await.unwrap();
    let request = format!("GET /reset HTTP/1.1\r\nHost: gate.test\r\n{header}\r\n");
    tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes())
        .await
        .unwrap();
    let mut received = Vec::new();
    let read = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut received),
    )
    .await
    .expect("the cut response ends instead of hanging");
    let _ = read;
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        received.len() < 1000,
        "a truncated body, not a complete one"
    );
    // The pool recovers: following requests are answered normally.
    for _ in 0..5 {
        assert_eq!(get(gate.addr, "/after", &header).await.status, 200);
    }
}

#[tokio::test]
async fn sigterm_under_load_answers_every_accepted_request() {
    let keys = Keys::new(Algorithm::Es256);
    let panel = Panel::start().await;
    let mut gate = Samlgate::start(&keys, &config_toml(&keys, &panel.url(), "", ""));
    let cookie = keys
        .codec("samlgate_session", false)
        .seal(&alice(unix_now()));
    let addr = gate.addr;
    let requests: Vec<_> = (0..50)
        .map(|i| {
            let header = format!("Cookie: samlgate_session={cookie}\r\n");
            tokio::spawn(
                async move { get(addr, &format!("/slow?ms={}", 300 + i * 10), &header).await },
            )
        })
        .collect();
    // Every request has reached the panel, so each was accepted before SIGTERM.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while panel.seen().len() < 50 {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} arrived",
            panel.seen().len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    gate.signal("TERM");
    let mut complete = 0;
    for request in requests {
        let response = request.await.unwrap();
        assert_eq!(response.status, 200);
        assert!(response.text().starts_with("slow "));
        complete += 1;
    }
    assert_eq!(complete, 50);
    let code = tokio::task::spawn_blocking(move || gate.wait(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(code, Some(0));
}
