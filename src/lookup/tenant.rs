//! Tenants (SPEC §6): static ones from the config, others looked up live at the panel.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::CertificateDer;
use url::Url;

use super::{get, json_error, with_query, LookupError, CACHE_CAPACITY};
use crate::admin::Metrics;
use crate::config::{is_valid_company_id, Tenant, TenantLookupConfig};
use crate::proxy::HttpClient;

/// `[tenant_lookup]` has no timeout key; this matches `account_lookup.timeout`'s default.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// What a tenant is asked by; one cache holds both kinds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Company(String),
    Issuer(String),
}

impl Key {
    fn param(&self) -> (&'static str, &str) {
        match self {
            Key::Company(id) => ("company_id", id),
            Key::Issuer(issuer) => ("idp_issuer", issuer),
        }
    }
}

/// The panel's tenant lookup API behind a cache.
struct Remote {
    url: Url,
    client: HttpClient,
    // `None` is a 404 or a tenant shadowed by a static one.
    cache: Cache<Key, Option<Arc<Tenant>>>,
}

/// Every tenant samlgate knows: static ones first, then the tenant lookup API.
pub struct TenantDirectory {
    by_company: HashMap<String, Arc<Tenant>>,
    by_issuer: HashMap<String, Arc<Tenant>>,
    remote: Option<Remote>,
    metrics: Arc<Metrics>,
}

/// The tenant lookup's answer, before validation.
#[derive(serde::Deserialize)]
struct Record {
    company_id: String,
    idp_sso_url: String,
    idp_issuer: String,
    idp_certificate: String,
    #[serde(default)]
    idp_slo_url: Option<String>,
}

impl TenantDirectory {
    /// A directory of `static_tenants` (validated by config), asking `lookup` for others.
    pub fn new(
        static_tenants: Vec<Tenant>,
        lookup: Option<&TenantLookupConfig>,
        client: HttpClient,
        metrics: Arc<Metrics>,
    ) -> Self {
        let mut by_company = HashMap::new();
        let mut by_issuer = HashMap::new();
        for tenant in static_tenants {
            let tenant = Arc::new(tenant);
            by_company.insert(tenant.company_id.clone(), tenant.clone());
            by_issuer.insert(tenant.idp_issuer.clone(), tenant);
        }
        let remote = lookup.map(|config| Remote {
            url: config.url.clone(),
            client,
            cache: Cache::builder()
                .max_capacity(CACHE_CAPACITY)
                .time_to_live(config.cache_ttl)
                .build(),
        });
        Self {
            by_company,
            by_issuer,
            remote,
            metrics,
        }
    }

    /// The tenant of `company_id` (case-insensitive); `None` for an invalid or unknown ID.
    pub async fn by_company(&self, company_id: &str) -> Result<Option<Arc<Tenant>>, LookupError> {
        let company_id = company_id.to_lowercase();
        if !is_valid_company_id(&company_id) {
            return Ok(None);
        }
        if let Some(tenant) = self.by_company.get(&company_id) {
            return Ok(Some(tenant.clone()));
        }
        self.lookup(Key::Company(company_id)).await
    }

    /// The tenant whose IdP issuer is `issuer` (for the ACS).
    pub async fn by_issuer(&self, issuer: &str) -> Result<Option<Arc<Tenant>>, LookupError> {
        if issuer.trim().is_empty() {
            return Ok(None);
        }
        if let Some(tenant) = self.by_issuer.get(issuer) {
            return Ok(Some(tenant.clone()));
        }
        self.lookup(Key::Issuer(issuer.to_owned())).await
    }

    /// The single static tenant when exactly one exists and tenant lookup is off (SPEC §4).
    pub fn only_tenant(&self) -> Option<Arc<Tenant>> {
        match (&self.remote, self.by_company.len()) {
            (None, 1) => self.by_company.values().next().cloned(),
            _ => None,
        }
    }

