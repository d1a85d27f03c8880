//! A test IdP that really signs, sharing no code with samlgate: responses are built
//! as text and signed by the `xmlsec1` command-line tool (XML-DSig templates,
//! enveloped signature + exclusive c14n, RSA-SHA256 / SHA-256 by default) with a
//! per-IdP RSA 2048 key and self-signed certificate made by the `openssl` CLI.
//!
//! Also here: the attack builders (XML signature wrapping XSW1–XSW8 in SAMLRaider's
//! numbering, comment injection, DTD/XXE, …) that operate on a validly signed
//! response string by plain string surgery (the response format is ours, so the
//! element boundaries are known), and helpers for the HTTP-Redirect binding.

use std::io::Read as _;
use std::ops::Range;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use base64::Engine as _;

use super::{get, Browser, RawResponse};

/// samlgate's ACS URL and SP entity ID for `public_url = "http://gate.test"`.
pub const ACS_URL: &str = "http://gate.test/saml/acs";
pub const SP_ENTITY_ID: &str = "http://gate.test/saml/metadata";

/// The NameID an attacker wants to become (register it as a linked account, so a
/// wrongly accepted attack shows up as a session rather than a "not linked" page).
pub const EVIL_NAME_ID: &str = "admin@acme.com";

pub const NS_PROTOCOL: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
pub const NS_ASSERTION: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
pub const NS_DS: &str = "http://www.w3.org/2000/09/xmldsig#";

pub const STATUS_SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
pub const STATUS_RESPONDER: &str = "urn:oasis:names:tc:SAML:2.0:status:Responder";
pub const CM_BEARER: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";
pub const CM_HOLDER_OF_KEY: &str = "urn:oasis:names:tc:SAML:2.0:cm:holder-of-key";
pub const NAMEID_EMAIL: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress";

/// Algorithm URIs for [`SigAlgs`].
pub mod alg {
    pub const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
    pub const RSA_SHA1: &str = "http://www.w3.org/2000/09/xmldsig#rsa-sha1";
    pub const SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";
    pub const SHA1: &str = "http://www.w3.org/2000/09/xmldsig#sha1";
    pub const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
    pub const EXC_C14N_WITH_COMMENTS: &str = "http://www.w3.org/2001/10/xml-exc-c14n#WithComments";
    pub const C14N: &str = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315";
    pub const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
    pub const XPATH: &str = "http://www.w3.org/TR/1999/REC-xpath-19991116";
}

/// The algorithms of one `<ds:Signature>` template.
#[derive(Debug, Clone)]
pub struct SigAlgs {
    /// SignedInfo's CanonicalizationMethod.
    pub c14n: String,
    pub signature: String,
    pub digest: String,
    /// The Reference's `<ds:Transform>` elements, verbatim (`ds` prefix in scope).
    pub transforms: Vec<String>,
}

