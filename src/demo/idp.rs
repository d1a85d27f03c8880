//! The development IdP: a small, real SAML 2.0 identity provider standing in for
//! Okta. Two apps (two tenants), a login form, an IdP session (single sign-on), the
//! "My Applications" dashboard with one tile per app (IdP-initiated login), and
//! signed Responses POSTed to samlgate's ACS by an auto-submitting form.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use http::header::{HeaderValue, ORIGIN, SET_COOKIE};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use moka::sync::Cache;
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use openssl::x509::{X509NameBuilder, X509};
use sha2::{Digest as _, Sha256};

use super::assertion::{self, ResponseParams};
use super::web::{self, random_id};
use super::{DemoUser, USERS};
use crate::pages::escape;
use crate::proxy::Body;

/// The IdP session cookie. Cookies are not scoped by port, so it must not collide
/// with samlgate's own cookie names on the same host.
const SESSION_COOKIE: &str = "demo_idp_session";
/// Like an Okta session: 8 hours.
const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// How long a sign-in started by an AuthnRequest (or a tile) waits for the password.
const PENDING_TTL: Duration = Duration::from_secs(10 * 60);
/// How long a signed Assertion may be used, as Okta's.
const ASSERTION_LIFETIME: chrono::Duration = chrono::Duration::minutes(5);
/// Longest RelayState carried through the login form.
const MAX_RELAY_STATE: usize = 2048;
const HTTP_POST_BINDING: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST";
/// Demo-only: more service providers every app signs for besides samlgate, as
/// `<entity ID> <ACS URL>` pairs separated by `;` (for interoperability tests with
/// another SP, e.g. mod_auth_mellon). Not a `SAMLGATE_…` name: those are
/// samlgate's configuration keys.
pub(super) const EXTRA_SP_ENV: &str = "DEMO_IDP_EXTRA_SP";

const STYLE: &str = include_str!("idp.css");
const AUTOSUBMIT: &str = "document.getElementById('saml-post').submit();\n";

/// The IdP's RSA-2048 key and self-signed certificate, shared by both apps.
pub(super) struct SigningIdentity {
    /// PKCS#1 DER private key, as xmlsec loads it.
    pub key_der: Vec<u8>,
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    /// The certificate, base64 DER (KeyInfo).
    pub cert_b64: String,
    /// The certificate, PEM (samlgate's `idp_certificate`).
    pub cert_pem: String,
}

impl SigningIdentity {
    /// Generates a key and a one-year self-signed certificate.
    pub fn generate() -> Result<Self, openssl::error::ErrorStack> {
        let key = PKey::from_rsa(Rsa::generate(2048)?)?;
        let mut name = X509NameBuilder::new()?;
        name.append_entry_by_text("O", "samlgate demo")?;
        name.append_entry_by_text("CN", "samlgate development IdP")?;
        let name = name.build();
        let mut serial = BigNum::new()?;
        serial.rand(127, MsbOption::MAYBE_ZERO, false)?;
        let mut builder = X509::builder()?;
        builder.set_version(2)?;
        let serial = serial.to_asn1_integer()?;
        builder.set_serial_number(&serial)?;
        builder.set_subject_name(&name)?;
        builder.set_issuer_name(&name)?;
        builder.set_pubkey(&key)?;
        let (not_before, not_after) = (Asn1Time::days_from_now(0)?, Asn1Time::days_from_now(365)?);
        builder.set_not_before(&not_before)?;
        builder.set_not_after(&not_after)?;
        builder.sign(&key, MessageDigest::sha256())?;
        let cert = builder.build();
        let cert_der = cert.to_der()?;
        Ok(Self {
            key_der: key.private_key_to_der()?,
            cert_b64: STANDARD.encode(&cert_der),
            cert_pem: String::from_utf8(cert.to_pem()?).expect("PEM is ASCII"),
            cert_der,
        })
    }

    /// SHA-256 fingerprint of the certificate, colon-separated hex (as Okta shows it).
    pub fn fingerprint(&self) -> String {
        Sha256::digest(&self.cert_der)
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    }
}

