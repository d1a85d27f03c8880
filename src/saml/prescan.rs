//! A strict first look at a SAMLResponse before any signature code sees it.
//!
//! roxmltree refuses DTDs (so no entities) and anything not well-formed, which
//! libxml2 in recovery mode would accept. This pass also enforces the document
//! shape SPEC §8 allows: one Assertion, unique IDs, and signatures that can only
//! cover the Response or that Assertion, with a fixed set of algorithms. The
//! values it reads are only compared, never used: what a login uses comes from
//! the verified element (see `verify`).

use std::collections::HashSet;

use roxmltree::{Document, Node, ParsingOptions};

use super::LoginRejection;

pub(super) const NS_PROTOCOL: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
pub(super) const NS_ASSERTION: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
const NS_DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";

const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
const STRONG_SIGNATURES: [&str; 6] = [
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384",
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512",
];
const STRONG_DIGESTS: [&str; 3] = [
    "http://www.w3.org/2001/04/xmlenc#sha256",
    "http://www.w3.org/2001/04/xmldsig-more#sha384",
    "http://www.w3.org/2001/04/xmlenc#sha512",
];
const SHA1_SIGNATURE: &str = "http://www.w3.org/2000/09/xmldsig#rsa-sha1";
const SHA1_DIGEST: &str = "http://www.w3.org/2000/09/xmldsig#sha1";

/// The shape of a response that passed the pre-scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Shape {
    /// Response Issuer, if present.
    pub response_issuer: Option<String>,
    /// Assertion Issuer, if present.
    pub assertion_issuer: Option<String>,
    /// The single Assertion's ID.
    pub assertion_id: String,
    /// Response Destination, if present.
    pub destination: Option<String>,
    /// Response InResponseTo, if present.
    pub in_response_to: Option<String>,
    /// Top-level StatusCode value, if present.
    pub status: Option<String>,
    /// Whether the Response element itself carries a signature.
    pub response_signed: bool,
}

/// Checks `xml` and returns its shape, or the first rule it breaks.
pub(super) fn prescan(xml: &str, allow_sha1: bool) -> Result<Shape, LoginRejection> {
    // The text is UTF-8 here; a declaration naming another encoding would make
    // libxml2 decode the same bytes differently from this parser.
    if declared_encoding(xml).is_some_and(|e| !e.eq_ignore_ascii_case("utf-8")) {
        return Err(LoginRejection::Malformed);
    }
    guard(xml)?;
    let options = ParsingOptions {
        allow_dtd: false,
        ..ParsingOptions::default()
    };
    let doc = Document::parse_with_options(xml, options).map_err(|error| match error {
        roxmltree::Error::DtdDetected => LoginRejection::DtdForbidden,
        _ => LoginRejection::Malformed,
    })?;
    if doc.descendants().any(|n| n.is_pi()) {
        return Err(LoginRejection::DtdForbidden);
    }
    let root = doc.root_element();
    if !is(root, NS_PROTOCOL, "Response") {
        return Err(LoginRejection::Malformed);
    }

    let mut ids = HashSet::new();
    for node in doc.descendants().filter(Node::is_element) {
        for attribute in node.attributes() {
            // xmlsec resolves `#x` through any attribute it was told is an ID; samael
            // registers every `ID`, and we refuse look-alikes that other stacks use.
            if attribute.namespace().is_none() && matches!(attribute.name(), "ID" | "Id" | "id") {
                if !is_ncname(attribute.value()) {
                    return Err(LoginRejection::Malformed);
                }
                if !ids.insert(attribute.value()) {
                    return Err(LoginRejection::DuplicateId);
                }
            }
        }
    }

    if doc
        .descendants()
        .any(|n| n.is_element() && n.tag_name().name() == "EncryptedAssertion")
    {
        return Err(LoginRejection::EncryptedAssertion);
    }
    let assertions: Vec<Node> = doc
        .descendants()
        .filter(|n| n.is_element() && n.tag_name().name() == "Assertion")
        .collect();
    let [assertion] = assertions.as_slice() else {
        return Err(LoginRejection::AssertionCount);
    };
    if !is(*assertion, NS_ASSERTION, "Assertion") || assertion.parent_element() != Some(root) {
        return Err(LoginRejection::AssertionCount);
    }
    let assertion_id = assertion
        .attribute("ID")
        .ok_or(LoginRejection::Malformed)?
        .to_owned();

    // samael cannot even parse an empty NameID; name the actual problem.
    let name_id = child(*assertion, NS_ASSERTION, "Subject")
        .and_then(|subject| child(subject, NS_ASSERTION, "NameID"));
    if name_id.is_some_and(|n| text(n).trim().is_empty()) {
        return Err(LoginRejection::NameIdMissing);
    }

    let mut response_signed = false;
    let mut signature_count = 0;
    for signature in doc
        .descendants()
        .filter(|n| n.is_element() && n.tag_name().name() == "Signature")
    {
        let parent = signature.parent_element();
        if !is(signature, NS_DSIG, "Signature")
            || (parent != Some(root) && parent != Some(*assertion))
        {
            return Err(LoginRejection::SignatureReference);
        }
        let parent = parent.expect("checked above");
        if parent == root {
            if response_signed {
                return Err(LoginRejection::SignatureReference);
            }
            response_signed = true;
        }
        signature_count += 1;
        check_signature(signature, parent, allow_sha1)?;
    }
    if signature_count == 0 {
        return Err(LoginRejection::SignatureMissing);
    }
    if signature_count > 2 {
        return Err(LoginRejection::SignatureReference);
    }

    Ok(Shape {
        response_issuer: child(root, NS_ASSERTION, "Issuer").map(text),
        assertion_issuer: child(*assertion, NS_ASSERTION, "Issuer").map(text),
        assertion_id,
        destination: root.attribute("Destination").map(str::to_owned),
        in_response_to: root.attribute("InResponseTo").map(str::to_owned),
        status: child(root, NS_PROTOCOL, "Status")
            .and_then(|status| child(status, NS_PROTOCOL, "StatusCode"))
            .and_then(|code| code.attribute("Value"))
            .map(str::to_owned),
        response_signed,
    })
}

