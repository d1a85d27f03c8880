//! Interoperability fixtures: SAML software nobody on this team wrote, configured
//! from the templates in `tests/fixtures/interop/` into a temporary directory and
//! started on free loopback ports, and a small cookie-jar HTTP client that follows
//! redirects and submits forms by hand (no browser).
//!
//! - [`SimpleSamlPhp`]: SimpleSAMLphp 1.19 (Debian's `simplesamlphp`) as an IdP,
//!   served by `php -S`, configured through `SIMPLESAMLPHP_CONFIG_DIR` (never
//!   `/etc/simplesamlphp`);
//! - [`Mellon`]: Apache httpd with mod_auth_mellon as an SP protecting `/private/`;
//! - [`Demo`]: `samlgate demo`, whose development IdP mod_auth_mellon talks to.
//!
//! Every server logs into its temp dir; [`SimpleSamlPhp::log`] and [`Mellon::log`]
//! give the tail for panic messages.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use tokio::net::TcpStream;

use super::{raw, Browser, RawResponse};

const NS_METADATA: &str = "urn:oasis:names:tc:SAML:2.0:metadata";
const NS_DS: &str = "http://www.w3.org/2000/09/xmldsig#";
pub const BINDING_REDIRECT: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";
pub const BINDING_POST: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST";
pub const NAMEID_EMAIL: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress";

const HTML_ACCEPT: &str = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8";

// ---------------------------------------------------------------------------------
// Templates, keys, metadata.

/// `template` with every `@NAME@` replaced; panics if a placeholder is left.
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut text = template.to_owned();
    for (name, value) in values {
        text = text.replace(&format!("@{name}@"), value);
    }
    let left: Vec<&str> = text
        .split('@')
        .skip(1)
        .step_by(2)
        .filter(|name| {
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
        })
        .collect();
    assert!(
        left.is_empty(),
        "unfilled placeholders {left:?} in:\n{text}"
    );
    text
}

/// The contents of a single-quoted PHP string literal for `value`.
pub fn php_escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('\'', "\\'")
}

