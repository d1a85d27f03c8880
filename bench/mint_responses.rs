//! Pre-mints unique, validly signed SAML Responses for the login benchmark
//! (`bench/run.sh`): one `application/x-www-form-urlencoded` POST body
//! (`SAMLResponse=…`) per line, for wrk's `bench/acs.lua` to cycle through.
//!
//! Shaped like Okta's (and the demo IdP's): an unsigned Response around an Assertion
//! signed with RSA-SHA256 / SHA-256 / exclusive c14n, enveloped, the certificate in
//! KeyInfo; IdP-initiated (no InResponseTo), fresh Response and Assertion IDs each, so
//! the replay cache lets every one in once. Signed in-process through samael/xmlsec
//! (a few milliseconds per response with a 2048-bit key, far faster than one `xmlsec1`
//! process per response); run several processes in parallel for more.
//!
//! IssueInstant is `--issue-ahead` in the future (samlgate allows `sp.clock_skew`,
//! 90 s by default) because samlgate refuses assertions issued more than five minutes
//! plus the skew ago: minted responses stay usable for about 6.5 min + issue-ahead.
//!
//! ```sh
//! cargo run --release --example bench_mint_responses -- --key idp-key.pem \
//!     --cert idp-cert.pem --issuer http://www.okta.com/bench000 \
//!     --public-url http://gate.bench.test --count 1000 --out bodies.txt
//! ```

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use clap::Parser;
use samael::crypto::{CryptoProvider as _, XmlSec};

const NS_PROTOCOL: &str = "urn:oasis:names:tc:SAML:2.0:protocol";
const NS_ASSERTION: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
const NS_DSIG: &str = "http://www.w3.org/2000/09/xmldsig#";
const STATUS_SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
const BEARER: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";
const NAMEID_EMAIL: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress";
const PASSWORD_PROTECTED: &str =
    "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport";
const ATTRNAME_BASIC: &str = "urn:oasis:names:tc:SAML:2.0:attrname-format:basic";

/// Writes `--count` signed SAMLResponse POST bodies to `--out`, one per line.
#[derive(Debug, Parser)]
struct Args {
    /// The IdP's RSA private key, PEM (e.g. `openssl req -x509 -newkey rsa:2048 …`).
    #[arg(long)]
    key: PathBuf,
    /// The IdP's certificate, PEM (goes into KeyInfo; samlgate ignores KeyInfo).
    #[arg(long)]
    cert: PathBuf,
    /// The tenant's `idp_issuer`.
    #[arg(long)]
    issuer: String,
    /// samlgate's `public_url`: Destination/Recipient are `{public_url}/saml/acs`,
    /// the audience `{public_url}/saml/metadata`.
    #[arg(long)]
    public_url: String,
    /// NameID (the same for all: the account lookup is then answered from cache).
    #[arg(long, default_value = "alice@bench.test")]
    name_id: String,
    /// How many responses.
    #[arg(long)]
    count: usize,
    /// Output file, one POST body per line.
    #[arg(long)]
    out: PathBuf,
    /// IssueInstant this far in the future (keep it below `sp.clock_skew`).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    issue_ahead: Duration,
}

