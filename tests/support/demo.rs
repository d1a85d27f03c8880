//! `samlgate demo` as a child process on four free consecutive loopback ports,
//! shared by the demo, browser and interop tests.

use std::io::{BufRead as _, BufReader};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `samlgate demo`; stopped on drop (SIGTERM first, so it removes its
/// temporary directory).
pub struct Demo {
    child: Child,
    /// samlgate's port; the IdP is on `base + 1`, the panel on `base + 2`.
    pub base: u16,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
}

impl Demo {
    /// Starts the demo and waits for its banner.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts the demo with extra environment variables (retrying on other ports if
    /// one was taken meanwhile) and waits for its banner.
    pub fn start_with(env: &[(&str, &str)]) -> Self {
        for _ in 0..5 {
            if let Some(demo) = Self::try_start(free_base(), env) {
                return demo;
            }
        }
        panic!("samlgate demo did not start on any free ports");
    }

    fn try_start(base: u16, env: &[(&str, &str)]) -> Option<Self> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_samlgate"))
            .args(["demo", "--base-port", &base.to_string()])
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = collect(child.stdout.take().unwrap());
        let stderr = collect(child.stderr.take().unwrap());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if stdout.lock().unwrap().contains("Press Ctrl-C to stop.") {
                return Some(Self {
                    child,
                    base,
                    stdout,
                    stderr,
                });
            }
            if let Some(status) = child.try_wait().unwrap() {
                eprintln!(
                    "demo on {base} exited early ({status}):\n{}",
                    stderr.lock().unwrap()
                );
                return None;
            }
            assert!(
                Instant::now() < deadline,
                "demo did not start:\n{}",
                stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The address of the listener `offset` ports above the base.
    pub fn addr(&self, offset: u16) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.base + offset))
    }

    /// samlgate.
    pub fn gate(&self) -> SocketAddr {
        self.addr(0)
    }

    /// The development IdP.
    pub fn idp(&self) -> SocketAddr {
        self.addr(1)
    }

    /// The demo panel.
    pub fn panel(&self) -> SocketAddr {
        self.addr(2)
    }

    /// samlgate's URL for `path`.
    pub fn gate_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.gate())
    }

    /// The development IdP's URL for `path`.
    pub fn idp_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.idp())
    }

    /// What the demo printed on stdout (its banner).
    pub fn banner(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// What the demo logged on stderr.
    pub fn logs(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The live stderr buffer, for fixtures that print it when a step fails.
    pub fn log_sink(&self) -> Arc<Mutex<String>> {
        self.stderr.clone()
    }

    /// Sends `signal` (e.g. "INT") to the demo.
    pub fn signal(&self, signal: &str) {
        super::send_signal(&self.child, signal);
    }

    /// Waits for the demo to exit and returns its exit code.
    pub fn wait(&mut self, timeout: Duration) -> Option<i32> {
        super::wait_exit(&mut self.child, timeout)
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn collect(stream: impl std::io::Read + Send + 'static) -> Arc<Mutex<String>> {
    let sink = Arc::new(Mutex::new(String::new()));
    let writer = sink.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            let mut text = writer.lock().unwrap();
            text.push_str(&line);
            text.push('\n');
        }
    });
    sink
}

/// A port p such that p..p+4 are all free on loopback right now.
fn free_base() -> u16 {
    loop {
        let base = super::free_port();
        if base > 65532 {
            continue;
        }
        if (0..4).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
    }
}
