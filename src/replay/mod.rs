//! One-time state shared by logins: seen Assertion IDs and revoked sessions.
//!
//! Always kept in memory (moka, bounded, each entry until its own expiry); with
//! `replay.redis_url` also in Redis, so every replica refuses an Assertion that
//! any replica accepted (`SET NX PX`) and honours every logout. Shared keys are
//! hashed and prefixed by kind, so an Assertion ID can never collide with a session
//! id; in memory, revocations are kept apart from Assertion IDs, under the plain
//! session id (see `memory_key`).

use std::time::{Duration, Instant};

use moka::future::Cache;
use moka::Expiry;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sha2::{Digest as _, Sha256};

use crate::config::Secret;

/// Most entries kept in memory; past that the oldest are evicted early.
const CAPACITY: u64 = 1_000_000;
/// How long a "not revoked" answer from Redis is trusted before asking again.
/// Bounds the per-request cost; a logout reaches other replicas within it.
const REVOCATION_RECHECK: Duration = Duration::from_secs(5);
/// Redis must answer quickly: a login waits on it.
const REDIS_TIMEOUT: Duration = Duration::from_millis(1000);

/// Why the store could not answer.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The Redis URL could not be used.
    #[error("invalid Redis URL")]
    InvalidUrl,
    /// The shared store is unreachable or failed.
    #[error("replay store unavailable: {0}")]
    Unavailable(String),
}

struct UntilExpiry;

impl Expiry<String, Duration> for UntilExpiry {
    fn expire_after_create(&self, _key: &String, ttl: &Duration, _at: Instant) -> Option<Duration> {
        Some(*ttl)
    }
}

/// The store of one-time facts.
#[derive(Clone)]
pub struct ReplayStore {
    /// Seen Assertion IDs.
    assertions: Cache<String, Duration>,
    // Apart from the Assertion IDs: a tenant that runs its own IdP could otherwise
    // push a logout out of memory with enough logins of its own.
    /// Revoked sessions, and "not revoked" answers from Redis.
    sessions: Cache<String, Duration>,
    redis: Option<ConnectionManager>,
}

impl ReplayStore {
    /// An in-process store.
    pub fn memory() -> Self {
        Self::with_capacity(CAPACITY)
    }

    fn with_capacity(capacity: u64) -> Self {
        let cache = || {
            Cache::builder()
                .max_capacity(capacity)
                // TinyLFU may refuse to admit a new key when full; a replay cache
                // must always remember the newest Assertion, evicting the oldest.
                .eviction_policy(moka::policy::EvictionPolicy::lru())
                .expire_after(UntilExpiry)
                .build()
        };
        Self {
            assertions: cache(),
            sessions: cache(),
            redis: None,
        }
    }