/// Deepest element nesting accepted; SAML responses are about ten deep. Far below
/// what a recursive parser's stack or libxml2's own limit (256, past which it
/// silently truncates in recovery mode) would need.
const MAX_DEPTH: usize = 64;
/// Longest element or attribute name; libxml2 turns longer names into text.
const MAX_NAME_BYTES: usize = 1024;
/// Most namespace declarations in the whole document; each costs roxmltree work
/// proportional to all declarations in scope.
const MAX_NAMESPACE_DECLARATIONS: usize = 64;
/// Most attributes on one element.
const MAX_ATTRIBUTES: usize = 32;

/// A streaming (non-recursive) pass that bounds what the tree parsers will see:
/// depth, name lengths, attribute and namespace counts, and prefix undeclarations
/// (`xmlns:p=""`), which roxmltree and libxml2 resolve differently.
fn guard(xml: &str) -> Result<(), LoginRejection> {
    use quick_xml::events::{BytesStart, Event};

    fn element(start: &BytesStart, declarations: &mut usize) -> Result<(), LoginRejection> {
        if start.name().as_ref().len() > MAX_NAME_BYTES {
            return Err(LoginRejection::Malformed);
        }
        let mut count = 0;
        for attribute in start.attributes().with_checks(true) {
            let attribute = attribute.map_err(|_| LoginRejection::Malformed)?;
            let key = attribute.key.as_ref();
            count += 1;
            if count > MAX_ATTRIBUTES || key.len() > MAX_NAME_BYTES {
                return Err(LoginRejection::Malformed);
            }
            if key == b"xmlns" || key.starts_with(b"xmlns:") {
                *declarations += 1;
                if *declarations > MAX_NAMESPACE_DECLARATIONS
                    || (key != b"xmlns" && attribute.value.is_empty())
                {
                    return Err(LoginRejection::Malformed);
                }
            }
        }
        Ok(())
    }

    let mut reader = quick_xml::Reader::from_str(xml);
    let (mut depth, mut declarations) = (0usize, 0usize);
    loop {
        match reader.read_event().map_err(|_| LoginRejection::Malformed)? {
            Event::Start(start) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(LoginRejection::Malformed);
                }
                element(&start, &mut declarations)?;
            }
            Event::Empty(start) => element(&start, &mut declarations)?,
            Event::End(_) => depth = depth.saturating_sub(1),
            Event::DocType(_) | Event::PI(_) => return Err(LoginRejection::DtdForbidden),
            Event::Eof => return Ok(()),
            _ => {}
        }
    }
}

