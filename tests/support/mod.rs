//! Shared fixtures for the integration tests: the samlgate process, a mock panel,
//! raw HTTP over sockets, and external programs (nginx, …) on free loopback ports.
#![allow(dead_code)] // each test binary uses a different part of this module

pub mod browser;
pub mod demo;
pub mod idp;
pub mod interop;
pub mod panel;

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use samlgate::config::SessionConfig;
use samlgate::identity::{Algorithm, IdentityKey};
use samlgate::session::{Session, SessionCodec, SessionKey};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Key material and a scratch directory for one samlgate instance.
pub struct Keys {
    pub dir: tempfile::TempDir,
    pub session_key: String,
    pub identity_pem: String,
    pub algorithm: Algorithm,
}

impl Keys {
    pub fn new(algorithm: Algorithm) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let session_key = SessionKey::generate_base64();
        let identity_pem = IdentityKey::generate_pem(algorithm).unwrap();
        std::fs::write(dir.path().join("session.key"), format!("{session_key}\n")).unwrap();
        std::fs::write(dir.path().join("identity.pem"), &identity_pem).unwrap();
        Self {
            dir,
            session_key,
            identity_pem,
            algorithm,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A codec with the same key samlgate uses, to mint cookies as a login would.
    pub fn codec(&self, cookie_name: &str, secure: bool) -> SessionCodec {
        SessionCodec::new(
            &SessionConfig {
                cookie_name: cookie_name.to_owned(),
                keys: vec![SessionKey::from_base64(&self.session_key).unwrap()],
                ttl: Duration::from_secs(8 * 3600),
            },
            secure,
        )
    }
}

/// A session as a successful login for Alice would create it.
pub fn alice(now: i64) -> Session {
    Session {
        sid: Session::new_sid(),
        account_id: "u-123".into(),
        email: Some("alice@acme.com".into()),
        name: Some("Alice".into()),
        roles: vec!["admin".into()],
        name_id: "alice@acme.com".into(),
        company_id: "acme".into(),
        auth_time: now - 10,
        expires_at: now + 3600,
    }
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The base TOML every test starts from; `extra` is appended (tables after the top level).
pub fn config_toml(keys: &Keys, upstream: &str, top: &str, extra: &str) -> String {
    format!(
        r#"public_url = "http://gate.test"
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
upstream = "{upstream}"
public_paths = ["/static/"]
{top}

[session]
secret_file = "{session}"

[identity]
key_file = "{identity}"
algorithm = "{algorithm}"
audience = "backup-panel"

[account_lookup]
url = "{upstream}/internal/samlgate/accounts"

[log]
format = "json"
{extra}
"#,
        session = keys.path("session.key").display(),
        identity = keys.path("identity.pem").display(),
        algorithm = keys.algorithm,
    )
}

/// A running samlgate process; killed on drop.
pub struct Samlgate {
    child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Samlgate {
    /// Writes `toml` next to the keys and starts `samlgate run` with it.
    pub fn start(keys: &Keys, toml: &str) -> Self {
        let path = keys.path("samlgate.toml");
        std::fs::write(&path, toml).unwrap();
        Self::start_with(&path, &[])
    }

    pub fn start_with(config: &Path, env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_samlgate"))
            .arg("run")
            .arg("--config")
            .arg(config)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) {
                    if event["message"] == "listening" {
                        let _ = tx.send((
                            event["addr"]
                                .as_str()
                                .unwrap()
                                .parse::<SocketAddr>()
                                .unwrap(),
                            event["admin_addr"]
                                .as_str()
                                .unwrap()
                                .parse::<SocketAddr>()
                                .unwrap(),
                        ));
                    }
                }
                sink.lock().unwrap().push(line);
            }
        });
        let (addr, admin) = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(addrs) => addrs,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().unwrap();
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "samlgate did not start ({status}):\n{}",
                    logs.lock().unwrap().join("\n")
                );
            }
        };
        Self {
            child,
            addr,
            admin,
            logs,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// The structured log events whose `message` is `message`, in order.
    pub fn events(&self, message: &str) -> Vec<serde_json::Value> {
        self.logs()
            .iter()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|event| event["message"] == message)
            .collect()
    }

    /// Waits (up to 5 s) until more than `already` events with `message` were logged
    /// and returns the newest one.
    pub async fn next_event(&self, message: &str, already: usize) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let events = self.events(message);
            if events.len() > already {
                return events.last().unwrap().clone();
            }
            if Instant::now() > deadline {
                panic!(
                    "no new {message:?} event was logged; the log:\n{}",
                    self.logs().join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, signal: &str) {
        send_signal(&self.child, signal);
    }

    /// Waits for the process to exit and returns its exit code.
    pub fn wait(&mut self, timeout: Duration) -> Option<i32> {
        wait_exit(&mut self.child, timeout)
    }
}

/// Sends `signal` (e.g. "TERM") to `child`.
pub fn send_signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits for `child` to exit and returns its exit code; panics after `timeout`.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> Option<i32> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("process {} did not exit within {timeout:?}", child.id());
}