/// An RSA-2048 key (`{name}.key`, PEM) and a self-signed certificate
/// (`{name}.crt`, PEM) made in `dir` by the `openssl` CLI.
pub fn self_signed(
    openssl: &Path,
    dir: &Path,
    name: &str,
    common_name: &str,
) -> (PathBuf, PathBuf) {
    let key = dir.join(format!("{name}.key"));
    let cert = dir.join(format!("{name}.crt"));
    let output = Command::new(openssl)
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "2",
        ])
        .arg("-subj")
        .arg(format!("/CN={common_name}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl runs");
    assert!(
        output.status.success(),
        "openssl req failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    (key, cert)
}

/// The base64 DER of the (first) certificate in a PEM file.
pub fn cert_base64(pem: &str) -> String {
    pem.lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .map(str::trim)
        .collect()
}

/// A PEM certificate for base64 DER as metadata carries it (any whitespace).
pub fn pem_from_base64(b64: &str) -> String {
    let compact: String = b64.chars().filter(|c| !c.is_whitespace()).collect();
    let lines: Vec<&str> = compact
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

/// What an IdP's metadata says: entityID, SSO URL (HTTP-Redirect binding) and the
/// signing certificates (base64 DER).
#[derive(Debug, Clone)]
pub struct IdpMetadata {
    pub entity_id: String,
    pub sso_url: String,
    pub signing_certificates: Vec<String>,
}

/// What an SP's metadata says: entityID, the HTTP-POST ACS URL and the NameID
/// formats, in document order.
#[derive(Debug, Clone)]
pub struct SpMetadata {
    pub entity_id: String,
    pub acs_url: String,
    pub name_id_formats: Vec<String>,
    pub want_assertions_signed: bool,
}

fn md<'a, 'i>(node: roxmltree::Node<'a, 'i>, name: &str) -> Vec<roxmltree::Node<'a, 'i>> {
    node.descendants()
        .filter(|n| n.tag_name().namespace() == Some(NS_METADATA) && n.tag_name().name() == name)
        .collect()
}

fn entity_descriptor<'a, 'i>(
    doc: &'a roxmltree::Document<'i>,
    xml: &str,
) -> roxmltree::Node<'a, 'i> {
    let root = doc.root_element();
    assert!(
        root.tag_name().namespace() == Some(NS_METADATA)
            && root.tag_name().name() == "EntityDescriptor",
        "not an md:EntityDescriptor:\n{xml}"
    );
    root
}

/// Reads an IdP's SAML 2.0 metadata.
pub fn parse_idp_metadata(xml: &str) -> IdpMetadata {
    let doc =
        roxmltree::Document::parse(xml).unwrap_or_else(|e| panic!("metadata XML ({e}):\n{xml}"));
    let root = entity_descriptor(&doc, xml);
    let idp = *md(root, "IDPSSODescriptor")
        .first()
        .unwrap_or_else(|| panic!("no IDPSSODescriptor:\n{xml}"));
    let sso_url = md(idp, "SingleSignOnService")
        .into_iter()
        .find(|n| n.attribute("Binding") == Some(BINDING_REDIRECT))
        .and_then(|n| n.attribute("Location"))
        .unwrap_or_else(|| panic!("no HTTP-Redirect SingleSignOnService:\n{xml}"))
        .to_owned();
    let signing_certificates = md(idp, "KeyDescriptor")
        .into_iter()
        .filter(|k| k.attribute("use").is_none_or(|u| u == "signing"))
        .flat_map(|k| {
            k.descendants()
                .filter(|n| {
                    n.tag_name().namespace() == Some(NS_DS)
                        && n.tag_name().name() == "X509Certificate"
                })
                .filter_map(|n| n.text())
                .map(|t| t.chars().filter(|c| !c.is_whitespace()).collect::<String>())
                .collect::<Vec<_>>()
        })
        .collect();
    IdpMetadata {
        entity_id: root.attribute("entityID").expect("entityID").to_owned(),
        sso_url,
        signing_certificates,
    }
}

/// Reads an SP's SAML 2.0 metadata.
pub fn parse_sp_metadata(xml: &str) -> SpMetadata {
    let doc =
        roxmltree::Document::parse(xml).unwrap_or_else(|e| panic!("metadata XML ({e}):\n{xml}"));
    let root = entity_descriptor(&doc, xml);
    let sp = *md(root, "SPSSODescriptor")
        .first()
        .unwrap_or_else(|| panic!("no SPSSODescriptor:\n{xml}"));
    let acs_url = md(sp, "AssertionConsumerService")
        .into_iter()
        .find(|n| n.attribute("Binding") == Some(BINDING_POST))
        .and_then(|n| n.attribute("Location"))
        .unwrap_or_else(|| panic!("no HTTP-POST AssertionConsumerService:\n{xml}"))
        .to_owned();
    let name_id_formats = md(sp, "NameIDFormat")
        .into_iter()
        .filter_map(|n| n.text())
        .map(|t| t.trim().to_owned())
        .collect();
    SpMetadata {
        entity_id: root.attribute("entityID").expect("entityID").to_owned(),
        acs_url,
        name_id_formats,
        want_assertions_signed: sp.attribute("WantAssertionsSigned") == Some("true"),
    }
}

/// The SAML protocol message a `SAMLResponse` form field carries (base64, HTTP-POST).
pub fn decode_saml_response(b64: &str) -> String {
    let compact: String = b64.chars().filter(|c| !c.is_whitespace()).collect();
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(compact)
            .expect("SAMLResponse is base64"),
    )
    .expect("SAMLResponse is UTF-8")
}

/// Where the `<ds:Signature>` elements of a Response sit: (on the Response, on the
/// Assertion), and the SignatureMethod algorithms used.
pub fn signature_placement(xml: &str) -> (bool, bool, Vec<String>) {
    let doc =
        roxmltree::Document::parse(xml).unwrap_or_else(|e| panic!("Response XML ({e}):\n{xml}"));
    let is_signature = |n: &roxmltree::Node| {
        n.tag_name().namespace() == Some(NS_DS) && n.tag_name().name() == "Signature"
    };
    let root = doc.root_element();
    let on_response = root.children().any(|n| is_signature(&n));
    let on_assertion = root
        .children()
        .filter(|n| n.tag_name().name() == "Assertion")
        .any(|a| a.children().any(|n| is_signature(&n)));
    let methods = doc
        .descendants()
        .filter(|n| n.tag_name().name() == "SignatureMethod")
        .filter_map(|n| n.attribute("Algorithm").map(str::to_owned))
        .collect();
    (on_response, on_assertion, methods)
}

/// The text of the first element called `local` (any namespace).
pub fn element_text(xml: &str, local: &str) -> Option<String> {
    let doc = roxmltree::Document::parse(xml).ok()?;
    let text = doc
        .descendants()
        .find(|n| n.tag_name().name() == local)?
        .text()
        .map(str::to_owned);
    text
}

/// The last `lines` lines of a log file (or a note that there is none).
pub fn tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("({}: {e})", path.display()),
    }
}

