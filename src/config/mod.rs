//! Typed configuration: loaded and validated once, so nothing downstream re-checks strings.
//!
//! Loading (figment layering: defaults, TOML file, `SAMLGATE_…` environment) and
//! validation live in [`load`]; every problem is reported at once, each naming its
//! key as a dotted path (SPEC §2).

mod load;
mod summary;

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use rustls_pki_types::CertificateDer;
use url::Url;

use crate::identity::{Algorithm, IdentityKey};
use crate::session::SessionKey;

pub use load::{load, ConfigErrors, Problem};
pub use summary::summary;

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// External origin users see (scheme, host, optional port; no path).
    pub public_url: Url,
    /// Public listener.
    pub listen: SocketAddr,
    /// Admin listener (`/healthz`, `/readyz`, `/metrics`).
    pub admin_listen: SocketAddr,
    /// The panel: an `http` or `https` origin, optionally with a base path.
    pub upstream: Url,
    /// Prefix of samlgate's own routes, `/saml` by default; starts with `/`, no trailing `/`.
    pub path_prefix: String,
    /// Path prefixes passed through without login.
    pub public_paths: Vec<String>,
    /// TLS termination on the public listener, when configured.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Extra trust anchors for an https upstream and the lookup APIs.
    pub upstream_ca: Vec<CertificateDer<'static>>,
    /// Service-provider settings.
    pub sp: SpConfig,
    /// Session cookie settings.
    pub session: SessionConfig,
    /// Identity header settings.
    pub identity: IdentityConfig,
    /// The panel's account lookup API (SPEC §5).
    pub account_lookup: AccountLookupConfig,
    /// The panel's tenant lookup API (SPEC §6), when configured.
    pub tenant_lookup: Option<TenantLookupConfig>,
    /// Shared replay and request state, when configured.
    pub replay: ReplayConfig,
    /// Connection limits of the public listener.
    pub limits: LimitsConfig,
    /// Log output format.
    pub log_format: LogFormat,
    /// Static tenants.
    pub tenants: Vec<Tenant>,
}

/// `[sp]`: how samlgate acts as a SAML service provider.
#[derive(Debug, Clone)]
pub struct SpConfig {
    /// Entity ID (defaults to `public_url + path_prefix + "/metadata"`).
    pub entity_id: String,
    /// Accept unsolicited responses (the Okta dashboard tile).
    pub allow_idp_initiated: bool,
    /// Tolerance for clock differences with the IdP.
    pub clock_skew: Duration,
    /// Require a signature on the Response element itself.
    pub require_signed_response: bool,
    /// Accept SHA-1 signatures and digests.
    pub allow_sha1: bool,
}

/// `[session]`: the sealed session cookie.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Cookie name.
    pub cookie_name: String,
    /// Keys; the first seals, all open (rotation).
    pub keys: Vec<SessionKey>,
    /// Absolute session lifetime.
    pub ttl: Duration,
}

/// `[identity]`: the signed identity header sent to the panel.
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    /// Header name carrying the JWS.
    pub header: HeaderName,
    /// Signing algorithm of the current key.
    pub algorithm: Algorithm,
    /// The current signing key.
    pub key: IdentityKey,
    /// Earlier keys, still published in the JWKS.
    pub previous_keys: Vec<IdentityKey>,
    /// `aud` claim.
    pub audience: String,
    /// Lifetime of one signed header.
    pub ttl: Duration,
    /// Also send `X-Samlgate-Account-Id`, `-Email` and `-Company`.
    pub plain_headers: bool,
}

/// `[account_lookup]`.
#[derive(Debug, Clone)]
pub struct AccountLookupConfig {
    /// Endpoint URL.
    pub url: Url,
    /// Bearer token, when configured.
    pub token: Option<Secret>,
    /// Timeout of one lookup.
    pub timeout: Duration,
    /// How long a found account is cached.
    pub cache_ttl: Duration,
    /// How long a 404 is cached.
    pub negative_ttl: Duration,
}

/// `[tenant_lookup]`.
#[derive(Debug, Clone)]
pub struct TenantLookupConfig {
    /// Endpoint URL.
    pub url: Url,
    /// How long an answer is cached.
    pub cache_ttl: Duration,
}

/// `[replay]`.
#[derive(Debug, Clone, Default)]
pub struct ReplayConfig {
    /// Redis URL for state shared between replicas; memory only when absent.
    pub redis_url: Option<Secret>,
}

/// `[limits]`: protection of the public listener.
#[derive(Debug, Clone)]
pub struct LimitsConfig {
    /// Time to send a request's headers; also the idle keep-alive limit.
    pub header_read_timeout: Duration,
    /// Most open client connections; past it samlgate stops accepting.
    pub max_connections: usize,
}

/// `[log] format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Pretty,
}

/// One customer organisation with its own Okta org (`[[tenants]]`).
#[derive(Debug, Clone)]
pub struct Tenant {
    /// Company ID, lower-cased, matching `[a-z0-9][a-z0-9-]{0,62}`.
    pub company_id: String,
    /// Identity Provider Single Sign-On URL.
    pub idp_sso_url: Url,
    /// Identity Provider Issuer.
    pub idp_issuer: String,
    /// X.509 signing certificates (several during rollover), DER, each parsed once.
    pub idp_certificates: Vec<CertificateDer<'static>>,
    /// Single logout URL, when configured.
    pub idp_slo_url: Option<Url>,
}

/// A secret string: never printed by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The secret itself; call only where it is used, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Whether `id` is a syntactically valid company ID (SPEC §1), after lower-casing.
pub fn is_valid_company_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn company_id_pattern() {
        assert!(is_valid_company_id("acme"));
        assert!(is_valid_company_id("0-a"));
        assert!(is_valid_company_id(&"a".repeat(63)));
        assert!(!is_valid_company_id(&"a".repeat(64)));
        assert!(!is_valid_company_id("-acme"));
        assert!(!is_valid_company_id("Acme"));
        assert!(!is_valid_company_id("ac me"));
        assert!(!is_valid_company_id(""));
    }
}