impl Drop for Samlgate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A parsed HTTP/1.1 response read off a raw socket.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// Sends `request` verbatim (it must ask for `Connection: close`) and parses the answer.
pub async fn raw(addr: SocketAddr, request: &str) -> RawResponse {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut bytes))
        .await
        .expect("response within 20 s")
        .unwrap();
    parse_response(&bytes)
}

/// A `GET` with the given extra header lines (each ending in `\r\n`).
pub async fn get(addr: SocketAddr, path: &str, headers: &str) -> RawResponse {
    raw(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: gate.test\r\n{headers}Connection: close\r\n\r\n"),
    )
    .await
}

/// Sends a request with a body while reading the answer concurrently, so an answer
/// sent before the body is consumed (413) is still seen even if the server then
/// resets the connection. `headers` lines each end in `\r\n`.
pub async fn send_body(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    content_type: &str,
    body: Vec<u8>,
) -> RawResponse {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: gate.test\r\n{headers}Content-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let writer = tokio::spawn(async move {
        if write.write_all(head.as_bytes()).await.is_ok() {
            let _ = write.write_all(&body).await;
        }
        // Keep the write half open until the answer has been read.
        write
    });
    let mut bytes = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, read.read(&mut buf)).await {
            Err(_) => panic!("no complete response within 20 s; got {bytes:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => bytes.extend_from_slice(&buf[..n]),
        }
    }
    writer.abort();
    parse_response(&bytes)
}

/// A `application/x-www-form-urlencoded` POST of `fields`.
pub async fn post_form(
    addr: SocketAddr,
    path: &str,
    fields: &[(&str, &str)],
    headers: &str,
) -> RawResponse {
    send_body(
        addr,
        "POST",
        path,
        headers,
        "application/x-www-form-urlencoded",
        form(fields).into_bytes(),
    )
    .await
}

/// The urlencoded form of `fields`.
pub fn form(fields: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}

/// The value a `Set-Cookie` header of `response` gives cookie `name`, if any.
pub fn set_cookie(response: &RawResponse, name: &str) -> Option<String> {
    response
        .headers_named("set-cookie")
        .into_iter()
        .filter_map(|header| {
            let pair = header.split(';').next()?.trim();
            let (n, v) = pair.split_once('=')?;
            (n.trim() == name).then(|| v.trim().to_owned())
        })
        .next_back()
}

/// The full `Set-Cookie` header for cookie `name`, if any.
pub fn set_cookie_header<'a>(response: &'a RawResponse, name: &str) -> Option<&'a str> {
    response.headers_named("set-cookie").into_iter().find(|h| {
        h.split(';')
            .next()
            .and_then(|p| p.split_once('='))
            .is_some_and(|(n, _)| n.trim() == name)
    })
}

/// A minimal cookie jar: what one browser would send back (name → value; no paths,
/// domains or expiry beyond "an empty value or Max-Age=0 deletes").
#[derive(Debug, Default, Clone)]
pub struct Browser {
    pub cookies: Vec<(String, String)>,
}

impl Browser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies every `Set-Cookie` of `response`.
    pub fn absorb(&mut self, response: &RawResponse) {
        for header in response.headers_named("set-cookie") {
            let mut parts = header.split(';');
            let Some((name, value)) = parts.next().and_then(|p| p.split_once('=')) else {
                continue;
            };
            let (name, value) = (name.trim().to_owned(), value.trim().to_owned());
            let expired = parts.any(|a| {
                let a = a.trim().to_ascii_lowercase();
                a == "max-age=0" || a.starts_with("max-age=-")
            });
            self.cookies.retain(|(n, _)| *n != name);
            if !expired && !value.is_empty() {
                self.cookies.push((name, value));
            }
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A `Cookie:` header line (with `\r\n`), or nothing without cookies.
    pub fn cookie_header(&self) -> String {
        if self.cookies.is_empty() {
            return String::new();
        }
        let pairs: Vec<String> = self
            .cookies
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect();
        format!("Cookie: {}\r\n", pairs.join("; "))
    }
}

pub fn parse_response(bytes: &[u8]) -> RawResponse {
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(bytes)));
    let head = std::str::from_utf8(&bytes[..split]).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|line| {
            let (n, v) = line.split_once(':').unwrap();
            (n.trim().to_owned(), v.trim().to_owned())
        })
        .collect();
    let raw_body = &bytes[split + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if chunked {
        dechunk(raw_body)
    } else {
        raw_body.to_vec()
    };
    RawResponse {
        status,
        headers,
        body,
    }
}

fn dechunk(mut bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(end) = bytes.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_text = std::str::from_utf8(&bytes[..end]).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&bytes[end + 2..end + 2 + size]);
        bytes = &bytes[end + 2 + size + 2..];
    }
}

/// A free TCP port on loopback (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Finds an external program; with `CI=true` a missing one fails the test,
/// otherwise the caller skips with a message.
pub fn program(name: &str, candidates: &[&str]) -> Option<PathBuf> {
    let found = candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .or_else(|| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|dir| dir.join(name))
                    .find(|p| p.exists())
            })
        });
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{name} is required when CI=true (install it with scripts/test)"
        );
        eprintln!("SKIPPED: {name} is not installed; run scripts/test to install it");
    }
    found
}

/// Polls until `addr` accepts TCP connections.
pub async fn wait_for_port(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{addr} never accepted connections");
}