    async fn lookup(&self, key: Key) -> Result<Option<Arc<Tenant>>, LookupError> {
        let Some(remote) = &self.remote else {
            return Ok(None);
        };
        if let Some(answer) = remote.cache.get(&key).await {
            self.metrics.tenant_cache(true);
            return Ok(answer);
        }
        self.metrics.tenant_cache(false);
        let fetch = self.fetch(remote, &key);
        remote
            .cache
            .try_get_with(key.clone(), fetch)
            .await
            .map_err(|e| LookupError::Unavailable(String::clone(&e)))
    }

    /// Asks the panel; `Err` (never cached) for anything but a valid tenant or a 404.
    async fn fetch(&self, remote: &Remote, key: &Key) -> Result<Option<Arc<Tenant>>, String> {
        let url = with_query(&remote.url, &[key.param()]);
        let result = match get(&remote.client, &url, None, LOOKUP_TIMEOUT).await {
            Ok(Some(body)) => self.accept(&body, key),
            Ok(None) => Ok(None),
            Err(reason) => Err(reason),
        };
        if let Err(reason) = &result {
            let (query, value) = key.param();
            tracing::warn!(query, value, reason, "tenant lookup failed");
        }
        result
    }

    /// Validates an answer like a static tenant; one that a static tenant shadows is ignored.
    fn accept(&self, body: &[u8], key: &Key) -> Result<Option<Arc<Tenant>>, String> {
        let record: Record = serde_json::from_slice(body).map_err(|e| json_error(&e))?;
        let tenant = validate(record)?;
        match key {
            Key::Company(id) if *id != tenant.company_id => {
                return Err("answer is for another company_id".to_owned());
            }
            Key::Issuer(issuer) if *issuer != tenant.idp_issuer => {
                return Err("answer is for another idp_issuer".to_owned());
            }
            _ => {}
        }
        let shadowed = self.by_company.contains_key(&tenant.company_id)
            || self.by_issuer.contains_key(&tenant.idp_issuer);
        if shadowed {
            tracing::info!(
                company_id = tenant.company_id,
                "ignoring a looked-up tenant that collides with a static tenant"
            );
            return Ok(None);
        }
        Ok(Some(Arc::new(tenant)))
    }
}

/// The rules `config` applies to a static tenant; reasons never quote the certificate.
fn validate(record: Record) -> Result<Tenant, String> {
    let company_id = record.company_id.to_lowercase();
    if !is_valid_company_id(&company_id) {
        return Err("company_id is not a valid company ID".to_owned());
    }
    if record.idp_issuer.trim().is_empty() {
        return Err("idp_issuer is empty".to_owned());
    }
    let idp_sso_url = http_url(&record.idp_sso_url).map_err(|e| format!("idp_sso_url {e}"))?;
    let idp_slo_url = record
        .idp_slo_url
        .as_deref()
        .map(http_url)
        .transpose()
        .map_err(|e| format!("idp_slo_url {e}"))?;
    let idp_certificates =
        certificates(&record.idp_certificate).map_err(|e| format!("idp_certificate: {e}"))?;
    Ok(Tenant {
        company_id,
        idp_sso_url,
        idp_issuer: record.idp_issuer,
        idp_certificates,
        idp_slo_url,
    })
}

fn http_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s).map_err(|_| "is not a valid URL".to_owned())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("is not an http or https URL".to_owned());
    }
    Ok(url)
}

