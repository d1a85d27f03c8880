//! Session keys: 32 random bytes, base64 in configuration.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// One 32-byte session sealing key. Its `Debug` never prints the key.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKey([u8; 32]);

/// Why a session key was refused.
#[derive(Debug, thiserror::Error)]
pub enum SessionKeyError {
    /// Not base64.
    #[error("not base64")]
    NotBase64,
    /// Decoded to the wrong length.
    #[error("must decode to 32 bytes, got {0}")]
    Length(usize),
}

impl SessionKey {
    /// Parses one base64 line (standard alphabet, padding optional).
    pub fn from_base64(line: &str) -> Result<Self, SessionKeyError> {
        let line = line.trim();
        let bytes = STANDARD
            .decode(line)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(line))
            .map_err(|_| SessionKeyError::NotBase64)?;
        let key: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| SessionKeyError::Length(bytes.len()))?;
        Ok(Self(key))
    }

    /// A new random key, base64-encoded as configuration expects it.
    pub fn generate_base64() -> String {
        let mut key = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut key);
        STANDARD.encode(key)
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let line = SessionKey::generate_base64();
        assert!(SessionKey::from_base64(&line).is_ok());
        assert!(matches!(
            SessionKey::from_base64("!!"),
            Err(SessionKeyError::NotBase64)
        ));
        assert!(matches!(
            SessionKey::from_base64("AAAA"),
            Err(SessionKeyError::Length(3))
        ));
    }
}
