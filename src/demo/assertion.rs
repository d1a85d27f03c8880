//! The development IdP's SAML: reading HTTP-Redirect AuthnRequests, and building
//! and signing Responses the way Okta does (RSA-SHA256, SHA-256 digests, exclusive
//! c14n, enveloped signatures, the certificate in KeyInfo).
//!
//! Nothing here shares code with samlgate's verification (`crate::saml`): the XML is
//! written as text and signed through samael's signing path (`CryptoProvider::
//! sign_xml`, which fills the first `<ds:Signature>` template in document order),
//! only under `crate::saml::with_xmlsec` because libxml2/xmlsec are process-global.

use std::io::Read as _;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use flate2::read::DeflateDecoder;
use samael::crypto::{CryptoProvider as _, XmlSec};
use samael::schema::AuthnRequest;

use crate::pages::escape;

const NS_PROTOCOL: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
const NS_ASSERTION: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
const NS_DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";
const STATUS_SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
const BEARER: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";
const NAMEID_EMAIL: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress";
const PASSWORD_PROTECTED: &str =
    "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport";
const ATTRNAME_BASIC: &str = "urn:oasis:names:tc:SAML:2.0:attrname-format:basic";

/// Largest inflated AuthnRequest the IdP reads.
const MAX_REQUEST_BYTES: u64 = 64 * 1024;

/// Why a SAMLRequest was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum RequestError {
    /// Not base64 of raw-deflated UTF-8 (HTTP-Redirect binding), or too large.
    #[error("the SAMLRequest is not a deflated, base64-encoded AuthnRequest")]
    Encoding,
    /// The XML is not an AuthnRequest.
    #[error("the SAMLRequest is not a SAML 2.0 AuthnRequest")]
    Malformed,
}

/// Decodes the `SAMLRequest` query value of the HTTP-Redirect binding (base64,
/// then raw DEFLATE) and parses it as an AuthnRequest.
pub(super) fn decode_authn_request(saml_request: &str) -> Result<AuthnRequest, RequestError> {
    let compact: String = saml_request
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let deflated = STANDARD
        .decode(compact)
        .map_err(|_| RequestError::Encoding)?;
    let mut xml = String::new();
    DeflateDecoder::new(deflated.as_slice())
        .take(MAX_REQUEST_BYTES + 1)
        .read_to_string(&mut xml)
        .map_err(|_| RequestError::Encoding)?;
    if xml.len() as u64 > MAX_REQUEST_BYTES {
        return Err(RequestError::Encoding);
    }
    let request: AuthnRequest = xml.parse().map_err(|_| RequestError::Malformed)?;
    if request.version != "2.0" || !is_safe_id(&request.id) {
        return Err(RequestError::Malformed);
    }
    Ok(request)
}

/// A request ID the IdP will echo in InResponseTo: short, and only characters that
/// need no escaping anywhere.
fn is_safe_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 256
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Everything one Response says.
#[derive(Debug, Clone)]
pub struct ResponseParams<'a> {
    /// The app's issuer (Response and Assertion).
    pub issuer: &'a str,
    /// The SP's ACS URL: Destination and Recipient.
    pub acs_url: &'a str,
    /// The SP entity ID: the AudienceRestriction.
    pub audience: &'a str,
    /// The AuthnRequest's ID for SP-initiated logins; `None` for the dashboard tile.
    pub in_response_to: Option<&'a str>,
    /// NameID (an e-mail address).
    pub name_id: &'a str,
    /// Display name for the `name` attribute.
    pub name: &'a str,
    /// When the user authenticated at the IdP.
    pub authn_instant: DateTime<Utc>,
    /// The IdP session's index.
    pub session_index: &'a str,
    /// Issue time.
    pub now: DateTime<Utc>,
    /// How long after `now` the Assertion may be used (its NotOnOrAfter).
    pub valid_for: Duration,
}