/// One SAML app in the IdP (one tenant of samlgate).
#[derive(Debug, Clone)]
pub(super) struct IdpApp {
    /// URL segment and samlgate company ID.
    pub slug: &'static str,
    /// The organisation, as the tile shows it.
    pub organisation: &'static str,
    /// Identity Provider Issuer.
    pub issuer: String,
    /// Identity Provider Single Sign-On URL.
    pub sso_url: String,
    /// Where samlgate sends the browser after its logout.
    pub slo_url: String,
    /// The single sign-on URL registered for the SP (samlgate's ACS).
    pub acs_url: String,
    /// The Audience URI registered for the SP (samlgate's entity ID).
    pub audience: String,
    /// Sign the Response as well as the Assertion.
    pub sign_response: bool,
}

impl IdpApp {
    /// The app `slug` of the IdP at `origin`, for the SP with `acs_url` and `audience`.
    pub fn new(
        origin: &str,
        slug: &'static str,
        organisation: &'static str,
        acs_url: &str,
        audience: &str,
        sign_response: bool,
    ) -> Self {
        Self {
            slug,
            organisation,
            issuer: format!("{origin}/app/{slug}"),
            sso_url: format!("{origin}/app/{slug}/sso"),
            slo_url: format!("{origin}/app/{slug}/slo"),
            acs_url: acs_url.to_owned(),
            audience: audience.to_owned(),
            sign_response,
        }
    }

    /// The service provider registered for this app (samlgate).
    fn service_provider(&self) -> ServiceProvider {
        ServiceProvider {
            entity_id: self.audience.clone(),
            acs_url: self.acs_url.clone(),
        }
    }
}

/// A service provider an app signs for: where the Response goes and its audience.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ServiceProvider {
    /// The SP's entity ID: the AuthnRequest's Issuer and the Audience.
    pub entity_id: String,
    /// The SP's ACS URL (HTTP-POST binding): Destination and Recipient.
    pub acs_url: String,
}

/// Parses [`EXTRA_SP_ENV`]: `<entity ID> <ACS URL>` pairs separated by `;`.
pub(super) fn parse_extra_sps(value: &str) -> Result<Vec<ServiceProvider>, String> {
    value
        .split(';')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let parts: Vec<&str> = entry.split_whitespace().collect();
            let [entity_id, acs_url] = parts.as_slice() else {
                return Err(format!("{entry:?} is not \"<entity ID> <ACS URL>\""));
            };
            match url::Url::parse(acs_url) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {
                    Ok(ServiceProvider {
                        entity_id: (*entity_id).to_owned(),
                        acs_url: (*acs_url).to_owned(),
                    })
                }
                _ => Err(format!("{acs_url:?} is not an http(s) ACS URL")),
            }
        })
        .collect()
}

/// The extra service providers named by [`EXTRA_SP_ENV`], if any; a malformed
/// value is logged and ignored.
fn extra_sps_from_env() -> Vec<ServiceProvider> {
    let Ok(value) = std::env::var(EXTRA_SP_ENV) else {
        return Vec::new();
    };
    match parse_extra_sps(&value) {
        Ok(sps) => {
            for sp in &sps {
                tracing::warn!(
                    entity_id = sp.entity_id,
                    acs_url = sp.acs_url,
                    "demo IdP: also signing for an extra service provider ({EXTRA_SP_ENV})"
                );
            }
            sps
        }
        Err(error) => {
            tracing::error!(%error, "demo IdP: ignoring {EXTRA_SP_ENV}");
            Vec::new()
        }
    }
}

/// A signed-in browser.
#[derive(Clone)]
struct IdpSession {
    user: &'static DemoUser,
    index: String,
    authn_instant: DateTime<Utc>,
}

/// A sign-in waiting for the password: what to answer once the user is known.
#[derive(Clone)]
struct Pending {
    app: usize,
    /// Who gets the Response: the app's SP (samlgate) or an extra one.
    sp: ServiceProvider,
    in_response_to: Option<String>,
    relay_state: Option<String>,
}

/// The development IdP.
pub(super) struct Idp {
    origin: String,
    gate_url: String,
    apps: Vec<IdpApp>,
    /// Service providers besides samlgate that every app signs for (demo-only).
    extra_sps: Vec<ServiceProvider>,
    identity: Arc<SigningIdentity>,
    sessions: Cache<String, IdpSession>,
    pending: Cache<String, Pending>,
    csp: String,
}

impl Idp {
    /// An IdP at `origin` with `apps`, linking back to samlgate at `gate_url`.
    pub fn new(
        origin: String,
        gate_url: String,
        apps: Vec<IdpApp>,
        identity: Arc<SigningIdentity>,
    ) -> Self {
        Self::with_extra_sps(origin, gate_url, apps, extra_sps_from_env(), identity)
    }

