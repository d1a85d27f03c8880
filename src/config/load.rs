//! Figment layering (built-in defaults, TOML file, `SAMLGATE_…` environment) and
//! validation of the merged value tree.
//!
//! serde stops at the first error, but an operator wants every problem at once, so the
//! merged tree is walked by `Reader`, which records a [`Problem`] and carries on.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use figment::providers::{Env, Format, Toml};
use figment::value::{Dict, Value};
use figment::Figment;
use http::HeaderName;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use url::Url;

use super::{
    is_valid_company_id, AccountLookupConfig, Config, IdentityConfig, LimitsConfig, LogFormat,
    ReplayConfig, Secret, SessionConfig, SpConfig, Tenant, TenantLookupConfig,
};
use crate::identity::{Algorithm, IdentityKey};
use crate::session::SessionKey;

/// One configuration problem: the dotted key it concerns and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct Problem {
    /// Dotted key path (`session.ttl`, `tenants[0].idp_certificate`), or the file for syntax errors.
    pub key: String,
    /// What is wrong; never contains a secret.
    pub message: String,
}

/// Every problem found while loading, one per line when displayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", Lines(.0))]
pub struct ConfigErrors(pub Vec<Problem>);

struct Lines<'a>(&'a [Problem]);

impl fmt::Display for Lines<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl ConfigErrors {
    fn one(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self(vec![Problem {
            key: key.into(),
            message: message.into(),
        }])
    }
}

const ENV_PREFIX: &str = "SAMLGATE_";

/// Defaults of every key that has one, except those of optional tables (`[tenant_lookup]`),
/// whose mere presence is meaningful; those are applied where the table is read.
const DEFAULTS: &str = r#"
listen = "0.0.0.0:8080"
admin_listen = "127.0.0.1:9090"
path_prefix = "/saml"
public_paths = []

[sp]
allow_idp_initiated = true
clock_skew = "90s"
require_signed_response = false
allow_sha1 = false

[session]
cookie_name = "samlgate_session"
ttl = "8h"

[identity]
header = "X-Samlgate-Assertion"
algorithm = "ES256"
previous_key_files = []
audience = "backup-panel"
ttl = "60s"
plain_headers = false

[account_lookup]
timeout = "2s"
cache_ttl = "5m"
negative_ttl = "30s"

[limits]
header_read_timeout = "30s"
max_connections = 16384

[log]
format = "json"
"#;

const TENANT_LOOKUP_CACHE_TTL: Duration = Duration::from_secs(60);

/// Loads defaults, then `file` (TOML), then `SAMLGATE_…` variables (`__` between levels), reporting every problem.
pub fn load(file: Option<&Path>) -> Result<Config, ConfigErrors> {
    let mut figment = Figment::from(Toml::string(DEFAULTS));
    if let Some(path) = file {
        let name = path.display().to_string();
        let text = fs::read_to_string(path)
            .map_err(|e| ConfigErrors::one(&name, format!("cannot read: {e}")))?;
        // Parsed here as well as by figment because figment flattens the error into a
        // multi-line string that quotes the offending line, which may hold a secret.
        if let Err(e) = toml::from_str::<toml::Table>(&text) {
            return Err(ConfigErrors::one(name, toml_message(&text, &e)));
        }
        figment = figment.merge(Toml::string(&text));
    }
    // SAMLGATE_CONFIG names the file itself; it is not a configuration key.
    figment = figment.merge(Env::prefixed(ENV_PREFIX).split("__").ignore(&["config"]));
    let root: Dict = figment.extract().map_err(|_| {
        ConfigErrors::one(
            "configuration",
            "the configuration sources could not be merged",
        )
    })?;

    let mut reader = Reader::default();
    let config = reader.config(&root);
    match config {
        // A value missing because of a problem never reaches a Config: any problem fails.
        Some(config) if reader.problems.is_empty() => Ok(config),
        _ => {
            debug_assert!(!reader.problems.is_empty(), "a failed read must say why");
            Err(ConfigErrors(reader.problems))
        }
    }
}

/// One line, position first, without toml's source excerpt (it may quote a secret).
fn toml_message(text: &str, error: &toml::de::Error) -> String {
    let detail = error
        .message()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    match error.span().and_then(|span| text.get(..span.start)) {
        Some(before) => {
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("invalid TOML at line {line}, column {column}: {detail}")
        }
        None => format!("invalid TOML: {detail}"),
    }
}

const ROOT_KEYS: &[&str] = &[
    "public_url",
    "listen",
    "admin_listen",
    "upstream",
    "path_prefix",
    "public_paths",
    "tls",
    "upstream_tls",
    "sp",
    "session",
    "identity",
    "account_lookup",
    "tenant_lookup",
    "replay",
    "limits",
    "log",
    "tenants",
];
const LIMITS_KEYS: &[&str] = &["header_read_timeout", "max_connections"];
const TLS_KEYS: &[&str] = &["cert", "cert_file", "key", "key_file"];
const UPSTREAM_TLS_KEYS: &[&str] = &["ca", "ca_file"];
const SP_KEYS: &[&str] = &[
    "entity_id",
    "allow_idp_initiated",
    "clock_skew",
    "require_signed_response",
    "allow_sha1",
];
const SESSION_KEYS: &[&str] = &["cookie_name", "secret", "secret_file", "ttl"];
const IDENTITY_KEYS: &[&str] = &[
    "header",
    "algorithm",
    "key",
    "key_file",
    "previous_key_files",
    "audience",
    "ttl",
    "plain_headers",
];
const ACCOUNT_LOOKUP_KEYS: &[&str] = &[
    "url",
    "token",
    "token_file",
    "timeout",
    "cache_ttl",
    "negative_ttl",
];
const TENANT_LOOKUP_KEYS: &[&str] = &["url", "cache_ttl"];
const REPLAY_KEYS: &[&str] = &["redis_url"];
const LOG_KEYS: &[&str] = &["format"];
const TENANT_KEYS: &[&str] = &[
    "company_id",
    "idp_sso_url",
    "idp_issuer",
    "idp_certificate",
    "idp_certificate_file",
    "idp_slo_url",
];

/// Headers the proxy itself sets, strips or relies on; carrying the identity in one of
/// them would be lost in transit or would clobber the request.
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "connection",
    "content-encoding",
    "content-length",
    "content-type",
    "cookie",
    "expect",
    "forwarded",
    "host",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "set-cookie",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-samlgate-account-id",
    "x-samlgate-company",
    "x-samlgate-email",
];

static EMPTY: Dict = Dict::new();

fn dotted(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

/// A table of the value tree being read, with its dotted path.
struct Table<'a> {
    path: String,
    dict: &'a Dict,
}

impl<'a> Table<'a> {
    fn key(&self, name: &str) -> String {
        dotted(&self.path, name)
    }

    fn get(&self, name: &str) -> Option<&'a Value> {
        self.dict.get(name)
    }

    fn has(&self, name: &str) -> bool {
        self.dict.contains_key(name)
    }
}