/// An unsigned Response, with the Assertion's signature template in place.
#[derive(Debug, Clone)]
pub struct UnsignedResponse {
    /// The XML text, without insignificant whitespace.
    pub xml: String,
    /// The Response's ID.
    pub response_id: String,
    /// The Assertion's ID.
    pub assertion_id: String,
}

/// Builds the Response for `params`; `cert_b64` (DER, base64) goes into KeyInfo.
pub fn build_response(
    params: &ResponseParams<'_>,
    cert_b64: &str,
    response_id: String,
    assertion_id: String,
) -> UnsignedResponse {
    let now = instant(params.now);
    let not_before = instant(params.now - Duration::minutes(1));
    let expires = instant(params.now + params.valid_for);
    let session_ends = instant(params.now + Duration::hours(8));
    let in_response_to = params.in_response_to.map_or(String::new(), |id| {
        format!(" InResponseTo=\"{}\"", escape(id))
    });
    let issuer = escape(params.issuer);
    let acs = escape(params.acs_url);
    let attribute = |name: &str, value: &str| {
        format!(
            "<saml:Attribute Name=\"{name}\" NameFormat=\"{ATTRNAME_BASIC}\">\
             <saml:AttributeValue>{}</saml:AttributeValue></saml:Attribute>",
            escape(value)
        )
    };
    let xml = format!(
        "<samlp:Response xmlns:samlp=\"{NS_PROTOCOL}\" xmlns:saml=\"{NS_ASSERTION}\" \
         ID=\"{response_id}\" Version=\"2.0\" IssueInstant=\"{now}\" Destination=\"{acs}\"{in_response_to}>\
         <saml:Issuer>{issuer}</saml:Issuer>\
         <samlp:Status><samlp:StatusCode Value=\"{STATUS_SUCCESS}\"/></samlp:Status>\
         <saml:Assertion xmlns:saml=\"{NS_ASSERTION}\" ID=\"{assertion_id}\" Version=\"2.0\" IssueInstant=\"{now}\">\
         <saml:Issuer>{issuer}</saml:Issuer>\
         {signature}\
         <saml:Subject>\
         <saml:NameID Format=\"{NAMEID_EMAIL}\">{name_id}</saml:NameID>\
         <saml:SubjectConfirmation Method=\"{BEARER}\">\
         <saml:SubjectConfirmationData{in_response_to} NotOnOrAfter=\"{expires}\" Recipient=\"{acs}\"/>\
         </saml:SubjectConfirmation></saml:Subject>\
         <saml:Conditions NotBefore=\"{not_before}\" NotOnOrAfter=\"{expires}\">\
         <saml:AudienceRestriction><saml:Audience>{audience}</saml:Audience></saml:AudienceRestriction>\
         </saml:Conditions>\
         <saml:AuthnStatement AuthnInstant=\"{authn_instant}\" SessionIndex=\"{session_index}\" \
         SessionNotOnOrAfter=\"{session_ends}\">\
         <saml:AuthnContext><saml:AuthnContextClassRef>{PASSWORD_PROTECTED}</saml:AuthnContextClassRef>\
         </saml:AuthnContext></saml:AuthnStatement>\
         <saml:AttributeStatement>{email}{name}</saml:AttributeStatement>\
         </saml:Assertion></samlp:Response>",
        signature = signature_template(&assertion_id, cert_b64),
        name_id = escape(params.name_id),
        audience = escape(params.audience),
        authn_instant = instant(params.authn_instant),
        session_index = escape(params.session_index),
        email = attribute("email", params.name_id),
        name = attribute("name", params.name),
    );
    UnsignedResponse {
        xml,
        response_id,
        assertion_id,
    }
}

