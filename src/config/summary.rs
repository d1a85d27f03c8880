//! The human summary `samlgate check` prints; it never shows a secret.

use url::{Position, Url};

use super::{Config, LogFormat};

/// A multi-line, human-readable summary of a validated configuration, without secrets.
pub fn summary(config: &Config) -> String {
    let duration = |d| humantime::format_duration(d).to_string();
    let on_off = |on: bool| if on { "on" } else { "off" };
    let identity = &config.identity;
    let previous_kids = if identity.previous_keys.is_empty() {
        "none".to_owned()
    } else {
        identity
            .previous_keys
            .iter()
            .map(|k| format!("{} ({})", k.kid(), k.algorithm()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let tenant_lookup = match &config.tenant_lookup {
        Some(t) => format!(
            "on, {} (cache {})",
            public_part(&t.url),
            duration(t.cache_ttl)
        ),
        None => "off".to_owned(),
    };
    let lookup = &config.account_lookup;
    let mut lines = vec![
        format!(
            "listen:          {} (TLS {})",
            config.listen,
            on_off(config.tls.is_some())
        ),
        format!("admin_listen:    {}", config.admin_listen),
        format!("public_url:      {}", config.public_url),
        format!("upstream:        {}", config.upstream),
        format!(
            "upstream CA:     {}",
            match config.upstream_ca.len() {
                0 => "system roots".to_owned(),
                n => format!("{n} extra certificate(s)"),
            }
        ),
        format!("path_prefix:     {}", config.path_prefix),
        format!(
            "public_paths:    {}",
            if config.public_paths.is_empty() {
                "none".to_owned()
            } else {
                config.public_paths.join(", ")
            }
        ),
        format!("sp entity id:    {}", config.sp.entity_id),
        format!(
            "sp:              IdP-initiated {}, clock skew {}, signed Response required {}, SHA-1 {}",
            on_off(config.sp.allow_idp_initiated),
            duration(config.sp.clock_skew),
            on_off(config.sp.require_signed_response),
            on_off(config.sp.allow_sha1),
        ),
        format!(
            "session:         cookie {}, {} key(s), ttl {}",
            config.session.cookie_name,
            config.session.keys.len(),
            duration(config.session.ttl)
        ),
        format!(
            "identity:        {} in header {}, kid {}, audience {}, ttl {}, plain headers {}",
            identity.algorithm,
            identity.header,
            identity.key.kid(),
            identity.audience,
            duration(identity.ttl),
            on_off(identity.plain_headers),
        ),
        format!("previous kids:   {previous_kids}"),
        format!(
            "account lookup:  {} (token {}, timeout {}, cache {}, negative cache {})",
            public_part(&lookup.url),
            if lookup.token.is_some() { "set" } else { "none" },
            duration(lookup.timeout),
            duration(lookup.cache_ttl),
            duration(lookup.negative_ttl),
        ),
        format!("tenant lookup:   {tenant_lookup}"),
        format!(
            "replay state:    {}",
            if config.replay.redis_url.is_some() {
                "redis"
            } else {
                "memory"
            }
        ),
        format!(
            "log format:      {}",
            match config.log_format {
                LogFormat::Json => "json",
                LogFormat::Pretty => "pretty",
            }
        ),
        format!("tenants:         {}", config.tenants.len()),
    ];
    for tenant in &config.tenants {
        lines.push(format!(
            "  {}: issuer {}, sso {}, {} certificate(s){}",
            tenant.company_id,
            tenant.idp_issuer,
            public_part(&tenant.idp_sso_url),
            tenant.idp_certificates.len(),
            match &tenant.idp_slo_url {
                Some(url) => format!(", slo {}", public_part(url)),
                None => String::new(),
            }
        ));
    }
    lines.join("\n")
}

/// Scheme, host, port and path only: user info and query may carry credentials.
fn public_part(url: &Url) -> String {
    format!(
        "{}://{}",
        url.scheme(),
        &url[Position::BeforeHost..Position::AfterPath]
    )
}
