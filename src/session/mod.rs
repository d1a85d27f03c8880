//! Sealed session cookies: an AEAD over the session, several keys for rotation.

mod key;
mod seal;

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};

use crate::config::SessionConfig;

pub use key::{SessionKey, SessionKeyError};
pub use seal::{Sealer, MAX_SEALED_LEN};

/// Associated data of session cookies, so no other sealed value opens as a session.
const SESSION_PURPOSE: &[u8] = b"session";

/// Bounds the decryption work one request can cause with many same-named cookies.
const MAX_CANDIDATES: usize = 16;
/// Most opened sessions remembered; beyond that the least recently used are opened again.
const OPENED_CAPACITY: u64 = 8_192;
/// Length of the cache key: the base64url text of the sealed value's random 24-byte nonce.
const OPENED_KEY_LEN: usize = 32;
/// How long an opened session is remembered without being used.
const OPENED_IDLE: Duration = Duration::from_secs(300);

/// A logged-in user, as carried (sealed) in the session cookie. Times are unix seconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// Opaque id of this login, unique per session; used for revocation and caching.
    pub sid: String,
    /// The panel's account id.
    pub account_id: String,
    /// Email from the account lookup, when present.
    pub email: Option<String>,
    /// Display name from the account lookup, when present.
    pub name: Option<String>,
    /// Roles from the account lookup.
    pub roles: Vec<String>,
    /// The SAML NameID as received.
    pub name_id: String,
    /// The tenant's company ID.
    pub company_id: String,
    /// When the user authenticated at the IdP.
    pub auth_time: i64,
    /// The session is valid while `now < expires_at`.
    pub expires_at: i64,
}

impl Session {
    /// A fresh session id: 128 random bits, base64url without padding.
    pub fn new_sid() -> String {
        let mut sid = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut sid);
        URL_SAFE_NO_PAD.encode(sid)
    }
}

/// Turns sessions into `Set-Cookie` values and `Cookie` headers back into sessions.
#[derive(Clone)]
pub struct SessionCodec {
    sealer: Sealer,
    cookie_name: String,
    ttl: Duration,
    secure: bool,
    // Every proxied request carries the same cookie as the one before; decrypting
    // and parsing it again was the largest cost of the hot path. Only values that
    // opened are stored, and a hit must equal the stored value in full, so a hit is
    // exactly a value this codec authenticated before. The key is the value's nonce
    // (random per seal): hashing it is cheaper than hashing the whole cookie.
    opened: moka::sync::Cache<[u8; OPENED_KEY_LEN], Arc<Opened>>,
}

/// A cookie value that opened, and its session.
struct Opened {
    value: Box<str>,
    session: Arc<Session>,
}

// By hand: the opened-session cache holds live cookie values and who they belong to.
impl std::fmt::Debug for SessionCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCodec")
            .field("sealer", &self.sealer)
            .field("cookie_name", &self.cookie_name)
            .field("ttl", &self.ttl)
            .field("secure", &self.secure)
            .field("opened", &self.opened.entry_count())
            .finish()
    }
}

impl SessionCodec {
    /// Builds the codec; `secure` adds the `Secure` attribute (public URL is https).
    pub fn new(config: &SessionConfig, secure: bool) -> Self {
        Self {
            sealer: Sealer::new(&config.keys),
            cookie_name: config.cookie_name.clone(),
            ttl: config.ttl,
            secure,
            opened: moka::sync::Cache::builder()
                .max_capacity(OPENED_CAPACITY)
                .time_to_idle(OPENED_IDLE)
                .build(),
        }
    }

    /// The session cookie's name.
    pub fn cookie_name(&self) -> &str {
        &self.cookie_name
    }

