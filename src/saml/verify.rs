//! Signature verification with samael/xmlsec, then every SPEC §8 condition on the
//! verified Assertion.
//!
//! samael runs in `ReduceMode::PreDigest`: the Assertion we read is parsed from
//! xmlsec's own canonical bytes of the element it verified (comments dropped by
//! exclusive c14n, so a `<!---->`-split NameID reads as its full signed text), never
//! from the raw document.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use samael::crypto::AllowedSignatureAlgorithm;
use samael::metadata::EntityDescriptor;
use samael::schema::Assertion;
use samael::service_provider::{Error as SamlError, ServiceProvider};

use super::prescan::Shape;
use super::LoginRejection;
use crate::config::Tenant;
use crate::pages::escape;

const STATUS_SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
const BEARER: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";

/// What the service provider expects of every response.
#[derive(Debug, Clone)]
pub(super) struct Expectations {
    pub entity_id: String,
    pub acs_url: String,
    pub clock_skew: Duration,
    pub require_signed_response: bool,
    pub allow_sha1: bool,
}

/// The facts a login may use, all read from the verified Assertion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Verified {
    pub assertion_id: String,
    pub name_id: String,
    /// The InResponseTo values present (Response and SubjectConfirmationData), equal if both.
    pub in_response_to: Option<String>,
    pub session_not_on_or_after: Option<i64>,
    pub authn_instant: Option<i64>,
    /// Until when the Assertion could be presented; the replay cache keeps its ID that long.
    pub valid_until: i64,
}

/// Verifies `xml` (already pre-scanned into `shape`) for `tenant`. Blocking: call
/// it from a blocking thread.
pub(super) fn verify(
    xml: &str,
    shape: &Shape,
    tenant: &Tenant,
    expect: &Expectations,
    now: DateTime<Utc>,
) -> Result<Verified, LoginRejection> {
    if expect.require_signed_response && !shape.response_signed {
        return Err(LoginRejection::ResponseUnsigned);
    }
    if shape.status.as_deref() != Some(STATUS_SUCCESS) {
        return Err(LoginRejection::StatusNotSuccess);
    }
    let issuer_ok =
        |issuer: &Option<String>| issuer.as_deref().is_none_or(|i| i == tenant.idp_issuer);
    if !issuer_ok(&shape.response_issuer)
        || shape.assertion_issuer.as_deref() != Some(&tenant.idp_issuer)
    {
        return Err(LoginRejection::IssuerMismatch);
    }
    if shape
        .destination
        .as_deref()
        .is_some_and(|d| d != expect.acs_url)
    {
        return Err(LoginRejection::DestinationMismatch);
    }

    let assertion = verify_signature(xml, tenant, expect)?;
    if assertion.id != shape.assertion_id {
        return Err(LoginRejection::SignatureReference);
    }
    check_assertion(&assertion, shape, tenant, expect, now)
}

fn verify_signature(
    xml: &str,
    tenant: &Tenant,
    expect: &Expectations,
) -> Result<Assertion, LoginRejection> {
    let skew = chrono::Duration::from_std(expect.clock_skew).unwrap_or(chrono::Duration::MAX);
    let provider = ServiceProvider {
        entity_id: Some(expect.entity_id.clone()),
        acs_url: Some(expect.acs_url.clone()),
        idp_metadata: idp_metadata(tenant)?,
        // samlgate checks InResponseTo itself, bound to the browser's request state.
        allow_idp_initiated: true,
        max_clock_skew: skew,
        // Okta assertions live 5 minutes; anything issued longer ago is stale.
        max_issue_delay: chrono::Duration::minutes(5) + skew,
        // samael has no SHA-1 variant; with allow_sha1 the pre-scan is the filter.
        allowed_signature_algorithms: (!expect.allow_sha1).then(|| {
            vec![
                AllowedSignatureAlgorithm::RsaSha256,
                AllowedSignatureAlgorithm::RsaSha384,
                AllowedSignatureAlgorithm::RsaSha512,
                AllowedSignatureAlgorithm::EcdsaSha256,
                AllowedSignatureAlgorithm::EcdsaSha384,
                AllowedSignatureAlgorithm::EcdsaSha512,
            ]
        }),
        ..ServiceProvider::default()
    };
    // samael parses responses unverified when it finds no certificate: never let it.
    match provider.idp_signing_certs() {
        Ok(Some(certs)) if !certs.is_empty() => {}
        _ => return Err(LoginRejection::SignatureInvalid),
    }
    super::xmlsec::locked(|| {
        provider.parse_xml_response_with_mode(xml, None, samael::crypto::ReduceMode::PreDigest)
    })
    .map_err(map_samael_error)
}

fn idp_metadata(tenant: &Tenant) -> Result<EntityDescriptor, LoginRejection> {
    let keys: String = tenant
        .idp_certificates
        .iter()
        .map(|der| {
            format!(
                "<md:KeyDescriptor use=\"signing\"><ds:KeyInfo><ds:X509Data>\
                 <ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>\
                 </md:KeyDescriptor>",
                STANDARD.encode(der.as_ref())
            )
        })
        .collect();
    format!(
        "<md:EntityDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\" \
         xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\" entityID=\"{issuer}\">\
         <md:IDPSSODescriptor protocolSupportEnumeration=\"urn:oasis:names:tc:SAML:2.0:protocol\">\
         {keys}<md:SingleSignOnService Binding=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect\" \
         Location=\"{sso}\"/></md:IDPSSODescriptor></md:EntityDescriptor>",
        issuer = escape(&tenant.idp_issuer),
        sso = escape(tenant.idp_sso_url.as_str()),
    )
    .parse()
    .map_err(|_| LoginRejection::SignatureInvalid)
}

