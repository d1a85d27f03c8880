//! Identity signing keys: PKCS#8 PEM in, a typed key with its public JWK and RFC 7638 `kid` out.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _};
use jsonwebtoken::EncodingKey;
use rsa::traits::PublicKeyParts as _;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

/// A JWS algorithm samlgate signs identity headers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// ECDSA P-256 with SHA-256.
    Es256,
    /// Ed25519.
    EdDsa,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
}

impl Algorithm {
    /// The JOSE name (`ES256`, `EdDSA`, `RS256`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::EdDsa => "EdDSA",
            Self::Rs256 => "RS256",
        }
    }

    pub(crate) fn jwt(self) -> jsonwebtoken::Algorithm {
        match self {
            Self::Es256 => jsonwebtoken::Algorithm::ES256,
            Self::EdDsa => jsonwebtoken::Algorithm::EdDSA,
            Self::Rs256 => jsonwebtoken::Algorithm::RS256,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ES256" => Ok(Self::Es256),
            "EdDSA" => Ok(Self::EdDsa),
            "RS256" => Ok(Self::Rs256),
            other => Err(KeyError::UnknownAlgorithm(other.to_owned())),
        }
    }
}

/// Why a key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The algorithm name is not one of ES256, EdDSA, RS256.
    #[error("unknown algorithm {0:?} (expected ES256, EdDSA or RS256)")]
    UnknownAlgorithm(String),
    /// The PEM is not a PKCS#8 private key of a supported type.
    #[error("not a PKCS#8 PEM private key for ES256 (P-256), EdDSA (Ed25519) or RS256 (RSA)")]
    Unsupported,
    /// RSA keys shorter than 2048 bits are refused.
    #[error("RSA key has {0} bits; at least 2048 are required")]
    WeakRsa(usize),
    /// Key generation or encoding failed.
    #[error("could not generate or encode the key: {0}")]
    Encode(String),
}

/// A parsed identity signing key. Its `Debug` never prints key material.
#[derive(Clone)]
pub struct IdentityKey {
    algorithm: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
    kid: String,
}

impl IdentityKey {
    /// Parses a PKCS#8 PEM private key; the algorithm follows from the key type.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        if let Ok(key) = p256::SecretKey::from_pkcs8_pem(pem) {
            let point = p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(
                &key.public_key(),
                false,
            );
            let (x, y) = (
                point.x().ok_or(KeyError::Unsupported)?,
                point.y().ok_or(KeyError::Unsupported)?,
            );
            let jwk = json!({"crv": "P-256", "kty": "EC", "x": b64(x), "y": b64(y)});
            let encoding =
                EncodingKey::from_ec_pem(pem.as_bytes()).map_err(|_| KeyError::Unsupported)?;
            return Ok(Self::new(Algorithm::Es256, encoding, jwk));
        }
        if let Ok(key) = ed25519_dalek::SigningKey::from_pkcs8_pem(pem) {
            let jwk =
                json!({"crv": "Ed25519", "kty": "OKP", "x": b64(key.verifying_key().as_bytes())});
            let encoding =
                EncodingKey::from_ed_pem(pem.as_bytes()).map_err(|_| KeyError::Unsupported)?;
            return Ok(Self::new(Algorithm::EdDsa, encoding, jwk));
        }
        if let Ok(key) = rsa::RsaPrivateKey::from_pkcs8_pem(pem) {
            let bits = key.size() * 8;
            if bits < 2048 {
                return Err(KeyError::WeakRsa(bits));
            }
            let jwk = json!({"e": b64(&key.e().to_bytes_be()), "kty": "RSA", "n": b64(&key.n().to_bytes_be())});
            let encoding =
                EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|_| KeyError::Unsupported)?;
            return Ok(Self::new(Algorithm::Rs256, encoding, jwk));
        }
        Err(KeyError::Unsupported)
    }

    fn new(algorithm: Algorithm, encoding: EncodingKey, jwk: Value) -> Self {
        // RFC 7638: the required members, lexicographic order, no white space;
        // `json!` keeps keys sorted, so serialising the value is the canonical form.
        let canonical = serde_json::to_string(&jwk).expect("a JSON object serialises");
        let kid = b64(&Sha256::digest(canonical.as_bytes()));
        Self {
            algorithm,
            encoding,
            jwk,
            kid,
        }
    }

    /// Generates a new key and returns it as PKCS#8 PEM.
    pub fn generate_pem(algorithm: Algorithm) -> Result<String, KeyError> {
        let mut rng = rand::rngs::OsRng;
        let pem = match algorithm {
            Algorithm::Es256 => p256::SecretKey::random(&mut rng)
                .to_pkcs8_pem(Default::default())
                .map_err(|e| KeyError::Encode(e.to_string()))?,
            Algorithm::EdDsa => ed25519_dalek::SigningKey::generate(&mut rng)
                .to_pkcs8_pem(Default::default())
                .map_err(|e| KeyError::Encode(e.to_string()))?,
            Algorithm::Rs256 => rsa::RsaPrivateKey::new(&mut rng, 2048)
                .map_err(|e| KeyError::Encode(e.to_string()))?
                .to_pkcs8_pem(Default::default())
                .map_err(|e| KeyError::Encode(e.to_string()))?,
        };
        Ok(pem.to_string())
    }

    /// The algorithm this key signs with.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The RFC 7638 JWK thumbprint (SHA-256, base64url), used as `kid`.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public JWK with `kid`, `alg` and `use`, as published in the JWKS.
    pub fn public_jwk(&self) -> Value {
        let mut jwk = self.jwk.clone();
        let members = jwk.as_object_mut().expect("jwk is an object");
        members.insert("kid".into(), self.kid.clone().into());
        members.insert("alg".into(), self.algorithm.as_str().into());
        members.insert("use".into(), "sig".into());
        jwk
    }

    pub(crate) fn encoding_key(&self) -> &EncodingKey {
        &self.encoding
    }
}

impl fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityKey")
            .field("algorithm", &self.algorithm)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_with_their_algorithm() {
        for alg in [Algorithm::Es256, Algorithm::EdDsa, Algorithm::Rs256] {
            let pem = IdentityKey::generate_pem(alg).unwrap();
            let key = IdentityKey::from_pem(&pem).unwrap();
            assert_eq!(key.algorithm(), alg);
            assert_eq!(key.kid().len(), 43, "base64url of 32 bytes");
        }
    }

    #[test]
    fn kid_is_the_rfc7638_thumbprint() {
        // RFC 7638 §3.1 example key and thumbprint.
        let jwk = json!({
            "e": "AQAB",
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"
        });
        let kid = b64(&Sha256::digest(serde_json::to_string(&jwk).unwrap()));
        assert_eq!(kid, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }

    #[test]
    fn garbage_is_refused() {
        assert!(matches!(
            IdentityKey::from_pem("not a key"),
            Err(KeyError::Unsupported)
        ));
    }
}
