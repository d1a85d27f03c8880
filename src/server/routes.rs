//! Routing one request: samlgate's own routes, or the panel with or without identity.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{HeaderValue, ACCEPT, CACHE_CONTROL, CONTENT_TYPE, SET_COOKIE};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};

use crate::admin::{Metrics, RouteClass};
use crate::config::Config;
use crate::config::{is_valid_company_id, Tenant};
use crate::identity::{IdentitySigner, PLAIN_HEADERS};
use crate::lookup::{AccountLookup, LookupError, TenantDirectory};
use crate::pages::{self, Pages};
use crate::proxy::{self, Body, ClientInfo, IdentityHeaderStripper, OwnCookies, Upstream};
use crate::replay::ReplayStore;
use crate::return_to;
use crate::saml::{LoginRejection, Saml, MAX_ACS_BODY_BYTES};
use crate::session::{Session, SessionCodec};

/// The cookie that remembers the company of the last login (SPEC §4).
const COMPANY_COOKIE: &str = "samlgate_company";
/// How long the company is remembered.
const COMPANY_COOKIE_MAX_AGE: u64 = 365 * 24 * 3600;
/// Largest `POST /saml/login` or `/saml/logout` body read.
const MAX_FORM_BYTES: usize = 16 * 1024;

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
    pages: Pages,
    origin: String,
    public_paths: Vec<String>,
    secure: bool,
    sessions: SessionCodec,
    identity: IdentitySigner,
    stripper: IdentityHeaderStripper,
    upstream: Upstream,
    saml: Saml,
    tenants: TenantDirectory,
    accounts: AccountLookup,
    replay: ReplayStore,
    metrics: Arc<Metrics>,
}

/// What the access log records about one request besides method, path and status.
#[derive(Default)]
struct Outcome {
    /// Whether the access log is on (set by the caller).
    log: bool,
    route: Option<RouteClass>,
    session: Option<String>,
    upstream_ms: Option<f64>,
}

