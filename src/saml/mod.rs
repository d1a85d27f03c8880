//! Everything SAML: AuthnRequests (HTTP-Redirect binding), SP metadata, and the
//! ACS pipeline: size limits → strict pre-scan → samael/xmlsec verification on a
//! blocking thread → SPEC §8 conditions → InResponseTo bound to this browser →
//! replay cache.

#[doc(hidden)]
pub mod fuzzing;
mod prescan;
mod rejection;
mod state;
mod verify;
mod xmlsec;

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::{HeaderMap, HeaderValue};
use rand::RngCore as _;
use samael::metadata::NameIdFormat;
use samael::service_provider::ServiceProvider;
use samael::traits::ToXml as _;
use sha2::{Digest as _, Sha256};

use crate::config::{Config, Tenant};
use crate::lookup::{LookupError, TenantDirectory};
use crate::replay::ReplayStore;
use crate::session::Sealer;

pub use rejection::LoginRejection;

use state::{Pending, RequestState, REQUEST_TTL};
use verify::Expectations;

/// Largest decoded SAMLResponse accepted (SPEC §8).
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024;
/// Largest ACS POST body accepted (SPEC §8).
pub const MAX_ACS_BODY_BYTES: usize = 384 * 1024;
/// Base64 of [`MAX_RESPONSE_BYTES`], plus room for line breaks some IdPs insert.
const MAX_ENCODED_BYTES: usize = MAX_RESPONSE_BYTES / 3 * 4 + 4 + MAX_RESPONSE_BYTES / 38;

/// Name of the request-state cookie.
pub const REQUEST_COOKIE: &str = "samlgate_request";

/// Runs `f` while holding the lock that serialises every use of libxml2/xmlsec in
/// this process (they keep process-wide state; samlgate verifies under the same
/// lock). Anything else in the process that signs or verifies XML with samael, such
/// as the demo's development IdP, must do it inside this. Blocking: call it from a
/// blocking thread.
pub fn with_xmlsec<T>(f: impl FnOnce() -> T) -> T {
    xmlsec::locked(f)
}

/// The service provider: builds requests and judges responses.
pub struct Saml {
    expect: Expectations,
    allow_idp_initiated: bool,
    metadata: String,
    state: RequestState,
    replay: ReplayStore,
}

/// Where to send the browser to log in, and the cookie that remembers the request.
#[derive(Debug)]
pub struct LoginStart {
    /// The IdP's SSO URL with SAMLRequest and RelayState.
    pub location: String,
    /// The updated request-state cookie.
    pub set_cookie: HeaderValue,
}

/// A response that passed every check.
#[derive(Debug)]
pub struct Login {
    /// The tenant whose IdP signed it.
    pub tenant: Arc<Tenant>,
    /// The NameID, exactly as signed.
    pub name_id: String,
    /// Validated path to return to.
    pub return_to: String,
    /// The AuthnStatement's SessionNotOnOrAfter (Unix seconds).
    pub session_not_on_or_after: Option<i64>,
    /// The AuthnStatement's AuthnInstant (Unix seconds).
    pub authn_instant: Option<i64>,
    /// The request-state cookie without the request this response answered.
    pub state_cookie: Option<HeaderValue>,
}

/// A refused response, with what is known for the audit log.
#[derive(Debug)]
pub struct Refusal {
    /// The reason code.
    pub reason: LoginRejection,
    /// The tenant, once known.
    pub tenant: Option<String>,
}

impl From<LoginRejection> for Refusal {
    fn from(reason: LoginRejection) -> Self {
        Self {
            reason,
            tenant: None,
        }
    }
}

impl Saml {
    /// Builds the service provider for `config`.
    pub fn new(config: &Config, replay: ReplayStore) -> Self {
        let base = config.public_url.as_str().trim_end_matches('/');
        let acs_url = format!("{base}{}/acs", config.path_prefix);
        let expect = Expectations {
            entity_id: config.sp.entity_id.clone(),
            acs_url,
            clock_skew: config.sp.clock_skew,
            require_signed_response: config.sp.require_signed_response,
            allow_sha1: config.sp.allow_sha1,
        };
        let secure = config.public_url.scheme() == "https";
        Self {
            metadata: metadata_xml(&expect),
            expect,
            allow_idp_initiated: config.sp.allow_idp_initiated,
            state: RequestState::new(
                Sealer::new(&config.session.keys),
                REQUEST_COOKIE.to_owned(),
                secure,
            ),
            replay,
        }
    }

