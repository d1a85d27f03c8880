//! Routing one request: samlgate's own routes, or the panel with or without identity.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use http::header::{HeaderValue, ACCEPT, CACHE_CONTROL};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest as _, Sha256};

use crate::admin::{Metrics, RouteClass};
use crate::config::Config;
use crate::identity::{IdentitySigner, PLAIN_HEADERS};
use crate::pages;
use crate::proxy::{self, Body, ClientInfo, IdentityHeaderStripper, Upstream};
use crate::session::{Session, SessionCodec};

/// Characters kept as they are when a path and query become one `return_to` value.
const RETURN_TO: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Everything a request needs, built once from the configuration.
pub struct App {
    prefix: String,
    login_url: String,
    public_paths: Vec<String>,
    sessions: SessionCodec,
    identity: IdentitySigner,
    stripper: IdentityHeaderStripper,
    upstream: Upstream,
    metrics: Arc<Metrics>,
}

/// What the access log records about one request besides method, path and status.
#[derive(Default)]
struct Outcome {
    route: Option<RouteClass>,
    session: Option<String>,
    upstream_ms: Option<f64>,
}

impl App {
    /// Builds the request handler for `config`.
    pub fn new(config: &Config, metrics: Arc<Metrics>) -> Self {
        let secure = config.public_url.scheme() == "https";
        let issuer = config.public_url.as_str().trim_end_matches('/').to_owned();
        let identity = IdentitySigner::new(&config.identity, issuer);
        let stripper = IdentityHeaderStripper::new(
            std::iter::once(config.identity.header.as_str()).chain(PLAIN_HEADERS),
        );
        let client = proxy::client(&config.upstream_ca);
        Self {
            prefix: config.path_prefix.clone(),
            login_url: format!("{}/login", config.path_prefix),
            public_paths: config.public_paths.clone(),
            sessions: SessionCodec::new(&config.session, secure),
            identity,
            stripper,
            upstream: Upstream::new(&config.upstream, client),
            metrics,
        }
    }

    /// Answers one request; never fails, errors become responses.
    pub async fn handle(&self, mut req: Request<Incoming>, client: ClientInfo) -> Response<Body> {
        let started = Instant::now();
        let _in_flight = self.metrics.in_flight();
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        self.stripper.strip(req.headers_mut());

        let mut outcome = Outcome::default();
        let response = self.route(req, client, &mut outcome).await;

        let route = outcome.route.unwrap_or(RouteClass::samlgate);
        self.metrics.request(route, response.status());
        tracing::info!(
            target: "samlgate::access",
            method = %method,
            path = %path,
            status = response.status().as_u16(),
            route = ?route,
            latency_ms = started.elapsed().as_secs_f64() * 1e3,
            upstream_ms = outcome.upstream_ms,
            session = outcome.session.as_deref(),
            client = %client.addr.ip(),
            "request"
        );
        response
    }

    async fn route(
        &self,
        req: Request<Incoming>,
        client: ClientInfo,
        outcome: &mut Outcome,
    ) -> Response<Body> {
        let now = unix_now();
        let session = self.sessions.open(req.headers(), now);
        outcome.session = session.as_ref().map(|s| session_hash(&s.sid));

        if let Some(route) = own_route(&self.prefix, req.uri().path()) {
            outcome.route = Some(RouteClass::samlgate);
            return self.own(route, req.method(), session.as_ref(), now);
        }
        let navigation = is_navigation(&req);
        let identity = match &session {
            Some(session) => {
                outcome.route = Some(RouteClass::proxy);
                let mut headers = self.identity.plain_headers(session);
                headers.push((
                    self.identity.header_name().clone(),
                    self.identity.header_for(session, now),
                ));
                headers
            }
            None if self.is_public(req.uri().path()) => {
                outcome.route = Some(RouteClass::public);
                Vec::new()
            }
            None if navigation => {
                outcome.route = Some(RouteClass::login_redirect);
                return pages::redirect(StatusCode::FOUND, &self.login_redirect(&req));
            }
            None => {
                outcome.route = Some(RouteClass::unauthenticated);
                return pages::unauthenticated(&self.login_url);
            }
        };
        match self.upstream.forward(req, client, identity).await {
            Ok((response, elapsed)) => {
                self.metrics.upstream(elapsed);
                outcome.upstream_ms = Some(elapsed.as_secs_f64() * 1e3);
                response
            }
            Err(error) => {
                tracing::warn!(%error, "upstream unavailable");
                pages::bad_gateway(navigation)
            }
        }
    }

