//! `samlgate demo` in a real browser: headless Chromium driven over WebDriver through
//! the demo's pages (samlgate's login screen, the development IdP's login form and
//! dashboard, the auto-submitting SAML POST, the demo panel), as a person would.
//!
//! Each test starts its own demo, chromedriver and Chromium (fresh profile) and stops
//! them at the end; the tests take turns so that two browsers never compete for CPU.
//! Screenshots land in `target/screenshots/`; `UPDATE_SCREENSHOTS=1` also
//! refreshes the ones in `docs/screenshots/`.

mod support;

use support::browser::{Chromedriver, Session};
use support::demo::Demo;

/// One browser at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The demo, chromedriver and a fresh browser session; declared so that they stop in
/// this order when dropped (also when a test fails): Chromium (through the driver),
/// the driver, the demo, then the turn.
struct Stand {
    browser: Session,
    driver: Chromedriver,
    demo: Demo,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

impl Stand {
    /// `None` (the test skips) when chromedriver or Chromium is not installed.
    async fn start() -> Option<Self> {
        let driver = support::browser::installed()?;
        let turn = ONE_AT_A_TIME.lock().await;
        let demo = Demo::start();
        let driver = Chromedriver::start(&driver).await;
        let mut browser = Session::open(&driver).await;
        browser.attach_logs(demo.log_sink());
        Some(Self {
            browser,
            driver,
            demo,
            _turn: turn,
        })
    }

    /// Closes the browser session properly; the rest stops on drop.
    async fn finish(self) {
        let Self {
            browser,
            driver,
            demo,
            _turn,
        } = self;
        browser.close().await;
        drop(driver);
        drop(demo);
    }

    /// On samlgate's login screen: types `company` and continues to the IdP.
    async fn choose_company(&self, company: &str) {
        let b = &self.browser;
        b.find_text("h1", "Sign in with Okta").await;
        b.type_into("input#company_id", company).await;
        b.click_button("Continue with Okta").await;
    }

    /// On the IdP's login form: signs in as `user` (password `{user}-password`).
    async fn idp_sign_in(&self, user: &str) {
        let b = &self.browser;
        b.find("form[action='/login'] input#password").await;
        assert_eq!(
            b.url().await.port(),
            Some(self.demo.base + 1),
            "the IdP's form"
        );
        b.type_into("input#username", user).await;
        b.type_into("input#password", &format!("{user}-password"))
            .await;
        b.click_button("Sign in").await;
    }

    /// Waits for the panel page, served through samlgate, signed in as `name`.
    async fn expect_panel(&self, name: &str) {
        let b = &self.browser;
        b.find_text("h2", &format!("Signed in as {name}")).await;
        b.find_text("header", "Sign out").await;
        assert_eq!(
            b.url().await.port(),
            Some(self.demo.base),
            "the panel through samlgate"
        );
    }

    /// SP-initiated login as Alice from samlgate's front page, company typed in.
    async fn log_in_as_alice(&self) {
        self.browser.goto(&self.demo.gate_url("/")).await;
        self.choose_company("demo").await;
        self.idp_sign_in("alice").await;
        self.expect_panel("Alice Anderson").await;
    }