/// An enveloped-signature template referencing `#id`, for xmlsec to fill in.
fn signature_template(id: &str, cert_b64: &str) -> String {
    format!(
        "<ds:Signature xmlns:ds=\"{NS_DSIG}\"><ds:SignedInfo>\
         <ds:CanonicalizationMethod Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/>\
         <ds:SignatureMethod Algorithm=\"http://www.w3.org/2001/04/xmldsig-more#rsa-sha256\"/>\
         <ds:Reference URI=\"#{id}\"><ds:Transforms>\
         <ds:Transform Algorithm=\"http://www.w3.org/2000/09/xmldsig#enveloped-signature\"/>\
         <ds:Transform Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/></ds:Transforms>\
         <ds:DigestMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#sha256\"/>\
         <ds:DigestValue/></ds:Reference></ds:SignedInfo><ds:SignatureValue/>\
         <ds:KeyInfo><ds:X509Data><ds:X509Certificate>{cert_b64}</ds:X509Certificate>\
         </ds:X509Data></ds:KeyInfo></ds:Signature>"
    )
}

/// Why signing failed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// xmlsec refused the document or the key.
    #[error("xmlsec could not sign: {0}")]
    Xmlsec(#[from] samael::crypto::CryptoError),
    /// The signed document lost the element the next template goes after.
    #[error("the signed document has no Response Issuer")]
    NoIssuer,
}

/// Signs the Assertion (always) and then, when `sign_response`, the Response that
/// contains it, with the RSA key `key_der`. Blocking and process-global: runs under
/// [`crate::saml::with_xmlsec`]; call it from a blocking thread.
pub fn sign(
    unsigned: &UnsignedResponse,
    key_der: &[u8],
    cert_b64: &str,
    sign_response: bool,
) -> Result<String, SignError> {
    crate::saml::with_xmlsec(|| {
        // The Assertion's template is the only one, so the first in document order.
        let signed = XmlSec::sign_xml(unsigned.xml.as_str(), key_der)?;
        // Nothing covers the new SignatureValue yet, so its line breaks can go.
        let signed = unwrap_signature_values(strip_declaration(&signed));
        if !sign_response {
            return Ok(signed);
        }
        // The Response's template goes right after the Response's Issuer, which
        // comes before the Assertion: it is now the first template, and its
        // digest covers the already signed Assertion.
        const ISSUER_END: &str = "</saml:Issuer>";
        let at = signed.find(ISSUER_END).ok_or(SignError::NoIssuer)? + ISSUER_END.len();
        let with_template = format!(
            "{}{}{}",
            &signed[..at],
            signature_template(&unsigned.response_id, cert_b64),
            &signed[at..]
        );
        let signed = XmlSec::sign_xml(with_template.as_str(), key_der)?;
        // The Assertion's SignatureValue is now covered by the Response's digest
        // (and already unwrapped); only the Response's own may change.
        Ok(unwrap_signature_values(strip_declaration(&signed)))
    })
}

/// xmlsec wraps base64 SignatureValues at 64 columns; the rest of the document has
/// no line breaks, so the document becomes one line. Only valid while no digest
/// covers a SignatureValue that still has breaks (base64 ignores white space).
fn unwrap_signature_values(xml: &str) -> String {
    const OPEN: &str = "<ds:SignatureValue>";
    const CLOSE: &str = "</ds:SignatureValue>";
    let mut out = String::with_capacity(xml.len());
    let mut rest = xml;
    while let Some(start) = rest.find(OPEN) {
        let value_start = start + OPEN.len();
        let Some(len) = rest[value_start..].find(CLOSE) else {
            break;
        };
        out.push_str(&rest[..value_start]);
        out.extend(
            rest[value_start..value_start + len]
                .chars()
                .filter(|c| !c.is_ascii_whitespace()),
        );
        rest = &rest[value_start + len..];
    }
    out.push_str(rest);
    out
}

/// libxml2 writes `<?xml version="1.0"?>` and a trailing newline; the POSTed
/// Response is the element alone.
fn strip_declaration(xml: &str) -> &str {
    let xml = xml.trim();
    match xml.strip_prefix("<?xml") {
        Some(rest) => rest
            .find("?>")
            .map_or(xml, |end| rest[end + 2..].trim_start()),
        None => xml,
    }
}