    /// The absolute session lifetime.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The `expires_at` of a session starting at `now`: `now + ttl`, capped by SessionNotOnOrAfter.
    pub fn expiry(&self, now: i64, session_not_on_or_after: Option<i64>) -> i64 {
        let ttl = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX);
        let expiry = now.saturating_add(ttl);
        session_not_on_or_after.map_or(expiry, |cap| expiry.min(cap))
    }

    /// The sealed cookie value of `session`; public so tests and tools can mint sessions.
    ///
    /// A value longer than [`MAX_SEALED_LEN`] would never open again, so callers
    /// holding unusually large lookup answers should check its length.
    pub fn seal(&self, session: &Session) -> String {
        let json = serde_json::to_vec(session).expect("a session serialises to JSON");
        self.sealer.seal(SESSION_PURPOSE, &json)
    }

    /// The `Set-Cookie` value carrying `session`, expiring with it.
    pub fn set_cookie(&self, session: &Session, now: i64) -> HeaderValue {
        let max_age = session.expires_at.saturating_sub(now).max(0);
        self.cookie(&self.seal(session), max_age)
    }

    /// The `Set-Cookie` value that deletes the session cookie.
    pub fn clear_cookie(&self) -> HeaderValue {
        self.cookie("", 0)
    }

    fn cookie(&self, value: &str, max_age: i64) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        let cookie = format!(
            "{}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}",
            self.cookie_name
        );
        HeaderValue::try_from(cookie)
            .expect("the cookie name is a validated token and the value base64url")
    }

    /// The valid, unexpired session in the request's cookies, if any.
    ///
    /// Every `Cookie` header and every cookie with our name is tried, and the first
    /// one that opens wins: a browser may also send a stale cookie of the same name
    /// (another Path or Domain, an older deployment), in an order we cannot rely on,
    /// and since each candidate is authenticated on its own, accepting any valid one
    /// lets nobody in who does not hold a genuine session.
    pub fn open(&self, headers: &HeaderMap, now: i64) -> Option<Arc<Session>> {
        cookies(headers, &self.cookie_name)
            .take(MAX_CANDIDATES)
            .find_map(|value| {
                let session = self.open_cached(value)?;
                (session.expires_at > now).then_some(session)
            })
    }

    fn open_cached(&self, value: &str) -> Option<Arc<Session>> {
        let key: [u8; OPENED_KEY_LEN] = value.as_bytes().get(..OPENED_KEY_LEN)?.try_into().ok()?;
        if let Some(opened) = self.opened.get(&key) {
            if *opened.value == *value {
                return Some(opened.session.clone());
            }
        }
        let json = self.sealer.open(SESSION_PURPOSE, value)?;
        let session = Arc::new(serde_json::from_slice::<Session>(&json).ok()?);
        let opened = Opened {
            value: value.into(),
            session: session.clone(),
        };
        self.opened.insert(key, Arc::new(opened));
        Some(session)
    }
}

