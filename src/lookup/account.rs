//! Account lookup (SPEC §5): which panel account a NameID of a company belongs to.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::future::Cache;
use moka::Expiry;
use url::Url;

use super::{get, json_error, with_query, LookupError, CACHE_CAPACITY};
use crate::admin::Metrics;
use crate::config::{AccountLookupConfig, Secret};
use crate::proxy::HttpClient;

/// What the panel says about a NameID.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Account {
    /// The panel's account ID.
    pub account_id: String,
    /// E-mail address, when the panel has one.
    pub email: Option<String>,
    /// Display name, when the panel has one.
    pub name: Option<String>,
    /// Roles in the panel.
    #[serde(default)]
    pub roles: Vec<String>,
}

/// `(company_id, name_id)` exactly as given: NameIDs are case-sensitive.
type Key = (String, String);

/// A cached answer: `None` is a 404.
type Answer = Option<Account>;

/// Found accounts live for `cache_ttl`, 404s for `negative_ttl` only, so a freshly
/// synchronised account is let in soon while known accounts spare the panel.
struct AnswerExpiry {
    found: Duration,
    not_found: Duration,
}

impl Expiry<Key, Answer> for AnswerExpiry {
    fn expire_after_create(&self, _: &Key, answer: &Answer, _: Instant) -> Option<Duration> {
        Some(if answer.is_some() {
            self.found
        } else {
            self.not_found
        })
    }
}

/// The panel's account lookup API behind a cache.
pub struct AccountLookup {
    url: Url,
    token: Option<Secret>,
    timeout: Duration,
    client: HttpClient,
    cache: Cache<Key, Answer>,
    metrics: Arc<Metrics>,
}

impl AccountLookup {
    /// A lookup against `config.url`, sharing the pooled `client`.
    pub fn new(config: &AccountLookupConfig, client: HttpClient, metrics: Arc<Metrics>) -> Self {
        let cache = Cache::builder()
            .max_capacity(CACHE_CAPACITY)
            .expire_after(AnswerExpiry {
                found: config.cache_ttl,
                not_found: config.negative_ttl,
            })
            .build();
        Self {
            url: config.url.clone(),
            token: config.token.clone(),
            timeout: config.timeout,
            client,
            cache,
            metrics,
        }
    }

    /// The account of `name_id` in `company_id`: cached, or `GET {url}?company_id=…&name_id=…`.
    pub async fn find(&self, company_id: &str, name_id: &str) -> Result<Account, LookupError> {
        let key = (company_id.to_owned(), name_id.to_owned());
        let answer = match self.cache.get(&key).await {
            Some(answer) => {
                self.metrics.account_cache(true);
                answer
            }
            None => {
                self.metrics.account_cache(false);
                self.cache
                    .try_get_with(key, self.fetch(company_id, name_id))
                    .await
                    .map_err(|e| LookupError::Unavailable(String::clone(&e)))?
            }
        };
        answer.ok_or(LookupError::NotFound)
    }

    /// Asks the panel; `Err` (never cached) for anything but a found account or a 404.
    async fn fetch(&self, company_id: &str, name_id: &str) -> Result<Answer, String> {
        let url = with_query(
            &self.url,
            &[("company_id", company_id), ("name_id", name_id)],
        );
        let result = match get(&self.client, &url, self.token.as_ref(), self.timeout).await {
            Ok(Some(body)) => parse(&body).map(Some),
            Ok(None) => Ok(None),
            Err(reason) => Err(reason),
        };
        if let Err(reason) = &result {
            tracing::warn!(company_id, name_id, reason, "account lookup failed");
        }
        result
    }
}

