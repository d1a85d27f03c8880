//! SIGHUP reloads tenants, certificates and keys without dropping connections; a bad
//! new configuration is refused with `check`'s messages and the old one stays.

mod support;

use std::time::{Duration, Instant};

use samlgate::identity::Algorithm;
use support::panel::Panel;
use support::{config_toml, get, Keys, Samlgate};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

fn tenant(keys: &Keys, company: &str) -> String {
    let cert = rcgen::generate_simple_self_signed(vec![format!("{company}.okta.test")]).unwrap();
    let path = keys.path(&format!("{company}.pem"));
    std::fs::write(&path, cert.cert.pem()).unwrap();
    format!(
        "\n[[tenants]]\ncompany_id = \"{company}\"\nidp_sso_url = \"https://{company}.okta.test/sso\"\n\
         idp_issuer = \"http://www.okta.com/{company}\"\nidp_certificate_file = \"{}\"\n",
        path.display()
    )
}

async fn wait_for_log(gate: &Samlgate, message: &str, already: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while gate.events(message).len() <= already {
        assert!(Instant::now() < deadline, "no {message:?} in the log");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One request on an open keep-alive connection; returns the status code.
async fn on(stream: &mut TcpStream, path: &str) -> u16 {
    let request = format!("GET {path} HTTP/1.1\r\nHost: gate.test\r\nAccept: text/html\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.unwrap();
    head[9..12].parse().unwrap()
}

#[tokio::test]
async fn sighup_reloads_tenants_and_refuses_a_bad_file() {
    let keys = Keys::new(Algorithm::Es256);
    let panel = Panel::start().await;
    let acme = tenant(&keys, "acme");
    let gate = Samlgate::start(&keys, &config_toml(&keys, &panel.url(), "", &acme));
    let path = keys.path("samlgate.toml");
    let mut kept_alive = TcpStream::connect(gate.addr).await.unwrap();
    assert_eq!(
        on(&mut kept_alive, "/saml/login?company_id=globex").await,
        400
    );
    assert_eq!(
        on(&mut kept_alive, "/saml/login?company_id=acme").await,
        302
    );

    // A new tenant arrives with SIGHUP, also on the already open connection.
    let both = config_toml(
        &keys,
        &panel.url(),
        "",
        &format!("{acme}{}", tenant(&keys, "globex")),
    );
    std::fs::write(&path, &both).unwrap();
    gate.signal("HUP");
    wait_for_log(&gate, "configuration reloaded", 0).await;
    assert_eq!(
        on(&mut kept_alive, "/saml/login?company_id=globex").await,
        302
    );
    assert_eq!(
        get(gate.addr, "/saml/login?company_id=globex", "")
            .await
            .status,
        302
    );

    // A broken file is refused with check's messages; the running one stays.
    std::fs::write(
        &path,
        both.replace("[session]\n", "[session]\nttl = \"8 hours\"\n"),
    )
    .unwrap();
    gate.signal("HUP");
    wait_for_log(&gate, "configuration reload refused", 0).await;
    let refused = gate.events("configuration reload refused");
    assert_eq!(
        refused[0]["problem"],
        r#"session.ttl: invalid duration "8 hours""#
    );
    assert_eq!(
        on(&mut kept_alive, "/saml/login?company_id=globex").await,
        302
    );

    let metrics = get(gate.admin, "/metrics", "").await.text();
    assert!(
        metrics.contains(r#"samlgate_config_reloads_total{result="success"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"samlgate_config_reloads_total{result="failure"} 1"#),
        "{metrics}"
    );
}