/// One enveloped signature over `parent`, by ID, with allowed algorithms only, and
/// nothing else in it: xmlsec processes a `ds:Object`/`ds:Manifest` (fetching its
/// references, running its transforms) before it checks the signature value.
fn check_signature(signature: Node, parent: Node, allow_sha1: bool) -> Result<(), LoginRejection> {
    let parts: Vec<Node> = signature.children().filter(Node::is_element).collect();
    let (signed_info, key_info) = match parts.as_slice() {
        [info, value] if is(*value, NS_DSIG, "SignatureValue") => (*info, None),
        [info, value, key] if is(*value, NS_DSIG, "SignatureValue") => (*info, Some(*key)),
        _ => return Err(LoginRejection::SignatureReference),
    };
    if !is(signed_info, NS_DSIG, "SignedInfo") {
        return Err(LoginRejection::SignatureReference);
    }
    if let Some(key_info) = key_info {
        check_key_info(key_info)?;
    }
    let mut info_parts = signed_info.children().filter(Node::is_element);
    let (Some(c14n), Some(method), Some(reference), None) = (
        info_parts.next(),
        info_parts.next(),
        info_parts.next(),
        info_parts.next(),
    ) else {
        return Err(LoginRejection::SignatureReference);
    };
    if !is(c14n, NS_DSIG, "CanonicalizationMethod")
        || !is(method, NS_DSIG, "SignatureMethod")
        || !is(reference, NS_DSIG, "Reference")
        || method.children().any(|n| n.is_element())
    {
        return Err(LoginRejection::SignatureReference);
    }
    if c14n.attribute("Algorithm") != Some(EXC_C14N) || !only_inclusive_namespaces(c14n) {
        return Err(LoginRejection::SignatureTransform);
    }
    let method =
        child(signed_info, NS_DSIG, "SignatureMethod").and_then(|n| n.attribute("Algorithm"));
    if !method
        .is_some_and(|m| STRONG_SIGNATURES.contains(&m) || (allow_sha1 && m == SHA1_SIGNATURE))
    {
        return Err(LoginRejection::SignatureAlgorithm);
    }
    let references: Vec<Node> = children(signed_info, NS_DSIG, "Reference").collect();
    let [reference] = references.as_slice() else {
        return Err(LoginRejection::SignatureReference);
    };
    let expected = parent.attribute("ID").map(|id| format!("#{id}"));
    if expected.is_none() || reference.attribute("URI") != expected.as_deref() {
        return Err(LoginRejection::SignatureReference);
    }
    if let Some(transforms) = child(*reference, NS_DSIG, "Transforms") {
        for transform in transforms.children().filter(Node::is_element) {
            let algorithm = transform.attribute("Algorithm");
            let allowed = is(transform, NS_DSIG, "Transform")
                && match algorithm {
                    Some(ENVELOPED) => !transform.children().any(|n| n.is_element()),
                    Some(EXC_C14N) => only_inclusive_namespaces(transform),
                    _ => false,
                };
            if !allowed {
                return Err(LoginRejection::SignatureTransform);
            }
        }
    }
    let digest = child(*reference, NS_DSIG, "DigestMethod").and_then(|n| n.attribute("Algorithm"));
    if !digest.is_some_and(|d| STRONG_DIGESTS.contains(&d) || (allow_sha1 && d == SHA1_DIGEST)) {
        return Err(LoginRejection::SignatureAlgorithm);
    }
    Ok(())
}