    /// The SP metadata document.
    pub fn metadata(&self) -> &str {
        &self.metadata
    }

    /// The ACS URL (`public_url + path_prefix + /acs`).
    pub fn acs_url(&self) -> &str {
        &self.expect.acs_url
    }

    /// An AuthnRequest to `tenant` remembered in this browser's request state.
    pub fn start_login(
        &self,
        tenant: &Tenant,
        return_to: &str,
        headers: &HeaderMap,
        now: i64,
    ) -> LoginStart {
        let provider = ServiceProvider {
            entity_id: Some(self.expect.entity_id.clone()),
            acs_url: Some(self.expect.acs_url.clone()),
            authn_name_id_format: Some(NameIdFormat::UnspecifiedNameIDFormat.value().to_owned()),
            ..ServiceProvider::default()
        };
        let mut request = provider
            .make_authentication_request(tenant.idp_sso_url.as_str())
            .expect("an SSO URL and an ACS URL are set");
        // samael's IDs carry 32 random bits; a request ID must not be guessable.
        let mut random = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut random);
        request.id = format!(
            "_{}",
            random
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        let location = request
            .redirect(return_to)
            .ok()
            .flatten()
            .expect("the SSO URL was validated as a URL")
            .to_string();
        let mut pending = self.state.read(headers, now);
        pending.push(Pending {
            id: request.id,
            company_id: tenant.company_id.clone(),
            return_to: return_to.to_owned(),
            expires_at: now + REQUEST_TTL.as_secs() as i64,
        });
        LoginStart {
            location,
            set_cookie: self.state.write(pending),
        }
    }

    /// Judges one POSTed SAMLResponse (the form value, base64) for this browser.
    pub async fn consume(
        &self,
        saml_response: &str,
        relay_state: Option<&str>,
        headers: &HeaderMap,
        tenants: &TenantDirectory,
        now: i64,
    ) -> Result<Login, Refusal> {
        let xml = decode(saml_response)?;
        // The pre-scan is CPU work on hostile input: keep it off the async workers.
        let allow_sha1 = self.expect.allow_sha1;
        let (xml, shape) = tokio::task::spawn_blocking(move || {
            prescan::prescan(&xml, allow_sha1).map(|shape| (xml, shape))
        })
        .await
        .map_err(|_| LoginRejection::Malformed)??;
        let issuer = shape
            .response_issuer
            .clone()
            .or_else(|| shape.assertion_issuer.clone())
            .ok_or(LoginRejection::UnknownIssuer)?;
        let tenant = match tenants.by_issuer(&issuer).await {
            Ok(Some(tenant)) => tenant,
            Ok(None) => return Err(LoginRejection::UnknownIssuer.into()),
            Err(LookupError::NotFound) => return Err(LoginRejection::UnknownIssuer.into()),
            Err(LookupError::Unavailable(_)) => {
                return Err(LoginRejection::TenantLookupUnavailable.into())
            }
        };
        let refuse = |reason| Refusal {
            reason,
            tenant: Some(tenant.company_id.clone()),
        };

        let verified = {
            let tenant = tenant.clone();
            let expect = self.expect.clone();
            let wall = chrono::DateTime::from_timestamp(now, 0).unwrap_or_default();
            tokio::task::spawn_blocking(move || {
                verify::verify(&xml, &shape, &tenant, &expect, wall)
            })
            .await
            .map_err(|_| refuse(LoginRejection::Malformed))?
            .map_err(refuse)?
        };

        let pending = self.state.read(headers, now);
        let answered = match &verified.in_response_to {
            Some(id) => Some(
                pending
                    .iter()
                    .position(|p| p.id == *id && p.company_id == tenant.company_id)
                    .ok_or_else(|| refuse(LoginRejection::InResponseToUnknown))?,
            ),
            None if self.allow_idp_initiated => None,
            None => return Err(refuse(LoginRejection::Unsolicited)),
        };

        let ttl = Duration::from_secs(verified.valid_until.saturating_sub(now).max(1) as u64);
        match self
            .replay
            .first_use(&replay_key(&tenant.idp_issuer, &verified.assertion_id), ttl)
            .await
        {
            Ok(true) => {}
            Ok(false) => return Err(refuse(LoginRejection::Replayed)),
            Err(_) => return Err(refuse(LoginRejection::ReplayStoreUnavailable)),
        }

        let (return_to, state_cookie) = match answered {
            Some(index) => {
                let mut pending = pending;
                let request = pending.remove(index);
                (request.return_to, Some(self.state.write(pending)))
            }
            None => (
                relay_state.map_or_else(|| "/".to_owned(), crate::return_to::sanitize),
                None,
            ),
        };
        Ok(Login {
            tenant,
            name_id: verified.name_id,
            return_to,
            session_not_on_or_after: verified.session_not_on_or_after,
            authn_instant: verified.authn_instant,
            state_cookie,
        })
    }
}