/// Text from an inline key or from the file its `_file` sibling names.
struct Sourced {
    /// The dotted key it came from, which problems about its content name.
    key: String,
    text: String,
}

/// Walks the value tree, recording problems instead of stopping at the first.
///
/// Readers return `None` both for "absent" and for "wrong"; the latter has always been
/// recorded, and any recorded problem fails the load, so the two never get confused.
#[derive(Default)]
struct Reader {
    problems: Vec<Problem>,
}

impl Reader {
    fn problem(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            key: key.into(),
            message: message.into(),
        });
    }

    fn check<T>(&mut self, key: &str, result: Result<T, String>) -> Option<T> {
        result.map_err(|message| self.problem(key, message)).ok()
    }

    fn open<'a>(&mut self, path: String, dict: &'a Dict, known: &[&str]) -> Table<'a> {
        for name in dict.keys() {
            if !known.contains(&name.as_str()) {
                self.problem(dotted(&path, name), "unknown key");
            }
        }
        Table { path, dict }
    }

    /// An optional sub-table: `None` when absent or not a table.
    fn table<'a>(&mut self, parent: &Table<'a>, name: &str, known: &[&str]) -> Option<Table<'a>> {
        let key = parent.key(name);
        match parent.get(name)? {
            Value::Dict(_, dict) => Some(self.open(key, dict, known)),
            _ => {
                self.problem(key, "expected a table");
                None
            }
        }
    }

    /// A sub-table that is read even when absent, so its required keys get reported.
    fn section<'a>(&mut self, parent: &Table<'a>, name: &str, known: &[&str]) -> Option<Table<'a>> {
        if parent.has(name) {
            self.table(parent, name, known)
        } else {
            Some(Table {
                path: parent.key(name),
                dict: &EMPTY,
            })
        }
    }

    fn value<T>(
        &mut self,
        t: &Table,
        name: &str,
        required: bool,
        parse: impl FnOnce(&Value) -> Result<T, String>,
    ) -> Option<T> {
        let key = t.key(name);
        match t.get(name) {
            Some(value) => self.check(&key, parse(value)),
            None => {
                if required {
                    self.problem(key, "required");
                }
                None
            }
        }
    }

    fn string(&mut self, t: &Table, name: &str, required: bool) -> Option<String> {
        self.value(t, name, required, |v| as_string(v).map(str::to_owned))
    }

    /// A string turned into `T` by `parse`, whose errors must not quote secret values.
    fn parsed<T>(
        &mut self,
        t: &Table,
        name: &str,
        required: bool,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        self.value(t, name, required, |v| parse(as_string(v)?))
    }

    fn boolean(&mut self, t: &Table, name: &str) -> Option<bool> {
        self.value(t, name, true, |v| match v {
            Value::Bool(_, b) => Ok(*b),
            Value::String(_, s) if s == "true" => Ok(true),
            Value::String(_, s) if s == "false" => Ok(false),
            _ => Err("expected a boolean".to_owned()),
        })
    }

    fn duration(&mut self, t: &Table, name: &str) -> Option<Duration> {
        self.value(t, name, true, |v| {
            let Value::String(_, s) = v else {
                return Err(r#"expected a duration string such as "90s""#.to_owned());
            };
            // humantime also reads "8 hours" and "1h 30m"; SPEC §3 wants the compact
            // form ("90s", "8h"), so white space makes a value invalid.
            if s.chars().any(char::is_whitespace) {
                return Err(format!("invalid duration {s:?}"));
            }
            match humantime::parse_duration(s) {
                Ok(d) if d.is_zero() => Err("must be greater than zero".to_owned()),
                Ok(d) => Ok(d),
                Err(_) => Err(format!("invalid duration {s:?}")),
            }
        })
    }

    /// An array of strings, each with its own key (`public_paths[1]`).
    fn strings(&mut self, t: &Table, name: &str) -> Option<Vec<(String, String)>> {
        let key = t.key(name);
        let Value::Array(_, items) = t.get(name)? else {
            self.problem(key, "expected an array of strings");
            return None;
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let item_key = format!("{key}[{i}]");
            match as_string(item) {
                Ok(s) => out.push((item_key, s.to_owned())),
                Err(message) => {
                    self.problem(item_key, message);
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    fn read_file(&mut self, key: &str, path: &str) -> Option<String> {
        fs::read_to_string(path)
            .map_err(|e| self.problem(key, format!("cannot read {path:?}: {e}")))
            .ok()
    }

    /// The inline value `name` or the contents of the file named by `name_file`;
    /// exactly one may be set.
    fn inline_or_file(&mut self, t: &Table, name: &str, required: bool) -> Option<Sourced> {
        let file_name = format!("{name}_file");
        let inline_key = t.key(name);
        let file_key = t.key(&file_name);
        match (t.has(name), t.has(&file_name)) {
            (true, true) => {
                self.problem(
                    inline_key,
                    format!("set either {name} or {file_name}, not both"),
                );
                None
            }
            (false, false) => {
                if required {
                    self.problem(inline_key, format!("required (set {name} or {file_name})"));
                }
                None
            }
            (true, false) => {
                let text = self.string(t, name, true)?;
                Some(Sourced {
                    key: inline_key,
                    text,
                })
            }
            (false, true) => {
                let path = self.string(t, &file_name, true)?;
                let text = self.read_file(&file_key, &path)?;
                Some(Sourced {
                    key: file_key,
                    text,
                })
            }
        }
    }

    fn config(&mut self, root: &Dict) -> Option<Config> {
        let root = self.open(String::new(), root, ROOT_KEYS);

        let public_url = self.parsed(&root, "public_url", true, public_url);
        let listen = self.parsed(&root, "listen", true, socket_addr);
        let admin_listen = self.parsed(&root, "admin_listen", true, socket_addr);
        if let (Some(listen), Some(admin)) = (listen, admin_listen) {
            if listen == admin && listen.port() != 0 {
                self.problem("admin_listen", "must differ from listen");
            }
        }
        let upstream = self.parsed(&root, "upstream", true, upstream_url);
        let path_prefix = self.parsed(&root, "path_prefix", true, path_prefix);
        let public_paths = self.public_paths(&root);
        let tls = self.tls(&root);
        let upstream_ca = self.upstream_tls(&root);
        let sp = self.sp(&root, public_url.as_ref(), path_prefix.as_deref());
        let session = self.session(&root);
        let identity = self.identity(&root);
        let account_lookup = self.account_lookup(&root);
        let tenant_lookup = self.tenant_lookup(&root);
        let replay = self.replay(&root);
        let limits = self.limits(&root);
        let log_format = self.log(&root);
        let tenants = self.tenants(&root);

        Some(Config {
            public_url: public_url?,
            listen: listen?,
            admin_listen: admin_listen?,
            upstream: upstream?,
            path_prefix: path_prefix?,
            public_paths: public_paths?,
            tls,
            upstream_ca: upstream_ca.unwrap_or_default(),
            sp: sp?,
            session: session?,
            identity: identity?,
            account_lookup: account_lookup?,
            tenant_lookup,
            replay: replay.unwrap_or_default(),
            limits: limits?,
            log_format: log_format?,
            tenants: tenants?,
        })
    }

    fn public_paths(&mut self, root: &Table) -> Option<Vec<String>> {
        let paths = self.strings(root, "public_paths")?;
        let mut ok = true;
        for (key, path) in &paths {
            if !path.starts_with('/') {
                self.problem(key.as_str(), r#"must start with "/""#);
                ok = false;
            }
        }
        ok.then(|| paths.into_iter().map(|(_, path)| path).collect())
    }

    fn tls(&mut self, root: &Table) -> Option<Arc<rustls::ServerConfig>> {
        let t = self.table(root, "tls", TLS_KEYS)?;
        let cert = self.inline_or_file(&t, "cert", true);
        let key = self.inline_or_file(&t, "key", true);
        let certs = cert.and_then(|c| {
            let certs = self.check(&c.key, pem_certificates(&c.text))?;
            for (i, der) in certs.iter().enumerate() {
                if webpki::EndEntityCert::try_from(der).is_err() {
                    self.problem(
                        c.key.as_str(),
                        format!("certificate {} is not a valid X.509 certificate", i + 1),
                    );
                    return None;
                }
            }
            Some((c.key, certs))
        });
        let private_key = key.and_then(|k| {
            // The PEM error is not shown: it can quote part of the key.
            let der = PrivateKeyDer::from_pem_slice(k.text.as_bytes()).map_err(|_| {
                "no private key found (expected PEM: PKCS#8, PKCS#1 or SEC1)".to_owned()
            });
            Some((k.key.clone(), self.check(&k.key, der)?))
        });
        let ((cert_key, certs), (key_key, private_key)) = (certs?, private_key?);
        match server_config(certs, private_key) {
            Ok(config) => Some(Arc::new(config)),
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
                self.problem(
                    key_key,
                    format!("does not match the certificate in {cert_key}"),
                );
                None
            }
            Err(e) => {
                self.problem(key_key, format!("unusable: {e}"));
                None
            }
        }
    }

    fn upstream_tls(&mut self, root: &Table) -> Option<Vec<CertificateDer<'static>>> {
        let t = self.table(root, "upstream_tls", UPSTREAM_TLS_KEYS)?;
        let ca = self.inline_or_file(&t, "ca", true)?;
        let certs = self.check(&ca.key, pem_certificates(&ca.text))?;
        for (i, der) in certs.iter().enumerate() {
            if webpki::anchor_from_trusted_cert(der).is_err() {
                self.problem(
                    ca.key.as_str(),
                    format!("certificate {} is not a valid X.509 certificate", i + 1),
                );
                return None;
            }
        }
        Some(certs)
    }

    fn sp(
        &mut self,
        root: &Table,
        public_url: Option<&Url>,
        path_prefix: Option<&str>,
    ) -> Option<SpConfig> {
        let t = self.section(root, "sp", SP_KEYS)?;
        let entity_id = if t.has("entity_id") {
            self.parsed(&t, "entity_id", true, |s| {
                if s.trim().is_empty() {
                    Err("must not be empty".to_owned())
                } else {
                    Ok(s.to_owned())
                }
            })
        } else {
            public_url.zip(path_prefix).map(|(url, prefix)| {
                format!("{}{prefix}/metadata", url.as_str().trim_end_matches('/'))
            })
        };
        let allow_idp_initiated = self.boolean(&t, "allow_idp_initiated");
        let clock_skew = self.duration(&t, "clock_skew");
        let require_signed_response = self.boolean(&t, "require_signed_response");
        let allow_sha1 = self.boolean(&t, "allow_sha1");
        Some(SpConfig {
            entity_id: entity_id?,
            allow_idp_initiated: allow_idp_initiated?,
            clock_skew: clock_skew?,
            require_signed_response: require_signed_response?,
            allow_sha1: allow_sha1?,
        })
    }

    fn session(&mut self, root: &Table) -> Option<SessionConfig> {
        let t = self.section(root, "session", SESSION_KEYS)?;
        let cookie_name = self.parsed(&t, "cookie_name", true, cookie_name);
        let keys = self
            .inline_or_file(&t, "secret", true)
            .and_then(|s| self.check(&s.key, session_keys(&s.text)));
        let ttl = self.duration(&t, "ttl");
        Some(SessionConfig {
            cookie_name: cookie_name?,
            keys: keys?,
            ttl: ttl?,
        })
    }

    fn identity(&mut self, root: &Table) -> Option<IdentityConfig> {
        let t = self.section(root, "identity", IDENTITY_KEYS)?;
        let header = self.parsed(&t, "header", true, identity_header);
        let algorithm = self.parsed(&t, "algorithm", true, |s| {
            Algorithm::from_str(s).map_err(|e| e.to_string())
        });
        let key = self.inline_or_file(&t, "key", true).and_then(|k| {
            let key = self.check(&k.key, identity_key(&k.text))?;
            match algorithm {
                Some(algorithm) if algorithm != key.algorithm() => {
                    self.problem(
                        k.key.as_str(),
                        format!(
                            "key is {} but {} is {algorithm}",
                            key.algorithm(),
                            t.key("algorithm")
                        ),
                    );
                    None
                }
                _ => Some(key),
            }
        });
        let previous_keys = self.previous_keys(&t, key.as_ref());
        let audience = self.parsed(&t, "audience", true, non_empty);
        let ttl = self.duration(&t, "ttl");
        let plain_headers = self.boolean(&t, "plain_headers");
        Some(IdentityConfig {
            header: header?,
            algorithm: algorithm?,
            key: key?,
            previous_keys: previous_keys?,
            audience: audience?,
            ttl: ttl?,
            plain_headers: plain_headers?,
        })
    }

    fn previous_keys(
        &mut self,
        t: &Table,
        current: Option<&IdentityKey>,
    ) -> Option<Vec<IdentityKey>> {
        let files = self.strings(t, "previous_key_files")?;
        let mut keys: Vec<IdentityKey> = Vec::with_capacity(files.len());
        let mut ok = true;
        for (key, path) in files {
            let parsed = self
                .read_file(&key, &path)
                .and_then(|text| self.check(&key, identity_key(&text)));
            let Some(parsed) = parsed else {
                ok = false;
                continue;
            };
            // The JWKS is looked up by kid, so one key listed twice would be ambiguous.
            if current.is_some_and(|c| c.kid() == parsed.kid()) {
                self.problem(key, "same key as the current identity key");
                ok = false;
            } else if keys.iter().any(|k| k.kid() == parsed.kid()) {
                self.problem(key, "is listed twice");
                ok = false;
            } else {
                keys.push(parsed);
            }
        }
        ok.then_some(keys)
    }

    fn account_lookup(&mut self, root: &Table) -> Option<AccountLookupConfig> {
        let t = self.section(root, "account_lookup", ACCOUNT_LOOKUP_KEYS)?;
        let url = self.parsed(&t, "url", true, http_url);
        let token = self
            .inline_or_file(&t, "token", false)
            .and_then(|s| self.check(&s.key, bearer_token(&s.text)));
        let timeout = self.duration(&t, "timeout");
        let cache_ttl = self.duration(&t, "cache_ttl");
        let negative_ttl = self.duration(&t, "negative_ttl");
        Some(AccountLookupConfig {
            url: url?,
            token,
            timeout: timeout?,
            cache_ttl: cache_ttl?,
            negative_ttl: negative_ttl?,
        })
    }

    fn tenant_lookup(&mut self, root: &Table) -> Option<TenantLookupConfig> {
        let t = self.table(root, "tenant_lookup", TENANT_LOOKUP_KEYS)?;
        let url = self.parsed(&t, "url", true, http_url);
        let cache_ttl = if t.has("cache_ttl") {
            self.duration(&t, "cache_ttl")
        } else {
            Some(TENANT_LOOKUP_CACHE_TTL)
        };
        Some(TenantLookupConfig {
            url: url?,
            cache_ttl: cache_ttl?,
        })
    }

    fn replay(&mut self, root: &Table) -> Option<ReplayConfig> {
        let t = self.table(root, "replay", REPLAY_KEYS)?;
        let redis_url = self.parsed(&t, "redis_url", false, |s| {
            if s.starts_with("redis://") || s.starts_with("rediss://") {
                Ok(Secret::new(s.to_owned()))
            } else {
                Err("must start with redis:// or rediss://".to_owned())
            }
        });
        Some(ReplayConfig { redis_url })
    }

    fn limits(&mut self, root: &Table) -> Option<LimitsConfig> {
        let t = self.section(root, "limits", LIMITS_KEYS)?;
        let header_read_timeout = self.duration(&t, "header_read_timeout");
        let max_connections = self.value(&t, "max_connections", true, |v| match v {
            Value::Num(_, n) => n
                .to_i128()
                .and_then(|n| usize::try_from(n).ok())
                .filter(|n| *n > 0)
                .ok_or_else(|| "expected a positive whole number".to_owned()),
            Value::String(_, s) => s
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| "expected a positive whole number".to_owned()),
            _ => Err("expected a positive whole number".to_owned()),
        });
        Some(LimitsConfig {
            header_read_timeout: header_read_timeout?,
            max_connections: max_connections?,
        })
    }

    fn log(&mut self, root: &Table) -> Option<LogFormat> {
        let t = self.section(root, "log", LOG_KEYS)?;
        self.parsed(&t, "format", true, |s| match s {
            "json" => Ok(LogFormat::Json),
            "pretty" => Ok(LogFormat::Pretty),
            other => Err(format!(r#"expected "json" or "pretty", got {other:?}"#)),
        })
    }

    fn tenants(&mut self, root: &Table) -> Option<Vec<Tenant>> {
        let Some(value) = root.get("tenants") else {
            return Some(Vec::new());
        };
        let Value::Array(_, items) = value else {
            self.problem("tenants", "expected an array of tables");
            return None;
        };
        let mut seen = Seen::default();
        let mut tenants = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let path = format!("tenants[{i}]");
            let Value::Dict(_, dict) = item else {
                self.problem(path, "expected a table");
                ok = false;
                continue;
            };
            let t = self.open(path, dict, TENANT_KEYS);
            match self.tenant(&t, i, &mut seen) {
                Some(tenant) => tenants.push(tenant),
                None => ok = false,
            }
        }
        ok.then_some(tenants)
    }

    fn tenant(&mut self, t: &Table, index: usize, seen: &mut Seen) -> Option<Tenant> {
        let company_id = self.parsed(t, "company_id", true, |s| {
            let id = s.to_lowercase();
            if is_valid_company_id(&id) {
                Ok(id)
            } else {
                Err(format!(
                    "{s:?} is not a valid company ID (expected [a-z0-9][a-z0-9-]{{0,62}})"
                ))
            }
        });
        let company_id = company_id.and_then(|id| {
            self.first_use(&mut seen.company_ids, t.key("company_id"), &id, index)
                .then_some(id)
        });
        let idp_sso_url = self.parsed(t, "idp_sso_url", true, http_url);
        let idp_issuer = self
            .parsed(t, "idp_issuer", true, non_empty)
            .and_then(|issuer| {
                self.first_use(&mut seen.issuers, t.key("idp_issuer"), &issuer, index)
                    .then_some(issuer)
            });
        let certificates = self
            .inline_or_file(t, "idp_certificate", true)
            .and_then(|c| self.check(&c.key, idp_certificates(&c.text)));
        let idp_slo_url = self.parsed(t, "idp_slo_url", false, http_url);
        Some(Tenant {
            company_id: company_id?,
            idp_sso_url: idp_sso_url?,
            idp_issuer: idp_issuer?,
            idp_certificates: certificates?,
            idp_slo_url,
        })
    }

    /// Records `value` as used by tenant `index`; a later tenant reusing it is a problem.
    fn first_use(
        &mut self,
        seen: &mut HashMap<String, usize>,
        key: String,
        value: &str,
        index: usize,
    ) -> bool {
        match seen.get(value) {
            Some(first) => {
                self.problem(key, format!("duplicate of tenants[{first}]"));
                false
            }
            None => {
                seen.insert(value.to_owned(), index);
                true
            }
        }
    }
}

/// Company IDs and issuers of the tenants read so far, with the tenant that used them.
#[derive(Default)]
struct Seen {
    company_ids: HashMap<String, usize>,
    issuers: HashMap<String, usize>,
}

fn as_string(value: &Value) -> Result<&str, String> {
    match value {
        Value::String(_, s) => Ok(s),
        _ => Err("expected a string".to_owned()),
    }
}

fn non_empty(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        Err("must not be empty".to_owned())
    } else {
        Ok(s.to_owned())
    }
}

fn socket_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse()
        .map_err(|_| format!("invalid socket address {s:?} (expected e.g. \"0.0.0.0:8080\")"))
}

/// An `http` or `https` URL; the URL itself is not quoted since it may hold credentials.
fn http_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s).map_err(|e| format!("invalid URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must be an http or https URL".to_owned());
    }
    Ok(url)
}