    /// Like [`Idp::new`], with explicit extra service providers.
    fn with_extra_sps(
        origin: String,
        gate_url: String,
        apps: Vec<IdpApp>,
        extra_sps: Vec<ServiceProvider>,
        identity: Arc<SigningIdentity>,
    ) -> Self {
        let mut form_targets: Vec<String> = Vec::new();
        let acs_urls = apps
            .iter()
            .map(|app| &app.acs_url)
            .chain(extra_sps.iter().map(|sp| &sp.acs_url));
        for acs_url in acs_urls {
            if let Ok(url) = url::Url::parse(acs_url) {
                let target = url.origin().ascii_serialization();
                if !form_targets.contains(&target) {
                    form_targets.push(target);
                }
            }
        }
        let csp = format!(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             form-action 'self' {}; frame-ancestors 'none'; base-uri 'none'",
            form_targets.join(" ")
        );
        Self {
            origin,
            gate_url,
            apps,
            extra_sps,
            identity,
            sessions: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(SESSION_TTL)
                .build(),
            pending: Cache::builder()
                .max_capacity(10_000)
                .time_to_live(PENDING_TTL)
                .build(),
            csp,
        }
    }

    /// Answers one request.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_owned();
        let method = req.method().clone();
        let read = method == Method::GET || method == Method::HEAD;
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (segments.as_slice(), read) {
            ([""], true) => self.dashboard(&req),
            (["idp.css"], true) => web::asset("text/css; charset=utf-8", STYLE),
            (["autosubmit.js"], true) => web::asset("text/javascript; charset=utf-8", AUTOSUBMIT),
            (["login"], true) => web::see_other("/"),
            (["login"], false) if method == Method::POST => self.login(req).await,
            (["logout"], false) if method == Method::POST => self.logout(&req),
            (["app", slug, action], true) => match self.app_index(slug) {
                Some(app) => match *action {
                    "sso" => self.sso(app, &req).await,
                    "tile" => self.tile(app, &req).await,
                    "slo" => self.slo(app, &req),
                    _ => self.not_found(),
                },
                None => self.not_found(),
            },
            _ => self.not_found(),
        }
    }

    /// The service provider called `issuer` that app `app` signs for: samlgate, or
    /// one of the extra ones.
    fn service_provider(&self, app: usize, issuer: Option<&str>) -> Option<ServiceProvider> {
        let issuer = issuer?;
        let own = self.apps[app].service_provider();
        if own.entity_id == issuer {
            return Some(own);
        }
        self.extra_sps
            .iter()
            .find(|sp| sp.entity_id == issuer)
            .cloned()
    }

    fn app_index(&self, slug: &str) -> Option<usize> {
        self.apps.iter().position(|app| app.slug == slug)
    }

    fn session(&self, req: &Request<Incoming>) -> Option<(String, IdpSession)> {
        let token = web::cookie(req.headers(), SESSION_COOKIE)?;
        let session = self.sessions.get(&token)?;
        Some((token, session))
    }

    /// `GET /`: "My Applications", or the login form first.
    fn dashboard(&self, req: &Request<Incoming>) -> Response<Body> {
        let Some((_, session)) = self.session(req) else {
            return self.login_form(StatusCode::OK, None, "", None);
        };
        let tiles: String = self
            .apps
            .iter()
            .map(|app| {
                format!(
                    "<li><a class=\"tile\" href=\"/app/{slug}/tile\">\
                     <span class=\"tile-icon\" aria-hidden=\"true\">◆</span>\
                     <span class=\"tile-name\">Google Workspace Backup</span>\
                     <span class=\"tile-org\">{org} · company ID <code>{slug}</code></span></a></li>",
                    slug = escape(app.slug),
                    org = escape(app.organisation),
                )
            })
            .collect();
        let body = format!(
            "<h1>My Applications</h1>\
             <p>Signed in as <strong>{name}</strong> ({email}).</p>\
             <ul class=\"tiles\">{tiles}</ul>\
             <p class=\"hint\">A tile signs you in to the app directly (IdP-initiated: the IdP \
             sends a signed SAML response to samlgate without being asked).</p>\
             <form method=\"post\" action=\"/logout\"><button type=\"submit\" class=\"secondary\">\
             Sign out of the IdP</button></form>",
            name = escape(session.user.name),
            email = escape(session.user.email),
        );
        self.page(StatusCode::OK, "My Applications", &body)
    }

    /// `GET /app/{app}/sso`: an AuthnRequest over the HTTP-Redirect binding.
    async fn sso(&self, app: usize, req: &Request<Incoming>) -> Response<Body> {
        let query = web::query(req);
        let spec = &self.apps[app];
        let Some(saml_request) = web::value(&query, "SAMLRequest") else {
            return self.error(
                StatusCode::BAD_REQUEST,
                "No sign-in request",
                &format!(
                    "This is the single sign-on URL of the {} app; it expects a SAML request \
                     from the backup panel. <a href=\"{}\">Open the backup panel</a> to sign in.",
                    escape(spec.organisation),
                    escape(&self.gate_url)
                ),
            );
        };
        let request = match assertion::decode_authn_request(saml_request) {
            Ok(request) => request,
            Err(error) => {
                tracing::warn!(app = spec.slug, %error, "demo IdP: refused a SAMLRequest");
                return self.error(
                    StatusCode::BAD_REQUEST,
                    "Invalid sign-in request",
                    &escape(&format!("{error}.")),
                );
            }
        };
        let refuse = |reason: &str| {
            tracing::warn!(app = spec.slug, reason, "demo IdP: refused an AuthnRequest");
            self.error(
                StatusCode::BAD_REQUEST,
                "Invalid sign-in request",
                &escape(reason),
            )
        };
        let Some(sp) = self.service_provider(app, request.issuer_value().as_deref()) else {
            return refuse("The request comes from a service provider this app does not know.");
        };
        // Never sign for an arbitrary URL: only the ACS registered for this SP.
        if request
            .assertion_consumer_service_url
            .as_deref()
            .is_some_and(|acs| acs != sp.acs_url)
        {
            return refuse("The request asks for an ACS URL that is not registered for this app.");
        }
        if request
            .destination
            .as_deref()
            .is_some_and(|d| d != spec.sso_url)
        {
            return refuse("The request was meant for another single sign-on URL.");
        }
        if request
            .protocol_binding
            .as_deref()
            .is_some_and(|b| b != HTTP_POST_BINDING)
        {
            return refuse("This IdP answers with the HTTP-POST binding only.");
        }
        let relay_state = web::value(&query, "RelayState").map(str::to_owned);
        if relay_state
            .as_ref()
            .is_some_and(|r| r.len() > MAX_RELAY_STATE)
        {
            return refuse("The RelayState is too long.");
        }
        let pending = Pending {
            app,
            sp,
            in_response_to: Some(request.id.clone()),
            relay_state,
        };
        match self.session(req) {
            // Single sign-on: already signed in here, answer at once (unless ForceAuthn).
            Some((_, session)) if request.force_authn != Some(true) => {
                self.answer(&pending, &session, None).await
            }
            _ => self.ask_password(pending),
        }
    }

    /// `GET /app/{app}/tile`: the dashboard tile (IdP-initiated, unsolicited).
    async fn tile(&self, app: usize, req: &Request<Incoming>) -> Response<Body> {
        let pending = Pending {
            app,
            sp: self.apps[app].service_provider(),
            in_response_to: None,
            relay_state: None,
        };
        match self.session(req) {
            Some((_, session)) => self.answer(&pending, &session, None).await,
            None => self.ask_password(pending),
        }
    }

    /// `GET /app/{app}/slo`: where samlgate sends the browser after its logout.
    fn slo(&self, app: usize, req: &Request<Incoming>) -> Response<Body> {
        self.end_session(req);
        let body = format!(
            "<h1>You are signed out</h1>\
             <p>You signed out of Google Workspace Backup ({org}) and of the demo IdP.</p>\
             <p><a class=\"button\" href=\"{gate}/\">Sign in again</a> \
             <a href=\"/\">My Applications</a></p>",
            org = escape(self.apps[app].organisation),
            gate = escape(&self.gate_url),
        );
        let mut response = self.page(StatusCode::OK, "Signed out", &body);
        response
            .headers_mut()
            .append(SET_COOKIE, clear_session_cookie());
        response
    }

    /// `POST /logout` from the dashboard.
    fn logout(&self, req: &Request<Incoming>) -> Response<Body> {
        if !self.same_origin(req) {
            return self.forbidden();
        }
        self.end_session(req);
        let mut response = web::see_other("/");
        response
            .headers_mut()
            .append(SET_COOKIE, clear_session_cookie());
        response
    }

    fn end_session(&self, req: &Request<Incoming>) {
        if let Some((token, session)) = self.session(req) {
            self.sessions.invalidate(&token);
            tracing::info!(user = session.user.username, "demo IdP: signed out");
        }
    }

    /// Remembers `pending` and shows the login form that completes it.
    fn ask_password(&self, pending: Pending) -> Response<Body> {
        let handle = random_id();
        let app = pending.app;
        self.pending.insert(handle.clone(), pending);
        self.login_form(StatusCode::OK, Some(app), &handle, None)
    }

    /// `POST /login`.
    async fn login(&self, req: Request<Incoming>) -> Response<Body> {
        if !self.same_origin(&req) {
            return self.forbidden();
        }
        let Some(form) = web::form(req).await else {
            return self.error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Request too large",
                "The sign-in form was larger than this IdP accepts.",
            );
        };
        let username = web::value(&form, "username").unwrap_or("").trim();
        let password = web::value(&form, "password").unwrap_or("");
        let handle = web::value(&form, "request").unwrap_or("");
        let pending = (!handle.is_empty())
            .then(|| self.pending.get(handle))
            .flatten();
        let Some(user) = authenticate(username, password) else {
            tracing::info!(username, "demo IdP: wrong username or password");
            return self.login_form(
                StatusCode::UNAUTHORIZED,
                pending.as_ref().map(|p| p.app),
                handle,
                Some(username),
            );
        };
        let token = random_id();
        let session = IdpSession {
            user,
            index: random_id(),
            authn_instant: Utc::now(),
        };
        self.sessions.insert(token.clone(), session.clone());
        tracing::info!(user = user.username, "demo IdP: signed in");
        let cookie = HeaderValue::from_str(&format!(
            "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}",
            SESSION_TTL.as_secs()
        ))
        .expect("the token is cookie-safe");
        match pending {
            Some(pending) => {
                self.pending.invalidate(handle);
                self.answer(&pending, &session, Some(cookie)).await
            }
            // The dashboard login, or a sign-in request that expired meanwhile.
            None => {
                let mut response = web::see_other("/");
                response.headers_mut().append(SET_COOKIE, cookie);
                response
            }
        }
    }

    /// Signs a Response for `session` and hands it to the browser in an
    /// auto-submitting form POSTing to the app's ACS.
    async fn answer(
        &self,
        pending: &Pending,
        session: &IdpSession,
        cookie: Option<HeaderValue>,
    ) -> Response<Body> {
        let app = &self.apps[pending.app];
        let params = ResponseParams {
            issuer: &app.issuer,
            acs_url: &pending.sp.acs_url,
            audience: &pending.sp.entity_id,
            in_response_to: pending.in_response_to.as_deref(),
            name_id: session.user.email,
            name: session.user.name,
            authn_instant: session.authn_instant,
            session_index: &session.index,
            now: Utc::now(),
            valid_for: ASSERTION_LIFETIME,
        };
        let unsigned =
            assertion::build_response(&params, &self.identity.cert_b64, random_id(), random_id());
        let assertion_id = unsigned.assertion_id.clone();
        let identity = self.identity.clone();
        let sign_response = app.sign_response;
        let signed = tokio::task::spawn_blocking(move || {
            assertion::sign(
                &unsigned,
                &identity.key_der,
                &identity.cert_b64,
                sign_response,
            )
        })
        .await;
        let xml = match signed {
            Ok(Ok(xml)) => xml,
            Ok(Err(error)) => {
                tracing::error!(%error, "demo IdP: signing failed");
                return self.error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Sign-in failed",
                    "The IdP could not sign the response.",
                );
            }
            Err(error) => {
                tracing::error!(%error, "demo IdP: signing task failed");
                return self.error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Sign-in failed",
                    "The IdP could not sign the response.",
                );
            }
        };
        tracing::info!(
            app = app.slug,
            sp = pending.sp.entity_id,
            user = session.user.username,
            solicited = pending.in_response_to.is_some(),
            response_signed = app.sign_response,
            assertion_id,
            "demo IdP: sent a signed SAML response"
        );
        let relay = pending
            .relay_state
            .as_deref()
            .filter(|r| !r.is_empty())
            .map_or(String::new(), |r| {
                format!(
                    "<input type=\"hidden\" name=\"RelayState\" value=\"{}\">",
                    escape(r)
                )
            });
        let destination = if pending.sp == app.service_provider() {
            format!("Google Workspace Backup ({})", escape(app.organisation))
        } else {
            format!("<code>{}</code>", escape(&pending.sp.entity_id))
        };
        let body = format!(
            "<h1>Signing you in…</h1>\
             <p>Sending your sign-in as <strong>{email}</strong> to {destination}.</p>\
             <form id=\"saml-post\" method=\"post\" action=\"{acs}\">\
             <input type=\"hidden\" name=\"SAMLResponse\" value=\"{response}\">{relay}\
             <noscript><p>JavaScript is off: press Continue to finish signing in.</p></noscript>\
             <button type=\"submit\">Continue</button></form>\
             <script src=\"/autosubmit.js\"></script>",
            email = escape(session.user.email),
            acs = escape(&pending.sp.acs_url),
            response = STANDARD.encode(xml.as_bytes()),
        );
        let mut response = self.page(StatusCode::OK, "Signing you in", &body);
        if let Some(cookie) = cookie {
            response.headers_mut().append(SET_COOKIE, cookie);
        }
        response
    }

    /// The login form; `app` names what the sign-in continues to.
    fn login_form(
        &self,
        status: StatusCode,
        app: Option<usize>,
        handle: &str,
        failed_as: Option<&str>,
    ) -> Response<Body> {
        let target = app.map_or("your applications".to_owned(), |app| {
            format!(
                "<strong>Google Workspace Backup ({})</strong>",
                escape(self.apps[app].organisation)
            )
        });
        let error = if failed_as.is_some() {
            "<p class=\"error\" role=\"alert\" id=\"error\">Wrong username or password.</p>"
        } else {
            ""
        };
        let described = if failed_as.is_some() {
            " aria-describedby=\"error\""
        } else {
            ""
        };
        let users: String = USERS
            .iter()
            .map(|u| {
                format!(
                    "<li><code>{}</code> / <code>{}</code> — {}</li>",
                    escape(u.username),
                    escape(u.password),
                    escape(u.note)
                )
            })
            .collect();
        let body = format!(
            "<h1>Sign in</h1><p>to continue to {target}</p>{error}\
             <form method=\"post\" action=\"/login\">\
             <label for=\"username\">Username</label>\
             <input type=\"text\" id=\"username\" name=\"username\" value=\"{username}\" required \
             autocomplete=\"username\" autocapitalize=\"none\" spellcheck=\"false\" autofocus{described}>\
             <label for=\"password\">Password</label>\
             <input type=\"password\" id=\"password\" name=\"password\" required \
             autocomplete=\"current-password\"{described}>\
             <input type=\"hidden\" name=\"request\" value=\"{handle}\">\
             <button type=\"submit\">Sign in</button></form>\
             <details><summary>Demo users</summary><ul class=\"users\">{users}</ul></details>",
            username = escape(failed_as.unwrap_or("")),
            handle = escape(handle),
        );
        self.page(status, "Sign in", &body)
    }

    /// Whether a POST comes from the IdP's own pages (login CSRF). Browsers send
    /// `Sec-Fetch-Site`; older ones at least `Origin` (real, not `null`, because the
    /// pages' referrer policy is `same-origin`). Clients with neither are not browsers.
    fn same_origin(&self, req: &Request<Incoming>) -> bool {
        if let Some(site) = req.headers().get("sec-fetch-site") {
            return matches!(site.as_bytes(), b"same-origin" | b"none");
        }
        req.headers()
            .get(ORIGIN)
            .is_none_or(|origin| origin.as_bytes() == self.origin.as_bytes())
    }

    fn forbidden(&self) -> Response<Body> {
        self.error(
            StatusCode::FORBIDDEN,
            "Cross-site request refused",
            "This form can only be sent from the IdP's own pages.",
        )
    }

    fn not_found(&self) -> Response<Body> {
        self.error(
            StatusCode::NOT_FOUND,
            "Not found",
            "<a href=\"/\">My Applications</a>",
        )
    }

    /// An error page; `html` must already be escaped.
    fn error(&self, status: StatusCode, title: &str, html: &str) -> Response<Body> {
        let body = format!("<h1>{}</h1><p>{html}</p>", escape(title));
        self.page(status, title, &body)
    }

    fn page(&self, status: StatusCode, title: &str, body: &str) -> Response<Body> {
        web::html(
            status,
            &self.csp,
            format!(
                "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
                 <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
                 <title>{title} · Demo IdP</title><link rel=\"stylesheet\" href=\"/idp.css\"></head>\
                 <body><header class=\"brand\"><span class=\"logo\" aria-hidden=\"true\">●</span> \
                 Demo IdP <span class=\"tag\">development stand-in for Okta</span></header>\
                 <main>{body}</main></body></html>\n",
                title = escape(title),
            ),
        )
    }
}

