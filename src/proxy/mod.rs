//! Forwarding to the panel: a pooled client, streamed bodies, hop-by-hop and
//! forwarded headers, identity header stripping and injection, upgrades.

mod headers;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderValue, CONNECTION, HOST, UPGRADE};
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderName, Request, Response, StatusCode, Uri, Version};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use url::Url;

pub use headers::{remove_hop_by_hop, IdentityHeaderStripper, OwnCookies};

/// Errors carried by a streamed body.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type of every response samlgate produces or forwards.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// The pooled HTTP(S) client shared by the proxy and the lookup APIs.
pub type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Body>;

/// How long the upstream may take to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a request could not be forwarded.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Connecting or talking to the upstream failed.
    #[error("upstream request failed: {0}")]
    Upstream(#[from] hyper_util::client::legacy::Error),
    /// The upstream URI could not be built from the request.
    #[error("cannot build the upstream URI: {0}")]
    Uri(#[from] http::Error),
    /// The request target could leave the upstream URL's path (`*`, dot segments).
    #[error("request target outside the upstream's base path")]
    OutsideBasePath,
}

/// Builds the shared client: system trust anchors plus `upstream_tls.ca_file`.
pub fn client(extra_roots: &[rustls_pki_types::CertificateDer<'static>]) -> HttpClient {
    let mut roots = rustls::RootCertStore::empty();
    // Unreadable system certificates only shrink the trust store; the configured CA still works.
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    roots.add_parsable_certificates(extra_roots.iter().cloned());
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .build(connector)
}

/// Wraps any body into [`Body`].
pub fn boxed<B>(body: B) -> Body
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    body.map_err(Into::into).boxed_unsync()
}

/// What the proxy needs to know about the client side of a request.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// The peer address.
    pub addr: SocketAddr,
    /// Whether the client connection is TLS.
    pub tls: bool,
    /// The peer IP as a header value, formatted once per connection, not per request.
    ip: HeaderValue,
}

impl ClientInfo {
    /// The client side of a connection from `addr`.
    pub fn new(addr: SocketAddr, tls: bool) -> Self {
        let ip = HeaderValue::try_from(addr.ip().to_string()).expect("an IP address is ASCII");
        Self { addr, tls, ip }
    }
}

/// The panel behind samlgate.
#[derive(Clone)]
pub struct Upstream {
    client: HttpClient,
    own_cookies: OwnCookies,
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    base_path: String,
}

impl Upstream {
    /// An upstream at `url` (http or https, validated by `config`), sharing `client`;
    /// `own_cookies` are samlgate's cookies, never forwarded.
    pub fn new(url: &Url, client: HttpClient, own_cookies: OwnCookies) -> Self {
        let uri: Uri = url
            .as_str()
            .parse()
            .expect("config validated the upstream URL");
        let parts = uri.into_parts();
        Self {
            client,
            own_cookies,
            scheme: parts.scheme.expect("absolute URL"),
            authority: parts.authority.expect("absolute URL"),
            base_path: url.path().trim_end_matches('/').to_owned(),
        }
    }

    /// Forwards `req` (already stripped of client identity headers) with `identity`
    /// headers added, streaming both bodies; returns the upstream's response and the
    /// time the upstream took to answer with headers.
    pub async fn forward(
        &self,
        req: Request<Incoming>,
        client: &ClientInfo,
        identity: Vec<(HeaderName, HeaderValue)>,
    ) -> Result<(Response<Body>, Duration), ProxyError> {
        let mut req = req;
        let upgrade = requested_upgrade(req.headers());
        let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        let original_host = parts.headers.get(HOST).cloned().or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });

        remove_hop_by_hop(&mut parts.headers);
        parts.headers.remove(HOST);
        parts.headers.remove("http2-settings");
        self.own_cookies.remove_from(&mut parts.headers);
        if let Some(protocol) = &upgrade {
            parts
                .headers
                .insert(CONNECTION, HeaderValue::from_static("upgrade"));
            parts.headers.insert(UPGRADE, protocol.clone());
        }
        set_forwarded(&mut parts.headers, client, original_host);
        for (name, value) in identity {
            parts.headers.insert(name, value);
        }
        parts.uri = self.upstream_uri(&parts.uri)?;
        parts.version = Version::HTTP_11;

        let started = Instant::now();
        let mut response = self
            .client
            .request(Request::from_parts(parts, boxed(body)))
            .await?;
        let elapsed = started.elapsed();

        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(client_upgrade) = client_upgrade {
                let upstream_upgrade = hyper::upgrade::on(&mut response);
                tokio::spawn(async move {
                    if let (Ok(client_io), Ok(upstream_io)) =
                        tokio::join!(client_upgrade, upstream_upgrade)
                    {
                        let mut client_io = TokioIo::new(client_io);
                        let mut upstream_io = TokioIo::new(upstream_io);
                        let _ =
                            tokio::io::copy_bidirectional(&mut client_io, &mut upstream_io).await;
                    }
                });
                let (parts, _) = response.into_parts();
                return Ok((Response::from_parts(parts, empty()), elapsed));
            }
        }
        let (mut parts, body) = response.into_parts();
        remove_hop_by_hop(&mut parts.headers);
        Ok((Response::from_parts(parts, boxed(body)), elapsed))
    }

    fn upstream_uri(&self, original: &Uri) -> Result<Uri, ProxyError> {
        let path_and_query = match original.path_and_query() {
            // The usual case, an upstream without a base path: no copy, no re-parse.
            Some(original) if self.base_path.is_empty() => original.clone(),
            original => {
                let target = original.map_or("/", |p| p.as_str());
                if escapes_base_path(target) {
                    return Err(ProxyError::OutsideBasePath);
                }
                PathAndQuery::try_from(format!("{}{target}", self.base_path))
                    .map_err(http::Error::from)?
            }
        };
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(path_and_query);
        Ok(Uri::from_parts(parts).map_err(http::Error::from)?)
    }
}