/// samael's own checks overlap ours; its errors embed attacker values, so only the
/// variant survives.
fn map_samael_error(error: SamlError) -> LoginRejection {
    match error {
        SamlError::DestinationValidationError { .. } => LoginRejection::DestinationMismatch,
        SamlError::AssertionExpired { .. }
        | SamlError::ResponseExpired { .. }
        | SamlError::AssertionConditionExpired { .. } => LoginRejection::Expired,
        SamlError::AssertionConditionExpiredBefore { .. } => LoginRejection::NotYetValid,
        SamlError::AssertionBearerSubjectConfirmationMissing
        | SamlError::AssertionSubjectConfirmationMissing => {
            LoginRejection::SubjectConfirmationMissing
        }
        SamlError::AssertionSubjectConfirmationExpired { .. }
        | SamlError::AssertionSubjectConfirmationExpiredBefore { .. } => {
            LoginRejection::SubjectConfirmationExpired
        }
        SamlError::AssertionIssuerMismatch { .. } | SamlError::ResponseIssuerMismatch { .. } => {
            LoginRejection::IssuerMismatch
        }
        SamlError::AssertionConditionAudienceRestrictionFailed { .. } => {
            LoginRejection::AudienceMismatch
        }
        SamlError::AssertionRecipientMismatch { .. } => LoginRejection::RecipientMismatch,
        SamlError::ResponseBadStatusCode { .. } => LoginRejection::StatusNotSuccess,
        SamlError::FailedToValidateSignature => LoginRejection::SignatureInvalid,
        _ => LoginRejection::Malformed,
    }
}

fn check_assertion(
    assertion: &Assertion,
    shape: &Shape,
    tenant: &Tenant,
    expect: &Expectations,
    now: DateTime<Utc>,
) -> Result<Verified, LoginRejection> {
    let skew = chrono::Duration::from_std(expect.clock_skew).unwrap_or(chrono::Duration::MAX);
    if assertion.issuer.value.as_deref() != Some(tenant.idp_issuer.as_str()) {
        return Err(LoginRejection::IssuerMismatch);
    }
    if assertion.issue_instant > now + skew {
        return Err(LoginRejection::NotYetValid);
    }

    let conditions = assertion
        .conditions
        .as_ref()
        .ok_or(LoginRejection::ConditionsMissing)?;
    if conditions.not_before.is_some_and(|t| now + skew < t) {
        return Err(LoginRejection::NotYetValid);
    }
    if conditions.not_on_or_after.is_some_and(|t| t + skew <= now) {
        return Err(LoginRejection::Expired);
    }
    let audience_ok = conditions
        .audience_restrictions
        .as_ref()
        .is_some_and(|all| {
            !all.is_empty() && all.iter().all(|r| r.audience.contains(&expect.entity_id))
        });
    if !audience_ok {
        return Err(LoginRejection::AudienceMismatch);
    }

    let subject = assertion
        .subject
        .as_ref()
        .ok_or(LoginRejection::SubjectConfirmationMissing)?;
    let name_id = subject
        .name_id
        .as_ref()
        .map(|n| n.value.clone())
        .filter(|v| !v.trim().is_empty())
        .ok_or(LoginRejection::NameIdMissing)?;
    let bearer = subject
        .subject_confirmations
        .iter()
        .flatten()
        .filter(|c| c.method.as_deref() == Some(BEARER))
        .filter_map(|c| c.subject_confirmation_data.as_ref())
        .collect::<Vec<_>>();
    let [data] = bearer.as_slice() else {
        return Err(LoginRejection::SubjectConfirmationMissing);
    };
    if data.recipient.as_deref() != Some(expect.acs_url.as_str()) {
        return Err(LoginRejection::RecipientMismatch);
    }
    let confirmation_until = data
        .not_on_or_after
        .ok_or(LoginRejection::SubjectConfirmationMissing)?;
    if confirmation_until + skew <= now || data.not_before.is_some_and(|t| now + skew < t) {
        return Err(LoginRejection::SubjectConfirmationExpired);
    }

    // The Response's InResponseTo counts only when the Response itself was signed:
    // otherwise anyone could make an unsolicited Assertion look solicited.
    let response_in_response_to = shape
        .in_response_to
        .as_ref()
        .filter(|_| shape.response_signed);
    let in_response_to = match (response_in_response_to, &data.in_response_to) {
        (Some(a), Some(b)) if a != b => return Err(LoginRejection::InResponseToUnknown),
        (Some(id), _) | (None, Some(id)) => Some(id.clone()),
        (None, None) => None,
    };
    if let (Some(unsigned), Some(signed)) = (&shape.in_response_to, &data.in_response_to) {
        if unsigned != signed {
            return Err(LoginRejection::InResponseToUnknown);
        }
    }

    let statement = assertion.authn_statements.iter().flatten().next();
    let valid_until = conditions
        .not_on_or_after
        .map_or(confirmation_until, |c| c.max(confirmation_until))
        + skew;
    Ok(Verified {
        assertion_id: assertion.id.clone(),
        name_id,
        in_response_to,
        session_not_on_or_after: statement
            .and_then(|s| s.session_not_on_or_after)
            .map(|t| t.timestamp()),
        authn_instant: statement
            .and_then(|s| s.authn_instant)
            .map(|t| t.timestamp()),
        valid_until: valid_until.timestamp(),
    })
}