/// `2024-05-01T12:00:00Z`.
fn instant(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use samael::metadata::NameIdFormat;
    use samael::service_provider::ServiceProvider;

    #[test]
    fn authn_request_round_trips_through_the_redirect_binding() {
        let provider = ServiceProvider {
            entity_id: Some("http://127.0.0.1:8080/saml/metadata".into()),
            acs_url: Some("http://127.0.0.1:8080/saml/acs".into()),
            authn_name_id_format: Some(NameIdFormat::UnspecifiedNameIDFormat.value().into()),
            ..ServiceProvider::default()
        };
        let mut request = provider
            .make_authentication_request("http://127.0.0.1:8081/app/demo/sso")
            .unwrap();
        request.id = "_0123456789abcdef0123456789abcdef".into();
        let url = request.redirect("/reports?x=1").unwrap().unwrap();
        let query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        let saml_request = &query.iter().find(|(k, _)| k == "SAMLRequest").unwrap().1;
        let relay = &query.iter().find(|(k, _)| k == "RelayState").unwrap().1;
        assert_eq!(relay, "/reports?x=1");

        let parsed = decode_authn_request(saml_request).unwrap();
        assert_eq!(parsed.id, "_0123456789abcdef0123456789abcdef");
        assert_eq!(
            parsed.issuer_value().as_deref(),
            Some("http://127.0.0.1:8080/saml/metadata")
        );
        assert_eq!(
            parsed.assertion_consumer_service_url.as_deref(),
            Some("http://127.0.0.1:8080/saml/acs")
        );
        assert_eq!(
            parsed.destination.as_deref(),
            Some("http://127.0.0.1:8081/app/demo/sso")
        );
    }

    #[test]
    fn broken_requests_are_refused() {
        assert_eq!(
            decode_authn_request("%%%").unwrap_err(),
            RequestError::Encoding
        );
        // Valid base64, but not DEFLATE.
        assert_eq!(
            decode_authn_request(&STANDARD.encode([0xffu8; 16])).unwrap_err(),
            RequestError::Encoding
        );
        let deflate = |xml: &str| {
            use std::io::Write as _;
            let mut encoder =
                flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(xml.as_bytes()).unwrap();
            STANDARD.encode(encoder.finish().unwrap())
        };
        assert_eq!(
            decode_authn_request(&deflate("<a/>")).unwrap_err(),
            RequestError::Malformed
        );
        let evil_id = format!(
            "<samlp:AuthnRequest xmlns:samlp=\"{NS_PROTOCOL}\" ID=\"x&quot;y\" Version=\"2.0\" \
             IssueInstant=\"2024-01-01T00:00:00Z\"/>"
        );
        assert_eq!(
            decode_authn_request(&deflate(&evil_id)).unwrap_err(),
            RequestError::Malformed
        );
        // A deflate bomb stops at the size limit.
        let huge = format!("<a>{}</a>", " ".repeat(MAX_REQUEST_BYTES as usize * 2));
        assert_eq!(
            decode_authn_request(&deflate(&huge)).unwrap_err(),
            RequestError::Encoding
        );
    }

    fn params(now: DateTime<Utc>) -> ResponseParams<'static> {
        ResponseParams {
            issuer: "http://127.0.0.1:8081/app/demo",
            acs_url: "http://127.0.0.1:8080/saml/acs",
            audience: "http://127.0.0.1:8080/saml/metadata",
            in_response_to: Some("_request"),
            name_id: "alice@demo.example",
            name: "Alice <Anderson>",
            authn_instant: now,
            valid_for: Duration::minutes(5),
            session_index: "_session",
            now,
        }
    }

    #[test]
    fn response_has_every_element_and_no_whitespace_between_them() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let unsigned = build_response(&params(now), "Q0VSVA==", "_r".into(), "_a".into());
        let xml = &unsigned.xml;
        assert!(!xml.contains(">\n") && !xml.contains("> <"), "{xml}");
        let doc = roxmltree::Document::parse(xml).unwrap();
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "Response");
        assert_eq!(root.attribute("InResponseTo"), Some("_request"));
        assert_eq!(
            root.attribute("Destination"),
            Some("http://127.0.0.1:8080/saml/acs")
        );
        let find = |name: &str| {
            doc.descendants()
                .find(|n| n.tag_name().name() == name)
                .unwrap_or_else(|| panic!("no {name} in {xml}"))
        };
        let assertion = find("Assertion");
        let children: Vec<&str> = assertion
            .children()
            .filter(|n| n.is_element())
            .map(|n| n.tag_name().name())
            .collect();
        assert_eq!(
            children,
            [
                "Issuer",
                "Signature",
                "Subject",
                "Conditions",
                "AuthnStatement",
                "AttributeStatement"
            ]
        );
        assert_eq!(find("NameID").text(), Some("alice@demo.example"));
        let data = find("SubjectConfirmationData");
        assert_eq!(data.attribute("InResponseTo"), Some("_request"));
        assert_eq!(data.attribute("NotOnOrAfter"), Some("2023-11-14T22:18:20Z"));
        assert_eq!(
            find("Conditions").attribute("NotBefore"),
            Some("2023-11-14T22:12:20Z")
        );
        assert_eq!(
            find("AuthnStatement").attribute("SessionNotOnOrAfter"),
            Some("2023-11-15T06:13:20Z")
        );
        assert!(xml.contains("Alice &lt;Anderson&gt;"), "{xml}");
        assert_eq!(find("Reference").attribute("URI"), Some("#_a"));

        let tile = ResponseParams {
            in_response_to: None,
            ..params(now)
        };
        let unsolicited = build_response(&tile, "Q0VSVA==", "_r".into(), "_a".into());
        assert!(!unsolicited.xml.contains("InResponseTo"));
    }

    /// Signs with a fresh key and checks the result with xmlsec through samael's
    /// verification (not samlgate's), both with and without the Response signature.
    #[test]
    fn signed_responses_verify_with_the_certificate() {
        let identity = super::super::idp::SigningIdentity::generate().unwrap();
        let now = Utc::now();
        for sign_response in [false, true] {
            let unsigned = build_response(
                &params(now),
                &identity.cert_b64,
                super::super::web::random_id(),
                super::super::web::random_id(),
            );
            let signed = sign(
                &unsigned,
                &identity.key_der,
                &identity.cert_b64,
                sign_response,
            )
            .unwrap();
            assert!(signed.starts_with("<samlp:Response"), "{signed}");
            assert!(!signed.contains('\n'), "{signed}");
            let doc = roxmltree::Document::parse(&signed).unwrap();
            let parents: Vec<&str> = doc
                .descendants()
                .filter(|n| n.tag_name().name() == "Signature")
                .map(|n| n.parent_element().unwrap().tag_name().name())
                .collect();
            let expected: &[&str] = if sign_response {
                &["Response", "Assertion"]
            } else {
                &["Assertion"]
            };
            assert_eq!(parents, expected);
            for value in doc
                .descendants()
                .filter(|n| matches!(n.tag_name().name(), "DigestValue" | "SignatureValue"))
            {
                assert!(!value.text().unwrap_or("").trim().is_empty());
            }

            let cert = samael::crypto::CertificateDer::from(identity.cert_der.clone());
            crate::saml::with_xmlsec(|| {
                XmlSec::reduce_xml_to_signed(
                    &signed,
                    std::slice::from_ref(&cert),
                    Default::default(),
                )
                .expect("the signature verifies");
                let tampered = signed.replace("alice@demo.example", "mallory@demo.example");
                assert!(
                    XmlSec::reduce_xml_to_signed(&tampered, &[cert], Default::default()).is_err()
                );
            });
        }
    }
}
