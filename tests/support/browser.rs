//! A real browser for the end-to-end tests: Debian's `chromedriver` on a free loopback
//! port, driving headless Chromium (a fresh profile per session) over WebDriver with
//! fantoccini. Every wait polls with a deadline ([`STEP`]); nothing sleeps a fixed time.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};

/// The browser binary (Debian's `chromium` package).
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Chromium's command line, apart from `--user-data-dir`: headless, no network of its
/// own (updates, sync, QUIC), no first-run pages.
pub const CHROMIUM_ARGS: [&str; 8] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
];

/// How long one step (a page to appear, an element to show up) may take: generous,
/// because the machine running the tests may be loaded.
pub const STEP: Duration = Duration::from_secs(15);

/// The window size: screenshots are this many pixels, so they stay stable and small.
pub const WINDOW: (u32, u32) = (1200, 800);

/// `chromedriver` and `chromium` when both are installed; `None` (the test skips
/// with a message) when one is missing, unless `CI=true`, which fails instead.
pub fn installed() -> Option<PathBuf> {
    let driver = super::program("chromedriver", &["/usr/bin/chromedriver"])?;
    super::program("chromium", &[CHROMIUM])?;
    Some(driver)
}

/// A running `chromedriver` on 127.0.0.1; killed on drop (drop the sessions first:
/// they end their Chromium through it).
pub struct Chromedriver {
    child: Child,
    pub port: u16,
}

impl Chromedriver {
    /// Starts `driver` on a free loopback port (retrying if the port was taken
    /// meanwhile) and waits until it answers.
    pub async fn start(driver: &Path) -> Self {
        for _ in 0..5 {
            let port = super::free_port();
            let child = Command::new(driver)
                // Without --allowed-ips it listens on loopback only.
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", driver.display()));
            let mut driver_process = Self { child, port };
            if driver_process.ready().await {
                return driver_process;
            }
            drop(driver_process);
        }
        panic!("chromedriver did not start on any free port");
    }

