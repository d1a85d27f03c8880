//! `SessionCodec::open` on arbitrary `Cookie` header bytes (several headers when the
//! input has line breaks), with the fixed test-only key of
//! `samlgate::saml::fuzzing::session_codec`.
//!
//! A sealed cookie cannot be mutated into another valid one, so the same input is
//! also sealed with the fixed key as a session's plaintext and opened again: that
//! reaches the JSON and expiry checks behind the AEAD with arbitrary bytes.
#![no_main]

use std::sync::LazyLock;

use http::header::COOKIE;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use samlgate::saml::fuzzing::{self, NOW};
use samlgate::session::{Sealer, Session, SessionCodec, SessionKey, MAX_SEALED_LEN};

static CODEC: LazyLock<SessionCodec> = LazyLock::new(fuzzing::session_codec);
static SEALER: LazyLock<Sealer> =
    LazyLock::new(|| Sealer::new(&[SessionKey::from_base64(fuzzing::SESSION_KEY_BASE64).unwrap()]));

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        if let Ok(value) = HeaderValue::from_bytes(line) {
            headers.append(COOKIE, value);
        }
    }
    if let Some(session) = CODEC.open(&headers, NOW) {
        assert!(session.expires_at > NOW, "opened an expired session");
    }

    // The input as the plaintext of a genuine cookie ("session" is the purpose
    // samlgate seals sessions for).
    let sealed = SEALER.seal(b"session", data);
    let mut headers = HeaderMap::new();
    let cookie = format!("{}={sealed}", fuzzing::SESSION_COOKIE);
    headers.insert(COOKIE, HeaderValue::from_str(&cookie).unwrap());
    let opened = CODEC.open(&headers, NOW);
    let expected = serde_json::from_slice::<Session>(data)
        .ok()
        .filter(|s| s.expires_at > NOW && sealed.len() <= MAX_SEALED_LEN);
    assert_eq!(opened.as_deref(), expected.as_ref());
});
