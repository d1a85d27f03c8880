//! `samlgate demo` (SPEC §9): samlgate with a development IdP and a demo panel, all
//! on 127.0.0.1, for trying the product and for tests.
//!
//! - samlgate on P (admin listener on P+3), from a configuration generated into a
//!   temporary directory and loaded like any other;
//! - the development IdP on P+1 ([`idp`]): two SAML apps, i.e. two tenants: `demo`
//!   (a static tenant; signs the Assertion) and `globex` (looked up from the panel;
//!   signs the Response and the Assertion);
//! - the demo panel on P+2 ([`panel`]): the account and tenant lookup APIs, and pages
//!   that show the identity samlgate vouched for.
//!
//! Only the library's public API is used, as an operator's setup would.

mod assertion;
mod idp;
mod panel;
mod web;

// The development IdP's Response builder and signer; `bench/mint_responses.rs`
// mints the login benchmark's responses with them too.
pub use assertion::{build_response, sign, ResponseParams, SignError, UnsignedResponse};

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::config::{self, Config};
use crate::identity::{Algorithm, IdentityKey};
use crate::session::SessionKey;

use idp::{Idp, IdpApp, SigningIdentity};
use panel::{OktaSettings, Panel, PanelSettings};

/// A user of the development IdP.
pub(crate) struct DemoUser {
    /// Login name.
    pub username: &'static str,
    /// Password.
    pub password: &'static str,
    /// Display name (the `name` attribute).
    pub name: &'static str,
    /// E-mail address: the NameID.
    pub email: &'static str,
    /// What the user demonstrates.
    pub note: &'static str,
}

/// The IdP's users. Every user may use both apps; whether samlgate lets them in is
/// up to the panel's accounts.
pub(crate) static USERS: [DemoUser; 4] = [
    DemoUser {
        username: "alice",
        password: "alice-password",
        name: "Alice Anderson",
        email: "alice@demo.example",
        note: "panel administrator in demo",
    },
    DemoUser {
        username: "bob",
        password: "bob-password",
        name: "Bob Brown",
        email: "bob@demo.example",
        note: "panel viewer in demo",
    },
    DemoUser {
        username: "carol",
        password: "carol-password",
        name: "Carol Clark",
        email: "carol@demo.example",
        note: "in Okta, not yet in the panel: \"not linked yet\" page",
    },
    DemoUser {
        username: "dana",
        password: "dana-password",
        name: "Dana Dawson",
        email: "dana@globex.example",
        note: "panel administrator in globex",
    },
];

/// The four consecutive loopback ports.
#[derive(Debug, Clone, Copy)]
struct Ports {
    gate: u16,
    idp: u16,
    panel: u16,
    admin: u16,
}

impl Ports {
    fn new(base: u16) -> anyhow::Result<Self> {
        anyhow::ensure!(
            base != 0 && base.checked_add(3).is_some(),
            "--base-port must be between 1 and 65532 (the demo uses it and the three ports after it)"
        );
        Ok(Self {
            gate: base,
            idp: base + 1,
            panel: base + 2,
            admin: base + 3,
        })
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, port))
    }

    fn url(port: u16) -> String {
        format!("http://127.0.0.1:{port}")
    }
}

/// Starts the demo on `base_port` and the three ports after it; returns when
/// samlgate stops (SIGINT or SIGTERM), after removing the generated files.
pub fn run(base_port: u16) -> anyhow::Result<()> {
    let ports = Ports::new(base_port)?;
    let dir = tempfile::Builder::new()
        .prefix("samlgate-demo-")
        .tempdir()
        .context("cannot create a temporary directory for the demo")?;
    let signing = Arc::new(SigningIdentity::generate().context("cannot generate the IdP key")?);
    let lookup_token = web::random_id();
    let config_path = write_files(dir.path(), ports, &signing, &lookup_token)?;
    let config = load(&config_path, ports)?;
    crate::telemetry::init(config.log_format);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let result = runtime.block_on(serve(config, ports, signing, lookup_token, &config_path));
    runtime.shutdown_timeout(Duration::from_secs(2));
    dir.close()
        .context("cannot remove the demo's temporary directory")?;
    result
}