    /// Clicks "Sign out" on the panel and waits for the page it ends on.
    async fn sign_out(&self) {
        let b = &self.browser;
        b.click("header a[href='/saml/logout']").await;
        // The demo tenant has an idp_slo_url: samlgate revokes its session and sends
        // the browser on to the IdP, which ends its own session too.
        b.find_text("h1", "You are signed out").await;
        let signed_out = b.url().await;
        assert_eq!(signed_out.port(), Some(self.demo.base + 1), "{signed_out}");
        assert_eq!(signed_out.path(), "/app/demo/slo");
        b.find(&format!("a[href='{}']", self.demo.gate_url("/")))
            .await;
    }
}

/// Skips the test (with the message `support::program` printed) when there is no browser.
macro_rules! stand {
    () => {
        match Stand::start().await {
            Some(stand) => stand,
            None => return,
        }
    };
}

#[tokio::test(flavor = "multi_thread")]
async fn sp_initiated_login_with_the_company_id() {
    let stand = stand!();
    let b = &stand.browser;
    b.goto(&stand.demo.gate_url("/")).await;
    b.find_text("h1", "Sign in with Okta").await;
    let login = b.url().await;
    assert_eq!(login.path(), "/saml/login", "{login}");
    b.find("input#company_id").await;
    b.screenshot("login").await;

    stand.choose_company("demo").await;
    b.find_text("p", "Google Workspace Backup (Demo Inc.)")
        .await;
    stand.idp_sign_in("alice").await;
    // The IdP's auto-submitting form POSTs the SAMLResponse to samlgate's ACS.
    stand.expect_panel("Alice Anderson").await;
    assert_eq!(b.url().await.path(), "/");
    let page = b.text().await;
    for needle in [
        "alice@demo.example",
        "u-1001",
        "admin",
        "X-Samlgate-Assertion",
    ] {
        assert!(page.contains(needle), "{needle} missing from\n{page}");
    }
    b.screenshot("panel").await;
    stand.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deep_link_survives_the_login() {
    let stand = stand!();
    let b = &stand.browser;
    b.goto(&stand.demo.gate_url("/reports?x=1")).await;
    stand.choose_company("demo").await;
    stand.idp_sign_in("alice").await;
    stand.expect_panel("Alice Anderson").await;
    b.find_text("dd", "/reports?x=1").await;
    b.find_text("h1", "Reports").await;
    let url = b.url().await;
    assert_eq!(
        (url.path(), url.query()),
        ("/reports", Some("x=1")),
        "{url}"
    );
    stand.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn idp_initiated_login_from_the_dashboard_tile() {
    let stand = stand!();
    let b = &stand.browser;
    b.goto(&stand.demo.idp_url("/")).await;
    b.find_text("p", "to continue to your applications").await;
    stand.idp_sign_in("alice").await;
    b.find_text("h1", "My Applications").await;
    b.find_text("p", "Signed in as Alice Anderson").await;
    b.find("a.tile[href='/app/globex/tile']").await;
    b.screenshot("idp-dashboard").await;

    b.click("a.tile[href='/app/demo/tile']").await;
    stand.expect_panel("Alice Anderson").await;
    // Unsolicited: no RelayState, so samlgate lands on the panel's front page.
    assert_eq!(b.url().await.path(), "/");
    stand.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn user_not_linked_yet_sees_why() {
    let stand = stand!();
    let b = &stand.browser;
    b.goto(&stand.demo.gate_url("/")).await;
    stand.choose_company("demo").await;
    stand.idp_sign_in("carol").await;
    b.find_text("h1", "Your account is not linked yet").await;
    let url = b.url().await;
    assert_eq!(url.port(), Some(stand.demo.base), "samlgate's page: {url}");
    assert_eq!(url.path(), "/saml/acs");
    let page = b.text().await;
    for needle in [
        "carol@demo.example",
        "24 hours",
        "wheel icon",
        "Service → Protection",
    ] {
        assert!(page.contains(needle), "{needle} missing from\n{page}");
    }
    assert!(!b.has("h2#who").await, "no panel");
    b.screenshot("not-linked").await;
    stand.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_out_ends_the_session() {
    let stand = stand!();
    let b = &stand.browser;
    stand.log_in_as_alice().await;
    stand.sign_out().await;

    // samlgate's session is gone: its front page asks for a login again (at the
    // IdP, the company being remembered), not the panel.
    b.goto(&stand.demo.gate_url("/")).await;
    b.find("input#password").await;
    assert!(!b.has("h2#who").await, "the panel after signing out");
    assert_eq!(b.url().await.port(), Some(stand.demo.base + 1));
    stand.finish().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn second_login_skips_the_company_screen() {
    let stand = stand!();
    let b = &stand.browser;
    stand.log_in_as_alice().await;
    stand.sign_out().await;

    let cookies = b.client.get_all_cookies().await.expect("cookies");
    assert!(
        cookies
            .iter()
            .any(|c| c.name() == "samlgate_company" && c.value() == "demo"),
        "{cookies:?}"
    );
    // Straight to the IdP (whose session ended with samlgate's logout, hence its
    // login form): samlgate's company screen is skipped.
    b.goto(&stand.demo.gate_url("/")).await;
    b.find("form[action='/login'] input#password").await;
    let url = b.url().await;
    assert_eq!(url.port(), Some(stand.demo.base + 1), "{url}");
    assert_eq!(url.path(), "/app/demo/sso", "{url}");
    assert!(!b.has("input#company_id").await);
    stand.idp_sign_in("alice").await;
    stand.expect_panel("Alice Anderson").await;
    stand.finish().await;
}