/// Every value of cookie `name` in every `Cookie` header, in order.
pub fn cookies<'a>(headers: &'a HeaderMap, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|header| header.to_str().ok())
        .flat_map(|header| header.split(';'))
        .filter_map(move |pair| {
            let (key, value) = pair.split_once('=')?;
            (key.trim() == name).then(|| value.trim())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    fn key() -> SessionKey {
        SessionKey::from_base64(&SessionKey::generate_base64()).unwrap()
    }

    fn codec_with(keys: Vec<SessionKey>, secure: bool) -> SessionCodec {
        SessionCodec::new(
            &SessionConfig {
                cookie_name: "samlgate_session".into(),
                keys,
                ttl: Duration::from_secs(8 * 3600),
            },
            secure,
        )
    }

    fn codec() -> SessionCodec {
        codec_with(vec![key()], true)
    }

    fn session(codec: &SessionCodec) -> Session {
        Session {
            sid: Session::new_sid(),
            account_id: "u-123".into(),
            email: Some("alice@acme.com".into()),
            name: Some("Alice".into()),
            roles: vec!["admin".into()],
            name_id: "alice@acme.com".into(),
            company_id: "acme".into(),
            auth_time: NOW - 5,
            expires_at: codec.expiry(NOW, None),
        }
    }

    fn cookies(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(COOKIE, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    fn with_value(codec: &SessionCodec, value: &str) -> HeaderMap {
        cookies(&[&format!("{}={value}", codec.cookie_name())])
    }

    #[test]
    fn sid_is_128_random_bits() {
        let (a, b) = (Session::new_sid(), Session::new_sid());
        assert_ne!(a, b);
        assert_eq!(URL_SAFE_NO_PAD.decode(&a).unwrap().len(), 16);
    }

    #[test]
    fn round_trip() {
        let codec = codec();
        let s = session(&codec);
        let headers = cookies(&[&format!(
            "other=1; samlgate_session={}; x=y",
            codec.seal(&s)
        )]);
        assert_eq!(codec.open(&headers, NOW).as_deref(), Some(&s));
    }

    #[test]
    fn tampering_anywhere_is_refused() {
        let codec = codec();
        let genuine = codec.seal(&session(&codec));
        // Opened once first, so every tampered value meets a warm cache.
        assert!(codec.open(&with_value(&codec, &genuine), NOW).is_some());
        let raw = URL_SAFE_NO_PAD.decode(genuine).unwrap();
        let tag_start = raw.len() - 16;
        // One byte in the nonce, the ciphertext and the tag.
        for i in [
            0,
            23,
            24,
            raw.len() / 2,
            tag_start - 1,
            tag_start,
            raw.len() - 1,
        ] {
            let mut tampered = raw.clone();
            tampered[i] ^= 0x80;
            let headers = with_value(&codec, &URL_SAFE_NO_PAD.encode(tampered));
            assert_eq!(codec.open(&headers, NOW), None, "byte {i}");
        }
    }

    #[test]
    fn foreign_key_and_malformed_values_are_refused() {
        let codec = codec();
        let foreign = codec_with(vec![key()], true);
        let value = foreign.seal(&session(&foreign));
        assert_eq!(codec.open(&with_value(&codec, &value), NOW), None);
        for junk in ["", "abc", "%%%", "samlgate_session"] {
            assert_eq!(codec.open(&with_value(&codec, junk), NOW), None);
        }
        assert_eq!(codec.open(&cookies(&["samlgate_session"]), NOW), None);
        // Authentic but not a session: the same keys sealing another purpose or non-JSON.
        let other = codec.sealer.seal(b"request-state", b"{}");
        assert_eq!(codec.open(&with_value(&codec, &other), NOW), None);
        let not_json = codec.sealer.seal(SESSION_PURPOSE, b"not json");
        assert_eq!(codec.open(&with_value(&codec, &not_json), NOW), None);
    }

    #[test]
    fn rotation() {
        let (old, new) = (key(), key());
        let old_codec = codec_with(vec![old.clone()], true);
        let s = session(&old_codec);
        let headers = with_value(&old_codec, &old_codec.seal(&s));
        assert_eq!(
            codec_with(vec![new.clone(), old], true)
                .open(&headers, NOW)
                .as_deref(),
            Some(&s)
        );
        assert_eq!(codec_with(vec![new], true).open(&headers, NOW), None);
    }

    #[test]
    fn expiry() {
        let codec = codec();
        assert_eq!(codec.expiry(NOW, None), NOW + 8 * 3600);
        assert_eq!(codec.expiry(NOW, Some(NOW + 60)), NOW + 60);
        assert_eq!(codec.expiry(NOW, Some(NOW + 9 * 3600)), NOW + 8 * 3600);
        assert_eq!(codec.expiry(i64::MAX - 1, None), i64::MAX);

        let mut s = session(&codec);
        s.expires_at = NOW + 10;
        let headers = with_value(&codec, &codec.seal(&s));
        assert!(codec.open(&headers, NOW + 9).is_some());
        assert_eq!(codec.open(&headers, NOW + 10), None);
        assert_eq!(codec.open(&headers, NOW + 11), None);
    }

    #[test]
    fn any_valid_cookie_among_several_wins() {
        let codec = codec();
        let s = session(&codec);
        let good = codec.seal(&s);
        let mut expired = s.clone();
        expired.expires_at = NOW;
        let expired = codec.seal(&expired);

        let same_header = cookies(&[&format!(
            "samlgate_session=garbage; samlgate_session={expired}; samlgate_session={good}"
        )]);
        assert_eq!(codec.open(&same_header, NOW).as_deref(), Some(&s));

        let split_headers = cookies(&[
            "samlgate_session=garbage",
            "a=b",
            &format!("samlgate_session={good}"),
        ]);
        assert_eq!(codec.open(&split_headers, NOW).as_deref(), Some(&s));

        let none_valid = cookies(&[
            "samlgate_session=garbage",
            &format!("samlgate_session={expired}"),
        ]);
        assert_eq!(codec.open(&none_valid, NOW), None);
    }

    #[test]
    fn other_cookie_names_are_ignored() {
        let codec = codec();
        let value = codec.seal(&session(&codec));
        let headers = cookies(&[&format!(
            "xsamlgate_session={value}; samlgate_sessionx={value}"
        )]);
        assert_eq!(codec.open(&headers, NOW), None);
    }

    #[test]
    fn cookie_attributes_are_exact() {
        let codec = codec();
        let s = session(&codec);
        let set = codec.set_cookie(&s, NOW);
        let set = set.to_str().unwrap();
        let (pair, attributes) = set.split_once("; ").unwrap();
        assert_eq!(
            attributes,
            "Path=/; HttpOnly; SameSite=Lax; Max-Age=28800; Secure"
        );
        let value = pair.strip_prefix("samlgate_session=").unwrap();
        assert_eq!(
            codec.open(&with_value(&codec, value), NOW).as_deref(),
            Some(&s)
        );
        assert_eq!(
            codec.clear_cookie(),
            "samlgate_session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0; Secure"
        );

        let plain = codec_with(vec![key()], false);
        assert_eq!(
            plain.clear_cookie(),
            "samlgate_session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"
        );
        let set = plain.set_cookie(&s, s.expires_at - 100);
        assert!(set
            .to_str()
            .unwrap()
            .ends_with("; Path=/; HttpOnly; SameSite=Lax; Max-Age=100"));
        let late = plain.set_cookie(&s, s.expires_at + 5);
        assert!(late.to_str().unwrap().ends_with("; Max-Age=0"));
    }

    #[test]
    fn debug_never_prints_keys_or_cookie_values() {
        let codec = codec();
        let s = session(&codec);
        let value = codec.seal(&s);
        // Opened first, so the opened-session cache holds it.
        assert!(codec.open(&with_value(&codec, &value), NOW).is_some());
        let debug = format!("{codec:?}");
        assert!(debug.contains("samlgate_session"));
        assert!(debug.contains("keys: 1"));
        assert!(!debug.contains(&value[..OPENED_KEY_LEN]));
        assert!(!debug.contains(&s.sid) && !debug.contains("alice@acme.com"));
    }
}