/// Writes the keys, the IdP certificate, the lookup token and samlgate's
/// configuration into `dir`; returns the configuration's path.
fn write_files(
    dir: &Path,
    ports: Ports,
    signing: &SigningIdentity,
    lookup_token: &str,
) -> anyhow::Result<std::path::PathBuf> {
    let write = |name: &str, contents: &str| -> anyhow::Result<std::path::PathBuf> {
        let path = dir.join(name);
        std::fs::write(&path, contents)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(path)
    };
    let session = write(
        "session.key",
        &format!("{}\n", SessionKey::generate_base64()),
    )?;
    let identity = write(
        "identity.pem",
        &IdentityKey::generate_pem(Algorithm::Es256).context("cannot generate a key")?,
    )?;
    let certificate = write("demo-idp.pem", &signing.cert_pem)?;
    let token = write("lookup.token", &format!("{lookup_token}\n"))?;
    let q = |value: &str| serde_json::to_string(value).expect("strings serialise");
    let path = |p: &Path| q(&p.display().to_string());
    let gate = Ports::url(ports.gate);
    let idp = Ports::url(ports.idp);
    let panel = Ports::url(ports.panel);
    let toml = format!(
        r#"# Generated by `samlgate demo`; removed when the demo stops.
public_url = {gate_q}
listen = "127.0.0.1:{gate_port}"
admin_listen = "127.0.0.1:{admin_port}"
upstream = {panel_q}
public_paths = ["/static/"]

[sp]
allow_idp_initiated = true

[session]
secret_file = {session}

[identity]
algorithm = "ES256"
key_file = {identity}
audience = "backup-panel"

[account_lookup]
url = {accounts}
token_file = {token}

[tenant_lookup]
url = {tenants}

[log]
format = "pretty"

[[tenants]]
company_id = "demo"
idp_sso_url = {sso}
idp_issuer = {issuer}
idp_certificate_file = {certificate}
idp_slo_url = {slo}
"#,
        gate_q = q(&gate),
        gate_port = ports.gate,
        admin_port = ports.admin,
        panel_q = q(&panel),
        session = path(&session),
        identity = path(&identity),
        accounts = q(&format!("{panel}/internal/samlgate/accounts")),
        token = path(&token),
        tenants = q(&format!("{panel}/internal/samlgate/tenants")),
        sso = q(&format!("{idp}/app/demo/sso")),
        issuer = q(&format!("{idp}/app/demo")),
        certificate = path(&certificate),
        slo = q(&format!("{idp}/app/demo/slo")),
    );
    write("samlgate.toml", &toml)
}

/// Loads the generated configuration like a real one, and makes sure no
/// `SAMLGATE_…` variable moved a listener off loopback.
fn load(path: &Path, ports: Ports) -> anyhow::Result<Config> {
    let config = config::load(Some(path)).map_err(|errors| {
        let lines: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("the demo configuration has problems:\n{}", lines.join("\n"))
    })?;
    for (key, actual, expected) in [
        ("listen", config.listen, Ports::addr(ports.gate)),
        (
            "admin_listen",
            config.admin_listen,
            Ports::addr(ports.admin),
        ),
    ] {
        anyhow::ensure!(
            actual == expected,
            "{key}: the demo listens on {expected} only, but the environment sets {actual}; \
             unset SAMLGATE_{}",
            key.to_ascii_uppercase()
        );
    }
    anyhow::ensure!(
        config.public_url.as_str().trim_end_matches('/') == Ports::url(ports.gate),
        "public_url: the environment overrides the demo's; unset SAMLGATE_PUBLIC_URL"
    );
    Ok(config)
}

async fn serve(
    config: Config,
    ports: Ports,
    signing: Arc<SigningIdentity>,
    lookup_token: String,
    config_path: &Path,
) -> anyhow::Result<()> {
    let idp_listener = bind(ports.idp, "the development IdP").await?;
    let panel_listener = bind(ports.panel, "the demo panel").await?;

    let gate = config.public_url.as_str().trim_end_matches('/').to_owned();
    let acs_url = format!("{gate}{}/acs", config.path_prefix);
    let entity_id = config.sp.entity_id.clone();
    let idp_origin = Ports::url(ports.idp);
    let apps = vec![
        IdpApp::new(
            &idp_origin,
            "demo",
            "Demo Inc.",
            &acs_url,
            &entity_id,
            false,
        ),
        IdpApp::new(
            &idp_origin,
            "globex",
            "Globex Corporation",
            &acs_url,
            &entity_id,
            true,
        ),
    ];
    let okta = apps
        .iter()
        .map(|app| OktaSettings {
            company_id: app.slug.to_owned(),
            idp_sso_url: app.sso_url.clone(),
            idp_issuer: app.issuer.clone(),
            idp_slo_url: app.slo_url.clone(),
            idp_certificate: signing.cert_pem.clone(),
            fingerprint: signing.fingerprint(),
            // `demo` is the static tenant in samlgate's file; the panel serves the rest.
            served_by_panel: app.slug != "demo",
        })
        .collect();
    let idp = Arc::new(Idp::new(idp_origin, gate.clone(), apps, signing));
    let panel = Arc::new(Panel::new(
        PanelSettings {
            gate_url: gate.clone(),
            jwks_url: format!("{gate}{}/jwks.json", config.path_prefix),
            header: config.identity.header.clone(),
            audience: config.identity.audience.clone(),
            lookup_token,
            okta,
        },
        crate::proxy::client(&config.upstream_ca),
    ));
    tokio::spawn(web::serve(idp_listener, move |req| idp.clone().handle(req)));
    tokio::spawn(web::serve(panel_listener, move |req| {
        panel.clone().handle(req)
    }));
    tokio::spawn(announce(ports, config_path.display().to_string()));

    crate::server::run(config).await?;
    Ok(())
}

