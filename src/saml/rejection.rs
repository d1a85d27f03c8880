//! Why a login was refused: one closed set of reason codes for the audit log,
//! the `samlgate_logins_total` metric and the generic failure page.

/// A refused SAMLResponse. Variants carry no attacker-supplied values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoginRejection {
    /// POST body or decoded SAMLResponse over the size limit.
    #[error("body_too_large")]
    BodyTooLarge,
    /// Not base64, not UTF-8, not well-formed XML, or not a SAML Response.
    #[error("malformed")]
    Malformed,
    /// A DTD, entity declaration or processing instruction.
    #[error("dtd_forbidden")]
    DtdForbidden,
    /// No tenant has the response's Issuer.
    #[error("unknown_issuer")]
    UnknownIssuer,
    /// The tenant directory could not be asked.
    #[error("tenant_lookup_unavailable")]
    TenantLookupUnavailable,
    /// An EncryptedAssertion (samlgate has no decryption key).
    #[error("encrypted_assertion")]
    EncryptedAssertion,
    /// Not exactly one Assertion, or one outside its place as a child of the Response.
    #[error("assertion_count")]
    AssertionCount,
    /// Two elements share an ID.
    #[error("duplicate_id")]
    DuplicateId,
    /// No signature at all.
    #[error("signature_missing")]
    SignatureMissing,
    /// The signature does not verify with the tenant's certificates.
    #[error("signature_invalid")]
    SignatureInvalid,
    /// A signature that is not enveloped in, and referencing, the Response or the Assertion.
    #[error("signature_reference")]
    SignatureReference,
    /// A signature or digest algorithm outside the allowed set.
    #[error("signature_algorithm")]
    SignatureAlgorithm,
    /// A canonicalisation or transform other than exclusive c14n and enveloped-signature.
    #[error("signature_transform")]
    SignatureTransform,
    /// `sp.require_signed_response` and the Response itself is unsigned.
    #[error("response_unsigned")]
    ResponseUnsigned,
    /// Status is missing or not Success.
    #[error("status_not_success")]
    StatusNotSuccess,
    /// Issuer differs from the tenant's `idp_issuer`.
    #[error("issuer_mismatch")]
    IssuerMismatch,
    /// Destination differs from the ACS URL.
    #[error("destination_mismatch")]
    DestinationMismatch,
    /// SubjectConfirmationData Recipient differs from the ACS URL.
    #[error("recipient_mismatch")]
    RecipientMismatch,
    /// No usable bearer SubjectConfirmation.
    #[error("subject_confirmation_missing")]
    SubjectConfirmationMissing,
    /// The bearer confirmation is expired or not yet valid.
    #[error("subject_confirmation_expired")]
    SubjectConfirmationExpired,
    /// Conditions NotBefore (or IssueInstant) lies in the future beyond the clock skew.
    #[error("not_yet_valid")]
    NotYetValid,
    /// Conditions NotOnOrAfter has passed beyond the clock skew.
    #[error("expired")]
    Expired,
    /// No Conditions element.
    #[error("conditions_missing")]
    ConditionsMissing,
    /// No AudienceRestriction naming our entity ID.
    #[error("audience_mismatch")]
    AudienceMismatch,
    /// InResponseTo names no request this samlgate issued to this browser.
    #[error("in_response_to_unknown")]
    InResponseToUnknown,
    /// An unsolicited response while `sp.allow_idp_initiated` is false.
    #[error("unsolicited")]
    Unsolicited,
    /// The Assertion ID was seen before.
    #[error("replayed")]
    Replayed,
    /// The replay store could not be asked; fail closed.
    #[error("replay_store_unavailable")]
    ReplayStoreUnavailable,
    /// No NameID, or an empty one.
    #[error("name_id_missing")]
    NameIdMissing,
}

impl LoginRejection {
    /// The reason code used in logs and metrics.
    pub fn code(self) -> &'static str {
        match self {
            Self::BodyTooLarge => "body_too_large",
            Self::Malformed => "malformed",
            Self::DtdForbidden => "dtd_forbidden",
            Self::UnknownIssuer => "unknown_issuer",
            Self::TenantLookupUnavailable => "tenant_lookup_unavailable",
            Self::EncryptedAssertion => "encrypted_assertion",
            Self::AssertionCount => "assertion_count",
            Self::DuplicateId => "duplicate_id",
            Self::SignatureMissing => "signature_missing",
            Self::SignatureInvalid => "signature_invalid",
            Self::SignatureReference => "signature_reference",
            Self::SignatureAlgorithm => "signature_algorithm",
            Self::SignatureTransform => "signature_transform",
            Self::ResponseUnsigned => "response_unsigned",
            Self::StatusNotSuccess => "status_not_success",
            Self::IssuerMismatch => "issuer_mismatch",
            Self::DestinationMismatch => "destination_mismatch",
            Self::RecipientMismatch => "recipient_mismatch",
            Self::SubjectConfirmationMissing => "subject_confirmation_missing",
            Self::SubjectConfirmationExpired => "subject_confirmation_expired",
            Self::NotYetValid => "not_yet_valid",
            Self::Expired => "expired",
            Self::ConditionsMissing => "conditions_missing",
            Self::AudienceMismatch => "audience_mismatch",
            Self::InResponseToUnknown => "in_response_to_unknown",
            Self::Unsolicited => "unsolicited",
            Self::Replayed => "replayed",
            Self::ReplayStoreUnavailable => "replay_store_unavailable",
            Self::NameIdMissing => "name_id_missing",
        }
    }

    /// Whether the refusal is our fault rather than the response's (answered 503, not 403).
    pub fn is_unavailable(self) -> bool {
        matches!(
            self,
            Self::TenantLookupUnavailable | Self::ReplayStoreUnavailable
        )
    }
}