fn transform(algorithm: &str) -> String {
    format!(r#"<ds:Transform Algorithm="{algorithm}"/>"#)
}

impl Default for SigAlgs {
    /// What Okta does: exclusive c14n, enveloped signature, RSA-SHA256, SHA-256.
    fn default() -> Self {
        Self {
            c14n: alg::EXC_C14N.into(),
            signature: alg::RSA_SHA256.into(),
            digest: alg::SHA256.into(),
            transforms: vec![transform(alg::ENVELOPED), transform(alg::EXC_C14N)],
        }
    }
}

impl SigAlgs {
    /// RSA-SHA1 with a SHA-1 digest.
    pub fn sha1() -> Self {
        Self {
            signature: alg::RSA_SHA1.into(),
            digest: alg::SHA1.into(),
            ..Self::default()
        }
    }

    /// exc-c14n#WithComments as the Reference's c14n transform.
    pub fn with_comments_transform() -> Self {
        Self {
            transforms: vec![
                transform(alg::ENVELOPED),
                transform(alg::EXC_C14N_WITH_COMMENTS),
            ],
            ..Self::default()
        }
    }

    /// exc-c14n#WithComments as SignedInfo's CanonicalizationMethod.
    pub fn with_comments_signed_info() -> Self {
        Self {
            c14n: alg::EXC_C14N_WITH_COMMENTS.into(),
            ..Self::default()
        }
    }

    /// Inclusive c14n 1.0 as the Reference's c14n transform.
    pub fn inclusive_transform() -> Self {
        Self {
            transforms: vec![transform(alg::ENVELOPED), transform(alg::C14N)],
            ..Self::default()
        }
    }

    /// Inclusive c14n 1.0 as SignedInfo's CanonicalizationMethod.
    pub fn inclusive_signed_info() -> Self {
        Self {
            c14n: alg::C14N.into(),
            ..Self::default()
        }
    }

    /// An XPath filter transform between enveloped-signature and exc-c14n.
    pub fn xpath_transform() -> Self {
        Self {
            transforms: vec![
                transform(alg::ENVELOPED),
                format!(
                    r#"<ds:Transform Algorithm="{}"><ds:XPath>not(ancestor-or-self::ds:Signature)</ds:XPath></ds:Transform>"#,
                    alg::XPATH
                ),
                transform(alg::EXC_C14N),
            ],
            ..Self::default()
        }
    }
}

/// Everything that goes into one SAMLResponse. Times are offsets in seconds from now.
#[derive(Debug, Clone)]
pub struct ResponseSpec {
    pub response_id: String,
    pub assertion_id: String,
    /// `None`: the Subject has no NameID.
    pub name_id: Option<String>,
    pub name_id_format: String,
    /// Response/@Destination; `None` omits it.
    pub destination: Option<String>,
    /// SubjectConfirmationData/@Recipient; `None` omits it.
    pub recipient: Option<String>,
    /// `None`: Conditions without an AudienceRestriction.
    pub audience: Option<String>,
    pub include_conditions: bool,
    /// Response/@InResponseTo.
    pub in_response_to: Option<String>,
    /// SubjectConfirmationData/@InResponseTo.
    pub subject_in_response_to: Option<String>,
    /// The Response's Issuer; `None` omits it.
    pub response_issuer: Option<String>,
    pub assertion_issuer: String,
    /// The top-level StatusCode value.
    pub status: String,
    pub issue_instant: i64,
    /// Conditions/@NotBefore.
    pub not_before: i64,
    /// Conditions/@NotOnOrAfter.
    pub not_on_or_after: i64,
    /// SubjectConfirmationData/@NotOnOrAfter.
    pub subject_not_on_or_after: i64,
    /// SubjectConfirmation/@Method; `None`: no SubjectConfirmation at all.
    pub subject_confirmation: Option<String>,
    pub session_not_on_or_after: Option<i64>,
    pub authn_instant: i64,
    pub sign_assertion: bool,
    pub sign_response: bool,
    pub algs: SigAlgs,
    /// Overrides the Reference URI of the signature(s) (default `#<ID>`).
    pub reference_uri: Option<String>,
    pub attributes: Vec<(String, String)>,
    /// Replace the Assertion by an (undecryptable) EncryptedAssertion.
    pub encrypted_assertion: bool,
}

impl ResponseSpec {
    /// A response to the AuthnRequest `request_id` (InResponseTo on the Response and
    /// on the SubjectConfirmationData).
    pub fn for_request(mut self, request_id: &str) -> Self {
        self.in_response_to = Some(request_id.to_owned());
        self.subject_in_response_to = Some(request_id.to_owned());
        self
    }

    /// Destination and Recipient.
    pub fn acs_url(mut self, url: &str) -> Self {
        self.destination = Some(url.to_owned());
        self.recipient = Some(url.to_owned());
        self
    }
}

/// A fresh XML ID (an NCName).
pub fn new_id() -> String {
    format!("id{:032x}", rand::random::<u128>())
}

fn instant(offset: i64) -> String {
    let now = SystemTime::now();
    let at = if offset >= 0 {
        now + Duration::from_secs(offset as u64)
    } else {
        now - Duration::from_secs(offset.unsigned_abs())
    };
    humantime::format_rfc3339_millis(at).to_string()
}

/// Escapes text and attribute values.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// An IdP with its own RSA key and self-signed certificate.
pub struct TestIdp {
    pub issuer: String,
    pub cert_pem: String,
    pub key_pem: String,
    dir: tempfile::TempDir,
    xmlsec1: PathBuf,
    counter: AtomicUsize,
}

impl TestIdp {
    /// `None` (test skipped) when xmlsec1 or openssl is missing and CI is not set.
    pub fn new(issuer: &str) -> Option<Self> {
        let xmlsec1 = super::program("xmlsec1", &["/usr/bin/xmlsec1"])?;
        let openssl = super::program("openssl", &["/usr/bin/openssl"])?;
        let dir = tempfile::tempdir().unwrap();
        let output = Command::new(openssl)
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args(["-subj", "/CN=samlgate test IdP"])
            .arg("-keyout")
            .arg(dir.path().join("key.pem"))
            .arg("-out")
            .arg(dir.path().join("cert.pem"))
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "openssl req failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let cert_pem = std::fs::read_to_string(dir.path().join("cert.pem")).unwrap();
        let key_pem = std::fs::read_to_string(dir.path().join("key.pem")).unwrap();
        Some(Self {
            issuer: issuer.to_owned(),
            cert_pem,
            key_pem,
            dir,
            xmlsec1,
            counter: AtomicUsize::new(0),
        })
    }

    pub fn cert_path(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    fn key_path(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }

    /// The certificate's DER as one line of base64 (the content of `<ds:X509Certificate>`).
    pub fn cert_base64(&self) -> String {
        self.cert_pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect()
    }

    /// The defaults of a valid, IdP-initiated response for `name_id`: Response
    /// unsigned, Assertion signed, valid for 5 minutes.
    pub fn spec(&self, name_id: &str) -> ResponseSpec {
        ResponseSpec {
            response_id: new_id(),
            assertion_id: new_id(),
            name_id: Some(name_id.to_owned()),
            name_id_format: NAMEID_EMAIL.into(),
            destination: Some(ACS_URL.into()),
            recipient: Some(ACS_URL.into()),
            audience: Some(SP_ENTITY_ID.into()),
            include_conditions: true,
            in_response_to: None,
            subject_in_response_to: None,
            response_issuer: Some(self.issuer.clone()),
            assertion_issuer: self.issuer.clone(),
            status: STATUS_SUCCESS.into(),
            issue_instant: 0,
            not_before: -60,
            not_on_or_after: 300,
            subject_not_on_or_after: 300,
            subject_confirmation: Some(CM_BEARER.into()),
            session_not_on_or_after: None,
            authn_instant: -5,
            sign_assertion: true,
            sign_response: false,
            algs: SigAlgs::default(),
            reference_uri: None,
            attributes: Vec::new(),
            encrypted_assertion: false,
        }
    }

    /// The signed response XML (with its XML declaration).
    pub fn response(&self, spec: &ResponseSpec) -> String {
        let assertion = if spec.encrypted_assertion {
            encrypted_assertion()
        } else {
            assertion_xml(spec)
        };
        let build = |assertion: &str, response_signature: &str| {
            response_xml(spec, response_signature, assertion)
        };
        let mut xml = build(&assertion, "");
        if spec.sign_assertion && !spec.encrypted_assertion {
            let template = signature_template(
                spec.reference_uri
                    .clone()
                    .unwrap_or_else(|| format!("#{}", spec.assertion_id)),
                &spec.algs,
            );
            let assertion = assertion.replacen(ASSERTION_SIGNATURE_SLOT, &template, 1);
            xml = self.sign(&build(&assertion, ""));
        }
        xml = xml.replacen(ASSERTION_SIGNATURE_SLOT, "", 1);
        if spec.sign_response {
            let template = signature_template(
                spec.reference_uri
                    .clone()
                    .unwrap_or_else(|| format!("#{}", spec.response_id)),
                &spec.algs,
            );
            // The Response's Signature follows its Issuer (or opens the Response);
            // xmlsec1 signs the first Signature in document order, which is this one.
            let at = match find_element(&xml, "saml2:Issuer", 0) {
                Some(issuer) if spec.response_issuer.is_some() => issuer.end,
                _ => start_tag_end(&xml, find_element(&xml, "saml2p:Response", 0).unwrap()),
            };
            xml.insert_str(at, &template);
            xml = self.sign(&xml);
        }
        xml
    }

    /// Runs `xmlsec1 --sign` on the first `<ds:Signature>` template of `xml`.
    pub fn sign(&self, xml: &str) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let input = self.dir.path().join(format!("unsigned-{n}.xml"));
        let output = self.dir.path().join(format!("signed-{n}.xml"));
        std::fs::write(&input, xml).unwrap();
        let result = Command::new(&self.xmlsec1)
            .arg("--sign")
            .arg("--privkey-pem")
            .arg(format!(
                "{},{}",
                self.key_path().display(),
                self.cert_path().display()
            ))
            .args(["--id-attr:ID", &format!("{NS_ASSERTION}:Assertion")])
            .args(["--id-attr:ID", &format!("{NS_PROTOCOL}:Response")])
            .arg("--output")
            .arg(&output)
            .arg(&input)
            .output()
            .unwrap();
        assert!(
            result.status.success(),
            "xmlsec1 --sign failed: {}\n{xml}",
            String::from_utf8_lossy(&result.stderr)
        );
        std::fs::read_to_string(&output).unwrap()
    }
}

impl TestIdp {
    /// Whether `xmlsec1 --verify` accepts the first Signature of `xml` with this IdP's
    /// certificate (a check of the fixtures themselves, independent of samlgate).
    pub fn verifies(&self, xml: &str) -> bool {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let input = self.dir.path().join(format!("verify-{n}.xml"));
        std::fs::write(&input, xml).unwrap();
        Command::new(&self.xmlsec1)
            .arg("--verify")
            .arg("--pubkey-cert-pem")
            .arg(self.cert_path())
            .args(["--id-attr:ID", &format!("{NS_ASSERTION}:Assertion")])
            .args(["--id-attr:ID", &format!("{NS_PROTOCOL}:Response")])
            .arg(&input)
            .output()
            .unwrap()
            .status
            .success()
    }
}

const ASSERTION_SIGNATURE_SLOT: &str = "<!--assertion-signature-->";

fn signature_template(uri: String, algs: &SigAlgs) -> String {
    format!(
        concat!(
            r#"<ds:Signature xmlns:ds="{ds}"><ds:SignedInfo>"#,
            r#"<ds:CanonicalizationMethod Algorithm="{c14n}"/>"#,
            r#"<ds:SignatureMethod Algorithm="{signature}"/>"#,
            r#"<ds:Reference URI="{uri}"><ds:Transforms>{transforms}</ds:Transforms>"#,
            r#"<ds:DigestMethod Algorithm="{digest}"/><ds:DigestValue/></ds:Reference>"#,
            r#"</ds:SignedInfo><ds:SignatureValue/>"#,
            r#"<ds:KeyInfo><ds:X509Data><ds:X509Certificate/></ds:X509Data></ds:KeyInfo>"#,
            r#"</ds:Signature>"#
        ),
        ds = NS_DS,
        c14n = algs.c14n,
        signature = algs.signature,
        uri = esc(&uri),
        transforms = algs.transforms.concat(),
        digest = algs.digest,
    )
}

fn response_xml(spec: &ResponseSpec, signature: &str, assertion: &str) -> String {
    let mut attrs = format!(
        r#" ID="{}" Version="2.0" IssueInstant="{}""#,
        spec.response_id,
        instant(spec.issue_instant)
    );
    if let Some(destination) = &spec.destination {
        attrs += &format!(r#" Destination="{}""#, esc(destination));
    }
    if let Some(irt) = &spec.in_response_to {
        attrs += &format!(r#" InResponseTo="{}""#, esc(irt));
    }
    let issuer = spec.response_issuer.as_ref().map_or(String::new(), |i| {
        format!(
            r#"<saml2:Issuer xmlns:saml2="{NS_ASSERTION}" Format="urn:oasis:names:tc:SAML:2.0:nameid-format:entity">{}</saml2:Issuer>"#,
            esc(i)
        )
    });
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<saml2p:Response xmlns:saml2p="{NS_PROTOCOL}"{attrs}>{issuer}{signature}<saml2p:Status><saml2p:StatusCode Value="{status}"/></saml2p:Status>{assertion}</saml2p:Response>"#,
        status = esc(&spec.status),
    )
}

fn assertion_xml(spec: &ResponseSpec) -> String {
    let name_id = spec.name_id.as_ref().map_or(String::new(), |n| {
        format!(
            r#"<saml2:NameID Format="{}">{}</saml2:NameID>"#,
            esc(&spec.name_id_format),
            esc(n)
        )
    });
    let confirmation = spec.subject_confirmation.as_ref().map_or(String::new(), |method| {
        let mut data = String::new();
        if let Some(irt) = &spec.subject_in_response_to {
            data += &format!(r#" InResponseTo="{}""#, esc(irt));
        }
        data += &format!(
            r#" NotOnOrAfter="{}""#,
            instant(spec.subject_not_on_or_after)
        );
        if let Some(recipient) = &spec.recipient {
            data += &format!(r#" Recipient="{}""#, esc(recipient));
        }
        format!(
            r#"<saml2:SubjectConfirmation Method="{}"><saml2:SubjectConfirmationData{data}/></saml2:SubjectConfirmation>"#,
            esc(method)
        )
    });
    let conditions = if spec.include_conditions {
        let audience = spec.audience.as_ref().map_or(String::new(), |a| {
            format!(
                "<saml2:AudienceRestriction><saml2:Audience>{}</saml2:Audience></saml2:AudienceRestriction>",
                esc(a)
            )
        });
        format!(
            r#"<saml2:Conditions NotBefore="{}" NotOnOrAfter="{}">{audience}</saml2:Conditions>"#,
            instant(spec.not_before),
            instant(spec.not_on_or_after)
        )
    } else {
        String::new()
    };
    let session = spec.session_not_on_or_after.map_or(String::new(), |s| {
        format!(r#" SessionNotOnOrAfter="{}""#, instant(s))
    });
    let attributes = if spec.attributes.is_empty() {
        String::new()
    } else {
        let list: String = spec
            .attributes
            .iter()
            .map(|(name, value)| {
                format!(
                    r#"<saml2:Attribute Name="{}" NameFormat="urn:oasis:names:tc:SAML:2.0:attrname-format:unspecified"><saml2:AttributeValue>{}</saml2:AttributeValue></saml2:Attribute>"#,
                    esc(name),
                    esc(value)
                )
            })
            .collect();
        format!("<saml2:AttributeStatement>{list}</saml2:AttributeStatement>")
    };
    format!(
        concat!(
            r#"<saml2:Assertion xmlns:saml2="{ns}" ID="{id}" IssueInstant="{issued}" Version="2.0">"#,
            r#"<saml2:Issuer Format="urn:oasis:names:tc:SAML:2.0:nameid-format:entity">{issuer}</saml2:Issuer>"#,
            "{slot}",
            "<saml2:Subject>{name_id}{confirmation}</saml2:Subject>",
            "{conditions}",
            r#"<saml2:AuthnStatement AuthnInstant="{authn}" SessionIndex="{id}"{session}>"#,
            "<saml2:AuthnContext><saml2:AuthnContextClassRef>",
            "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport",
            "</saml2:AuthnContextClassRef></saml2:AuthnContext></saml2:AuthnStatement>",
            "{attributes}</saml2:Assertion>"
        ),
        ns = NS_ASSERTION,
        id = spec.assertion_id,
        issued = instant(spec.issue_instant),
        issuer = esc(&spec.assertion_issuer),
        slot = ASSERTION_SIGNATURE_SLOT,
        authn = instant(spec.authn_instant),
        name_id = name_id,
        confirmation = confirmation,
        conditions = conditions,
        session = session,
        attributes = attributes,
    )
}

fn encrypted_assertion() -> String {
    let cipher = base64::engine::general_purpose::STANDARD.encode([7u8; 96]);
    format!(
        concat!(
            r#"<saml2:EncryptedAssertion xmlns:saml2="{ns}">"#,
            r#"<xenc:EncryptedData xmlns:xenc="http://www.w3.org/2001/04/xmlenc#" Type="http://www.w3.org/2001/04/xmlenc#Element">"#,
            r#"<xenc:EncryptionMethod Algorithm="http://www.w3.org/2001/04/xmlenc#aes256-cbc"/>"#,
            "<xenc:CipherData><xenc:CipherValue>{cipher}</xenc:CipherValue></xenc:CipherData>",
            "</xenc:EncryptedData></saml2:EncryptedAssertion>"
        ),
        ns = NS_ASSERTION,
        cipher = cipher
    )
}

/// Base64 for the `SAMLResponse` form field.
pub fn encode(xml: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(xml)
}

/// An AuthnRequest read back from an HTTP-Redirect binding URL.
#[derive(Debug, Clone)]
pub struct AuthnRequest {
    /// The URL up to `?`: the IdP's SSO URL.
    pub sso_url: String,
    pub id: String,
    pub xml: String,
    pub relay_state: Option<String>,
}

impl AuthnRequest {
    /// The value of attribute `name` on the root element.
    pub fn attr(&self, name: &str) -> Option<String> {
        let root = find_element(&self.xml, "", 0)?;
        attribute(&self.xml[root.start..start_tag_end(&self.xml, root)], name)
    }

    /// The text of the first element whose local name is `local` (any prefix).
    pub fn text_of(&self, local: &str) -> Option<String> {
        let xml = &self.xml;
        let mut from = 0;
        loop {
            let el = find_element(xml, "", from)?;
            let name = xml[el.start + 1..]
                .split(|c: char| c.is_whitespace() || c == '>' || c == '/')
                .next()?;
            if name == local || name.ends_with(&format!(":{local}")) {
                let open_end = start_tag_end(xml, el.clone());
                if open_end == el.end {
                    return Some(String::new());
                }
                let close = xml[..el.end].rfind("</")?;
                return Some(xml[open_end..close].to_owned());
            }
            from = el.start + 1;
        }
    }
}

/// Decodes `SAMLRequest` (base64 of raw DEFLATE) and `RelayState` from a redirect URL.
pub fn decode_authn_request(location: &str) -> AuthnRequest {
    let url = url::Url::parse(location)
        .unwrap_or_else(|e| panic!("Location {location:?} is not an absolute URL: {e}"));
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    let value = |name: &str| {
        pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let request = value("SAMLRequest").unwrap_or_else(|| panic!("no SAMLRequest in {location}"));
    let deflated = base64::engine::general_purpose::STANDARD
        .decode(request.as_bytes())
        .expect("SAMLRequest is base64");
    let mut xml = String::new();
    flate2::read::DeflateDecoder::new(&deflated[..])
        .read_to_string(&mut xml)
        .expect("SAMLRequest is raw DEFLATE of UTF-8 XML");
    let mut sso_url = url.clone();
    sso_url.set_query(None);
    let root = find_element(&xml, "", 0).expect("an XML element");
    let id = attribute(&xml[root.start..start_tag_end(&xml, root)], "ID")
        .expect("AuthnRequest has an ID");
    AuthnRequest {
        sso_url: sso_url.to_string(),
        id,
        xml,
        relay_state: value("RelayState"),
    }
}

/// Starts an SP-initiated login the way a browser would: `GET /saml/login?company_id=…`,
/// keeping the cookies it sets. Returns the answer and the decoded AuthnRequest.
pub async fn start_login(
    gate: &super::Samlgate,
    browser: &mut Browser,
    company_id: &str,
    return_to: &str,
) -> (RawResponse, AuthnRequest) {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("company_id", company_id)
        .append_pair("return_to", return_to)
        .finish();
    let response = get(
        gate.addr,
        &format!("/saml/login?{query}"),
        &format!("Accept: text/html\r\n{}", browser.cookie_header()),
    )
    .await;
    assert_eq!(
        response.status,
        302,
        "GET /saml/login?{query} should redirect to the IdP: {}",
        response.text()
    );
    browser.absorb(&response);
    let location = response.header("location").expect("Location").to_owned();
    (response, decode_authn_request(&location))
}

// ---------------------------------------------------------------------------------
// String surgery on responses produced by `TestIdp::response`.

/// The value of `name="…"` in a start tag.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let needle = format!(" {name}=\"");
    let at = tag.find(&needle)? + needle.len();
    let end = tag[at..].find('"')? + at;
    Some(tag[at..end].to_owned())
}

/// The byte range of the first element named `qname` (exact prefix:local) starting at
/// or after `from`, start tag to matching end tag. `qname = ""` finds the first element.
pub fn find_element(xml: &str, qname: &str, from: usize) -> Option<Range<usize>> {
    let mut search = from;
    let (start, name) = loop {
        let lt = xml[search..].find('<')? + search;
        let rest = &xml[lt + 1..];
        if rest.starts_with('?') || rest.starts_with('!') || rest.starts_with('/') {
            search = lt + 1;
            continue;
        }
        let name_len = rest
            .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
            .unwrap_or(rest.len());
        let name = &rest[..name_len];
        if qname.is_empty() || name == qname {
            break (lt, name.to_owned());
        }
        search = lt + 1;
    };
    let tag_end = xml[start..].find('>')? + start;
    if xml[..tag_end].ends_with('/') {
        return Some(start..tag_end + 1);
    }
    let open = format!("<{name}");
    let close = format!("</{name}>");
    let mut depth = 1;
    let mut at = tag_end + 1;
    loop {
        let next_close = xml[at..].find(&close)? + at;
        let next_open = xml[at..next_close]
            .find(&open)
            .map(|i| i + at)
            .filter(|&i| {
                let c = xml[i + open.len()..].chars().next();
                matches!(c, Some(c) if c.is_whitespace() || c == '>' || c == '/')
            });
        match next_open {
            Some(o) => {
                let end = xml[o..].find('>').unwrap() + o;
                if !xml[..end].ends_with('/') {
                    depth += 1;
                }
                at = end + 1;
            }
            None => {
                depth -= 1;
                at = next_close + close.len();
                if depth == 0 {
                    return Some(start..at);
                }
            }
        }
    }
}

fn start_tag_end(xml: &str, element: Range<usize>) -> usize {
    xml[element.start..].find('>').unwrap() + element.start + 1
}

fn span(xml: &str, qname: &str) -> Range<usize> {
    find_element(xml, qname, 0).unwrap_or_else(|| panic!("no <{qname}> in {xml}"))
}

/// `xml` with `range` replaced by `with`.
fn splice(xml: &str, range: Range<usize>, with: &str) -> String {
    format!("{}{}{}", &xml[..range.start], with, &xml[range.end..])
}

/// Inserts `what` just before the end tag of the element at `range`.
fn append_child(xml: &str, range: Range<usize>, what: &str) -> String {
    let close = xml[..range.end].rfind("</").unwrap();
    splice(xml, close..close, what)
}

/// `element` without its first `<ds:Signature>`.
pub fn without_signature(element: &str) -> String {
    match find_element(element, "ds:Signature", 0) {
        Some(sig) => splice(element, sig, ""),
        None => element.to_owned(),
    }
}

/// Removes every `<ds:Signature>`.
pub fn strip_signatures(xml: &str) -> String {
    let mut xml = xml.to_owned();
    while let Some(sig) = find_element(&xml, "ds:Signature", 0) {
        xml = splice(&xml, sig, "");
    }
    xml
}

/// `element` with the ID of its start tag changed.
fn with_id(element: &str, id: &str) -> String {
    let tag_end = element.find('>').unwrap();
    let at = element[..tag_end].find(" ID=\"").unwrap() + 5;
    let end = element[at..].find('"').unwrap() + at;
    splice(element, at..end, id)
}

/// Sets the text of every NameID (they are unsigned after this, of course).
pub fn set_name_id(xml: &str, name_id: &str) -> String {
    let mut out = xml.to_owned();
    let mut from = 0;
    while let Some(el) = find_element(&out, "saml2:NameID", from) {
        let open_end = start_tag_end(&out, el.clone());
        let close = el.end - "</saml2:NameID>".len();
        out = splice(&out, open_end..close, &esc(name_id));
        from = open_end;
    }
    out
}

fn evil(element: &str) -> String {
    set_name_id(element, EVIL_NAME_ID)
}

/// The text of the first `<saml2:Assertion>`.
pub fn assertion_of(xml: &str) -> String {
    xml[span(xml, "saml2:Assertion")].to_owned()
}

/// XSW1 (signed Response): the Response, with a new ID and an evil NameID, keeps the
/// signature; the original signed Response (signature removed) goes inside that
/// Signature element.
pub fn xsw1(signed: &str) -> String {
    let root = span(signed, "saml2p:Response");
    let original = &signed[root.clone()];
    let clone = without_signature(original);
    let evil_response = with_id(&evil(original), "_evil_response_ID");
    let sig = span(&evil_response, "ds:Signature");
    let evil_response = append_child(&evil_response, sig, &clone);
    splice(signed, root, &evil_response)
}

/// XSW2 (signed Response): as XSW1, but the original Response goes just before the
/// Signature element (a detached signature).
pub fn xsw2(signed: &str) -> String {
    let root = span(signed, "saml2p:Response");
    let original = &signed[root.clone()];
    let clone = without_signature(original);
    let evil_response = with_id(&evil(original), "_evil_response_ID");
    let sig = span(&evil_response, "ds:Signature");
    let evil_response = splice(&evil_response, sig.start..sig.start, &clone);
    splice(signed, root, &evil_response)
}

/// XSW3 (signed Assertion): an unsigned evil copy with a new ID before the original.
pub fn xsw3(signed: &str) -> String {
    let a = span(signed, "saml2:Assertion");
    let evil_assertion = with_id(
        &evil(&without_signature(&signed[a.clone()])),
        "_evil_assertion_ID",
    );
    splice(signed, a.start..a.start, &evil_assertion)
}

/// XSW4 (signed Assertion): an unsigned evil copy with a new ID in the original's
/// place, the original as its last child.
pub fn xsw4(signed: &str) -> String {
    let a = span(signed, "saml2:Assertion");
    let original = &signed[a.clone()];
    let evil_assertion = with_id(&evil(&without_signature(original)), "_evil_assertion_ID");
    let whole = 0..evil_assertion.len();
    let evil_assertion = append_child(&evil_assertion, whole, original);
    splice(signed, a, &evil_assertion)
}

/// XSW5 (signed Assertion): the original, with a new ID and an evil NameID, keeps its
/// signature; an unsigned copy of the original is appended to the Response.
pub fn xsw5(signed: &str) -> String {
    let a = span(signed, "saml2:Assertion");
    let original = &signed[a.clone()];
    let copy = without_signature(original);
    let evil_assertion = with_id(&evil(original), "_evil_assertion_ID");
    let xml = splice(signed, a, &evil_assertion);
    let root = span(&xml, "saml2p:Response");
    append_child(&xml, root, &copy)
}

/// XSW6 (signed Assertion): as XSW5, but the copy goes inside the evil Assertion's
/// Signature element.
pub fn xsw6(signed: &str) -> String {
    let a = span(signed, "saml2:Assertion");
    let original = &signed[a.clone()];
    let copy = without_signature(original);
    let evil_assertion = with_id(&evil(original), "_evil_assertion_ID");
    let sig = span(&evil_assertion, "ds:Signature");
    let evil_assertion = append_child(&evil_assertion, sig, &copy);
    splice(signed, a, &evil_assertion)
}

/// XSW7 (signed Assertion): a `<samlp:Extensions>` before the original holding an
/// unsigned evil copy with the same ID.
pub fn xsw7(signed: &str) -> String {
    let a = span(signed, "saml2:Assertion");
    let evil_assertion = evil(&without_signature(&signed[a.clone()]));
    splice(
        signed,
        a.start..a.start,
        &format!("<saml2p:Extensions>{evil_assertion}</saml2p:Extensions>"),
    )
}

/// XSW8 (signed Assertion): the original with an evil NameID keeps its signature and
/// ID; an unsigned copy of the original goes into a `<ds:Object>` in that Signature.
pub fn xsw8(signed: &str) -> String {
    let a = span(signed, "saml2:Assertion");
    let original = &signed[a.clone()];
    let copy = without_signature(original);
    let evil_assertion = evil(original);
    let sig = span(&evil_assertion, "ds:Signature");
    let evil_assertion = append_child(
        &evil_assertion,
        sig,
        &format!("<ds:Object>{copy}</ds:Object>"),
    );
    splice(signed, a, &evil_assertion)
}

/// The signed Assertion hidden in the `<saml2:Advice>` of an unsigned evil one.
pub fn hidden_in_advice(signed: &str) -> String {
    let a = span(signed, "saml2:Assertion");
    let original = &signed[a.clone()];
    let evil_assertion = with_id(&evil(&without_signature(original)), "_evil_assertion_ID");
    let at = evil_assertion.find("<saml2:AuthnStatement").unwrap();
    let evil_assertion = splice(
        &evil_assertion,
        at..at,
        &format!("<saml2:Advice>{original}</saml2:Advice>"),
    );
    splice(signed, a, &evil_assertion)
}

/// The signed Assertion moved into the Response's `<samlp:Extensions>`, an unsigned
/// evil one in its place.
pub fn hidden_in_extensions(signed: &str) -> String {
    let a = span(signed, "saml2:Assertion");
    let original = signed[a.clone()].to_owned();
    let evil_assertion = with_id(&evil(&without_signature(&original)), "_evil_assertion_ID");
    let xml = splice(signed, a, &evil_assertion);
    let status = span(&xml, "saml2p:Status");
    splice(
        &xml,
        status.start..status.start,
        &format!("<saml2p:Extensions>{original}</saml2p:Extensions>"),
    )
}

/// The complete signed Assertion (its own signature intact) inside a `<ds:Object>`
/// of the Signature of an evil Assertion with a new ID.
pub fn hidden_in_object(signed: &str) -> String {
    let a = span(signed, "saml2:Assertion");
    let original = &signed[a.clone()];
    let evil_assertion = with_id(&evil(original), "_evil_assertion_ID");
    let sig = span(&evil_assertion, "ds:Signature");
    let evil_assertion = append_child(
        &evil_assertion,
        sig,
        &format!("<ds:Object>{original}</ds:Object>"),
    );
    splice(signed, a, &evil_assertion)
}

/// Adds `other`'s Assertion after `signed`'s.
pub fn with_second_assertion(signed: &str, other: &str) -> String {
    let a = span(signed, "saml2:Assertion");
    splice(signed, a.end..a.end, &assertion_of(other))
}

/// Gives the Response the same ID as its Assertion.
pub fn response_id_same_as_assertion(signed: &str) -> String {
    let a = span(signed, "saml2:Assertion");
    let assertion_id = attribute(&signed[a.start..start_tag_end(signed, a)], "ID").unwrap();
    let root = span(signed, "saml2p:Response");
    let root_tag_end = start_tag_end(signed, root.clone());
    let tag = with_id(&signed[root.start..root_tag_end], &assertion_id);
    splice(signed, root.start..root_tag_end, &tag)
}

/// Inserts `<!---->` after the first occurrence of `after` inside the NameID.
pub fn inject_comment(signed: &str, after: &str) -> String {
    let el = span(signed, "saml2:NameID");
    let at = signed[el.clone()].find(after).unwrap() + el.start + after.len();
    splice(signed, at..at, "<!---->")
}

/// Replaces the content of every `<ds:X509Certificate>` (KeyInfo is not signed).
pub fn with_keyinfo_cert(signed: &str, cert_base64: &str) -> String {
    let mut out = signed.to_owned();
    let mut from = 0;
    while let Some(el) = find_element(&out, "ds:X509Certificate", from) {
        let open_end = start_tag_end(&out, el.clone());
        let close = el.end - "</ds:X509Certificate>".len();
        out = splice(&out, open_end..close, cert_base64);
        from = open_end;
    }
    out
}

/// Inserts `prolog` (a DOCTYPE, a PI, a comment, …) between the XML declaration and
/// the root element.
pub fn with_prolog(signed: &str, prolog: &str) -> String {
    let root = span(signed, "saml2p:Response");
    splice(signed, root.start..root.start, prolog)
}

/// Adds a `<samlp:StatusMessage>` with raw (unescaped) `content`, e.g. an entity
/// reference, to the (unsigned) Status.
pub fn with_status_message(signed: &str, content: &str) -> String {
    let status = span(signed, "saml2p:Status");
    append_child(
        signed,
        status,
        &format!("<saml2p:StatusMessage>{content}</saml2p:StatusMessage>"),
    )
}

/// Inserts raw `what` just before the Response's `<samlp:Status>`.
pub fn before_status(signed: &str, what: &str) -> String {
    let status = span(signed, "saml2p:Status");
    splice(signed, status.start..status.start, what)
}

/// Replaces the Assertion by an EncryptedAssertion (the Response stays as it is).
pub fn assertion_replaced_by_encrypted(signed: &str) -> String {
    let a = span(signed, "saml2:Assertion");
    splice(signed, a, &encrypted_assertion())
}

/// Adds an EncryptedAssertion after the Assertion.
pub fn with_encrypted_assertion(signed: &str) -> String {
    let a = span(signed, "saml2:Assertion");
    splice(signed, a.end..a.end, &encrypted_assertion())
}

/// A `[[tenants]]` table for `company_id` with the IdP's issuer and certificate file
/// (the SSO URL is a closed loopback port: tests read the redirect, never follow it).
pub fn tenant_toml(company_id: &str, issuer: &str, cert_file: &std::path::Path) -> String {
    format!(
        r#"
[[tenants]]
company_id = "{company_id}"
idp_sso_url = "http://127.0.0.1:{port}/sso"
idp_issuer = "{issuer}"
idp_certificate_file = "{cert}"
"#,
        port = super::free_port(),
        cert = cert_file.display(),
    )
}