async fn bind(port: u16, what: &str) -> anyhow::Result<TcpListener> {
    let addr = Ports::addr(port);
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} for {what}"))
}

/// Prints what to open once samlgate accepts connections.
async fn announce(ports: Ports, config_path: String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(Ports::addr(ports.gate))
        .await
        .is_err()
    {
        if Instant::now() > deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("{}", banner(ports, &config_path));
}

fn banner(ports: Ports, config_path: &str) -> String {
    let gate = Ports::url(ports.gate);
    let mut text = String::new();
    let _ = write!(
        text,
        "\nsamlgate demo is running on 127.0.0.1 only.\n\n\
         Open {gate}/ in your browser.\n\n\
         \x20 samlgate             {gate}/  (login screen: {gate}/saml/login)\n\
         \x20 development IdP      {idp}/  (\"My Applications\": IdP-initiated login)\n\
         \x20 demo panel           {panel}/  (refuses requests without samlgate's identity)\n\
         \x20 samlgate admin       {admin}/metrics\n\n\
         Company IDs (type one on the login screen):\n\
         \x20 demo     static tenant in samlgate's configuration; the IdP signs the Assertion\n\
         \x20 globex   looked up from the panel (tenant lookup); the IdP signs Response and Assertion\n\n\
         Demo users (IdP username / password):\n",
        idp = Ports::url(ports.idp),
        panel = Ports::url(ports.panel),
        admin = Ports::url(ports.admin),
    );
    for user in &USERS {
        let _ = writeln!(
            text,
            "  {:<6} / {:<15} {:<21} {}",
            user.username, user.password, user.email, user.note
        );
    }
    let _ = write!(
        text,
        "\nConfiguration: {config_path} (removed on exit)\nPress Ctrl-C to stop."
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_four_consecutive_ones() {
        let ports = Ports::new(8080).unwrap();
        assert_eq!(
            (ports.gate, ports.idp, ports.panel, ports.admin),
            (8080, 8081, 8082, 8083)
        );
        assert!(Ports::new(65532).is_ok());
        assert!(Ports::new(65533).is_err());
        assert!(Ports::new(0).is_err());
    }

    #[test]
    fn generated_configuration_loads_with_two_tenant_sources() {
        let dir = tempfile::tempdir().unwrap();
        let ports = Ports::new(18080).unwrap();
        let signing = SigningIdentity::generate().unwrap();
        let path = write_files(dir.path(), ports, &signing, "token").unwrap();
        let config = load(&path, ports).unwrap();
        assert_eq!(config.listen, Ports::addr(18080));
        assert_eq!(config.admin_listen, Ports::addr(18083));
        assert_eq!(config.upstream.as_str(), "http://127.0.0.1:18082/");
        assert_eq!(config.sp.entity_id, "http://127.0.0.1:18080/saml/metadata");
        assert_eq!(config.tenants.len(), 1);
        assert_eq!(config.tenants[0].company_id, "demo");
        assert_eq!(
            config.tenants[0].idp_issuer,
            "http://127.0.0.1:18081/app/demo"
        );
        assert_eq!(config.tenants[0].idp_certificates.len(), 1);
        assert!(config.tenant_lookup.is_some());
        assert_eq!(
            config.account_lookup.token.as_ref().unwrap().expose(),
            "token"
        );
        assert_eq!(config.log_format, config::LogFormat::Pretty);
    }

    #[test]
    fn banner_names_the_url_companies_and_users() {
        let text = banner(Ports::new(8080).unwrap(), "/tmp/x/samlgate.toml");
        assert!(text.contains("Open http://127.0.0.1:8080/ in your browser"));
        for needle in ["demo ", "globex ", "alice-password", "dana@globex.example"] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
    }
}