fn without_credentials_query_fragment(url: &Url) -> Result<(), String> {
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain a user name or password".to_owned());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or fragment".to_owned());
    }
    Ok(())
}

fn public_url(s: &str) -> Result<Url, String> {
    let url = http_url(s)?;
    without_credentials_query_fragment(&url)?;
    if url.path() != "/" {
        return Err(
            "must be an origin without a path (path_prefix places samlgate's routes)".to_owned(),
        );
    }
    Ok(url)
}

fn upstream_url(s: &str) -> Result<Url, String> {
    let url = http_url(s)?;
    without_credentials_query_fragment(&url)?;
    Ok(url)
}

fn path_prefix(s: &str) -> Result<String, String> {
    if !s.starts_with('/') {
        Err(r#"must start with "/""#.to_owned())
    } else if s.ends_with('/') {
        Err(r#"must not end with "/""#.to_owned())
    } else if s.contains(['?', '#']) {
        Err(r##"must not contain "?" or "#""##.to_owned())
    } else if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Err("must not contain spaces or control characters".to_owned())
    } else {
        Ok(s.to_owned())
    }
}

/// RFC 6265 cookie-name: an RFC 7230 token.
fn cookie_name(s: &str) -> Result<String, String> {
    let token_char = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if !s.is_empty() && s.chars().all(token_char) {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "{s:?} is not a valid cookie name (letters, digits and !#$%&'*+-.^_`|~)"
        ))
    }
}