/// An empty [`Body`].
pub fn empty() -> Body {
    boxed(http_body_util::Empty::<Bytes>::new())
}

/// A [`Body`] holding `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    boxed(http_body_util::Full::new(bytes.into()))
}

/// The protocol an HTTP/1.1 client asks to switch to, if it asks for one samlgate
/// tunnels. `h2c` never is: after the switch the client would speak HTTP/2 straight
/// to the panel, past every header samlgate strips (h2c smuggling).
pub fn requested_upgrade(headers: &HeaderMap) -> Option<HeaderValue> {
    let wants = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    let protocol = headers.get(UPGRADE).filter(|_| wants)?;
    let h2c = protocol.to_str().map_or(true, |p| {
        p.split(',').any(|p| p.trim().eq_ignore_ascii_case("h2c"))
    });
    (!h2c).then(|| protocol.clone())
}

/// Whether `target`, appended to a base path, could reach beside it once the panel
/// normalises it: `*` (OPTIONS), or a `.`/`..` segment, also percent-encoded.
fn escapes_base_path(target: &str) -> bool {
    let path = target.split('?').next().unwrap_or_default();
    !path.starts_with('/')
        || path.split('/').any(|segment| {
            let segment = segment.to_ascii_lowercase().replace("%2e", ".");
            segment == "." || segment == ".."
        })
}

fn set_forwarded(headers: &mut HeaderMap, client: &ClientInfo, host: Option<HeaderValue>) {
    static XFF: HeaderName = HeaderName::from_static("x-forwarded-for");
    static XFP: HeaderName = HeaderName::from_static("x-forwarded-proto");
    static XFH: HeaderName = HeaderName::from_static("x-forwarded-host");
    let forwarded_for = if headers.contains_key(&XFF) {
        let prior: Vec<&[u8]> = headers.get_all(&XFF).iter().map(|v| v.as_bytes()).collect();
        let mut value = prior.join(&b", "[..]);
        value.extend_from_slice(b", ");
        value.extend_from_slice(client.ip.as_bytes());
        HeaderValue::from_bytes(&value).ok()
    } else {
        Some(client.ip.clone())
    };
    // Never the client's chain without the peer: if it cannot be extended, the peer alone.
    headers.insert(&XFF, forwarded_for.unwrap_or_else(|| client.ip.clone()));
    let proto = if client.tls { "https" } else { "http" };
    headers.insert(&XFP, HeaderValue::from_static(proto));
    match host {
        Some(host) => headers.insert(&XFH, host),
        None => headers.remove(&XFH),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(url: &str) -> Upstream {
        Upstream::new(&url.parse().unwrap(), client(&[]), OwnCookies::new([]))
    }

    #[test]
    fn requests_stay_under_the_upstream_base_path() {
        let base = upstream("http://panel.internal:8080/base/");
        let uri = |target: &str| base.upstream_uri(&target.parse().unwrap());
        assert_eq!(
            uri("/x/y?q=1").unwrap(),
            "http://panel.internal:8080/base/x/y?q=1"
        );
        for escaping in ["*", "/../admin", "/a/./b", "/a/%2E%2e/admin", "/x/..?q"] {
            assert!(
                matches!(uri(escaping), Err(ProxyError::OutsideBasePath)),
                "{escaping}"
            );
        }
        // Without a base path the panel's whole URL space is the upstream anyway.
        let root = upstream("http://panel.internal:8080");
        assert_eq!(
            root.upstream_uri(&"/a/../b".parse().unwrap()).unwrap(),
            "http://panel.internal:8080/a/../b"
        );
    }

    #[test]
    fn forwarded_for_appends_the_peer_to_every_prior_value() {
        let client = ClientInfo::new("192.0.2.7:1".parse().unwrap(), false);
        let mut headers = HeaderMap::new();
        headers.append(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"1.1.1.1 \xff").unwrap(),
        );
        headers.append("x-forwarded-for", HeaderValue::from_static("2.2.2.2"));
        headers.append("x-forwarded-host", HeaderValue::from_static("spoofed"));
        set_forwarded(&mut headers, &client, None);
        let values: Vec<_> = headers.get_all("x-forwarded-for").iter().collect();
        assert_eq!(values.len(), 1);
        assert_eq!(values[0].as_bytes(), b"1.1.1.1 \xff, 2.2.2.2, 192.0.2.7");
        assert_eq!(headers["x-forwarded-proto"], "http");
        assert!(!headers.contains_key("x-forwarded-host"));
    }
}
