//! Signs the identity header (SPEC §7) and publishes the JWKS that verifies it.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use serde::Serialize;
use serde_json::json;

use super::IdentityKey;
use crate::config::IdentityConfig;
use crate::session::Session;

/// Lower-cased names of the legacy plain identity headers; the proxy strips them from clients.
pub const PLAIN_HEADERS: [&str; 3] = [
    "x-samlgate-account-id",
    "x-samlgate-email",
    "x-samlgate-company",
];

/// Upper bound of cached signed headers (one per active session).
const CACHE_CAPACITY: u64 = 100_000;

/// A signed header kept for reuse, with the times it was signed for.
#[derive(Clone)]
struct Signed {
    value: HeaderValue,
    iat: i64,
    exp: i64,
}

impl Signed {
    /// Still worth sending at `now`: more than half of its lifetime left.
    fn fresh_at(&self, now: i64) -> bool {
        // A clock that went backwards would hand out a token "issued in the future".
        // i128: no overflow whatever times a caller passes.
        let (iat, exp, now) = (i128::from(self.iat), i128::from(self.exp), i128::from(now));
        now >= iat && (exp - now) * 2 > exp - iat
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    roles: &'a [String],
    name_id: &'a str,
    company_id: &'a str,
    sid: &'a str,
    auth_time: i64,
    iat: i64,
    exp: i64,
}

/// Produces the identity header for a session, plus the optional plain headers and the JWKS.
pub struct IdentitySigner {
    header: HeaderName,
    key: IdentityKey,
    jwks: Bytes,
    issuer: String,
    audience: String,
    ttl: i64,
    plain_headers: bool,
    cache: moka::sync::Cache<String, Signed>,
}

impl IdentitySigner {
    /// Builds the signer; `issuer` is `public_url` as configured, without trailing slash.
    pub fn new(config: &IdentityConfig, issuer: String) -> Self {
        let keys: Vec<_> = std::iter::once(&config.key)
            .chain(&config.previous_keys)
            .map(IdentityKey::public_jwk)
            .collect();
        let jwks = serde_json::to_vec(&json!({ "keys": keys })).expect("JSON serialises");
        let issuer = issuer.trim_end_matches('/').to_owned();
        Self {
            header: config.header.clone(),
            key: config.key.clone(),
            jwks: Bytes::from(jwks),
            issuer,
            audience: config.audience.clone(),
            ttl: i64::try_from(config.ttl.as_secs()).unwrap_or(i64::MAX),
            plain_headers: config.plain_headers,
            // Eviction by time only bounds memory; whether an entry may still be
            // sent is decided by `Signed::fresh_at` against the caller's clock.
            cache: moka::sync::Cache::builder()
                .max_capacity(CACHE_CAPACITY)
                .time_to_live(config.ttl.max(Duration::from_secs(1)))
                .build(),
        }
    }

    /// The name of the header carrying the signed identity.
    pub fn header_name(&self) -> &HeaderName {
        &self.header
    }

    /// The compact JWS for `session` at `now`, reused from the cache while more than half valid.
    pub fn header_for(&self, session: &Session, now: i64) -> HeaderValue {
        // Keyed by sid alone: a session is sealed once at login and never changes,
        // and every claim except iat/exp comes from it, so one sid means one claim set.
        if let Some(signed) = self.cache.get(&session.sid) {
            if signed.fresh_at(now) {
                return signed.value;
            }
        }
        let signed = self.sign(session, now);
        self.cache.insert(session.sid.clone(), signed.clone());
        signed.value
    }

    fn sign(&self, session: &Session, now: i64) -> Signed {
        let iat = now;
        let exp = now.saturating_add(self.ttl).min(session.expires_at);
        let claims = Claims {
            iss: &self.issuer,
            aud: &self.audience,
            sub: &session.account_id,
            email: session.email.as_deref(),
            name: session.name.as_deref(),
            roles: &session.roles,
            name_id: &session.name_id,
            company_id: &session.company_id,
            sid: &session.sid,
            auth_time: session.auth_time,
            iat,
            exp,
        };
        let mut header = jsonwebtoken::Header::new(self.key.algorithm().jwt());
        header.kid = Some(self.key.kid().to_owned());
        let token = jsonwebtoken::encode(&header, &claims, self.key.encoding_key())
            .expect("a parsed identity key signs any payload");
        let value = HeaderValue::try_from(token).expect("a compact JWS is base64url and dots");
        Signed { value, iat, exp }
    }