fn identity_header(s: &str) -> Result<HeaderName, String> {
    let name = HeaderName::from_str(s).map_err(|_| format!("{s:?} is not a valid header name"))?;
    if RESERVED_HEADERS.contains(&name.as_str()) {
        return Err(format!(
            "{:?} is reserved and cannot carry the identity",
            name.as_str()
        ));
    }
    Ok(name)
}

/// One base64 key per non-blank line; the first seals, all open.
fn session_keys(text: &str) -> Result<Vec<SessionKey>, String> {
    let mut keys = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let key = SessionKey::from_base64(line).map_err(|e| format!("line {}: {e}", i + 1))?;
        keys.push(key);
    }
    if keys.is_empty() {
        return Err("no key found (one base64-encoded 32-byte key per line)".to_owned());
    }
    Ok(keys)
}

fn identity_key(pem: &str) -> Result<IdentityKey, String> {
    IdentityKey::from_pem(pem).map_err(|e| e.to_string())
}

fn bearer_token(text: &str) -> Result<Secret, String> {
    // Files written with `echo` end with a newline that is not part of the token.
    let token = text.strip_suffix('\n').unwrap_or(text);
    let token = token.strip_suffix('\r').unwrap_or(token);
    if token.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if http::HeaderValue::from_str(&format!("Bearer {token}")).is_err() {
        return Err("contains characters not allowed in an HTTP header".to_owned());
    }
    Ok(Secret::new(token.to_owned()))
}