/// The user with these credentials. Compares digests so the time taken does not
/// depend on how much of the password matched.
fn authenticate(username: &str, password: &str) -> Option<&'static DemoUser> {
    let user = USERS.iter().find(|u| u.username == username)?;
    (Sha256::digest(password.as_bytes()) == Sha256::digest(user.password.as_bytes()))
        .then_some(user)
}

fn clear_session_cookie() -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"
    ))
    .expect("a constant cookie is a valid header")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_checked() {
        assert_eq!(
            authenticate("alice", "alice-password").map(|u| u.email),
            Some("alice@demo.example")
        );
        assert!(authenticate("alice", "bob-password").is_none());
        assert!(authenticate("alice", "").is_none());
        assert!(authenticate("mallory", "mallory-password").is_none());
    }

    #[test]
    fn apps_name_their_urls_after_the_slug() {
        let app = IdpApp::new(
            "http://127.0.0.1:8081",
            "globex",
            "Globex",
            "http://127.0.0.1:8080/saml/acs",
            "http://127.0.0.1:8080/saml/metadata",
            true,
        );
        assert_eq!(app.issuer, "http://127.0.0.1:8081/app/globex");
        assert_eq!(app.sso_url, "http://127.0.0.1:8081/app/globex/sso");
        assert_eq!(app.slo_url, "http://127.0.0.1:8081/app/globex/slo");
    }

    #[test]
    fn extra_service_providers_are_entity_id_and_acs_pairs() {
        let sp = |entity_id: &str, acs_url: &str| ServiceProvider {
            entity_id: entity_id.to_owned(),
            acs_url: acs_url.to_owned(),
        };
        assert_eq!(parse_extra_sps(""), Ok(vec![]));
        assert_eq!(
            parse_extra_sps(
                " http://127.0.0.1:9000/mellon/metadata  http://127.0.0.1:9000/mellon/postResponse ;\
                 urn:example:sp https://sp.example/acs;"
            ),
            Ok(vec![
                sp(
                    "http://127.0.0.1:9000/mellon/metadata",
                    "http://127.0.0.1:9000/mellon/postResponse"
                ),
                sp("urn:example:sp", "https://sp.example/acs"),
            ])
        );
        for bad in [
            "urn:example:sp",
            "urn:example:sp https://sp.example/acs extra",
            "urn:example:sp /acs",
            "urn:example:sp javascript:alert(1)",
        ] {
            assert!(parse_extra_sps(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn apps_sign_for_samlgate_and_the_extra_service_providers_only() {
        let gate_acs = "http://127.0.0.1:8080/saml/acs";
        let gate_entity = "http://127.0.0.1:8080/saml/metadata";
        let app = IdpApp::new(
            "http://127.0.0.1:8081",
            "demo",
            "Demo Inc.",
            gate_acs,
            gate_entity,
            false,
        );
        let extra = ServiceProvider {
            entity_id: "http://127.0.0.1:9000/mellon/metadata".to_owned(),
            acs_url: "http://127.0.0.1:9000/mellon/postResponse".to_owned(),
        };
        let idp = Idp::with_extra_sps(
            "http://127.0.0.1:8081".to_owned(),
            "http://127.0.0.1:8080".to_owned(),
            vec![app.clone()],
            vec![extra.clone()],
            Arc::new(SigningIdentity::generate().unwrap()),
        );
        assert_eq!(
            idp.service_provider(0, Some(gate_entity)),
            Some(app.service_provider())
        );
        assert_eq!(idp.service_provider(0, Some(&extra.entity_id)), Some(extra));
        assert_eq!(idp.service_provider(0, Some("urn:someone:else")), None);
        assert_eq!(idp.service_provider(0, None), None);
        assert!(
            idp.csp
                .contains("form-action 'self' http://127.0.0.1:8080 http://127.0.0.1:9000;"),
            "{}",
            idp.csp
        );
    }
}