    /// A store shared through Redis when `redis_url` is set. Connects lazily, so a
    /// Redis outage at start-up only fails logins, not the process.
    pub fn new(redis_url: Option<&Secret>) -> Result<Self, ReplayError> {
        let mut store = Self::memory();
        if let Some(url) = redis_url {
            let client = redis::Client::open(url.expose()).map_err(|_| ReplayError::InvalidUrl)?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(REDIS_TIMEOUT))
                .set_response_timeout(Some(REDIS_TIMEOUT))
                .set_number_of_retries(1);
            let manager = ConnectionManager::new_lazy_with_config(client, config)
                .map_err(|e| ReplayError::Unavailable(format!("{:?}", e.kind())))?;
            store.redis = Some(manager);
        }
        Ok(store)
    }

    /// Records Assertion `id` for `ttl`; `Ok(false)` if any replica saw it before.
    pub async fn first_use(&self, id: &str, ttl: Duration) -> Result<bool, ReplayError> {
        let key = key("assertion", id);
        let ttl = ttl.max(Duration::from_secs(1));
        if let Some(redis) = &self.redis {
            let mut redis = redis.clone();
            let set: Option<String> = redis::cmd("SET")
                .arg(&key)
                .arg(1)
                .arg("NX")
                .arg("PX")
                .arg(ttl.as_millis() as u64)
                .query_async(&mut redis)
                .await
                .map_err(unavailable)?;
            if set.is_none() {
                return Ok(false);
            }
        }
        Ok(self.assertions.entry(key).or_insert(ttl).await.is_fresh())
    }

    /// Revokes session `sid` for `ttl` (its remaining lifetime), everywhere.
    pub async fn revoke(&self, sid: &str, ttl: Duration) -> Result<(), ReplayError> {
        let ttl = ttl.max(Duration::from_secs(1));
        self.sessions.insert(memory_key("revoked", sid), ttl).await;
        if let Some(redis) = &self.redis {
            let mut redis = redis.clone();
            redis::cmd("SET")
                .arg(key("revoked", sid))
                .arg(1)
                .arg("PX")
                .arg(ttl.as_millis() as u64)
                .query_async::<()>(&mut redis)
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    /// Whether session `sid` was revoked. With Redis down an established session
    /// keeps working (logins fail closed instead); the error says so to the caller.
    /// `lifetime` is how long the session has left: a revocation learned from Redis is
    /// remembered that long, so a Redis outage cannot bring a logged-out session back.
    pub async fn is_revoked(&self, sid: &str, lifetime: Duration) -> Result<bool, ReplayError> {
        // Runs on every proxied request: the memory keys are plain (a sid is ours,
        // short and authenticated), and the hashed Redis key is only built to ask Redis.
        if self.sessions.contains_key(&memory_key("revoked", sid)) {
            return Ok(true);
        }
        let Some(redis) = &self.redis else {
            return Ok(false);
        };
        let checked = memory_key("revocation-checked", sid);
        if self.sessions.contains_key(&checked) {
            return Ok(false);
        }
        // Boxed: the Redis round trip's future would otherwise make every request's
        // future (and so every connection) larger.
        Box::pin(self.ask_redis_revoked(redis, sid, checked, lifetime)).await
    }

    async fn ask_redis_revoked(
        &self,
        redis: &ConnectionManager,
        sid: &str,
        checked: String,
        lifetime: Duration,
    ) -> Result<bool, ReplayError> {
        let mut redis = redis.clone();
        let revoked: bool = redis::cmd("EXISTS")
            .arg(key("revoked", sid))
            .query_async(&mut redis)
            .await
            .map_err(unavailable)?;
        if revoked {
            let lifetime = lifetime.max(Duration::from_secs(1));
            self.sessions
                .insert(memory_key("revoked", sid), lifetime)
                .await;
        } else {
            self.sessions.insert(checked, REVOCATION_RECHECK).await;
        }
        Ok(revoked)
    }
}

/// The shared (Redis) key: hashed, so any id fits and kinds never collide.
fn key(kind: &str, id: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(id.as_bytes());
    let mut key = String::with_capacity(10 + kind.len() + 64);
    key.push_str("samlgate:");
    key.push_str(kind);
    key.push(':');
    for byte in digest {
        key.push(char::from(HEX[usize::from(byte >> 4)]));
        key.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    key
}

/// A key of the in-memory map that is never a [`key`] (those start with `samlgate:`).
fn memory_key(kind: &str, id: &str) -> String {
    // Not `format!`: this runs on every proxied request.
    let mut key = String::with_capacity(kind.len() + 1 + id.len());
    key.push_str(kind);
    key.push(':');
    key.push_str(id);
    key
}

fn unavailable(error: redis::RedisError) -> ReplayError {
    ReplayError::Unavailable(format!("{:?}", error.kind()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_prefixed_lowercase_hex_sha256() {
        // Replicas of different versions share Redis: the key format must not drift.
        assert_eq!(
            key("revoked", "x"),
            "samlgate:revoked:2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"
        );
    }

    #[tokio::test]
    async fn an_assertion_id_is_accepted_once_until_it_expires() {
        let store = ReplayStore::memory();
        assert!(store.first_use("a", Duration::from_secs(1)).await.unwrap());
        assert!(!store.first_use("a", Duration::from_secs(1)).await.unwrap());
        assert!(store.first_use("b", Duration::from_secs(1)).await.unwrap());
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert!(store.first_use("a", Duration::from_secs(1)).await.unwrap());
    }

    #[tokio::test]
    async fn sessions_and_assertions_do_not_collide() {
        let store = ReplayStore::memory();
        store.revoke("x", Duration::from_secs(60)).await.unwrap();
        assert!(store
            .is_revoked("x", Duration::from_secs(60))
            .await
            .unwrap());
        assert!(!store
            .is_revoked("y", Duration::from_secs(60))
            .await
            .unwrap());
        assert!(store.first_use("x", Duration::from_secs(60)).await.unwrap());
    }

    #[tokio::test]
    async fn logins_cannot_push_a_logout_out_of_memory() {
        let store = ReplayStore::with_capacity(10);
        store.revoke("s", Duration::from_secs(60)).await.unwrap();
        for i in 0..100 {
            let id = format!("assertion-{i}");
            assert!(store.first_use(&id, Duration::from_secs(60)).await.unwrap());
        }
        store.assertions.run_pending_tasks().await;
        store.sessions.run_pending_tasks().await;
        assert!(store.assertions.entry_count() <= 10, "the bound holds");
        assert!(store
            .is_revoked("s", Duration::from_secs(60))
            .await
            .unwrap());
    }

    #[tokio::test]
    async fn an_unreachable_redis_fails_closed_for_logins() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = Secret::new(format!("redis://127.0.0.1:{port}/0"));
        let store = ReplayStore::new(Some(&url)).unwrap();
        assert!(matches!(
            store.first_use("a", Duration::from_secs(5)).await,
            Err(ReplayError::Unavailable(_))
        ));
        assert!(store
            .is_revoked("s", Duration::from_secs(60))
            .await
            .is_err());
    }
}