    /// The legacy plain headers for `session`: empty unless `identity.plain_headers`.
    pub fn plain_headers(&self, session: &Session) -> Vec<(HeaderName, HeaderValue)> {
        if !self.plain_headers {
            return Vec::new();
        }
        let [account, email, company] = PLAIN_HEADERS;
        [
            (account, Some(session.account_id.as_str())),
            (email, session.email.as_deref()),
            (company, Some(session.company_id.as_str())),
        ]
        .into_iter()
        .filter_map(|(name, value)| {
            // A value with CR/LF or other control characters cannot be sent; dropping
            // it is safer than mangling it into something the panel would trust.
            let value = HeaderValue::from_str(value?).ok()?;
            Some((HeaderName::from_static(name), value))
        })
        .collect()
    }

    /// The JWKS document: `{"keys":[current, previous…]}`.
    pub fn jwks(&self) -> Bytes {
        self.jwks.clone()
    }
}

impl fmt::Debug for IdentitySigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentitySigner")
            .field("header", &self.header)
            .field("key", &self.key)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("ttl", &self.ttl)
            .field("plain_headers", &self.plain_headers)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use josekit::jwk::JwkSet;
    use josekit::jws::{EdDSA, ES256, RS256};
    use josekit::jwt::{self, JwtPayload};
    use serde_json::Value;

    use super::*;
    use crate::identity::Algorithm;

    const NOW: i64 = 1_700_000_000;

    fn key(alg: Algorithm) -> IdentityKey {
        IdentityKey::from_pem(&IdentityKey::generate_pem(alg).unwrap()).unwrap()
    }

    fn config(key: IdentityKey, previous_keys: Vec<IdentityKey>, plain: bool) -> IdentityConfig {
        IdentityConfig {
            header: HeaderName::from_static("x-samlgate-assertion"),
            algorithm: key.algorithm(),
            key,
            previous_keys,
            audience: "backup-panel".into(),
            ttl: Duration::from_secs(60),
            plain_headers: plain,
        }
    }

    fn signer(alg: Algorithm) -> IdentitySigner {
        IdentitySigner::new(
            &config(key(alg), vec![], false),
            "https://backup.example.com".into(),
        )
    }

    fn session() -> Session {
        Session {
            sid: "sid-1".into(),
            account_id: "u-123".into(),
            email: Some("alice@acme.com".into()),
            name: Some("Alice".into()),
            roles: vec!["admin".into(), "viewer".into()],
            name_id: "alice@acme.com".into(),
            company_id: "acme".into(),
            auth_time: NOW - 30,
            expires_at: NOW + 8 * 3600,
        }
    }