    /// Waits until the WebDriver port accepts connections; false if the process died.
    async fn ready(&mut self) -> bool {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = tokio::time::Instant::now() + STEP;
        while tokio::time::Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return false;
            }
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("chromedriver did not listen on {addr} within {STEP:?}");
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser session: a fresh Chromium profile, cookies and all. Dropped without
/// [`Session::close`] (a failed test), it still ends its Chromium: through chromedriver,
/// and by killing any process still running with its profile directory.
pub struct Session {
    pub client: Client,
    logs: Option<Arc<Mutex<String>>>,
    driver: SocketAddr,
    id: Option<String>,
    closed: bool,
    profile: tempfile::TempDir,
}

impl Session {
    /// Opens headless Chromium through `driver`, with a new profile directory and the
    /// window at [`WINDOW`].
    pub async fn open(driver: &Chromedriver) -> Self {
        let profile = tempfile::Builder::new()
            .prefix("samlgate-chromium-")
            .tempdir()
            .unwrap();
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|a| a.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let capabilities = serde_json::json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
        });
        let serde_json::Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = tokio::time::timeout(
            Duration::from_secs(60),
            ClientBuilder::new(connector)
                .capabilities(capabilities)
                .connect(&driver.url()),
        )
        .await
        .expect("Chromium started within 60 s")
        .unwrap_or_else(|e| panic!("no WebDriver session: {e}"));
        // The window includes a (simulated) browser frame: size it so that the page
        // itself, and so every screenshot, is WINDOW.
        client
            .set_window_size(WINDOW.0, WINDOW.1)
            .await
            .expect("window size");
        let inner = client
            .execute("return [window.innerWidth, window.innerHeight];", vec![])
            .await
            .expect("the viewport size");
        let inner: (u32, u32) = serde_json::from_value(inner).expect("two numbers");
        if inner != WINDOW {
            client
                .set_window_size(
                    (2 * WINDOW.0).saturating_sub(inner.0),
                    (2 * WINDOW.1).saturating_sub(inner.1),
                )
                .await
                .expect("window size");
        }
        let id = client.session_id().await.ok().flatten();
        Self {
            client,
            logs: None,
            driver: SocketAddr::from(([127, 0, 0, 1], driver.port)),
            id,
            closed: false,
            profile,
        }
    }

    /// Adds `logs` (e.g. a server's stderr) to the message of every failed wait.
    pub fn attach_logs(&mut self, logs: Arc<Mutex<String>>) {
        self.logs = Some(logs);
    }

    /// Ends the WebDriver session, which stops this Chromium.
    pub async fn close(mut self) {
        if let Ok(Ok(())) = tokio::time::timeout(STEP, self.client.clone().close()).await {
            self.closed = true;
        }
    }

    pub async fn goto(&self, url: &str) {
        if let Err(e) = self.client.goto(url).await {
            self.fail(&format!("could not open {url}: {e}")).await;
        }
    }

    /// The page's current URL.
    pub async fn url(&self) -> url::Url {
        self.client.current_url().await.expect("the current URL")
    }

    /// Waits (up to [`STEP`]) for an element matching the CSS selector.
    pub async fn find(&self, css: &str) -> Element {
        self.wait_for(Locator::Css(css), css).await
    }

    /// Waits (up to [`STEP`]) for an element `tag` (`*` for any) whose text contains
    /// `text` (which must not contain `'`).
    pub async fn find_text(&self, tag: &str, text: &str) -> Element {
        assert!(!text.contains('\''), "{text}");
        let xpath = format!("//{tag}[contains(normalize-space(.), '{text}')]");
        self.wait_for(Locator::XPath(&xpath), &format!("<{tag}> with {text:?}"))
            .await
    }

    /// Waits for the button labelled `label` and clicks it.
    pub async fn click_button(&self, label: &str) {
        let xpath = format!("//button[normalize-space(.)='{label}']");
        let button = self
            .wait_for(Locator::XPath(&xpath), &format!("the {label:?} button"))
            .await;
        if let Err(e) = button.click().await {
            self.fail(&format!("could not click {label:?}: {e}")).await;
        }
    }

    /// Waits for the element matching `css` and clicks it.
    pub async fn click(&self, css: &str) {
        let element = self.find(css).await;
        if let Err(e) = element.click().await {
            self.fail(&format!("could not click {css}: {e}")).await;
        }
    }

    /// Waits for the input matching `css` and types `text` into it.
    pub async fn type_into(&self, css: &str, text: &str) {
        let input = self.find(css).await;
        if let Err(e) = input.send_keys(text).await {
            self.fail(&format!("could not type into {css}: {e}")).await;
        }
    }

    /// Whether an element matches `css` right now (no waiting).
    pub async fn has(&self, css: &str) -> bool {
        !self
            .client
            .find_all(Locator::Css(css))
            .await
            .expect("find_all")
            .is_empty()
    }

    /// The visible text of the whole page.
    pub async fn text(&self) -> String {
        match self.client.find(Locator::Css("body")).await {
            Ok(body) => body.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Saves a PNG of the window as `target/screenshots/{name}.png` (a test artifact)
    /// and, with `UPDATE_SCREENSHOTS=1`, as `docs/screenshots/{name}.png` too.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("a screenshot");
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, &png).unwrap();
        if std::env::var("UPDATE_SCREENSHOTS").as_deref() == Ok("1") {
            let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots");
            std::fs::create_dir_all(&docs).unwrap();
            std::fs::write(docs.join(format!("{name}.png")), &png).unwrap();
        }
        path
    }

    async fn wait_for(&self, locator: Locator<'_>, what: &str) -> Element {
        match self
            .client
            .wait()
            .at_most(STEP)
            .every(Duration::from_millis(50))
            .for_element(locator)
            .await
        {
            Ok(element) => element,
            Err(e) => {
                self.fail(&format!("{what} did not appear within {STEP:?}: {e}"))
                    .await
            }
        }
    }

    /// Panics with `problem`, where the browser is, what the page says and the logs.
    async fn fail(&self, problem: &str) -> ! {
        let url = self
            .client
            .current_url()
            .await
            .map_or_else(|e| format!("(unknown: {e})"), |u| u.to_string());
        let text = self.text().await;
        let logs = self
            .logs
            .as_ref()
            .map(|l| l.lock().unwrap().clone())
            .unwrap_or_default();
        panic!("{problem}\nat {url}, showing:\n{text}\n--- logs ---\n{logs}");
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if !self.closed {
            if let Some(id) = &self.id {
                delete_session(self.driver, id);
            }
        }
        kill_processes_using(self.profile.path());
    }
}

/// `DELETE /session/{id}` (WebDriver's "quit"), blocking, for use in `drop`.
fn delete_session(driver: SocketAddr, id: &str) {
    let Ok(mut stream) = TcpStream::connect_timeout(&driver, Duration::from_secs(2)) else {
        return;
    };
    let _ = stream.set_read_timeout(Some(STEP));
    let request = format!(
        "DELETE /session/{id} HTTP/1.1\r\nHost: {driver}\r\nContent-Length: 0\r\n\
         Connection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_ok() {
        let _ = stream.read_to_end(&mut Vec::new());
    }
}

/// Kills (by pid) every process whose command line names `profile`: the Chromium
/// processes of one session, whose profile directory is unique to it.
fn kill_processes_using(profile: &Path) {
    let needle = format!("--user-data-dir={}", profile.display());
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if cmdline
            .split(|b| *b == 0)
            .any(|arg| arg == needle.as_bytes())
        {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// `target/screenshots/` (next to the directory cargo gives integration tests).
pub fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join("screenshots")
}
