//! One-time state shared by logins: seen Assertion IDs and revoked sessions.
//!
//! In memory (moka, bounded, each entry kept until its own expiry). Entries are
//! keyed by kind so an Assertion ID can never collide with a session id.

use std::time::{Duration, Instant};

use moka::future::Cache;
use moka::Expiry;

/// Most entries kept; past that the oldest are evicted early.
const CAPACITY: u64 = 1_000_000;

/// Why the store could not answer.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The shared store is unreachable.
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
    memory: Cache<String, Duration>,
}

impl Default for ReplayStore {
    fn default() -> Self {
        Self::memory()
    }
}

impl ReplayStore {
    /// An in-process store.
    pub fn memory() -> Self {
        Self {
            memory: Cache::builder()
                .max_capacity(CAPACITY)
                .expire_after(UntilExpiry)
                .build(),
        }
    }

    /// Records the Assertion `id` until `ttl` from now; false if it was already there.
    pub async fn first_use(&self, id: &str, ttl: Duration) -> Result<bool, ReplayError> {
        let entry = self
            .memory
            .entry(format!("assertion:{id}"))
            .or_insert(ttl.max(Duration::from_secs(1)))
            .await;
        Ok(entry.is_fresh())
    }

    /// Revokes session `sid` for `ttl` (its remaining lifetime).
    pub async fn revoke(&self, sid: &str, ttl: Duration) -> Result<(), ReplayError> {
        self.memory
            .insert(format!("session:{sid}"), ttl.max(Duration::from_secs(1)))
            .await;
        Ok(())
    }

    /// Whether session `sid` was revoked.
    pub async fn is_revoked(&self, sid: &str) -> Result<bool, ReplayError> {
        Ok(self.memory.contains_key(&format!("session:{sid}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(store.is_revoked("x").await.unwrap());
        assert!(!store.is_revoked("y").await.unwrap());
        assert!(store.first_use("x", Duration::from_secs(60)).await.unwrap());
    }
}
