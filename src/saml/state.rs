//! The request-state cookie: which AuthnRequests this browser has outstanding.
//!
//! Sealed with the session keys under its own purpose, so it works on any replica
//! and cannot be opened as a session. Several entries let parallel logins in
//! different tabs each complete.

use std::time::Duration;

use http::{HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};

use crate::session::Sealer;

const PURPOSE: &[u8] = b"samlgate request-state v1";
/// Outstanding requests kept per browser; older ones fall off.
const MAX_PENDING: usize = 8;
/// How long a user may take at the IdP.
pub(super) const REQUEST_TTL: Duration = Duration::from_secs(15 * 60);

/// One AuthnRequest this browser is waiting on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Pending {
    pub id: String,
    pub company_id: String,
    pub return_to: String,
    pub expires_at: i64,
}

/// Reads and writes the request-state cookie.
pub(super) struct RequestState {
    sealer: Sealer,
    name: String,
    secure: bool,
}

impl RequestState {
    pub fn new(sealer: Sealer, name: String, secure: bool) -> Self {
        Self {
            sealer,
            name,
            secure,
        }
    }

    /// The unexpired entries this browser carries.
    pub fn read(&self, headers: &HeaderMap, now: i64) -> Vec<Pending> {
        crate::session::cookies(headers, &self.name)
            .filter_map(|value| self.sealer.open(PURPOSE, value))
            .filter_map(|plain| serde_json::from_slice::<Vec<Pending>>(&plain).ok())
            .flatten()
            .filter(|p| p.expires_at > now)
            .collect()
    }

    /// A `Set-Cookie` carrying `pending` (newest last, at most [`MAX_PENDING`]), or
    /// clearing the cookie when nothing is left.
    pub fn write(&self, mut pending: Vec<Pending>) -> HeaderValue {
        let excess = pending.len().saturating_sub(MAX_PENDING);
        pending.drain(..excess);
        // The IdP answers with a cross-site POST: on https the cookie must be
        // SameSite=None to come back; browsers refuse None without Secure, so plain
        // http stays Lax and works only where the IdP is same-site.
        let same_site = if self.secure {
            "SameSite=None; Secure"
        } else {
            "SameSite=Lax"
        };
        let cookie = if pending.is_empty() {
            format!("{}=; Path=/; HttpOnly; {same_site}; Max-Age=0", self.name)
        } else {
            let plain = serde_json::to_vec(&pending).expect("pending requests serialise");
            format!(
                "{}={}; Path=/; HttpOnly; {same_site}; Max-Age={}",
                self.name,
                self.sealer.seal(PURPOSE, &plain),
                REQUEST_TTL.as_secs()
            )
        };
        HeaderValue::from_str(&cookie).expect("cookie name validated, value base64url")
    }
}