impl App {
    /// Builds the request handler for `config`.
    pub fn new(config: &Config, replay: ReplayStore, metrics: Arc<Metrics>) -> Self {
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
            pages: Pages::new(&config.path_prefix),
            origin: config.public_url.origin().ascii_serialization(),
            public_paths: config.public_paths.clone(),
            secure,
            sessions: SessionCodec::new(&config.session, secure),
            identity,
            stripper,
            upstream: Upstream::new(
                &config.upstream,
                client.clone(),
                OwnCookies::new([
                    config.session.cookie_name.as_str(),
                    crate::saml::REQUEST_COOKIE,
                    COMPANY_COOKIE,
                ]),
            ),
            saml: Saml::new(config, replay.clone()),
            tenants: TenantDirectory::new(
                config.tenants.clone(),
                config.tenant_lookup.as_ref(),
                client.clone(),
                metrics.clone(),
            ),
            accounts: AccountLookup::new(&config.account_lookup, client, metrics.clone()),
            replay,
            metrics,
        }
    }

    /// Answers one request; never fails, errors become responses.
    pub async fn handle(&self, mut req: Request<Incoming>, client: ClientInfo) -> Response<Body> {
        let started = Instant::now();
        let _in_flight = self.metrics.in_flight();
        // What only the access log needs is only gathered when it is on.
        let logged = tracing::enabled!(target: "samlgate::access", tracing::Level::INFO)
            .then(|| (req.method().clone(), req.uri().path().to_owned()));
        self.stripper.strip(req.headers_mut());

        let mut outcome = Outcome {
            log: logged.is_some(),
            ..Outcome::default()
        };
        let response = self.route(req, &client, &mut outcome).await;

        let route = outcome.route.unwrap_or(RouteClass::samlgate);
        self.metrics.request(route, response.status());
        let Some((method, path)) = logged else {
            return response;
        };
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
        client: &ClientInfo,
        outcome: &mut Outcome,
    ) -> Response<Body> {
        let now = unix_now();
        let session = self.session(req.headers(), now).await;
        if outcome.log {
            outcome.session = session.as_ref().map(|s| session_hash(&s.sid));
        }

        if let Some(route) = own_route(&self.prefix, req.uri().path()) {
            outcome.route = Some(RouteClass::samlgate);
            let route = route.to_owned();
            // Boxed, like every path but proxying: each request allocates and moves
            // a future the size of the largest path it might take.
            return Box::pin(self.own(&route, req, session, now)).await;
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
            // An upgraded connection is a tunnel: it needs a session even on a public path.
            None if self.is_public(req.uri().path())
                && proxy::requested_upgrade(req.headers()).is_none() =>
            {
                outcome.route = Some(RouteClass::public);
                Vec::new()
            }
            None if navigation => {
                outcome.route = Some(RouteClass::login_redirect);
                return Box::pin(self.login_redirect(&req, now)).await;
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
            Err(proxy::ProxyError::OutsideBasePath) => {
                pages::json_error(StatusCode::BAD_REQUEST, "outside_base_path")
            }
            Err(error) => {
                tracing::warn!(%error, "upstream unavailable");
                self.pages.bad_gateway(navigation)
            }
        }
    }

    /// The session in the cookie, unless it was revoked by a logout.
    async fn session(&self, headers: &HeaderMap, now: i64) -> Option<Arc<Session>> {
        let session = self.sessions.open(headers, now)?;
        let left = session.expires_at.saturating_sub(now);
        let lifetime = Duration::from_secs(u64::try_from(left).unwrap_or(0));
        match self.replay.is_revoked(&session.sid, lifetime).await {
            Ok(false) => Some(session),
            Ok(true) => None,
            Err(error) => {
                // Fail open for sessions already established (logins fail closed).
                tracing::warn!(%error, "revocation check failed");
                Some(session)
            }
        }
    }

    async fn own(
        &self,
        route: &str,
        req: Request<Incoming>,
        session: Option<Arc<Session>>,
        now: i64,
    ) -> Response<Body> {
        let method = req.method().clone();
        let read = matches!(method, Method::GET | Method::HEAD);
        match (route, &method, session.as_ref()) {
            ("/jwks.json", _, _) if read => {
                let mut response = pages::json(StatusCode::OK, self.identity.jwks());
                response
                    .headers_mut()
                    .insert(CACHE_CONTROL, HeaderValue::from_static("max-age=300"));
                response
            }
            ("/metadata", _, _) if read => {
                let mut response = pages::json(StatusCode::OK, self.saml.metadata().to_owned());
                response.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/samlmetadata+xml"),
                );
                response
            }
            ("/whoami", _, Some(session)) if read => {
                pages::json(StatusCode::OK, whoami(session).to_string())
            }
            ("/auth", _, Some(session)) if read => {
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
            ("/whoami" | "/auth", _, None) if read => pages::unauthenticated(&self.login_url),
            ("/assets/samlgate.css", _, _) if read => self.pages.stylesheet(),
            ("/login", &Method::GET, _) => self.login_page(&req, now).await,
            ("/login", &Method::POST, _) | ("/logout", &Method::GET | &Method::POST, _)
                if self.is_cross_site(req.headers()) =>
            {
                self.pages.cross_site()
            }
            ("/login", &Method::POST, _) => self.login_submit(req, now).await,
            ("/acs", &Method::POST, _) => self.acs(req, now).await,
            ("/logout", &Method::GET | &Method::POST, _) => self.logout(session, now).await,
            (
                "/jwks.json" | "/metadata" | "/whoami" | "/auth" | "/login" | "/acs" | "/logout",
                _,
                _,
            ) => pages::json_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            _ => pages::json_error(StatusCode::NOT_FOUND, "not_found"),
        }
    }

    /// `GET /saml/login`: the form, or straight to the IdP for `?company_id=` of a known tenant.
    async fn login_page(&self, req: &Request<Incoming>, now: i64) -> Response<Body> {
        let query = form_pairs(req.uri().query().unwrap_or("").as_bytes());
        let return_to = return_to::sanitize(query_value(&query, "return_to").unwrap_or("/"));
        match query_value(&query, "company_id") {
            Some(company) => {
                self.start_login(company, &return_to, req.headers(), now)
                    .await
            }
            None => {
                let remembered = cookie(req.headers(), COMPANY_COOKIE).unwrap_or_default();
                self.pages
                    .login_form(StatusCode::OK, &remembered, &return_to, None)
            }
        }
    }

    /// Whether a state-changing POST comes from another site (login/logout CSRF).
    /// Browsers send `Sec-Fetch-Site`; older ones at least `Origin` on POST.
    fn is_cross_site(&self, headers: &HeaderMap) -> bool {
        if let Some(site) = headers.get("sec-fetch-site") {
            return !matches!(site.as_bytes(), b"same-origin" | b"none");
        }
        headers
            .get(http::header::ORIGIN)
            .is_some_and(|origin| origin.as_bytes() != self.origin.as_bytes())
    }

    /// `POST /saml/login`: the submitted form.
    async fn login_submit(&self, req: Request<Incoming>, now: i64) -> Response<Body> {
        let headers = req.headers().clone();
        let Ok(body) = read_limited(req, MAX_FORM_BYTES).await else {
            return self.pages.too_large();
        };
        let form = form_pairs(&body);
        let return_to = return_to::sanitize(query_value(&form, "return_to").unwrap_or("/"));
        let company = query_value(&form, "company_id").unwrap_or("");
        self.start_login(company, &return_to, &headers, now).await
    }

    async fn start_login(
        &self,
        company: &str,
        return_to: &str,
        headers: &HeaderMap,
        now: i64,
    ) -> Response<Body> {
        let company = company.trim().to_ascii_lowercase();
        let tenant = if is_valid_company_id(&company) {
            self.tenants.by_company(&company).await
        } else {
            Ok(None)
        };
        match tenant {
            Ok(Some(tenant)) => self.redirect_to_idp(&tenant, return_to, headers, now),
            Ok(None) | Err(LookupError::NotFound) => self.pages.login_form(
                StatusCode::BAD_REQUEST,
                &company,
                return_to,
                Some("We don't know this company ID. Check it with your administrator and try again."),
            ),
            Err(LookupError::Unavailable(_)) => self.pages.try_again_shortly(&reference_id()),
        }
    }

    fn redirect_to_idp(
        &self,
        tenant: &Tenant,
        return_to: &str,
        headers: &HeaderMap,
        now: i64,
    ) -> Response<Body> {
        let start = self.saml.start_login(tenant, return_to, headers, now);
        let mut response = pages::redirect(StatusCode::FOUND, &start.location);
        response.headers_mut().append(SET_COOKIE, start.set_cookie);
        response
    }

    /// `POST /saml/acs`: judge the response, look the account up, start a session.
    async fn acs(&self, req: Request<Incoming>, now: i64) -> Response<Body> {
        let reference = reference_id();
        let headers = req.headers().clone();
        let Ok(body) = read_limited(req, MAX_ACS_BODY_BYTES).await else {
            self.audit(
                "failure",
                LoginRejection::BodyTooLarge.code(),
                &reference,
                None,
                None,
            );
            return self.pages.too_large();
        };
        let form = form_pairs(&body);
        let Some(saml_response) = query_value(&form, "SAMLResponse") else {
            self.audit(
                "failure",
                LoginRejection::Malformed.code(),
                &reference,
                None,
                None,
            );
            return self.pages.login_refused(&reference);
        };
        let relay_state = query_value(&form, "RelayState");
        let login = match self
            .saml
            .consume(saml_response, relay_state, &headers, &self.tenants, now)
            .await
        {
            Ok(login) => login,
            Err(refusal) => {
                self.audit(
                    "failure",
                    refusal.reason.code(),
                    &reference,
                    refusal.tenant.as_deref(),
                    None,
                );
                return match refusal.reason {
                    LoginRejection::BodyTooLarge => self.pages.too_large(),
                    reason if reason.is_unavailable() => self.pages.try_again_shortly(&reference),
                    _ => self.pages.login_refused(&reference),
                };
            }
        };
        let company = login.tenant.company_id.as_str();
        let account = match self.accounts.find(company, &login.name_id).await {
            Ok(account) => account,
            Err(LookupError::NotFound) => {
                self.audit(
                    "not_linked",
                    "account_not_linked",
                    &reference,
                    Some(company),
                    Some(&login.name_id),
                );
                return self.pages.not_linked(&login.name_id, &reference);
            }
            Err(LookupError::Unavailable(_)) => {
                self.audit(
                    "unavailable",
                    "lookup_unavailable",
                    &reference,
                    Some(company),
                    Some(&login.name_id),
                );
                return self.pages.try_again_shortly(&reference);
            }
        };
        let session = Session {
            sid: Session::new_sid(),
            account_id: account.account_id,
            email: account.email,
            name: account.name,
            roles: account.roles,
            name_id: login.name_id,
            company_id: company.to_owned(),
            auth_time: login.authn_instant.unwrap_or(now),
            expires_at: self.sessions.expiry(now, login.session_not_on_or_after),
        };
        self.audit(
            "success",
            "ok",
            &reference,
            Some(company),
            Some(&session.name_id),
        );
        let mut response = pages::redirect(StatusCode::SEE_OTHER, &login.return_to);
        let headers = response.headers_mut();
        headers.append(SET_COOKIE, self.sessions.set_cookie(&session, now));
        headers.append(SET_COOKIE, self.company_cookie(company));
        if let Some(state) = login.state_cookie {
            headers.append(SET_COOKIE, state);
        }
        response
    }

    /// `GET|POST /saml/logout`: revoke, clear, and leave (SPEC §4).
    async fn logout(&self, session: Option<Arc<Session>>, now: i64) -> Response<Body> {
        let mut location = self.login_url.clone();
        if let Some(session) = &session {
            let left = Duration::from_secs(session.expires_at.saturating_sub(now).max(1) as u64);
            if let Err(error) = self.replay.revoke(&session.sid, left).await {
                tracing::warn!(%error, "could not revoke the session");
            }
            if let Ok(Some(tenant)) = self.tenants.by_company(&session.company_id).await {
                if let Some(slo) = &tenant.idp_slo_url {
                    location = slo.to_string();
                }
            }
        }
        let mut response = pages::redirect(StatusCode::FOUND, &location);
        response
            .headers_mut()
            .append(SET_COOKIE, self.sessions.clear_cookie());
        response
    }

    /// One audit event per login decision (SPEC §10), counted in
    /// `samlgate_logins_total{outcome,reason}`.
    fn audit(
        &self,
        outcome: &'static str,
        reason: &'static str,
        reference: &str,
        tenant: Option<&str>,
        name_id: Option<&str>,
    ) {
        self.metrics.login(outcome, reason);
        tracing::info!(
            target: "samlgate::audit",
            outcome,
            reason,
            reference,
            tenant,
            name_id,
            "login"
        );
    }

    fn company_cookie(&self, company: &str) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{COMPANY_COOKIE}={company}; Path=/; HttpOnly; SameSite=Lax; Max-Age={COMPANY_COOKIE_MAX_AGE}{secure}"
        ))
        .expect("company IDs are cookie-safe")
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

    /// A browser without a session: straight to the IdP when the company is known
    /// (remembered, or the only static tenant), else to the login screen.
    async fn login_redirect(&self, req: &Request<Incoming>, now: i64) -> Response<Body> {
        let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
        let return_to = return_to::sanitize(target);
        let remembered = match cookie(req.headers(), COMPANY_COOKIE) {
            Some(company) if is_valid_company_id(&company) => {
                self.tenants.by_company(&company).await.ok().flatten()
            }
            _ => None,
        };
        if let Some(tenant) = remembered.or_else(|| self.tenants.only_tenant()) {
            return self.redirect_to_idp(&tenant, &return_to, req.headers(), now);
        }
        let location = format!(
            "{}?return_to={}",
            self.login_url,
            utf8_percent_encode(&return_to, RETURN_TO)
        );
        pages::redirect(StatusCode::FOUND, &location)
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
    // `;` because servlet containers strip path parameters (`/static/..;/admin`),
    // `%25` because a panel that decodes twice would see `%2f` as `/`.
    lower.contains("%2e")
        || lower.contains("%2f")
        || lower.contains("%5c")
        || lower.contains("%25")
        || lower.contains(';')
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
    use std::fmt::Write as _;
    let digest = Sha256::digest(sid.as_bytes());
    let mut hash = String::with_capacity(12);
    for byte in &digest[..6] {
        let _ = write!(hash, "{byte:02x}");
    }
    hash
}

/// A short random id shown to the user and logged with the precise reason.
fn reference_id() -> String {
    let mut bytes = [0u8; 6];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

async fn read_limited(req: Request<Incoming>, limit: usize) -> Result<Bytes, ()> {
    Limited::new(req.into_body(), limit)
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .map_err(|_| ())
}

fn form_pairs(bytes: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(bytes).into_owned().collect()
}

fn query_value<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// The first cookie called `name`.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    crate::session::cookies(headers, name)
        .next()
        .map(str::to_owned)
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
            "/static/..;/admin",
            "/static/..%252fadmin",
        ] {
            assert!(is_ambiguous_path(path), "{path}");
        }
        assert!(!is_ambiguous_path("/static/app.css"));
    }
}