// ---------------------------------------------------------------------------------
// A browser without a browser: cookies, redirects and forms by hand.

/// One `<form>` of a page: its absolute action URL, method and the fields a browser
/// would submit (named inputs other than buttons; checkboxes only when checked).
#[derive(Debug, Clone)]
pub struct HtmlForm {
    pub action: String,
    pub method: String,
    pub fields: Vec<(String, String)>,
}

impl HtmlForm {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn has(&self, name: &str) -> bool {
        self.field(name).is_some()
    }

    /// Sets `name` (adding it if the form has no such field).
    pub fn set(&mut self, name: &str, value: &str) {
        match self.fields.iter_mut().find(|(n, _)| n == name) {
            Some(field) => field.1 = value.to_owned(),
            None => self.fields.push((name.to_owned(), value.to_owned())),
        }
    }
}

/// Decodes the HTML character references that appear in attribute values.
pub fn html_unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let decoded = rest.find(';').filter(|end| *end <= 10).and_then(|end| {
            let entity = &rest[1..end];
            let c = match entity {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => {
                    if let Some(hex) = entity
                        .strip_prefix("#x")
                        .or_else(|| entity.strip_prefix("#X"))
                    {
                        u32::from_str_radix(hex, 16).ok().and_then(char::from_u32)
                    } else if let Some(dec) = entity.strip_prefix('#') {
                        dec.parse().ok().and_then(char::from_u32)
                    } else {
                        None
                    }
                }
            }?;
            Some((c, end))
        });
        match decoded {
            Some((c, end)) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Removes `<!-- … -->` comments and the contents of `<script>` elements, which
/// may mention tags that are not there.
fn without_comments_and_scripts(page: &str) -> String {
    let mut out = String::with_capacity(page.len());
    let mut rest = page;
    loop {
        let lower = rest.to_ascii_lowercase();
        let comment = lower.find("<!--");
        let script = lower.find("<script");
        match (comment, script) {
            (None, None) => {
                out.push_str(rest);
                return out;
            }
            (Some(c), s) if s.is_none_or(|s| c < s) => {
                out.push_str(&rest[..c]);
                match lower[c..].find("-->") {
                    Some(end) => rest = &rest[c + end + 3..],
                    None => return out,
                }
            }
            (_, Some(s)) => {
                out.push_str(&rest[..s]);
                match lower[s..].find("</script") {
                    Some(end) => rest = &rest[s + end..],
                    None => return out,
                }
                // Keep `</script…>` out of the scan as well.
                match rest.find('>') {
                    Some(end) => rest = &rest[end + 1..],
                    None => return out,
                }
            }
            (Some(_), None) => unreachable!(),
        }
    }
}

/// The start tags called `name` in `html` (lower-case ASCII), each as its
/// attribute list (lower-case names, unescaped values), with its byte range.
fn start_tags(html: &str, name: &str) -> Vec<(std::ops::Range<usize>, Attributes)> {
    let lower = html.to_ascii_lowercase();
    let needle = format!("<{name}");
    let mut tags = Vec::new();
    let mut from = 0;
    while let Some(at) = lower[from..].find(&needle).map(|i| i + from) {
        let after = at + needle.len();
        from = after;
        if !lower[after..].starts_with(|c: char| c.is_ascii_whitespace() || c == '>' || c == '/') {
            continue;
        }
        let (attributes, end) = attributes(html, after);
        tags.push((at..end, attributes));
        from = end;
    }
    tags
}

/// A start tag's attributes: (lower-case name, unescaped value), in order.
type Attributes = Vec<(String, String)>;

/// Parses attributes from `at` to the end of the tag; returns them and the index
/// just past `>`.
fn attributes(html: &str, mut at: usize) -> (Attributes, usize) {
    let bytes = html.as_bytes();
    let mut attributes = Vec::new();
    loop {
        while at < bytes.len() && (bytes[at].is_ascii_whitespace() || bytes[at] == b'/') {
            at += 1;
        }
        if at >= bytes.len() {
            return (attributes, at);
        }
        if bytes[at] == b'>' {
            return (attributes, at + 1);
        }
        let start = at;
        while at < bytes.len()
            && !bytes[at].is_ascii_whitespace()
            && !matches!(bytes[at], b'=' | b'>' | b'/')
        {
            at += 1;
        }
        let name = html[start..at].to_ascii_lowercase();
        while at < bytes.len() && bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        if at < bytes.len() && bytes[at] == b'=' {
            at += 1;
            while at < bytes.len() && bytes[at].is_ascii_whitespace() {
                at += 1;
            }
            let value = if at < bytes.len() && matches!(bytes[at], b'"' | b'\'') {
                let quote = bytes[at];
                let begin = at + 1;
                let end = html[begin..]
                    .bytes()
                    .position(|b| b == quote)
                    .map_or(bytes.len(), |p| begin + p);
                at = (end + 1).min(bytes.len());
                &html[begin..end]
            } else {
                let begin = at;
                while at < bytes.len() && !bytes[at].is_ascii_whitespace() && bytes[at] != b'>' {
                    at += 1;
                }
                &html[begin..at]
            };
            attributes.push((name, html_unescape(value)));
        } else if !name.is_empty() {
            attributes.push((name, String::new()));
        }
    }
}

fn attr<'a>(attributes: &'a [(String, String)], name: &str) -> Option<&'a str> {
    attributes
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Every `<form>` of `page` (served at `page_url`), tolerant of whatever HTML the
/// IdP or SP writes: any attribute order, quoting and letter case.
pub fn html_forms(page: &str, page_url: &str) -> Vec<HtmlForm> {
    let html = without_comments_and_scripts(page);
    let base = url::Url::parse(page_url).unwrap_or_else(|e| panic!("{page_url}: {e}"));
    let forms = start_tags(&html, "form");
    let lower = html.to_ascii_lowercase();
    forms
        .into_iter()
        .map(|(range, form_attributes)| {
            let end = lower[range.end..]
                .find("</form")
                .map_or(html.len(), |i| range.end + i);
            let inner = &html[range.end..end];
            let fields = start_tags(inner, "input")
                .into_iter()
                .filter_map(|(_, input)| {
                    let name = attr(&input, "name")?;
                    let kind = attr(&input, "type").unwrap_or("text").to_ascii_lowercase();
                    let skipped = matches!(
                        kind.as_str(),
                        "submit" | "button" | "image" | "reset" | "file"
                    ) || (matches!(kind.as_str(), "checkbox" | "radio")
                        && attr(&input, "checked").is_none());
                    (!skipped).then(|| {
                        (
                            name.to_owned(),
                            attr(&input, "value").unwrap_or("").to_owned(),
                        )
                    })
                })
                .collect();
            let action = attr(&form_attributes, "action").unwrap_or("");
            HtmlForm {
                action: base
                    .join(action)
                    .unwrap_or_else(|e| panic!("form action {action:?} on {page_url}: {e}"))
                    .to_string(),
                method: attr(&form_attributes, "method")
                    .unwrap_or("get")
                    .to_ascii_uppercase(),
                fields,
            }
        })
        .collect()
}