    /// Verifies `token` with josekit against the signer's own JWKS, returning header and claims.
    fn verify(signer: &IdentitySigner, token: &HeaderValue) -> (Value, JwtPayload) {
        let token = token.to_str().unwrap();
        let set = JwkSet::from_bytes(signer.jwks()).unwrap();
        let header: Value = {
            let first = token.split('.').next().unwrap();
            let json =
                base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, first)
                    .unwrap();
            serde_json::from_slice(&json).unwrap()
        };
        let kid = header["kid"].as_str().unwrap();
        let jwks = set.get(kid);
        assert_eq!(jwks.len(), 1, "exactly one JWKS key has the token's kid");
        let jwk = jwks[0];
        let (payload, _) = match header["alg"].as_str().unwrap() {
            "ES256" => jwt::decode_with_verifier(token, &ES256.verifier_from_jwk(jwk).unwrap()),
            "EdDSA" => jwt::decode_with_verifier(token, &EdDSA.verifier_from_jwk(jwk).unwrap()),
            "RS256" => jwt::decode_with_verifier(token, &RS256.verifier_from_jwk(jwk).unwrap()),
            other => panic!("unexpected alg {other}"),
        }
        .expect("josekit verifies the signature");
        (header, payload)
    }

    #[test]
    fn tokens_verify_independently_with_exact_claims() {
        for alg in [Algorithm::Es256, Algorithm::EdDsa, Algorithm::Rs256] {
            let signer = signer(alg);
            let token = signer.header_for(&session(), NOW);
            let (header, payload) = verify(&signer, &token);
            assert_eq!(
                header,
                json!({"alg": alg.as_str(), "kid": signer.key.kid(), "typ": "JWT"})
            );
            let claims = Value::Object(payload.claims_set().clone());
            assert_eq!(
                claims,
                json!({
                    "iss": "https://backup.example.com",
                    "aud": "backup-panel",
                    "sub": "u-123",
                    "email": "alice@acme.com",
                    "name": "Alice",
                    "roles": ["admin", "viewer"],
                    "name_id": "alice@acme.com",
                    "company_id": "acme",
                    "sid": "sid-1",
                    "auth_time": NOW - 30,
                    "iat": NOW,
                    "exp": NOW + 60,
                }),
                "{alg}"
            );
        }
    }

    #[test]
    fn absent_optional_claims_are_omitted() {
        let signer = IdentitySigner::new(
            &config(key(Algorithm::Es256), vec![], false),
            "https://backup.example.com/".into(),
        );
        let mut s = session();
        s.email = None;
        s.name = None;
        s.roles.clear();
        let (_, payload) = verify(&signer, &signer.header_for(&s, NOW));
        let claims = payload.claims_set();
        for absent in ["email", "name", "roles"] {
            assert!(!claims.contains_key(absent), "{absent}");
        }
        assert_eq!(claims["iss"], "https://backup.example.com");
    }

    #[test]
    fn exp_never_exceeds_the_session() {
        let signer = signer(Algorithm::EdDsa);
        let mut s = session();
        s.expires_at = NOW + 20;
        let (_, payload) = verify(&signer, &signer.header_for(&s, NOW));
        assert_eq!(payload.claims_set()["exp"], NOW + 20);
    }

    #[test]
    fn cached_while_more_than_half_valid() {
        let signer = signer(Algorithm::Es256);
        let s = session();
        let first = signer.header_for(&s, NOW);
        // ES256 signatures are randomised, so equality means the cache answered.
        assert_eq!(signer.header_for(&s, NOW + 29), first);
        let renewed = signer.header_for(&s, NOW + 30);
        assert_ne!(renewed, first);
        let (_, payload) = verify(&signer, &renewed);
        assert_eq!(payload.claims_set()["iat"], NOW + 30);
        assert_eq!(signer.header_for(&s, NOW + 31), renewed);

        let mut other = s.clone();
        other.sid = "sid-2".into();
        let (_, payload) = verify(&signer, &signer.header_for(&other, NOW + 31));
        assert_eq!(payload.claims_set()["sid"], "sid-2");

        // A clock stepping backwards gets a fresh token rather than one issued "later".
        let earlier = signer.header_for(&s, NOW + 10);
        let (_, payload) = verify(&signer, &earlier);
        assert_eq!(payload.claims_set()["iat"], NOW + 10);
    }

    #[test]
    fn cache_respects_a_session_capped_lifetime() {
        let signer = signer(Algorithm::EdDsa);
        let mut s = session();
        s.expires_at = NOW + 10;
        let first = signer.header_for(&s, NOW);
        assert_eq!(signer.header_for(&s, NOW + 4), first);
        let second = signer.header_for(&s, NOW + 5);
        let (_, payload) = verify(&signer, &second);
        assert_eq!(payload.claims_set()["iat"], NOW + 5);
        assert_eq!(payload.claims_set()["exp"], NOW + 10);
    }

    #[test]
    fn jwks_lists_current_then_previous_keys() {
        let old = key(Algorithm::Rs256);
        let current = key(Algorithm::Es256);
        let signer = IdentitySigner::new(
            &config(current.clone(), vec![old.clone()], false),
            "https://backup.example.com".into(),
        );
        let jwks: Value = serde_json::from_slice(&signer.jwks()).unwrap();
        assert_eq!(
            jwks,
            json!({"keys": [current.public_jwk(), old.public_jwk()]})
        );

        // A token from the previous key still verifies against the published set.
        let old_signer = IdentitySigner::new(
            &config(old, vec![], false),
            "https://backup.example.com".into(),
        );
        let token = old_signer.header_for(&session(), NOW);
        let set = JwkSet::from_bytes(signer.jwks()).unwrap();
        let jwk = set.get(old_signer.key.kid())[0];
        jwt::decode_with_verifier(
            token.to_str().unwrap(),
            &RS256.verifier_from_jwk(jwk).unwrap(),
        )
        .unwrap();
    }

    #[test]
    fn plain_headers_only_when_enabled_and_valid() {
        let off = signer(Algorithm::EdDsa);
        assert!(off.plain_headers(&session()).is_empty());

        let on = IdentitySigner::new(
            &config(key(Algorithm::EdDsa), vec![], true),
            "https://backup.example.com".into(),
        );
        let headers = on.plain_headers(&session());
        let expected = [
            ("x-samlgate-account-id", "u-123"),
            ("x-samlgate-email", "alice@acme.com"),
            ("x-samlgate-company", "acme"),
        ];
        assert_eq!(headers.len(), 3);
        for ((name, value), (want_name, want_value)) in headers.iter().zip(expected) {
            assert_eq!(name, want_name);
            assert_eq!(value, want_value);
        }

        let mut s = session();
        s.email = Some("alice@acme.com\r\nX-Evil: 1".into());
        let names: Vec<_> = on
            .plain_headers(&s)
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert_eq!(names, ["x-samlgate-account-id", "x-samlgate-company"]);
        s.email = None;
        assert_eq!(on.plain_headers(&s).len(), 2);
    }

    #[test]
    fn debug_prints_no_token() {
        let signer = signer(Algorithm::Es256);
        let token = signer.header_for(&session(), NOW);
        let debug = format!("{signer:?}");
        assert!(!debug.contains(token.to_str().unwrap()));
        assert!(debug.contains(signer.key.kid()));
    }
}
