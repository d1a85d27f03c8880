//! Entry points and fixed setups for the fuzz targets in `fuzz/` and for the tests
//! that replay their corpora (`tests/properties.rs`). Not part of samlgate's API.
//!
//! [`acs`] runs the code path of [`Saml::consume`](super::Saml::consume) from the
//! `SAMLResponse` form value to the decision, for one fixed tenant at one fixed
//! time: size limits and base64 → strict pre-scan → issuer to tenant → samael/xmlsec
//! signature verification and every SPEC §8 condition → InResponseTo. Left out are
//! the async parts: the tenant directory (one tenant, compared by issuer, stands in
//! for it), the browser's request-state cookie (one fixed pending request,
//! [`REQUEST_ID`], stands in for it, and unsolicited responses are allowed) and the
//! replay cache (every call is a first use).
//!
//! The IdP certificate is a test-only fixture (`fuzz/fixtures/test-only-idp-*.pem`);
//! its private key is committed next to it and protects nothing.
//!
//! Time: samlgate's own checks use [`NOW`], but samael also compares IssueInstant,
//! NotBefore and NotOnOrAfter with the wall clock (IssueInstant at most 5 minutes +
//! skew old). So the committed seeds are issued at 2099-01-01T00:00:00Z (a minute
//! before [`NOW`]), expire five minutes later and carry a NotBefore in 2020: they
//! pass both clocks until 2099.

use std::sync::LazyLock;
use std::time::Duration;

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::CertificateDer;

use super::verify::{self, Expectations};
use super::{decode, prescan, LoginRejection};
use crate::config::{SessionConfig, Tenant};
use crate::session::{SessionCodec, SessionKey};

/// The test-only IdP certificate the fixed tenant trusts.
pub const IDP_CERTIFICATE_PEM: &str = include_str!("../../fuzz/fixtures/test-only-idp-cert.pem");
/// The fixed tenant's `idp_issuer`.
pub const IDP_ISSUER: &str = "http://www.okta.com/exkfuzz0000000000000";
/// The fixed tenant's `company_id`.
pub const COMPANY_ID: &str = "fuzz";
/// `sp.entity_id`.
pub const SP_ENTITY_ID: &str = "http://gate.test/saml/metadata";
/// The ACS URL (Destination and Recipient).
pub const ACS_URL: &str = "http://gate.test/saml/acs";
/// `sp.clock_skew`.
pub const CLOCK_SKEW: Duration = Duration::from_secs(90);
/// The ID of the one AuthnRequest this "browser" has pending.
pub const REQUEST_ID: &str = "id-fuzz-pending-request";
/// The fixed time of every decision: 2099-01-01T00:01:00Z.
pub const NOW: i64 = 4_070_908_800 + 60;

static TENANT: LazyLock<Tenant> = LazyLock::new(|| Tenant {
    company_id: COMPANY_ID.to_owned(),
    idp_sso_url: "http://idp.test/app/fuzz/sso/saml"
        .parse()
        .expect("a valid URL"),
    idp_issuer: IDP_ISSUER.to_owned(),
    idp_certificates: CertificateDer::pem_slice_iter(IDP_CERTIFICATE_PEM.as_bytes())
        .collect::<Result<_, _>>()
        .expect("the fixture certificate is PEM"),
    idp_slo_url: None,
});

fn expectations() -> Expectations {
    Expectations {
        entity_id: SP_ENTITY_ID.to_owned(),
        acs_url: ACS_URL.to_owned(),
        clock_skew: CLOCK_SKEW,
        require_signed_response: false,
        allow_sha1: false,
    }
}

/// Judges `input`, the `SAMLResponse` form value (base64, form-decoded), for the
/// fixed tenant at [`NOW`]: the NameID of an accepted response, or the reason code
/// of the refusal. Blocking (xmlsec).
pub fn acs(input: &[u8]) -> Result<String, &'static str> {
    judge(&String::from_utf8_lossy(input)).map_err(LoginRejection::code)
}

fn judge(field: &str) -> Result<String, LoginRejection> {
    let expect = expectations();
    let xml = decode(field)?;
    let shape = prescan::prescan(&xml, expect.allow_sha1)?;
    let issuer = shape
        .response_issuer
        .as_deref()
        .or(shape.assertion_issuer.as_deref())
        .ok_or(LoginRejection::UnknownIssuer)?;
    if issuer != TENANT.idp_issuer {
        return Err(LoginRejection::UnknownIssuer);
    }
    let now = chrono::DateTime::from_timestamp(NOW, 0).expect("a valid timestamp");
    let verified = verify::verify(&xml, &shape, &TENANT, &expect, now)?;
    match verified.in_response_to.as_deref() {
        Some(REQUEST_ID) | None => Ok(verified.name_id),
        Some(_) => Err(LoginRejection::InResponseToUnknown),
    }
}

/// The test-only session key of the `session` fuzz target and its seeds.
pub const SESSION_KEY_BASE64: &str = "u0vdVAkYbd1tyLJ+uYcf8ESQrdS0HRr0ILZbpsB5nzQ=";
/// The session cookie's name there.
pub const SESSION_COOKIE: &str = "samlgate_session";

/// The session codec of the `session` fuzz target: [`SESSION_KEY_BASE64`], 8 hours.
pub fn session_codec() -> SessionCodec {
    SessionCodec::new(
        &SessionConfig {
            cookie_name: SESSION_COOKIE.to_owned(),
            keys: vec![SessionKey::from_base64(SESSION_KEY_BASE64).expect("a 32-byte key")],
            ttl: Duration::from_secs(8 * 3600),
        },
        false,
    )
}