/// IDs are XML NCNames; we accept the ASCII subset IdPs use, which also keeps
/// white space and line breaks out of every reference and log line.
fn is_ncname(id: &str) -> bool {
    let mut chars = id.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Exclusive c14n may carry one `InclusiveNamespaces PrefixList`, nothing else.
fn only_inclusive_namespaces(node: Node) -> bool {
    let mut children = node.children().filter(Node::is_element);
    match (children.next(), children.next()) {
        (None, _) => true,
        (Some(inclusive), None) => {
            is(inclusive, EXC_C14N, "InclusiveNamespaces")
                && !inclusive.children().any(|n| n.is_element())
        }
        _ => false,
    }
}

/// KeyInfo is never used for verification (only configured certificates are), but
/// xmlsec still reads it: allow certificates and names only, no RetrievalMethod.
fn check_key_info(key_info: Node) -> Result<(), LoginRejection> {
    let allowed = is(key_info, NS_DSIG, "KeyInfo")
        && key_info.children().filter(Node::is_element).all(|part| {
            (is(part, NS_DSIG, "KeyName") && !part.children().any(|n| n.is_element()))
                || (is(part, NS_DSIG, "X509Data")
                    && part.children().filter(Node::is_element).all(|cert| {
                        is(cert, NS_DSIG, "X509Certificate")
                            && !cert.children().any(|n| n.is_element())
                    }))
        });
    if allowed {
        Ok(())
    } else {
        Err(LoginRejection::SignatureReference)
    }
}

/// The `encoding` pseudo-attribute of the XML declaration, if any.
fn declared_encoding(xml: &str) -> Option<&str> {
    let declaration = xml.trim_start_matches('\u{feff}').strip_prefix("<?xml")?;
    let declaration = &declaration[..declaration.find("?>")?];
    let rest = &declaration[declaration.find("encoding")? + "encoding".len()..];
    let rest = rest.trim_start().strip_prefix('=')?.trim_start();
    let quote = rest.chars().next().filter(|q| matches!(q, '"' | '\''))?;
    let value = &rest[quote.len_utf8()..];
    Some(&value[..value.find(quote)?])
}

fn is(node: Node, namespace: &str, name: &str) -> bool {
    node.is_element()
        && node.tag_name().namespace() == Some(namespace)
        && node.tag_name().name() == name
}

fn children<'a, 'input: 'a>(
    node: Node<'a, 'input>,
    namespace: &'a str,
    name: &'a str,
) -> impl Iterator<Item = Node<'a, 'input>> + 'a {
    node.children().filter(move |n| is(*n, namespace, name))
}

fn child<'a, 'input>(
    node: Node<'a, 'input>,
    namespace: &str,
    name: &str,
) -> Option<Node<'a, 'input>> {
    node.children().find(|n| is(*n, namespace, name))
}

fn text(node: Node) -> String {
    node.descendants()
        .filter(Node::is_text)
        .filter_map(|n| n.text())
        .collect::<String>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_utf8_declarations_pass() {
        assert_eq!(
            declared_encoding(r#"<?xml version="1.0" encoding="UTF-8"?><a/>"#),
            Some("UTF-8")
        );
        assert_eq!(
            declared_encoding("<?xml version='1.0' encoding = 'latin1' ?><a/>"),
            Some("latin1")
        );
        assert_eq!(declared_encoding("<a/>"), None);
        // Found by the fuzzer: a non-ASCII character where the quote belongs.
        assert_eq!(
            declared_encoding("<?xml version=\"1.0\" encoding=éUTF-8é?><a/>"),
            None
        );
        assert_eq!(
            prescan(r#"<?xml version="1.0" encoding="ISO-8859-1"?><a/>"#, false),
            Err(LoginRejection::Malformed)
        );
    }

    #[test]
    fn doctype_and_processing_instructions_are_refused() {
        assert_eq!(
            prescan(r#"<!DOCTYPE r [<!ENTITY x "y">]><r/>"#, false),
            Err(LoginRejection::DtdForbidden)
        );
        let pi = r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol"><?evil x?></samlp:Response>"#;
        assert_eq!(prescan(pi, false), Err(LoginRejection::DtdForbidden));
    }

    #[test]
    fn assertions_in_any_namespace_or_place_count() {
        let doc = |inner: &str| {
            format!(
                r#"<samlp:Response xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="r">{inner}</samlp:Response>"#
            )
        };
        let two = doc(r#"<saml:Assertion ID="a"/><saml:Assertion ID="b"/>"#);
        assert_eq!(prescan(&two, false), Err(LoginRejection::AssertionCount));
        let foreign = doc(r#"<x:Assertion xmlns:x="urn:other" ID="a"/>"#);
        assert_eq!(
            prescan(&foreign, false),
            Err(LoginRejection::AssertionCount)
        );
        let nested = doc(r#"<samlp:Extensions><saml:Assertion ID="a"/></samlp:Extensions>"#);
        assert_eq!(prescan(&nested, false), Err(LoginRejection::AssertionCount));
        let duplicate = doc(r#"<saml:Assertion ID="r"/>"#);
        assert_eq!(prescan(&duplicate, false), Err(LoginRejection::DuplicateId));
        let unsigned = doc(r#"<saml:Assertion ID="a"/>"#);
        assert_eq!(
            prescan(&unsigned, false),
            Err(LoginRejection::SignatureMissing)
        );
        let encrypted = doc(r#"<saml:EncryptedAssertion/>"#);
        assert_eq!(
            prescan(&encrypted, false),
            Err(LoginRejection::EncryptedAssertion)
        );
    }
}