fn main() -> ExitCode {
    match run(&Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench_mint_responses: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> anyhow::Result<()> {
    let key_pem = std::fs::read(&args.key).with_context(|| format!("{}", args.key.display()))?;
    let cert_pem = std::fs::read(&args.cert).with_context(|| format!("{}", args.cert.display()))?;
    let key_der = openssl::pkey::PKey::private_key_from_pem(&key_pem)
        .context("the IdP key is not a PEM private key")?
        .private_key_to_der()?;
    let cert_b64 = STANDARD.encode(
        openssl::x509::X509::from_pem(&cert_pem)
            .context("the IdP certificate is not PEM")?
            .to_der()?,
    );
    let base = args.public_url.trim_end_matches('/');
    let acs_url = format!("{base}/saml/acs");
    let audience = format!("{base}/saml/metadata");
    let now = Utc::now() + chrono::Duration::from_std(args.issue_ahead)?;

    let mut out = std::io::BufWriter::new(
        std::fs::File::create(&args.out).with_context(|| format!("{}", args.out.display()))?,
    );
    for _ in 0..args.count {
        let assertion_id = new_id();
        let xml = unsigned_response(args, &acs_url, &audience, &assertion_id, &cert_b64, now);
        let signed = samlgate::saml::with_xmlsec(|| XmlSec::sign_xml(xml.as_str(), &key_der))
            .map_err(|e| anyhow::anyhow!("xmlsec could not sign: {e}"))?;
        let signed = unwrap_signature_values(strip_declaration(&signed));
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("SAMLResponse", &STANDARD.encode(signed))
            .finish();
        writeln!(out, "{body}")?;
    }
    out.flush()?;
    Ok(())
}

/// A fresh XML ID (an NCName).
fn new_id() -> String {
    format!("id{:032x}", rand::random::<u128>())
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn instant(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn unsigned_response(
    args: &Args,
    acs_url: &str,
    audience: &str,
    assertion_id: &str,
    cert_b64: &str,
    now: DateTime<Utc>,
) -> String {
    let response_id = new_id();
    let issue = instant(now);
    let not_before = instant(now - chrono::Duration::minutes(5));
    let expires = instant(now + chrono::Duration::minutes(30));
    let session_ends = instant(now + chrono::Duration::hours(8));
    let issuer = escape(&args.issuer);
    let acs = escape(acs_url);
    let name_id = escape(&args.name_id);
    let attribute = |name: &str, value: &str| {
        format!(
            "<saml:Attribute Name=\"{name}\" NameFormat=\"{ATTRNAME_BASIC}\">\
             <saml:AttributeValue>{value}</saml:AttributeValue></saml:Attribute>"
        )
    };
    format!(
        "<samlp:Response xmlns:samlp=\"{NS_PROTOCOL}\" xmlns:saml=\"{NS_ASSERTION}\" \
         ID=\"{response_id}\" Version=\"2.0\" IssueInstant=\"{issue}\" Destination=\"{acs}\">\
         <saml:Issuer>{issuer}</saml:Issuer>\
         <samlp:Status><samlp:StatusCode Value=\"{STATUS_SUCCESS}\"/></samlp:Status>\
         <saml:Assertion xmlns:saml=\"{NS_ASSERTION}\" ID=\"{assertion_id}\" Version=\"2.0\" IssueInstant=\"{issue}\">\
         <saml:Issuer>{issuer}</saml:Issuer>\
         {signature}\
         <saml:Subject>\
         <saml:NameID Format=\"{NAMEID_EMAIL}\">{name_id}</saml:NameID>\
         <saml:SubjectConfirmation Method=\"{BEARER}\">\
         <saml:SubjectConfirmationData NotOnOrAfter=\"{expires}\" Recipient=\"{acs}\"/>\
         </saml:SubjectConfirmation></saml:Subject>\
         <saml:Conditions NotBefore=\"{not_before}\" NotOnOrAfter=\"{expires}\">\
         <saml:AudienceRestriction><saml:Audience>{audience}</saml:Audience></saml:AudienceRestriction>\
         </saml:Conditions>\
         <saml:AuthnStatement AuthnInstant=\"{issue}\" SessionIndex=\"_{session_index}\" \
         SessionNotOnOrAfter=\"{session_ends}\">\
         <saml:AuthnContext><saml:AuthnContextClassRef>{PASSWORD_PROTECTED}</saml:AuthnContextClassRef>\
         </saml:AuthnContext></saml:AuthnStatement>\
         <saml:AttributeStatement>{email}{name}</saml:AttributeStatement>\
         </saml:Assertion></samlp:Response>",
        signature = signature_template(assertion_id, cert_b64),
        audience = escape(audience),
        session_index = new_id(),
        email = attribute("email", &name_id),
        name = attribute("name", "Bench User"),
    )
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

/// xmlsec wraps the base64 SignatureValue; nothing covers it, so the breaks can go.
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

/// libxml2 writes `<?xml version="1.0"?>` and a trailing newline; an IdP POSTs the
/// element alone.
fn strip_declaration(xml: &str) -> &str {
    let xml = xml.trim();
    match xml.strip_prefix("<?xml") {
        Some(rest) => rest
            .find("?>")
            .map_or(xml, |end| rest[end + 2..].trim_start()),
        None => xml,
    }
}