/// At least one PEM certificate, each a parseable X.509 certificate.
fn certificates(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| "invalid PEM".to_owned())?;
    if certs.is_empty() {
        return Err("no PEM CERTIFICATE block found".to_owned());
    }
    for (i, der) in certs.iter().enumerate() {
        webpki::EndEntityCert::try_from(der)
            .map_err(|_| format!("certificate {} is not a valid X.509 certificate", i + 1))?;
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lookup::testing::{PanelServer, Reply, Seen};

    const STATIC_ISSUER: &str = "http://www.okta.com/exkStatic";

    fn certificate_pem() -> String {
        rcgen::generate_simple_self_signed(vec!["idp.example.com".into()])
            .unwrap()
            .cert
            .pem()
    }

    fn static_tenant(company_id: &str, issuer: &str) -> Tenant {
        Tenant {
            company_id: company_id.to_owned(),
            idp_sso_url: Url::parse("https://static.okta.com/app/sso/saml").unwrap(),
            idp_issuer: issuer.to_owned(),
            idp_certificates: certificates(&certificate_pem()).unwrap(),
            idp_slo_url: None,
        }
    }

    fn record(company_id: &str, issuer: &str, certificate: &str) -> String {
        serde_json::json!({
            "company_id": company_id,
            "idp_sso_url": format!("https://{company_id}.okta.com/app/sso/saml"),
            "idp_issuer": issuer,
            "idp_certificate": certificate,
        })
        .to_string()
    }

    /// Answers `?company_id=X` and `?idp_issuer=http://www.okta.com/X` with tenant X for
    /// X in `known`, and 404 otherwise.
    fn panel(known: &'static [&'static str]) -> impl Fn(&Seen) -> Reply + Send + Sync {
        let pem = certificate_pem();
        move |seen: &Seen| {
            let company = seen.param("company_id").or_else(|| {
                seen.param("idp_issuer")
                    .and_then(|i| i.strip_prefix("http://www.okta.com/"))
            });
            match company.filter(|c| known.contains(c)) {
                Some(c) => Reply::json(&record(c, &format!("http://www.okta.com/{c}"), &pem)),
                None => Reply::status(404),
            }
        }
    }

    fn directory(server: &PanelServer, statics: Vec<Tenant>) -> (TenantDirectory, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::new());
        let config = TenantLookupConfig {
            url: server.url("/internal/tenants"),
            cache_ttl: Duration::from_secs(3600),
        };
        let directory = TenantDirectory::new(
            statics,
            Some(&config),
            crate::proxy::client(&[]),
            metrics.clone(),
        );
        (directory, metrics)
    }

    fn unavailable(result: Result<Option<Arc<Tenant>>, LookupError>) -> String {
        match result {
            Err(LookupError::Unavailable(reason)) => reason,
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn by_company_is_looked_up_validated_and_cached() {
        let server = PanelServer::start(panel(&["globex"])).await;
        let (directory, metrics) = directory(&server, Vec::new());

        let tenant = directory.by_company("GlobEx").await.unwrap().unwrap();
        assert_eq!(tenant.company_id, "globex");
        assert_eq!(tenant.idp_issuer, "http://www.okta.com/globex");
        assert_eq!(
            tenant.idp_sso_url.as_str(),
            "https://globex.okta.com/app/sso/saml"
        );
        assert_eq!(tenant.idp_certificates.len(), 1);
        assert_eq!(tenant.idp_slo_url, None);
        let again = directory.by_company("globex").await.unwrap().unwrap();
        assert!(Arc::ptr_eq(&tenant, &again));

        let requests = server.requests();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].path, "/internal/tenants");
        assert_eq!(requests[0].query, "company_id=globex");
        assert_eq!(requests[0].authorization, None);
        let text = metrics.encode();
        assert!(text.contains(r#"samlgate_lookup_cache_total{cache="tenant",result="miss"} 1"#));
        assert!(text.contains(r#"samlgate_lookup_cache_total{cache="tenant",result="hit"} 1"#));
    }

    #[tokio::test]
    async fn by_issuer_is_looked_up_and_cached() {
        let server = PanelServer::start(panel(&["globex"])).await;
        let (directory, _) = directory(&server, Vec::new());
        let issuer = "http://www.okta.com/globex";
        let tenant = directory.by_issuer(issuer).await.unwrap().unwrap();
        assert_eq!(tenant.company_id, "globex");
        directory.by_issuer(issuer).await.unwrap().unwrap();
        let requests = server.requests();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].param("idp_issuer"), Some(issuer));
        assert_eq!(requests[0].params.len(), 1);
    }

    #[tokio::test]
    async fn not_found_is_cached() {
        let server = PanelServer::start(panel(&[])).await;
        let (directory, _) = directory(&server, Vec::new());
        assert!(directory.by_company("nobody").await.unwrap().is_none());
        assert!(directory.by_company("nobody").await.unwrap().is_none());
        assert!(directory
            .by_issuer("http://www.okta.com/nobody")
            .await
            .unwrap()
            .is_none());
        assert!(directory
            .by_issuer("http://www.okta.com/nobody")
            .await
            .unwrap()
            .is_none());
        assert_eq!(server.requests().len(), 2);
    }

    #[tokio::test]
    async fn answers_expire_after_cache_ttl() {
        let server = PanelServer::start(panel(&["globex"])).await;
        let metrics = Arc::new(Metrics::new());
        let config = TenantLookupConfig {
            url: server.url("/"),
            cache_ttl: Duration::from_millis(300),
        };
        let directory = TenantDirectory::new(
            Vec::new(),
            Some(&config),
            crate::proxy::client(&[]),
            metrics,
        );
        directory.by_company("globex").await.unwrap().unwrap();
        directory.by_company("nobody").await.unwrap();
        directory.by_company("globex").await.unwrap().unwrap();
        assert_eq!(server.requests().len(), 2);
        tokio::time::sleep(Duration::from_millis(450)).await;
        directory.by_company("globex").await.unwrap().unwrap();
        directory.by_company("nobody").await.unwrap();
        assert_eq!(server.requests().len(), 4);
    }

    #[tokio::test]
    async fn invalid_company_ids_and_empty_issuers_ask_nobody() {
        let server = PanelServer::start(panel(&["globex"])).await;
        let (directory, _) = directory(&server, Vec::new());
        for id in ["", "-acme", "ac me", "acme/../x", &"a".repeat(64)] {
            assert!(directory.by_company(id).await.unwrap().is_none(), "{id:?}");
        }
        assert!(directory.by_issuer("").await.unwrap().is_none());
        assert!(directory.by_issuer("  ").await.unwrap().is_none());
        assert_eq!(server.requests().len(), 0);
    }

    #[tokio::test]
    async fn static_tenants_win_without_a_request() {
        let server = PanelServer::start(panel(&["acme"])).await;
        let (directory, metrics) = directory(&server, vec![static_tenant("acme", STATIC_ISSUER)]);
        let tenant = directory.by_company("ACME").await.unwrap().unwrap();
        assert_eq!(tenant.idp_issuer, STATIC_ISSUER);
        let tenant = directory.by_issuer(STATIC_ISSUER).await.unwrap().unwrap();
        assert_eq!(tenant.company_id, "acme");
        assert_eq!(server.requests().len(), 0);
        assert!(!metrics.encode().contains("cache=\"tenant\""));
    }

    #[tokio::test]
    async fn looked_up_tenants_colliding_with_static_ones_are_ignored() {
        let pem = certificate_pem();
        let server = PanelServer::start(move |seen| match seen.param("company_id") {
            // Claims the static tenant's issuer under another company ID.
            Some("impostor") => Reply::json(&record("impostor", STATIC_ISSUER, &pem)),
            // Claims the static tenant's company ID under another issuer.
            _ => Reply::json(&record("acme", "http://www.okta.com/other", &pem)),
        })
        .await;
        let (directory, _) = directory(&server, vec![static_tenant("acme", STATIC_ISSUER)]);
        assert!(directory.by_company("impostor").await.unwrap().is_none());
        assert!(directory
            .by_issuer("http://www.okta.com/other")
            .await
            .unwrap()
            .is_none());
        // The collision is a definite answer for the lifetime of the static config.
        directory.by_company("impostor").await.unwrap();
        assert_eq!(server.requests().len(), 2);
    }

    #[tokio::test]
    async fn invalid_answers_are_unavailable_and_not_cached() {
        let pem = certificate_pem();
        let garbage_der = "-----BEGIN CERTIFICATE-----\nAAECAwQF\n-----END CERTIFICATE-----\n";
        let slo = |url: &str| {
            let mut value: serde_json::Value =
                serde_json::from_str(&record("globex", "http://www.okta.com/globex", &pem))
                    .unwrap();
            value["idp_slo_url"] = url.into();
            value.to_string()
        };
        let cases = [
            ("status", Reply::status(500), "status 500"),
            (
                "garbage",
                Reply::json("<html>"),
                "invalid JSON (syntax error",
            ),
            (
                "missing field",
                Reply::json(r#"{"company_id": "globex"}"#),
                "invalid JSON (unexpected fields",
            ),
            (
                "no certificate",
                Reply::json(&record(
                    "globex",
                    "http://www.okta.com/globex",
                    "not a certificate",
                )),
                "idp_certificate: no PEM CERTIFICATE block found",
            ),
            (
                "not X.509",
                Reply::json(&record("globex", "http://www.okta.com/globex", garbage_der)),
                "idp_certificate: certificate 1 is not a valid X.509 certificate",
            ),
            (
                "other company",
                Reply::json(&record("initech", "http://www.okta.com/globex", &pem)),
                "answer is for another company_id",
            ),
            (
                "bad company",
                Reply::json(&record("glob ex", "http://www.okta.com/globex", &pem)),
                "company_id is not a valid company ID",
            ),
            (
                "empty issuer",
                Reply::json(&record("globex", "", &pem)),
                "idp_issuer is empty",
            ),
            (
                "slo scheme",
                Reply::json(&slo("javascript:alert(1)")),
                "idp_slo_url is not an http or https URL",
            ),
        ];
        for (name, reply, expected) in cases {
            let reply = std::sync::Mutex::new(Some(reply));
            let server = PanelServer::start(move |_| {
                reply.lock().unwrap().take().unwrap_or(Reply::status(503))
            })
            .await;
            let (directory, _) = directory(&server, Vec::new());
            let reason = unavailable(directory.by_company("globex").await);
            assert!(reason.starts_with(expected), "{name}: {reason}");
            assert!(!reason.contains("BEGIN"), "{name}: {reason}");
            // Not cached: the next call asks again (and gets the 503).
            assert_eq!(
                unavailable(directory.by_company("globex").await),
                "status 503"
            );
            assert_eq!(server.requests().len(), 2, "{name}");
        }
    }

    #[tokio::test]
    async fn by_issuer_rejects_an_answer_for_another_issuer() {
        let pem = certificate_pem();
        let server = PanelServer::start(move |_| {
            Reply::json(&record("globex", "http://www.okta.com/globex", &pem))
        })
        .await;
        let (directory, _) = directory(&server, Vec::new());
        let reason = unavailable(directory.by_issuer("http://www.okta.com/GLOBEX").await);
        assert_eq!(reason, "answer is for another idp_issuer");
    }

    #[tokio::test]
    async fn only_tenant_needs_one_static_tenant_and_no_lookup() {
        let client = crate::proxy::client(&[]);
        let metrics = Arc::new(Metrics::new());
        let one = TenantDirectory::new(
            vec![static_tenant("acme", STATIC_ISSUER)],
            None,
            client.clone(),
            metrics.clone(),
        );
        assert_eq!(one.only_tenant().unwrap().company_id, "acme");
        // Without tenant lookup nothing else is known, and nothing is asked.
        assert!(one.by_company("globex").await.unwrap().is_none());
        assert!(one
            .by_issuer("http://www.okta.com/globex")
            .await
            .unwrap()
            .is_none());

        let two = TenantDirectory::new(
            vec![
                static_tenant("acme", STATIC_ISSUER),
                static_tenant("globex", "http://www.okta.com/globex"),
            ],
            None,
            client.clone(),
            metrics.clone(),
        );
        assert!(two.only_tenant().is_none());

        let config = TenantLookupConfig {
            url: Url::parse("http://127.0.0.1:9/").unwrap(),
            cache_ttl: Duration::from_secs(60),
        };
        let with_lookup = TenantDirectory::new(
            vec![static_tenant("acme", STATIC_ISSUER)],
            Some(&config),
            client,
            metrics,
        );
        assert!(with_lookup.only_tenant().is_none());
    }
}