/// One browser: a cookie jar shared by every loopback origin (cookies are not
/// scoped by port), a history for panic messages, and `Origin` / `Sec-Fetch-Site`
/// headers as a browser would send them.
#[derive(Debug, Default)]
pub struct Agent {
    pub jar: Browser,
    pub history: Vec<String>,
}

fn origin_of(url: &url::Url) -> String {
    url.origin().ascii_serialization()
}

impl Agent {
    pub fn new() -> Self {
        Self::default()
    }

    /// The requests made so far, one per line, with their statuses.
    pub fn trail(&self) -> String {
        self.history.join("\n")
    }

    /// One request to `url` (absolute, on loopback); `from` is the page the request
    /// comes from (None: typed into the address bar). Cookies are sent and kept.
    pub async fn request(
        &mut self,
        method: &str,
        url: &str,
        from: Option<&str>,
        body: Option<String>,
    ) -> RawResponse {
        let target = url::Url::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(target.scheme(), "http", "{url}");
        let host: Ipv4Addr = target
            .host_str()
            .and_then(|h| h.parse().ok())
            .unwrap_or_else(|| panic!("only loopback addresses: {url}"));
        assert!(host.is_loopback(), "only loopback addresses: {url}");
        let addr = SocketAddr::from((host, target.port_or_known_default().unwrap()));
        let path = match target.query() {
            Some(query) => format!("{}?{query}", target.path()),
            None => target.path().to_owned(),
        };
        let site = match from.map(|f| url::Url::parse(f).unwrap()) {
            None => "none",
            Some(page) if origin_of(&page) == origin_of(&target) => "same-origin",
            Some(page) if page.host_str() == target.host_str() => "same-site",
            Some(_) => "cross-site",
        };
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: samlgate-interop-test\r\n\
             Accept: {HTML_ACCEPT}\r\nSec-Fetch-Site: {site}\r\nSec-Fetch-Mode: navigate\r\n{cookies}",
            port = addr.port(),
            cookies = self.jar.cookie_header(),
        );
        if let (Some(page), true) = (from, method == "POST") {
            head.push_str(&format!(
                "Origin: {}\r\n",
                origin_of(&url::Url::parse(page).unwrap())
            ));
        }
        let body = body.unwrap_or_default();
        if method == "POST" {
            head.push_str(&format!(
                "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        head.push_str("Connection: close\r\n\r\n");
        let response = raw(addr, &(head + &body)).await;
        self.jar.absorb(&response);
        self.history.push(format!(
            "{method} {url} -> {}{}",
            response.status,
            response
                .header("location")
                .map_or(String::new(), |l| format!(" Location: {l}"))
        ));
        response
    }

    pub async fn get(&mut self, url: &str, from: Option<&str>) -> RawResponse {
        self.request("GET", url, from, None).await
    }

    /// Submits `form` (found on page `from`).
    pub async fn submit(&mut self, form: &HtmlForm, from: &str) -> RawResponse {
        let encoded = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&form.fields)
            .finish();
        if form.method == "POST" {
            self.request("POST", &form.action, Some(from), Some(encoded))
                .await
        } else {
            let mut url = url::Url::parse(&form.action).unwrap();
            url.set_query(Some(&encoded));
            self.get(url.as_str(), Some(from)).await
        }
    }

    /// Follows redirects (GET, at most 10) from `response`, the answer for `url`;
    /// returns the final URL and answer.
    pub async fn follow(
        &mut self,
        mut url: String,
        mut response: RawResponse,
    ) -> (String, RawResponse) {
        for _ in 0..10 {
            if !matches!(response.status, 301 | 302 | 303 | 307 | 308) {
                return (url, response);
            }
            let location = response
                .header("location")
                .unwrap_or_else(|| panic!("a redirect without Location from {url}"));
            let next = url::Url::parse(&url)
                .unwrap()
                .join(location)
                .unwrap()
                .to_string();
            response = self.get(&next, Some(&url)).await;
            url = next;
        }
        panic!("more than 10 redirects:\n{}", self.trail());
    }
}

/// The form on `page` that has a field called `field`; panics with the page and
/// `context` otherwise.
pub fn form_with(
    page: &RawResponse,
    page_url: &str,
    field: &str,
    context: &dyn Fn() -> String,
) -> HtmlForm {
    html_forms(&page.text(), page_url)
        .into_iter()
        .find(|f| f.has(field))
        .unwrap_or_else(|| {
            panic!(
                "no form with a {field:?} field at {page_url} (status {}):\n{}\n\n{}",
                page.status,
                page.text(),
                context()
            )
        })
}

// ---------------------------------------------------------------------------------
// Processes.

/// Waits until `port` accepts connections while `child` runs; panics with `log()`
/// if it exits or takes longer than 20 s.
async fn wait_until_listening(child: &mut Child, port: u16, what: &str, log: &dyn Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "{what} exited ({status}) before listening on {port}:\n{}",
                log()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not listen on {port} within 20 s:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// A SimpleSAMLphp 1.19 IdP on a loopback port, with one user ([`SimpleSamlPhp::USERNAME`]).
pub struct SimpleSamlPhp {
    child: Child,
    dir: tempfile::TempDir,
    pub port: u16,
}

/// Debian's SimpleSAMLphp web root.
const SIMPLESAMLPHP_WWW: &str = "/usr/share/simplesamlphp/www";

impl SimpleSamlPhp {
    pub const USERNAME: &'static str = "alice";
    pub const PASSWORD: &'static str = "alice-password";
    pub const EMAIL: &'static str = "alice@ssp.example";

    /// Configures SimpleSAMLphp in a temp dir (its own key and certificate, the
    /// hosted IdP signing the Assertion, and the Response too with
    /// `sign_response`) and serves it with `php -S`. `None` (skip) when php,
    /// SimpleSAMLphp or openssl is missing and CI is not set.
    pub async fn start(sign_response: bool) -> Option<Self> {
        let php = super::program("php", &["/usr/bin/php"])?;
        super::program(
            "simplesamlphp",
            &[format!("{SIMPLESAMLPHP_WWW}/saml2/idp/SSOService.php").as_str()],
        )?;
        let openssl = super::program("openssl", &["/usr/bin/openssl"])?;
        let dir = tempfile::Builder::new()
            .prefix("samlgate-simplesamlphp-")
            .tempdir()
            .unwrap();
        for sub in ["config/metadata", "cert", "log", "data", "tmp", "sessions"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        self_signed(
            &openssl,
            &dir.path().join("cert"),
            "idp",
            "SimpleSAMLphp interop IdP",
        );
        let port = super::free_port();
        let base_url = format!("http://127.0.0.1:{port}");
        // 32 random bytes, base64 (no quote or backslash to escape in PHP).
        let secret = samlgate::session::SessionKey::generate_base64;
        let dir_s = dir.path().display().to_string();
        let write = |path: &str, text: String| std::fs::write(dir.path().join(path), text).unwrap();
        write(
            "config/config.php",
            fill(
                include_str!("../fixtures/interop/simplesamlphp/config.php"),
                &[
                    ("BASE_URL", &php_escape(&base_url)),
                    ("DIR", &php_escape(&dir_s)),
                    ("SECRET_SALT", &secret()),
                    ("ADMIN_PASSWORD", &secret()),
                ],
            ),
        );
        write(
            "config/authsources.php",
            fill(
                include_str!("../fixtures/interop/simplesamlphp/authsources.php"),
                &[
                    ("USERNAME", Self::USERNAME),
                    ("PASSWORD", Self::PASSWORD),
                    ("EMAIL", Self::EMAIL),
                ],
            ),
        );
        write(
            "config/metadata/saml20-idp-hosted.php",
            fill(
                include_str!("../fixtures/interop/simplesamlphp/saml20-idp-hosted.php"),
                &[
                    ("ENTITY_ID", &php_escape(&Self::entity_id_at(port))),
                    (
                        "SIGN_RESPONSE",
                        if sign_response { "true" } else { "false" },
                    ),
                ],
            ),
        );
        // No SP yet: samlgate's metadata is registered once samlgate runs.
        write("config/metadata/saml20-sp-remote.php", "<?php\n".to_owned());
        let server_log = File::create(dir.path().join("log/php-server.log")).unwrap();
        let mut child = Command::new(php)
            .args([
                "-d",
                "display_errors=stderr",
                "-d",
                "log_errors=Off",
                "-d",
                "error_reporting=E_ALL & ~E_DEPRECATED",
                "-S",
                &format!("127.0.0.1:{port}"),
                "-t",
                SIMPLESAMLPHP_WWW,
            ])
            .env("SIMPLESAMLPHP_CONFIG_DIR", dir.path().join("config"))
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(server_log.try_clone().unwrap())
            .stderr(server_log)
            .spawn()
            .expect("php starts");
        let log_dir = dir.path().join("log");
        wait_until_listening(&mut child, port, "php -S (SimpleSAMLphp)", &|| {
            tail(&log_dir.join("php-server.log"), 40)
        })
        .await;
        Some(Self { child, dir, port })
    }

    fn entity_id_at(port: u16) -> String {
        format!("http://127.0.0.1:{port}/saml2/idp/metadata.php")
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The hosted IdP's entity ID (configured in saml20-idp-hosted.php).
    pub fn entity_id(&self) -> String {
        Self::entity_id_at(self.port)
    }

    /// The certificate the test generated for the IdP (PEM).
    pub fn certificate_pem(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("cert/idp.crt")).unwrap()
    }

    /// The IdP's metadata as SimpleSAMLphp publishes it.
    pub async fn metadata(&self) -> (String, IdpMetadata) {
        let url = self.url("/saml2/idp/metadata.php");
        let response = Agent::new().get(&url, None).await;
        assert_eq!(
            response.status,
            200,
            "{url}: {}\n{}",
            response.text(),
            self.log()
        );
        let xml = response.text();
        let metadata = parse_idp_metadata(&xml);
        (xml, metadata)
    }

    /// Registers `sp` in saml20-sp-remote.php (read on every request).
    pub fn register_sp(&self, sp: &SpMetadata) {
        let formats: Vec<String> = sp
            .name_id_formats
            .iter()
            .map(|f| format!("'{}'", php_escape(f)))
            .collect();
        let php = fill(
            include_str!("../fixtures/interop/simplesamlphp/saml20-sp-remote.php"),
            &[
                ("ENTITY_ID", &php_escape(&sp.entity_id)),
                ("ACS_URL", &php_escape(&sp.acs_url)),
                ("NAMEID_FORMATS", &format!("[{}]", formats.join(", "))),
            ],
        );
        std::fs::write(
            self.dir.path().join("config/metadata/saml20-sp-remote.php"),
            php,
        )
        .unwrap();
    }

    /// The end of SimpleSAMLphp's own log and of the PHP server's.
    pub fn log(&self) -> String {
        let log = self.dir.path().join("log");
        format!(
            "--- SimpleSAMLphp log ---\n{}\n--- php -S ---\n{}",
            tail(&log.join("simplesamlphp.log"), 80),
            tail(&log.join("php-server.log"), 30)
        )
    }
}

impl Drop for SimpleSamlPhp {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// Apache httpd with mod_auth_mellon: the SP, protecting `/private/` (a static page
/// that echoes `MELLON_NAME_ID` in the `X-Mellon-Name-Id` header).
pub struct Mellon {
    child: Child,
    dir: tempfile::TempDir,
    pub port: u16,
}

const APACHE_MODULES: &str = "/usr/lib/apache2/modules";

impl Mellon {
    /// Finds apache2, mod_auth_mellon and openssl (`None`: skip, unless CI is set).
    pub fn installed() -> Option<(PathBuf, PathBuf)> {
        let apache = super::program("apache2", &["/usr/sbin/apache2"])?;
        super::program(
            "mod_auth_mellon",
            &[format!("{APACHE_MODULES}/mod_auth_mellon.so").as_str()],
        )?;
        let openssl = super::program("openssl", &["/usr/bin/openssl"])?;
        Some((apache, openssl))
    }

    pub fn entity_id(port: u16) -> String {
        format!("http://127.0.0.1:{port}/mellon/metadata")
    }

    pub fn acs_url(port: u16) -> String {
        format!("http://127.0.0.1:{port}/mellon/postResponse")
    }

    /// Configures and starts Apache on `port` with mod_auth_mellon trusting `idp`.
    pub async fn start(apache: &Path, openssl: &Path, port: u16, idp: &IdpMetadata) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("samlgate-mellon-")
            .tempdir()
            .unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("htdocs/private")).unwrap();
        std::fs::create_dir_all(root.join("run")).unwrap();
        std::fs::write(
            root.join("htdocs/private/page.html"),
            "<!doctype html><title>private</title><p>the protected page</p>\n",
        )
        .unwrap();
        let (_, cert) = self_signed(openssl, root, "sp", "mod_auth_mellon interop SP");
        let sp_cert = cert_base64(&std::fs::read_to_string(cert).unwrap());
        let base_url = format!("http://127.0.0.1:{port}");
        let dir_s = root.display().to_string();
        let port_s = port.to_string();
        std::fs::write(
            root.join("httpd.conf"),
            fill(
                include_str!("../fixtures/interop/mellon/httpd.conf"),
                &[
                    ("DIR", &dir_s),
                    ("PORT", &port_s),
                    ("MODULES", APACHE_MODULES),
                ],
            ),
        )
        .unwrap();
        std::fs::write(
            root.join("sp-metadata.xml"),
            fill(
                include_str!("../fixtures/interop/mellon/sp-metadata.xml"),
                &[
                    ("ENTITY_ID", &Self::entity_id(port)),
                    ("BASE_URL", &base_url),
                    ("CERTIFICATE", &sp_cert),
                ],
            ),
        )
        .unwrap();
        std::fs::write(
            root.join("idp-metadata.xml"),
            fill(
                include_str!("../fixtures/interop/mellon/idp-metadata.xml"),
                &[
                    ("ENTITY_ID", &idp.entity_id),
                    ("SSO_URL", &idp.sso_url),
                    ("CERTIFICATE", &idp.signing_certificates[0]),
                ],
            ),
        )
        .unwrap();
        let out = File::create(root.join("apache2.out")).unwrap();
        let mut child = Command::new(apache)
            .arg("-X")
            .arg("-d")
            .arg(root)
            .arg("-f")
            .arg(root.join("httpd.conf"))
            .env("APACHE_RUN_DIR", root.join("run"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("apache2 starts");
        let log_root = root.to_owned();
        wait_until_listening(&mut child, port, "apache2 (mod_auth_mellon)", &|| {
            format!(
                "{}\n{}",
                tail(&log_root.join("apache2.out"), 20),
                tail(&log_root.join("error.log"), 40)
            )
        })
        .await;
        Self { child, dir, port }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Apache's whole error log.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// The end of Apache's error log (LogLevel debug: mod_auth_mellon's and lasso's
    /// messages) and its access log.
    pub fn log(&self) -> String {
        let root = self.dir.path();
        format!(
            "--- apache2 error.log ---\n{}\n--- access.log ---\n{}\n--- stdout/stderr ---\n{}",
            tail(&root.join("error.log"), 80),
            tail(&root.join("access.log"), 20),
            tail(&root.join("apache2.out"), 20)
        )
    }
}

impl Drop for Mellon {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}