/// Base64 to UTF-8 XML, with both size limits applied before and after decoding.
fn decode(field: &str) -> Result<String, LoginRejection> {
    if field.len() > MAX_ENCODED_BYTES {
        return Err(LoginRejection::BodyTooLarge);
    }
    let compact: String = field.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let bytes = STANDARD
        .decode(compact)
        .map_err(|_| LoginRejection::Malformed)?;
    if bytes.len() > MAX_RESPONSE_BYTES {
        return Err(LoginRejection::BodyTooLarge);
    }
    String::from_utf8(bytes).map_err(|_| LoginRejection::Malformed)
}

/// Replay keys are scoped by issuer so two IdPs' ID spaces cannot collide.
fn replay_key(issuer: &str, assertion_id: &str) -> String {
    let digest = Sha256::new()
        .chain_update(issuer.as_bytes())
        .chain_update([0u8])
        .chain_update(assertion_id.as_bytes())
        .finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn metadata_xml(expect: &Expectations) -> String {
    let provider = ServiceProvider {
        entity_id: Some(expect.entity_id.clone()),
        acs_url: Some(expect.acs_url.clone()),
        ..ServiceProvider::default()
    };
    let mut descriptor = provider
        .metadata()
        .expect("entity ID, ACS and SLO URLs are set");
    for sp in descriptor.sp_sso_descriptors.iter_mut().flatten() {
        // samlgate ends sessions itself; it implements no SAML SingleLogout endpoint.
        sp.single_logout_services = None;
        sp.name_id_formats = Some(vec![
            NameIdFormat::EmailAddressNameIDFormat.value().to_owned(),
            NameIdFormat::UnspecifiedNameIDFormat.value().to_owned(),
            NameIdFormat::PersistentNameIDFormat.value().to_owned(),
        ]);
    }
    // A metadata document that expires makes IdPs that re-fetch it stop trusting us.
    descriptor.valid_until = None;
    for sp in descriptor.sp_sso_descriptors.iter_mut().flatten() {
        sp.valid_until = None;
    }
    descriptor.to_string().expect("metadata serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_limits_apply_before_and_after_decoding() {
        assert_eq!(
            decode(&"A".repeat(MAX_ENCODED_BYTES + 1)),
            Err(LoginRejection::BodyTooLarge)
        );
        let big = STANDARD.encode(vec![b'x'; MAX_RESPONSE_BYTES + 1]);
        assert_eq!(decode(&big), Err(LoginRejection::BodyTooLarge));
        assert_eq!(decode("%%%"), Err(LoginRejection::Malformed));
        assert_eq!(decode(&STANDARD.encode("<a/>")).unwrap(), "<a/>");
        assert_eq!(decode("PGEv\r\nPg==").unwrap(), "<a/>");
    }

    #[test]
    fn metadata_names_the_acs_and_wants_signed_assertions() {
        let xml = metadata_xml(&Expectations {
            entity_id: "https://gate.example/saml/metadata".into(),
            acs_url: "https://gate.example/saml/acs".into(),
            clock_skew: Duration::from_secs(90),
            require_signed_response: false,
            allow_sha1: false,
        });
        assert!(
            xml.contains(r#"entityID="https://gate.example/saml/metadata""#),
            "{xml}"
        );
        assert!(
            xml.contains(r#"Location="https://gate.example/saml/acs""#),
            "{xml}"
        );
        assert!(
            xml.contains("urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"),
            "{xml}"
        );
        assert!(xml.contains(r#"WantAssertionsSigned="true""#), "{xml}");
        assert!(xml.contains(r#"AuthnRequestsSigned="false""#), "{xml}");
        assert!(xml.contains("nameid-format:emailAddress"), "{xml}");
        assert!(!xml.contains("SingleLogoutService"), "{xml}");
        assert!(!xml.contains("validUntil"), "{xml}");
    }
}
