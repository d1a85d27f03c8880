//! Limits of the public listener over raw sockets: oversized heads, slow clients,
//! idle keep-alive connections and the connection cap.

mod support;

use std::time::Duration;

use samlgate::identity::Algorithm;
use support::panel::Panel;
use support::{config_toml, get, raw, Keys, Samlgate};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

async fn start(limits: &str) -> (Keys, Panel, Samlgate) {
    let keys = Keys::new(Algorithm::Es256);
    let panel = Panel::start().await;
    let gate = Samlgate::start(&keys, &config_toml(&keys, &panel.url(), "", limits));
    (keys, panel, gate)
}

/// Reads until the peer closes; `None` if it is still open after `wait`.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> Option<Vec<u8>> {
    let mut bytes = Vec::new();
    tokio::time::timeout(wait, stream.read_to_end(&mut bytes))
        .await
        .ok()
        .map(|_| bytes)
}

#[tokio::test]
async fn oversized_request_heads_get_431() {
    let (_keys, panel, gate) = start("").await;
    let big = format!("X-Big: {}\r\n", "a".repeat(70 * 1024));
    assert_eq!(get(gate.addr, "/static/x", &big).await.status, 431);
    let many: String = (0..120).map(|i| format!("X-H{i}: v\r\n")).collect();
    assert_eq!(get(gate.addr, "/static/x", &many).await.status, 431);
    assert!(panel.seen().is_empty());
    let fine: String = (0..50).map(|i| format!("X-H{i}: v\r\n")).collect();
    assert_eq!(get(gate.addr, "/static/x", &fine).await.status, 200);
}

#[tokio::test]
async fn slow_and_idle_clients_are_disconnected() {
    let (_keys, _panel, gate) = start("\n[limits]\nheader_read_timeout = \"1s\"\n").await;
    // Slowloris: a head that never ends.
    let mut slow = TcpStream::connect(gate.addr).await.unwrap();
    slow.write_all(b"GET /static/x HTTP/1.1\r\nHost: gate.test\r\nX-A: 1\r\n")
        .await
        .unwrap();
    assert!(
        closed_within(&mut slow, Duration::from_secs(5))
            .await
            .is_some(),
        "a client that never finishes its headers is still connected"
    );
    // Idle keep-alive after a complete exchange.
    let mut idle = TcpStream::connect(gate.addr).await.unwrap();
    idle.write_all(b"GET /static/x HTTP/1.1\r\nHost: gate.test\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    assert!(
        closed_within(&mut idle, Duration::from_secs(5))
            .await
            .is_some(),
        "an idle keep-alive connection is still open"
    );
}

#[tokio::test]
async fn past_max_connections_new_clients_wait_instead_of_failing() {
    let (_keys, _panel, gate) = start("\n[limits]\nmax_connections = 2\n").await;
    let held_a = TcpStream::connect(gate.addr).await.unwrap();
    let _held_b = TcpStream::connect(gate.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let addr = gate.addr;
    let waiting = tokio::spawn(async move {
        raw(
            addr,
            "GET /static/x HTTP/1.1\r\nHost: gate.test\r\nConnection: close\r\n\r\n",
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "a third connection was served past the cap"
    );
    drop(held_a);
    let response = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("served once a slot was free")
        .unwrap();
    assert_eq!(response.status, 200);
}
