//! Authenticated encryption of cookie values (XChaCha20-Poly1305), bound to a purpose.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead as _, KeyInit as _, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use super::SessionKey;

/// Largest sealed value [`Sealer::open`] accepts: browsers drop bigger cookies anyway.
pub const MAX_SEALED_LEN: usize = 4096;

const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;

/// Seals and opens values with the session keys; the first key seals, every key opens.
#[derive(Clone)]
pub struct Sealer {
    ciphers: Vec<XChaCha20Poly1305>,
}

impl Sealer {
    /// Builds a sealer from the configured keys, first one sealing.
    ///
    /// # Panics
    ///
    /// When `keys` is empty: configuration validation guarantees at least one key.
    pub fn new(keys: &[SessionKey]) -> Self {
        assert!(!keys.is_empty(), "at least one session key is required");
        let ciphers = keys
            .iter()
            .map(|key| XChaCha20Poly1305::new(key.bytes().into()))
            .collect();
        Self { ciphers }
    }

    /// Encrypts `plaintext` for `purpose`: base64url (no padding) of nonce || ciphertext || tag.
    pub fn seal(&self, purpose: &[u8], plaintext: &[u8]) -> String {
        // A random 192-bit nonce per value: collisions are negligible without any
        // counter state, which matters since several replicas share the keys.
        let mut nonce = [0u8; NONCE_LEN];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut nonce);
        let sealed = self.ciphers[0]
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: purpose,
                },
            )
            .expect("XChaCha20-Poly1305 encryption only fails on absurd lengths");
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// Decrypts a value sealed for `purpose` by any of the keys; `None` if it is not authentic.
    pub fn open(&self, purpose: &[u8], value: &str) -> Option<Vec<u8>> {
        // Checked before decoding so an attacker cannot make us decode or decrypt
        // arbitrarily large input.
        if value.len() > MAX_SEALED_LEN {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(value).ok()?;
        if raw.len() < NONCE_LEN + TAG_LEN {
            return None;
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        self.ciphers.iter().find_map(|cipher| {
            cipher
                .decrypt(
                    XNonce::from_slice(nonce),
                    Payload {
                        msg: sealed,
                        aad: purpose,
                    },
                )
                .ok()
        })
    }
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("keys", &self.ciphers.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SessionKey {
        SessionKey::from_base64(&SessionKey::generate_base64()).unwrap()
    }

    fn decoded(value: &str) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(value).unwrap()
    }

    #[test]
    fn round_trip_with_fresh_nonces() {
        let sealer = Sealer::new(&[key()]);
        let a = sealer.seal(b"session", b"hello");
        let b = sealer.seal(b"session", b"hello");
        assert_ne!(a, b, "each seal draws a new nonce");
        assert_eq!(sealer.open(b"session", &a).unwrap(), b"hello");
        assert_eq!(sealer.open(b"session", &b).unwrap(), b"hello");
        assert_eq!(decoded(&a).len(), NONCE_LEN + 5 + TAG_LEN);
    }

    #[test]
    fn purpose_is_bound() {
        let sealer = Sealer::new(&[key()]);
        let value = sealer.seal(b"request-state", b"state");
        assert!(sealer.open(b"session", &value).is_none());
        assert!(sealer.open(b"request-state", &value).is_some());
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let sealer = Sealer::new(&[key()]);
        let value = sealer.seal(b"session", b"some plaintext");
        let raw = decoded(&value);
        // Covers the nonce, the ciphertext and the tag regions alike.
        for i in 0..raw.len() {
            let mut tampered = raw.clone();
            tampered[i] ^= 0x01;
            let tampered = URL_SAFE_NO_PAD.encode(tampered);
            assert!(sealer.open(b"session", &tampered).is_none(), "byte {i}");
        }
        let truncated = URL_SAFE_NO_PAD.encode(&raw[..raw.len() - 1]);
        assert!(sealer.open(b"session", &truncated).is_none());
    }

    #[test]
    fn foreign_key_and_garbage_are_refused() {
        let value = Sealer::new(&[key()]).seal(b"session", b"x");
        let other = Sealer::new(&[key()]);
        assert!(other.open(b"session", &value).is_none());
        assert!(other.open(b"session", "").is_none());
        assert!(other.open(b"session", "not base64!").is_none());
        assert!(other.open(b"session", &format!("{value}=")).is_none());
    }

    #[test]
    fn rotation_opens_with_any_key_and_seals_with_the_first() {
        let (old, new) = (key(), key());
        let sealed_old = Sealer::new(std::slice::from_ref(&old)).seal(b"session", b"x");
        let rotated = Sealer::new(&[new.clone(), old.clone()]);
        assert_eq!(rotated.open(b"session", &sealed_old).unwrap(), b"x");
        assert!(Sealer::new(std::slice::from_ref(&new))
            .open(b"session", &sealed_old)
            .is_none());
        let sealed_new = rotated.seal(b"session", b"y");
        assert!(Sealer::new(&[new]).open(b"session", &sealed_new).is_some());
        assert!(Sealer::new(&[old]).open(b"session", &sealed_new).is_none());
    }

    #[test]
    fn oversized_values_are_refused_before_decoding() {
        let sealer = Sealer::new(&[key()]);
        let big = sealer.seal(b"session", &[b'a'; 3100]);
        assert!(big.len() > MAX_SEALED_LEN);
        assert!(sealer.open(b"session", &big).is_none());
        let fits = sealer.seal(b"session", &[b'a'; 3000]);
        assert!(fits.len() <= MAX_SEALED_LEN);
        assert!(sealer.open(b"session", &fits).is_some());
    }
}