    fn own(
        &self,
        route: &str,
        method: &Method,
        session: Option<&Session>,
        now: i64,
    ) -> Response<Body> {
        match (route, method, session) {
            ("/jwks.json", &Method::GET | &Method::HEAD, _) => {
                let mut response = pages::json(StatusCode::OK, self.identity.jwks());
                response
                    .headers_mut()
                    .insert(CACHE_CONTROL, HeaderValue::from_static("max-age=300"));
                response
            }
            ("/whoami", &Method::GET | &Method::HEAD, Some(session)) => {
                pages::json(StatusCode::OK, whoami(session).to_string())
            }
            ("/auth", &Method::GET | &Method::HEAD, Some(session)) => {
                let mut response = pages::json(StatusCode::OK, "{}");
                let headers = response.headers_mut();
                for (name, value) in self.identity.plain_headers(session) {
                    headers.insert(name, value);
                }
                headers.insert(
                    self.identity.header_name().clone(),
                    self.identity.header_for(session, now),
                );
                response
            }
            ("/whoami" | "/auth", &Method::GET | &Method::HEAD, None) => {
                pages::unauthenticated(&self.login_url)
            }
            ("/jwks.json" | "/whoami" | "/auth", _, _) => {
                pages::json_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
            }
            _ => pages::json_error(StatusCode::NOT_FOUND, "not_found"),
        }
    }

    /// Whether an unauthenticated request may pass. A path with dot segments or
    /// encoded separators never counts as public: the upstream might normalise
    /// `/static/../admin` into a protected path.
    fn is_public(&self, path: &str) -> bool {
        self.public_paths
            .iter()
            .any(|p| path.starts_with(p.as_str()))
            && !is_ambiguous_path(path)
    }

    fn login_redirect(&self, req: &Request<Incoming>) -> String {
        let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
        format!(
            "{}?return_to={}",
            self.login_url,
            utf8_percent_encode(target, RETURN_TO)
        )
    }
}

/// The part after `prefix` when `path` is one of samlgate's own routes.
fn own_route<'a>(prefix: &str, path: &'a str) -> Option<&'a str> {
    let rest = path.strip_prefix(prefix)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

/// SPEC §4: GET/HEAD whose `Accept` lists `text/html`.
fn is_navigation<B>(req: &Request<B>) -> bool {
    (req.method() == Method::GET || req.method() == Method::HEAD)
        && req
            .headers()
            .get_all(ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|item| {
                item.split(';')
                    .next()
                    .is_some_and(|media| media.trim().eq_ignore_ascii_case("text/html"))
            })
}

fn is_ambiguous_path(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    lower.contains("%2e")
        || lower.contains("%2f")
        || lower.contains("%5c")
        || lower.contains('\\')
        || lower.contains("//")
        || path
            .split('/')
            .any(|segment| segment == "." || segment == "..")
}

fn whoami(session: &Session) -> serde_json::Value {
    serde_json::json!({
        "account_id": session.account_id,
        "email": session.email,
        "name": session.name,
        "roles": session.roles,
        "name_id": session.name_id,
        "company_id": session.company_id,
        "auth_time": session.auth_time,
        "expires_at": session.expires_at,
    })
}

/// A short, non-reversible tag for a session id, for logs.
fn session_hash(sid: &str) -> String {
    let digest = Sha256::digest(sid.as_bytes());
    digest[..6].iter().map(|b| format!("{b:02x}")).collect()
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, accept: Option<&str>) -> Request<()> {
        let mut builder = Request::builder().method(method).uri("/x");
        if let Some(accept) = accept {
            builder = builder.header(ACCEPT, accept);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn navigation_needs_get_or_head_and_text_html() {
        let html = "text/html,application/xhtml+xml,*/*;q=0.8";
        assert!(is_navigation(&request(Method::GET, Some(html))));
        assert!(is_navigation(&request(
            Method::HEAD,
            Some("TEXT/HTML;q=0.9")
        )));
        assert!(!is_navigation(&request(Method::POST, Some(html))));
        assert!(!is_navigation(&request(Method::GET, Some("*/*"))));
        assert!(!is_navigation(&request(Method::GET, None)));
        assert!(!is_navigation(&request(
            Method::GET,
            Some("application/json")
        )));
    }

    #[test]
    fn own_routes_need_a_segment_boundary() {
        assert_eq!(own_route("/saml", "/saml/auth"), Some("/auth"));
        assert_eq!(own_route("/saml", "/saml"), Some(""));
        assert_eq!(own_route("/saml", "/samlx/auth"), None);
        assert_eq!(own_route("/saml", "/other"), None);
    }

    #[test]
    fn ambiguous_paths_are_never_public() {
        for path in [
            "/static/../admin",
            "/static/%2e%2e/admin",
            "/static/..%2Fadmin",
            "/static//admin",
            "/static/.\\admin",
            "/static/./x",
        ] {
            assert!(is_ambiguous_path(path), "{path}");
        }
        assert!(!is_ambiguous_path("/static/app.css"));
    }
}