/// The error of a malformed PEM is not shown: for a misplaced key it would quote key bytes.
fn pem_certificates(text: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(text.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| "invalid PEM".to_owned())?;
    if certs.is_empty() {
        return Err("no PEM CERTIFICATE block found".to_owned());
    }
    Ok(certs)
}

fn idp_certificates(text: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = pem_certificates(text)?;
    for (i, der) in certs.iter().enumerate() {
        webpki::EndEntityCert::try_from(der).map_err(|e| {
            format!(
                "certificate {} is not a valid X.509 certificate ({e})",
                i + 1
            )
        })?;
    }
    Ok(certs)
}

fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<rustls::ServerConfig, rustls::Error> {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use figment::Jail;

    use super::*;

    /// Runs `f` in a figment jail: env-touching tests are serialised and restored, and no
    /// `SAMLGATE_…` variable of the surrounding process leaks in.
    // figment's own error type is large, and its jail's signature is not ours to change.
    #[allow(clippy::result_large_err)]
    fn jail(f: impl FnOnce(&mut Jail)) {
        Jail::expect_with(|jail| {
            let inherited: Vec<String> = std::env::vars_os()
                .map(|(k, _)| k.to_string_lossy().into_owned())
                .filter(|k| k.to_ascii_uppercase().starts_with(ENV_PREFIX))
                .collect();
            for key in inherited {
                // set_env records the original value so the jail restores it afterwards.
                jail.set_env(&key, "");
                std::env::remove_var(&key);
            }
            f(jail);
            Ok(())
        });
    }

    struct Fixture {
        dir: PathBuf,
        session_key: PathBuf,
        identity_key: PathBuf,
        idp_cert: PathBuf,
    }

    impl Fixture {
        fn new(dir: &Path) -> Self {
            let session_key = write(dir, "session.key", &SessionKey::generate_base64());
            let identity_key = write(
                dir,
                "identity.pem",
                &IdentityKey::generate_pem(Algorithm::Es256).unwrap(),
            );
            let idp_cert = write(dir, "acme-okta.pem", &self_signed().0);
            Self {
                dir: dir.to_owned(),
                session_key,
                identity_key,
                idp_cert,
            }
        }

        fn minimal(&self) -> String {
            format!(
                r#"
public_url = "https://backup.example.com"
upstream = "http://127.0.0.1:3000"

[session]
secret_file = "{}"

[identity]
key_file = "{}"

[account_lookup]
url = "http://127.0.0.1:3000/internal/samlgate/accounts"

[[tenants]]
company_id = "acme"
idp_sso_url = "https://acme.okta.com/app/acme_backup_1/exk1abc/sso/saml"
idp_issuer = "http://www.okta.com/exk1abc"
idp_certificate_file = "{}"
"#,
                self.session_key.display(),
                self.identity_key.display(),
                self.idp_cert.display()
            )
        }

        fn load(&self, toml: &str) -> Result<Config, ConfigErrors> {
            load(Some(&write(&self.dir, "samlgate.toml", toml)))
        }

        fn errors(&self, toml: &str) -> Vec<String> {
            match self.load(toml) {
                Ok(_) => panic!("expected problems, the configuration loaded"),
                Err(errors) => errors.0.iter().map(ToString::to_string).collect(),
            }
        }
    }

    fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, contents).unwrap();
        path
    }

    /// A fresh self-signed certificate and its private key, both PEM.
    fn self_signed() -> (String, String) {
        let certified = rcgen::generate_simple_self_signed(vec!["idp.example.com".into()]).unwrap();
        (certified.cert.pem(), certified.key_pair.serialize_pem())
    }

    fn assert_has(lines: &[String], expected: &str) {
        assert!(
            lines.iter().any(|l| l == expected),
            "missing {expected:?} in {lines:#?}"
        );
    }

    #[test]
    fn minimal_config_gets_every_default() {
        jail(|jail| {
            let fx = Fixture::new(jail.directory());
            let config = fx.load(&fx.minimal()).unwrap();
            assert_eq!(config.public_url.as_str(), "https://backup.example.com/");
            assert_eq!(config.listen, "0.0.0.0:8080".parse().unwrap());
            assert_eq!(config.admin_listen, "127.0.0.1:9090".parse().unwrap());
            assert_eq!(config.upstream.as_str(), "http://127.0.0.1:3000/");
            assert_eq!(config.path_prefix, "/saml");
            assert!(config.public_paths.is_empty());
            assert!(config.tls.is_none());
            assert!(config.upstream_ca.is_empty());
            assert_eq!(
                config.sp.entity_id,
                "https://backup.example.com/saml/metadata"
            );
            assert!(config.sp.allow_idp_initiated);
            assert_eq!(config.sp.clock_skew, Duration::from_secs(90));
            assert!(!config.sp.require_signed_response);
            assert!(!config.sp.allow_sha1);
            assert_eq!(config.session.cookie_name, "samlgate_session");
            assert_eq!(config.session.keys.len(), 1);
            assert_eq!(config.session.ttl, Duration::from_secs(8 * 3600));
            assert_eq!(config.identity.header.as_str(), "x-samlgate-assertion");
            assert_eq!(config.identity.algorithm, Algorithm::Es256);
            assert_eq!(config.identity.key.algorithm(), Algorithm::Es256);
            assert!(config.identity.previous_keys.is_empty());
            assert_eq!(config.identity.audience, "backup-panel");
            assert_eq!(config.identity.ttl, Duration::from_secs(60));
            assert!(!config.identity.plain_headers);
            let lookup = &config.account_lookup;
            assert_eq!(
                lookup.url.as_str(),
                "http://127.0.0.1:3000/internal/samlgate/accounts"
            );
            assert!(lookup.token.is_none());
            assert_eq!(lookup.timeout, Duration::from_secs(2));
            assert_eq!(lookup.cache_ttl, Duration::from_secs(300));
            assert_eq!(lookup.negative_ttl, Duration::from_secs(30));
            assert!(config.tenant_lookup.is_none());
            assert!(config.replay.redis_url.is_none());
            assert_eq!(config.log_format, LogFormat::Json);
            assert_eq!(config.tenants.len(), 1);
            let tenant = &config.tenants[0];
            assert_eq!(tenant.company_id, "acme");
            assert_eq!(tenant.idp_issuer, "http://www.okta.com/exk1abc");
            assert_eq!(tenant.idp_certificates.len(), 1);
            assert!(tenant.idp_slo_url.is_none());
        });
    }

    #[test]
    fn every_optional_key_is_read() {
        jail(|jail| {
            let fx = Fixture::new(jail.directory());
            let previous = write(
                &fx.dir,
                "old.pem",
                &IdentityKey::generate_pem(Algorithm::EdDsa).unwrap(),
            );
            let token = write(&fx.dir, "lookup.token", "t0ken\n");
            let (cert, _) = self_signed();
            let two_certs = format!("{}{cert}", fs::read_to_string(&fx.idp_cert).unwrap());
            let toml = format!(
                r#"
public_url = "https://backup.example.com"
upstream = "http://127.0.0.1:3000"
listen = "127.0.0.1:8443"
path_prefix = "/auth"
public_paths = ["/static/"]

[upstream_tls]
ca = """{cert}"""

[sp]
entity_id = "urn:samlgate"
allow_idp_initiated = "false"
clock_skew = "2m"
require_signed_response = true

[session]
secret_file = "{}"

[identity]
header = "X-Identity"
key_file = "{}"
previous_key_files = ["{}"]
plain_headers = true

[account_lookup]
url = "http://127.0.0.1:3000/internal/samlgate/accounts"
token_file = "{}"

[tenant_lookup]
url = "http://127.0.0.1:3000/internal/samlgate/tenants"

[replay]
redis_url = "rediss://:pw@redis:6380/0"

[log]
format = "pretty"

[[tenants]]
company_id = "Globex"
idp_sso_url = "https://globex.okta.com/sso"
idp_issuer = "http://www.okta.com/globex"
idp_certificate = """{two_certs}"""
idp_slo_url = "https://globex.okta.com/slo"
"#,
                fx.session_key.display(),
                fx.identity_key.display(),
                previous.display(),
                token.display()
            );
            let config = fx.load(&toml).unwrap();
            assert_eq!(config.listen, "127.0.0.1:8443".parse().unwrap());
            assert_eq!(config.path_prefix, "/auth");
            assert_eq!(config.public_paths, ["/static/"]);
            assert_eq!(config.upstream_ca.len(), 1);
            assert_eq!(config.sp.entity_id, "urn:samlgate");
            assert!(!config.sp.allow_idp_initiated);
            assert_eq!(config.sp.clock_skew, Duration::from_secs(120));
            assert!(config.sp.require_signed_response);
            assert_eq!(config.identity.header.as_str(), "x-identity");
            assert_eq!(config.identity.previous_keys.len(), 1);
            assert_eq!(
                config.identity.previous_keys[0].algorithm(),
                Algorithm::EdDsa
            );
            assert!(config.identity.plain_headers);
            let token = config.account_lookup.token.as_ref().unwrap();
            assert_eq!(token.expose(), "t0ken");
            let tenant_lookup = config.tenant_lookup.as_ref().unwrap();
            assert_eq!(tenant_lookup.cache_ttl, Duration::from_secs(60));
            assert_eq!(
                config.replay.redis_url.as_ref().unwrap().expose(),
                "rediss://:pw@redis:6380/0"
            );
            assert_eq!(config.log_format, LogFormat::Pretty);
            let globex = &config.tenants[0];
            assert_eq!(globex.company_id, "globex");
            assert_eq!(globex.idp_certificates.len(), 2);
            assert_eq!(
                globex.idp_slo_url.as_ref().unwrap().as_str(),
                "https://globex.okta.com/slo"
            );
        });
    }

    #[test]
    fn environment_overrides_the_file() {
        jail(|jail| {
            let fx = Fixture::new(jail.directory());
            jail.set_env("SAMLGATE_SESSION__TTL", "4h");
            jail.set_env("SAMLGATE_IDENTITY__PLAIN_HEADERS", "true");
            jail.set_env("SAMLGATE_PUBLIC_PATHS", "[/static/, /favicon.ico]");
            jail.set_env("SAMLGATE_ADMIN_LISTEN", "127.0.0.1:9999");
            let config = fx.load(&fx.minimal()).unwrap();
            assert_eq!(config.session.ttl, Duration::from_secs(4 * 3600));
            assert!(config.identity.plain_headers);
            assert_eq!(config.public_paths, ["/static/", "/favicon.ico"]);
            assert_eq!(config.admin_listen, "127.0.0.1:9999".parse().unwrap());
        });
    }

    #[test]
    fn environment_alone_is_enough_without_a_file() {
        jail(|jail| {
            let fx = Fixture::new(jail.directory());
            jail.set_env("SAMLGATE_PUBLIC_URL", "https://backup.example.com");
            jail.set_env("SAMLGATE_UPSTREAM", "http://127.0.0.1:3000");
            jail.set_env("SAMLGATE_SESSION__SECRET", SessionKey::generate_base64());
            jail.set_env("SAMLGATE_IDENTITY__KEY_FILE", fx.identity_key.display());
            jail.set_env("SAMLGATE_ACCOUNT_LOOKUP__URL", "http://127.0.0.1:3000/a");
            let config = load(None).unwrap();
            assert_eq!(config.session.keys.len(), 1);
            assert!(config.tenants.is_empty());
        });
    }

    #[test]
    fn samlgate_config_is_not_a_key_but_other_variables_are() {
        jail(|jail| {
            let fx = Fixture::new(jail.directory());
            jail.set_env("SAMLGATE_CONFIG", "/elsewhere/samlgate.toml");
            assert!(fx.load(&fx.minimal()).is_ok());
            jail.set_env("SAMLGATE_SESION__TTL", "4h");
            assert_eq!(fx.errors(&fx.minimal()), ["sesion: unknown key"]);
        });
    }

    #[test]
    fn all_problems_are_reported_together() {
        jail(|jail| {
            let fx = Fixture::new(jail.directory());
            let toml = format!(
                r#"
public_url = "https://backup.example.com"
listen = 8080
upstream = "http://127.0.0.1:3000"

[sesion]
ttl = "1h"

[session]
ttl = "8 hours"
secret = "{}"
secret_file = "{}"

[identity]
key_file = "{}"

[[tenants]]
company_id = "Acme Corp"
idp_sso_url = "https://acme.okta.com/sso"
idp_issuer = "http://www.okta.com/exk1abc"
idp_certificate = "not a certificate"
"#,
                SessionKey::generate_base64(),
                fx.session_key.display(),
                fx.identity_key.display()
            );
            let lines = fx.errors(&toml);
            for expected in [
                "listen: expected a string",
                "sesion: unknown key",
                r#"session.ttl: invalid duration "8 hours""#,
                "session.secret: set either secret or secret_file, not both",
                "account_lookup.url: required",
                r#"tenants[0].company_id: "Acme Corp" is not a valid company ID (expected [a-z0-9][a-z0-9-]{0,62})"#,
                "tenants[0].idp_certificate: no PEM CERTIFICATE block found",
            ] {
                assert_has(&lines, expected);
            }
            assert_eq!(lines.len(), 7, "{lines:#?}");
        });
    }

    #[test]
    fn display_is_one_problem_per_line() {
        let errors = ConfigErrors(vec![
            Problem {
                key: "a".into(),
                message: "x".into(),
            },
            Problem {
                key: "b.c".into(),
                message: "y".into(),
            },
        ]);
        assert_eq!(errors.to_string(), "a: x\nb.c: y");
    }

    #[test]
    fn missing_required_keys() {
        jail(|_| {
            let errors = load(None).unwrap_err().to_string();
            assert_eq!(
                errors,
                "public_url: required\n\
                 upstream: required\n\
                 session.secret: required (set secret or secret_file)\n\
                 identity.key: required (set key or key_file)\n\
                 account_lookup.url: required"
            );
        });
    }

    #[test]
    fn key_must_match_algorithm() {
        jail(|jail| {
            let fx = Fixture::new(jail.directory());
            write(
                &fx.dir,
                "identity.pem",
                &IdentityKey::generate_pem(Algorithm::EdDsa).unwrap(),
            );
            assert_eq!(
                fx.errors(&fx.minimal()),
                ["identity.key_file: key is EdDSA but identity.algorithm is ES256"]
            );
            jail.set_env("SAMLGATE_IDENTITY__ALGORITHM", "EdDSA");
            let config = fx.load(&fx.minimal()).unwrap();
            assert_eq!(config.identity.algorithm, Algorithm::EdDsa);
        });
    }

    #[test]
    fn session_keys_rotate_and_bad_lines_are_numbered() {
        jail(|jail| {
            let fx = Fixture::new(jail.directory());
            let (a, b) = (SessionKey::generate_base64(), SessionKey::generate_base64());
            write(&fx.dir, "session.key", &format!("{a}\n\n{b}\n"));
            let config = fx.load(&fx.minimal()).unwrap();
            assert_eq!(config.session.keys.len(), 2);
            assert_eq!(config.session.keys[0], SessionKey::from_base64(&a).unwrap());

            write(&fx.dir, "session.key", &format!("{a}\nAAAA\n"));
            assert_eq!(
                fx.errors(&fx.minimal()),
                ["session.secret_file: line 2: must decode to 32 bytes, got 3"]
            );
            write(&fx.dir, "session.key", "\n  \n");
            assert_eq!(
                fx.errors(&fx.minimal()),
                ["session.secret_file: no key found (one base64-encoded 32-byte key per line)"]
            );
        });
    }

    #[test]
    fn unreadable_files_name_key_and_path() {
        jail(|jail| {
            let fx = Fixture::new(jail.directory());
            let old = write(
                &fx.dir,
                "old.pem",
                &IdentityKey::generate_pem(Algorithm::Rs256).unwrap(),
            );
            let toml = fx
                .minimal()
                .replace(
                    &fx.session_key.display().to_string(),
                    "/nonexistent/session.key",
                )
                .replace(
                    "[identity]",
                    &format!(
                        "[identity]\nprevious_key_files = [\"{}\", \"/nonexistent/old.pem\", \"{}\"]",
                        old.display(),
                        fx.identity_key.display()
                    ),
                );
            let lines = fx.errors(&toml);
            assert_eq!(
                lines,
                [
                    r#"session.secret_file: cannot read "/nonexistent/session.key": No such file or directory (os error 2)"#,
                    r#"identity.previous_key_files[1]: cannot read "/nonexistent/old.pem": No such file or directory (os error 2)"#,
                    "identity.previous_key_files[2]: same key as the current identity key",
                ]
            );
        });
    }

    #[test]
    fn toml_syntax_error_is_one_line_without_the_source() {
        jail(|jail| {
            let fx = Fixture::new(jail.directory());
            let toml = "public_url = \"https://x\"\nsecret = \"SECRET-4711 \n";
            let lines = fx.errors(toml);
            assert_eq!(lines.len(), 1, "{lines:?}");
            assert!(
                lines[0].starts_with(&format!(
                    "{}: invalid TOML at line 2, column ",
                    fx.dir.join("samlgate.toml").display()
                )),
                "{lines:?}"
            );
            assert!(!lines[0].contains("SECRET-4711"), "{lines:?}");
            assert!(!lines[0].contains('\n'));
            let missing = fx.dir.join("missing.toml");
            let err = load(Some(&missing)).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "{}: cannot read: No such file or directory (os error 2)",
                    missing.display()
                )
            );
        });
    }

    #[test]
    fn secrets_never_appear_in_problems() {
        jail(|jail| {
            let fx = Fixture::new(jail.directory());
            const S: &str = "SuperSecret4711";
            let toml = fx
                .minimal()
                .replace(
                    &format!("secret_file = \"{}\"", fx.session_key.display()),
                    &format!("secret = \"{S}\""),
                )
                .replace(
                    &format!("key_file = \"{}\"", fx.identity_key.display()),
                    &format!(
                        "key = \"-----BEGIN PRIVATE KEY-----\\n{S}\\n-----END PRIVATE KEY-----\""
                    ),
                )
                .replace(
                    "[account_lookup]",
                    &format!("[account_lookup]\ntoken = \"{S}\\n{S}\""),
                )
                .replace(
                    "[[tenants]]",
                    &format!(
                        "[replay]\nredis_url = \"http://:{S}@redis\"\n\n[tls]\ncert = \"{S}\"\nkey = \"{S}\"\n\n[[tenants]]"
                    ),
                )
                .replace(
                    "idp_sso_url = \"https://acme.okta.com",
                    &format!("idp_sso_url = \"ftp://{S}@acme.okta.com"),
                );
            jail.set_env("SAMLGATE_UPSTREAM", format!("http://u:{S}@panel/?{S}"));
            jail.set_env("SAMLGATE_ACCOUNT_LOOKUP__URL", format!("{S}://["));
            let errors = fx.load(&toml).unwrap_err();
            let text = errors.to_string();
            assert_eq!(errors.0.len(), 9, "{text}");
            assert!(!text.contains(S), "{text}");
            assert!(!format!("{errors:?}").contains(S));
            assert_has(
                &text.lines().map(str::to_owned).collect::<Vec<_>>(),
                "replay.redis_url: must start with redis:// or rediss://",
            );
        });
    }

    #[test]
    fn url_and_name_rules() {
        jail(|jail| {
            let fx = Fixture::new(jail.directory());
            jail.set_env("SAMLGATE_PUBLIC_URL", "https://backup.example.com/app");
            jail.set_env("SAMLGATE_UPSTREAM", "ftp://panel");
            jail.set_env("SAMLGATE_PATH_PREFIX", "/saml/");
            jail.set_env("SAMLGATE_PUBLIC_PATHS", "[static/]");
            jail.set_env("SAMLGATE_SESSION__COOKIE_NAME", "my cookie");
            jail.set_env("SAMLGATE_IDENTITY__HEADER", "Cookie");
            jail.set_env("SAMLGATE_IDENTITY__TTL", "0s");
            jail.set_env("SAMLGATE_LOG__FORMAT", "xml");
            jail.set_env("SAMLGATE_SP__ALLOW_SHA1", "maybe");
            assert_eq!(
                fx.errors(&fx.minimal()),
                [
                    "public_url: must be an origin without a path (path_prefix places samlgate's routes)",
                    "upstream: must be an http or https URL",
                    r#"path_prefix: must not end with "/""#,
                    r#"public_paths[0]: must start with "/""#,
                    "sp.allow_sha1: expected a boolean",
                    r#"session.cookie_name: "my cookie" is not a valid cookie name (letters, digits and !#$%&'*+-.^_`|~)"#,
                    r#"identity.header: "cookie" is reserved and cannot carry the identity"#,
                    "identity.ttl: must be greater than zero",
                    r#"log.format: expected "json" or "pretty", got "xml""#,
                ]
            );
        });
    }

    #[test]
    fn tenants_must_be_unique_and_complete() {
        jail(|jail| {
            let fx = Fixture::new(jail.directory());
            let second = format!(
                r#"
[[tenants]]
company_id = "ACME"
idp_sso_url = "https://acme2.okta.com/sso"
idp_issuer = "http://www.okta.com/exk1abc"
idp_certificate_file = "{}"

[[tenants]]
idp_slo_url = "not a url"
"#,
                fx.idp_cert.display()
            );
            assert_eq!(
                fx.errors(&(fx.minimal() + &second)),
                [
                    "tenants[1].company_id: duplicate of tenants[0]",
                    "tenants[1].idp_issuer: duplicate of tenants[0]",
                    "tenants[2].company_id: required",
                    "tenants[2].idp_sso_url: required",
                    "tenants[2].idp_issuer: required",
                    "tenants[2].idp_certificate: required (set idp_certificate or idp_certificate_file)",
                    "tenants[2].idp_slo_url: invalid URL: relative URL without a base",
                ]
            );
        });
    }

    #[test]
    fn bad_certificate_inside_pem_is_numbered() {
        jail(|jail| {
            let fx = Fixture::new(jail.directory());
            let good = fs::read_to_string(&fx.idp_cert).unwrap();
            let bad = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
            write(&fx.dir, "acme-okta.pem", &format!("{good}{bad}"));
            let lines = fx.errors(&fx.minimal());
            assert_eq!(lines.len(), 1);
            assert!(
                lines[0].starts_with(
                    "tenants[0].idp_certificate_file: certificate 2 is not a valid X.509 certificate"
                ),
                "{lines:?}"
            );
        });
    }

    #[test]
    fn tls_is_built_and_a_mismatched_key_is_reported() {
        jail(|jail| {
            let fx = Fixture::new(jail.directory());
            let (cert, key) = self_signed();
            let (_, other_key) = self_signed();
            let cert_file = write(&fx.dir, "tls.crt", &cert);
            let key_file = write(&fx.dir, "tls.key", &key);
            let toml = format!(
                "{}\n[tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
                fx.minimal(),
                cert_file.display(),
                key_file.display()
            );
            let config = fx.load(&toml).unwrap();
            let tls = config.tls.unwrap();
            assert_eq!(tls.alpn_protocols, [b"h2".to_vec(), b"http/1.1".to_vec()]);

            write(&fx.dir, "tls.key", &other_key);
            assert_eq!(
                fx.errors(&toml),
                ["tls.key_file: does not match the certificate in tls.cert_file"]
            );

            let toml = format!("{}\n[tls]\ncert = \"\"\"{cert}\"\"\"\n", fx.minimal());
            assert_eq!(
                fx.errors(&toml),
                ["tls.key: required (set key or key_file)"]
            );
        });
    }

    #[test]
    fn tenant_lookup_table_needs_its_url() {
        jail(|jail| {
            let fx = Fixture::new(jail.directory());
            let toml = format!("{}\n[tenant_lookup]\ncache_ttl = \"2m\"\n", fx.minimal());
            assert_eq!(fx.errors(&toml), ["tenant_lookup.url: required"]);
        });
    }

    #[test]
    fn example_configuration_loads() {
        jail(|jail| {
            let fx = Fixture::new(jail.directory());
            let example = fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR")).join("config/samlgate.toml"),
            )
            .unwrap();
            assert!(example.contains("/etc/samlgate/session.key"));
            let local = example.replace("/etc/samlgate/", &format!("{}/", fx.dir.display()));
            let config = fx.load(&local).unwrap();
            assert_eq!(config.public_paths, ["/static/", "/favicon.ico"]);
            assert_eq!(config.tenants.len(), 1);
        });
    }

    #[test]
    fn summary_shows_settings_but_no_secret() {
        jail(|jail| {
            let fx = Fixture::new(jail.directory());
            let toml = fx
                .minimal()
                .replace(
                    "[account_lookup]\nurl = \"http://",
                    "[account_lookup]\ntoken = \"TokenSecret42\"\nurl = \"http://user:UrlSecret42@",
                )
                .replace(
                    "accounts\"",
                    "accounts?key=QuerySecret42\"\n\n[replay]\nredis_url = \"redis://:RedisSecret42@r/0\"",
                );
            let config = fx.load(&toml).unwrap();
            let text = crate::config::summary(&config);
            for secret in [
                "TokenSecret42",
                "UrlSecret42",
                "QuerySecret42",
                "RedisSecret42",
            ] {
                assert!(!text.contains(secret), "{secret} in {text}");
            }
            for expected in [
                "0.0.0.0:8080 (TLS off)",
                "http://127.0.0.1:3000/internal/samlgate/accounts (token set",
                config.identity.key.kid(),
                "replay state:    redis",
                "  acme: issuer http://www.okta.com/exk1abc, sso https://acme.okta.com/app/acme_backup_1/exk1abc/sso/saml, 1 certificate(s)",
            ] {
                assert!(text.contains(expected), "{expected:?} missing in {text}");
            }
        });
    }
}