fn parse(body: &[u8]) -> Result<Account, String> {
    let account: Account = serde_json::from_slice(body).map_err(|e| json_error(&e))?;
    // An empty ID would sign an identity that names nobody.
    if account.account_id.is_empty() {
        return Err("empty account_id".to_owned());
    }
    Ok(account)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::future::join_all;

    use super::*;
    use crate::lookup::testing::{PanelServer, Reply};

    const ALICE: &str = r#"{"account_id": "u-123", "email": "alice@acme.com", "name": "Alice", "roles": ["admin"]}"#;

    fn config(server: &PanelServer, path: &str) -> AccountLookupConfig {
        AccountLookupConfig {
            url: server.url(path),
            token: None,
            timeout: Duration::from_millis(300),
            cache_ttl: Duration::from_secs(3600),
            negative_ttl: Duration::from_secs(3600),
        }
    }

    fn lookup(config: &AccountLookupConfig) -> (AccountLookup, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::new());
        let lookup = AccountLookup::new(config, crate::proxy::client(&[]), metrics.clone());
        (lookup, metrics)
    }

    fn alice() -> Account {
        Account {
            account_id: "u-123".to_owned(),
            email: Some("alice@acme.com".to_owned()),
            name: Some("Alice".to_owned()),
            roles: vec!["admin".to_owned()],
        }
    }

    fn unavailable(result: Result<Account, LookupError>) -> String {
        match result {
            Err(LookupError::Unavailable(reason)) => reason,
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn found_account_is_parsed_and_cached() {
        let server = PanelServer::start(|_| Reply::json(ALICE)).await;
        let (lookup, metrics) = lookup(&config(&server, "/api/accounts"));

        assert_eq!(lookup.find("acme", "alice@acme.com").await, Ok(alice()));
        assert_eq!(lookup.find("acme", "alice@acme.com").await, Ok(alice()));
        assert_eq!(server.requests().len(), 1);
        let seen = &server.requests()[0];
        assert_eq!(seen.path, "/api/accounts");
        assert_eq!(seen.param("company_id"), Some("acme"));
        assert_eq!(seen.param("name_id"), Some("alice@acme.com"));
        assert_eq!(seen.authorization, None);

        let text = metrics.encode();
        assert!(text.contains(r#"samlgate_lookup_cache_total{cache="account",result="miss"} 1"#));
        assert!(text.contains(r#"samlgate_lookup_cache_total{cache="account",result="hit"} 1"#));
    }

    #[tokio::test]
    async fn optional_fields_may_be_missing() {
        let server = PanelServer::start(|_| Reply::json(r#"{"account_id": "u-9"}"#)).await;
        let (lookup, _) = lookup(&config(&server, "/"));
        let account = lookup.find("acme", "bob").await.unwrap();
        assert_eq!(
            account,
            Account {
                account_id: "u-9".to_owned(),
                email: None,
                name: None,
                roles: Vec::new(),
            }
        );
    }

    #[tokio::test]
    async fn cache_key_is_case_sensitive_and_per_company() {
        let server = PanelServer::start(|_| Reply::json(ALICE)).await;
        let (lookup, _) = lookup(&config(&server, "/"));
        for (company, name_id) in [("acme", "alice"), ("acme", "Alice"), ("globex", "alice")] {
            lookup.find(company, name_id).await.unwrap();
        }
        lookup.find("acme", "Alice").await.unwrap();
        assert_eq!(server.requests().len(), 3);
    }

    #[tokio::test]
    async fn not_found_is_cached_for_negative_ttl_only() {
        let server = PanelServer::start(|r| match r.param("name_id") {
            Some("alice") => Reply::json(ALICE),
            _ => Reply::status(404),
        })
        .await;
        let mut config = config(&server, "/");
        config.negative_ttl = Duration::from_millis(300);
        let (lookup, _) = lookup(&config);

        assert_eq!(
            lookup.find("acme", "ghost").await,
            Err(LookupError::NotFound)
        );
        assert_eq!(lookup.find("acme", "alice").await, Ok(alice()));
        assert_eq!(
            lookup.find("acme", "ghost").await,
            Err(LookupError::NotFound)
        );
        assert_eq!(server.requests().len(), 2);

        tokio::time::sleep(Duration::from_millis(450)).await;
        assert_eq!(
            lookup.find("acme", "ghost").await,
            Err(LookupError::NotFound)
        );
        // The found account outlives negative_ttl: it uses cache_ttl.
        assert_eq!(lookup.find("acme", "alice").await, Ok(alice()));
        assert_eq!(server.requests().len(), 3);
        assert_eq!(server.requests()[2].param("name_id"), Some("ghost"));
    }

    #[tokio::test]
    async fn failures_are_unavailable_and_not_cached() {
        type Case = (&'static str, fn() -> Reply, &'static str);
        let cases: [Case; 7] = [
            ("status", || Reply::status(500), "status 500"),
            ("redirect", || Reply::status(302), "status 302"),
            ("garbage", || Reply::json("{not json"), "invalid JSON"),
            (
                "no id",
                || Reply::json(r#"{"email": "a@b.c"}"#),
                "invalid JSON",
            ),
            (
                "empty id",
                || Reply::json(r#"{"account_id": ""}"#),
                "empty account_id",
            ),
            (
                "slow",
                || Reply::slow(Duration::from_secs(2), ALICE),
                "timeout after 300ms",
            ),
            ("stalled body", Reply::stalled_body, "timeout after 300ms"),
        ];
        for (name, reply, expected) in cases {
            let server = PanelServer::start(move |_| reply()).await;
            let (lookup, metrics) = lookup(&config(&server, "/"));
            let reason = unavailable(lookup.find("acme", "alice").await);
            assert!(reason.starts_with(expected), "{name}: {reason}");
            unavailable(lookup.find("acme", "alice").await);
            assert_eq!(server.requests().len(), 2, "{name}");
            let text = metrics.encode();
            assert!(
                text.contains(r#"samlgate_lookup_cache_total{cache="account",result="miss"} 2"#),
                "{name}"
            );
        }
    }

    #[tokio::test]
    async fn oversized_body_is_unavailable() {
        let big = format!(
            r#"{{"account_id": "u-1", "name": "{}"}}"#,
            "x".repeat(70_000)
        );
        let server = PanelServer::start(move |_| Reply::json(&big)).await;
        let (lookup, _) = lookup(&config(&server, "/"));
        let reason = unavailable(lookup.find("acme", "alice").await);
        assert_eq!(reason, "response body larger than 65536 bytes");
    }

    #[tokio::test]
    async fn connection_refused_is_unavailable() {
        let server = PanelServer::start(|_| Reply::json(ALICE)).await;
        let mut config = config(&server, "/");
        // A port that was just free and has no listener any more.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        config
            .url
            .set_port(Some(closed.local_addr().unwrap().port()))
            .unwrap();
        drop(closed);
        let (lookup, _) = lookup(&config);
        let reason = unavailable(lookup.find("acme", "alice").await);
        assert!(reason.starts_with("request failed"), "{reason}");
    }

    #[tokio::test]
    async fn concurrent_misses_make_one_request() {
        let server = PanelServer::start(|_| Reply::slow(Duration::from_millis(200), ALICE)).await;
        let mut config = config(&server, "/");
        config.timeout = Duration::from_secs(5);
        let (lookup, _) = lookup(&config);
        let results = join_all((0..10).map(|_| lookup.find("acme", "alice"))).await;
        assert!(results.iter().all(|r| r == &Ok(alice())), "{results:?}");
        assert_eq!(server.requests().len(), 1);
    }

    #[tokio::test]
    async fn concurrent_failures_make_one_request_and_all_fail() {
        let server = PanelServer::start(|_| Reply::slow(Duration::from_millis(200), "{")).await;
        let mut config = config(&server, "/");
        config.timeout = Duration::from_secs(5);
        let (lookup, _) = lookup(&config);
        let results = join_all((0..5).map(|_| lookup.find("acme", "alice"))).await;
        assert_eq!(server.requests().len(), 1);
        for result in results {
            assert!(unavailable(result).starts_with("invalid JSON"));
        }
        lookup.find("acme", "alice").await.unwrap_err();
        assert_eq!(server.requests().len(), 2);
    }

    #[tokio::test]
    async fn bearer_token_is_sent() {
        let server = PanelServer::start(|_| Reply::json(ALICE)).await;
        let mut config = config(&server, "/");
        config.token = Some(Secret::new("s3cret-token".to_owned()));
        let (lookup, _) = lookup(&config);
        lookup.find("acme", "alice").await.unwrap();
        assert_eq!(
            server.requests()[0].authorization.as_deref(),
            Some("Bearer s3cret-token")
        );
    }

    #[tokio::test]
    async fn special_characters_reach_the_panel_unchanged() {
        let server = PanelServer::start(|_| Reply::json(ALICE)).await;
        let mut config = config(&server, "/api/accounts");
        config.url.set_query(Some("version=2"));
        let (lookup, _) = lookup(&config);
        let name_ids = [
            "alice+x@acme.com",
            "a b&c=d",
            "100%25 #frag?q",
            "CN=Ünïcødé/ö,O=Acme;x",
        ];
        for name_id in name_ids {
            lookup.find("acme-2", name_id).await.unwrap();
        }
        let requests = server.requests();
        assert_eq!(requests.len(), name_ids.len());
        for (seen, name_id) in requests.iter().zip(name_ids) {
            assert_eq!(seen.path, "/api/accounts");
            assert_eq!(seen.param("version"), Some("2"));
            assert_eq!(seen.param("company_id"), Some("acme-2"));
            assert_eq!(seen.param("name_id"), Some(name_id));
            assert_eq!(seen.params.len(), 3, "{:?}", seen.params);
        }
        assert!(
            requests[0].query.ends_with("name_id=alice%2Bx%40acme.com"),
            "{}",
            requests[0].query
        );
    }
}
