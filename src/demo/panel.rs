//! The demo panel: a stand-in for the Google Workspace backup panel behind samlgate.
//! It serves the lookup APIs samlgate calls (SPEC §5, §6) and, on every other path,
//! verifies samlgate's identity header against samlgate's JWKS and shows who is
//! signed in. Without a verified identity it serves nothing but a 401 page.

use std::collections::HashMap;
use std::str::FromStr as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use http::header::AUTHORIZATION;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::json;

use super::web;
use crate::pages::escape;
use crate::proxy::{empty, Body, HttpClient};

const STYLE: &str = include_str!("panel.css");
const CSP: &str =
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";
/// How long fetched keys are trusted before a refetch (samlgate says `max-age=300`).
const JWKS_MAX_AGE: Duration = Duration::from_secs(300);
/// An unknown `kid` refetches the JWKS at most this often.
const JWKS_MIN_REFETCH: Duration = Duration::from_secs(5);
const JWKS_TIMEOUT: Duration = Duration::from_secs(2);

/// One panel account (what the Google Workspace synchronisation created).
pub(super) struct Account {
    pub company_id: &'static str,
    pub email: &'static str,
    pub account_id: &'static str,
    pub name: &'static str,
    pub roles: &'static [&'static str],
}

/// The panel's accounts. carol@demo.example is missing on purpose: she was "created
/// in Google Workspace today" and has not been synchronised yet.
pub(super) static ACCOUNTS: [Account; 3] = [
    Account {
        company_id: "demo",
        email: "alice@demo.example",
        account_id: "u-1001",
        name: "Alice Anderson",
        roles: &["admin"],
    },
    Account {
        company_id: "demo",
        email: "bob@demo.example",
        account_id: "u-1002",
        name: "Bob Brown",
        roles: &["viewer"],
    },
    Account {
        company_id: "globex",
        email: "dana@globex.example",
        account_id: "g-2001",
        name: "Dana Dawson",
        roles: &["admin"],
    },
];

/// One company's Settings → Okta tab: the four items of Okta's "View SAML setup
/// instructions".
#[derive(Debug, Clone)]
pub(super) struct OktaSettings {
    pub company_id: String,
    pub idp_sso_url: String,
    pub idp_issuer: String,
    pub idp_slo_url: String,
    pub idp_certificate: String,
    pub fingerprint: String,
    /// Served to samlgate by the tenant lookup API (else: samlgate's own config file).
    pub served_by_panel: bool,
}

/// What the panel is configured with.
pub(super) struct PanelSettings {
    /// samlgate's `public_url` (the identity header's `iss`).
    pub gate_url: String,
    /// samlgate's JWKS.
    pub jwks_url: String,
    /// The identity header's name.
    pub header: http::HeaderName,
    /// The identity header's `aud`.
    pub audience: String,
    /// The bearer token samlgate's account lookups must carry.
    pub lookup_token: String,
    /// Okta settings per company.
    pub okta: Vec<OktaSettings>,
}

/// The demo panel.
pub(super) struct Panel {
    settings: PanelSettings,
    jwks: Jwks,
}

/// The identity header's claims (SPEC §7).
#[derive(Debug, serde::Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    name_id: Option<String>,
    #[serde(default)]
    company_id: Option<String>,
    #[serde(default)]
    auth_time: Option<i64>,
    exp: i64,
}

/// A verified identity header.
struct Identity {
    claims: Claims,
    algorithm: Algorithm,
    kid: String,
}

impl Panel {
    /// A panel that fetches samlgate's keys with `client`.
    pub fn new(settings: PanelSettings, client: HttpClient) -> Self {
        let jwks = Jwks::new(settings.jwks_url.clone(), client);
        Self { settings, jwks }
    }

    /// Answers one request.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        match req.uri().path() {
            "/internal/samlgate/accounts" => self.accounts(&req),
            "/internal/samlgate/tenants" => self.tenants(&req),
            "/static/panel.css" => web::asset("text/css; charset=utf-8", STYLE),
            _ => {
                let identity = self.verify(&req).await;
                // The body is not used; read it so keep-alive connections stay usable.
                let path = req
                    .uri()
                    .path_and_query()
                    .map_or("/", |p| p.as_str())
                    .to_owned();
                let _ = Limited::new(req.into_body(), 64 * 1024).collect().await;
                match identity {
                    Ok(identity) => self.page(&path, &identity),
                    Err(reason) => {
                        tracing::info!(path, reason, "demo panel: no verified identity");
                        self.unauthenticated(&reason)
                    }
                }
            }
        }
    }

    /// `GET /internal/samlgate/accounts?company_id=…&name_id=…` (SPEC §5).
    fn accounts(&self, req: &Request<Incoming>) -> Response<Body> {
        let expected = format!("Bearer {}", self.settings.lookup_token);
        let authorised = req
            .headers()
            .get(AUTHORIZATION)
            .is_some_and(|v| v.as_bytes() == expected.as_bytes());
        if !authorised {
            return web::json(
                StatusCode::UNAUTHORIZED,
                &json!({"error": "missing or wrong bearer token"}),
            );
        }
        let query = web::query(req);
        let (Some(company), Some(name_id)) = (
            web::value(&query, "company_id"),
            web::value(&query, "name_id"),
        ) else {
            return web::json(
                StatusCode::BAD_REQUEST,
                &json!({"error": "company_id and name_id are required"}),
            );
        };
        let found = ACCOUNTS.iter().find(|a| {
            a.company_id.eq_ignore_ascii_case(company) && a.email.eq_ignore_ascii_case(name_id)
        });
        match found {
            Some(account) => web::json(
                StatusCode::OK,
                &json!({
                    "account_id": account.account_id,
                    "email": account.email,
                    "name": account.name,
                    "roles": account.roles,
                }),
            ),
            None => web::json(StatusCode::NOT_FOUND, &json!({"error": "no such account"})),
        }
    }

    /// `GET /internal/samlgate/tenants?company_id=…` or `?idp_issuer=…` (SPEC §6):
    /// the companies whose Okta settings are stored in this panel.
    fn tenants(&self, req: &Request<Incoming>) -> Response<Body> {
        let query = web::query(req);
        let company = web::value(&query, "company_id");
        let issuer = web::value(&query, "idp_issuer");
        let found = self
            .settings
            .okta
            .iter()
            .filter(|t| t.served_by_panel)
            .find(|t| {
                company.is_some_and(|c| c.eq_ignore_ascii_case(&t.company_id))
                    || issuer.is_some_and(|i| i == t.idp_issuer)
            });
        match found {
            Some(t) => web::json(
                StatusCode::OK,
                &json!({
                    "company_id": t.company_id,
                    "idp_sso_url": t.idp_sso_url,
                    "idp_issuer": t.idp_issuer,
                    "idp_certificate": t.idp_certificate,
                    "idp_slo_url": t.idp_slo_url,
                }),
            ),
            None => web::json(StatusCode::NOT_FOUND, &json!({"error": "no such tenant"})),
        }
    }

    /// Verifies the identity header: a JWS by a key in samlgate's JWKS, with the
    /// algorithm that key is published for, from samlgate, for this panel, unexpired.
    async fn verify(&self, req: &Request<Incoming>) -> Result<Identity, String> {
        let mut values = req.headers().get_all(&self.settings.header).iter();
        let token = match (values.next(), values.next()) {
            (Some(value), None) => value
                .to_str()
                .map_err(|_| "the identity header is not ASCII".to_owned())?,
            (None, _) => return Err(format!("no {} header", header_label(&self.settings.header))),
            (Some(_), Some(_)) => return Err("more than one identity header".to_owned()),
        };
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| format!("the identity header is not a JWS: {e}"))?;
        let kid = header
            .kid
            .ok_or_else(|| "the identity header names no key (kid)".to_owned())?;
        let (key, algorithm) = self.jwks.key(&kid).await?;
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[&self.settings.gate_url]);
        validation.set_audience(&[&self.settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 5;
        let data = jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map_err(|e| format!("the identity header does not verify: {e}"))?;
        Ok(Identity {
            claims: data.claims,
            algorithm,
            kid,
        })
    }

    fn unauthenticated(&self, reason: &str) -> Response<Body> {
        let body = format!(
            "<main class=\"narrow\"><h1>No verified identity</h1>\
             <p>The backup panel only serves requests that come through samlgate with a \
             verified identity. Open the panel through samlgate to sign in with Okta:</p>\
             <p><a class=\"button\" href=\"{gate}/\">{gate}/</a></p>\
             <p class=\"hint\">Reason: {reason}.</p></main>",
            gate = escape(&self.settings.gate_url),
            reason = escape(reason),
        );
        web::html(
            StatusCode::UNAUTHORIZED,
            CSP,
            layout("No verified identity", None, &body),
        )
    }

    /// The panel page for `path` (with its query), signed in as `identity`.
    fn page(&self, path: &str, identity: &Identity) -> Response<Body> {
        let claims = &identity.claims;
        let route = path.split('?').next().unwrap_or("/");
        let sections = [
            ("/", "Overview"),
            ("/protection", "Protection"),
            ("/reports", "Reports"),
            ("/settings/okta", "Settings → Okta"),
        ];
        let current = sections.iter().find(|(href, _)| *href == route);
        let nav: String = sections
            .iter()
            .map(|(href, label)| {
                let here = if Some(href) == current.map(|(h, _)| h) {
                    " aria-current=\"page\""
                } else {
                    ""
                };
                format!("<li><a href=\"{href}\"{here}>{}</a></li>", escape(label))
            })
            .collect();
        let display_name = claims.name.as_deref().unwrap_or(&claims.sub);
        let company = claims.company_id.as_deref().unwrap_or("");
        let roles = if claims.roles.is_empty() {
            "none".to_owned()
        } else {
            claims.roles.join(", ")
        };
        let auth_time = claims
            .auth_time
            .and_then(|t| DateTime::<Utc>::from_timestamp(t, 0))
            .map_or("unknown".to_owned(), |t| {
                t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
            });
        let expires_in = claims.exp - Utc::now().timestamp();
        let (status, title, content) = match current {
            Some((_, title)) => (StatusCode::OK, *title, self.section(route, claims)),
            None => (
                StatusCode::NOT_FOUND,
                "Page not found",
                "<p>The demo panel has no page at this address.</p>".to_owned(),
            ),
        };
        let body = format!(
            "<div class=\"layout\"><nav aria-label=\"Panel sections\"><ul>{nav}</ul></nav>\
             <main><h1>{title}</h1>\
             <section class=\"card identity\" aria-labelledby=\"who\">\
             <h2 id=\"who\">Signed in as {name}</h2><dl>\
             <dt>Name</dt><dd>{name}</dd>\
             <dt>Email</dt><dd>{email}</dd>\
             <dt>Account ID</dt><dd><code>{sub}</code></dd>\
             <dt>Company</dt><dd><code>{company}</code></dd>\
             <dt>Roles</dt><dd>{roles}</dd>\
             <dt>Okta NameID</dt><dd>{name_id}</dd>\
             <dt>Signed in at</dt><dd>{auth_time}</dd>\
             <dt>Requested path</dt><dd><code>{path}</code></dd></dl>\
             <p class=\"hint\">Verified from samlgate's <code>{header}</code> header: \
             {alg} signature by key <code>{kid}</code> from samlgate's JWKS, \
             issuer <code>{iss}</code>, audience <code>{aud}</code>, valid for {expires_in} more seconds.</p>\
             </section>{content}</main></div>",
            title = escape(title),
            name = escape(display_name),
            email = escape(claims.email.as_deref().unwrap_or("—")),
            sub = escape(&claims.sub),
            company = escape(company),
            roles = escape(&roles),
            name_id = escape(claims.name_id.as_deref().unwrap_or("—")),
            path = escape(path),
            header = escape(&header_label(&self.settings.header)),
            alg = escape(&format!("{:?}", identity.algorithm)),
            kid = escape(&identity.kid),
            iss = escape(&self.settings.gate_url),
            aud = escape(&self.settings.audience),
        );
        web::html(status, CSP, layout(title, Some(display_name), &body))
    }

    /// The fake content of one panel section.
    fn section(&self, route: &str, claims: &Claims) -> String {
        let company = claims.company_id.as_deref().unwrap_or("");
        let users = ACCOUNTS.iter().filter(|a| a.company_id == company).count();
        match route {
            "/protection" => format!(
                "<section class=\"card\" aria-labelledby=\"services\">\
                 <div class=\"card-head\"><h2 id=\"services\">Protected services</h2>\
                 <button type=\"button\" class=\"icon\" title=\"Synchronise accounts with Google Workspace now\" \
                 aria-label=\"Synchronise accounts with Google Workspace now\" disabled>⚙</button></div>\
                 <table><thead><tr><th scope=\"col\">Service</th><th scope=\"col\">Accounts</th>\
                 <th scope=\"col\">Last backup</th><th scope=\"col\">Status</th></tr></thead><tbody>\
                 <tr><td>Gmail</td><td>{users}</td><td>today 03:00</td><td class=\"ok\">Protected</td></tr>\
                 <tr><td>Drive</td><td>{users}</td><td>today 03:20</td><td class=\"ok\">Protected</td></tr>\
                 <tr><td>Calendar</td><td>{users}</td><td>today 03:35</td><td class=\"ok\">Protected</td></tr>\
                 <tr><td>Contacts</td><td>{users}</td><td>today 03:40</td><td class=\"ok\">Protected</td></tr>\
                 </tbody></table>\
                 <p class=\"hint\">Accounts are synchronised from Google Workspace once every 24 hours. \
                 An administrator can start the synchronisation by hand with the wheel icon above \
                 (disabled in the demo).</p></section>"
            ),
            "/reports" => "<section class=\"card\" aria-labelledby=\"runs\">\
                 <h2 id=\"runs\">Recent backup runs</h2>\
                 <table><thead><tr><th scope=\"col\">Started</th><th scope=\"col\">Items</th>\
                 <th scope=\"col\">Size</th><th scope=\"col\">Result</th></tr></thead><tbody>\
                 <tr><td>today 03:00</td><td>18 412</td><td>4.1 GB</td><td class=\"ok\">Succeeded</td></tr>\
                 <tr><td>yesterday 03:00</td><td>18 377</td><td>4.1 GB</td><td class=\"ok\">Succeeded</td></tr>\
                 <tr><td>2 days ago 03:00</td><td>18 350</td><td>4.0 GB</td><td class=\"warn\">3 items skipped</td></tr>\
                 </tbody></table></section>"
                .to_owned(),
            "/settings/okta" => self.okta_settings(company, &claims.roles),
            _ => format!(
                "<section class=\"card\" aria-labelledby=\"summary\"><h2 id=\"summary\">Summary</h2>\
                 <ul class=\"stats\"><li><span class=\"stat\">{users}</span> protected accounts</li>\
                 <li><span class=\"stat\">4</span> Google Workspace services</li>\
                 <li><span class=\"stat\">03:00</span> last backup, succeeded</li></ul></section>"
            ),
        }
    }

    fn okta_settings(&self, company: &str, roles: &[String]) -> String {
        if !roles.iter().any(|r| r == "admin") {
            return "<section class=\"card\"><p>Only administrators can see the Okta settings.</p>\
                    </section>"
                .to_owned();
        }
        let Some(okta) = self.settings.okta.iter().find(|t| t.company_id == company) else {
            return "<section class=\"card\"><p>Okta is not set up for this company.</p></section>"
                .to_owned();
        };
        let source = if okta.served_by_panel {
            "Stored in this panel and read live by samlgate through the tenant lookup API."
        } else {
            "Configured in samlgate's own configuration file (a static tenant)."
        };
        format!(
            "<section class=\"card\" aria-labelledby=\"okta\"><h2 id=\"okta\">Okta single sign-on</h2>\
             <p>The four items of Okta's \"View SAML setup instructions\" page.</p><dl>\
             <dt>Identity Provider Single Sign-On URL</dt><dd><code>{sso}</code></dd>\
             <dt>Identity Provider Issuer</dt><dd><code>{issuer}</code></dd>\
             <dt>X.509 Certificate</dt><dd>SHA-256 <code class=\"wrap\">{fingerprint}</code></dd>\
             <dt>Okta Company ID</dt><dd><code>{company}</code></dd></dl>\
             <p class=\"hint\">{source}</p></section>",
            sso = escape(&okta.idp_sso_url),
            issuer = escape(&okta.idp_issuer),
            fingerprint = escape(&okta.fingerprint),
            company = escape(&okta.company_id),
        )
    }
}

/// The panel's page frame; `user` adds the account and the sign-out link.
fn layout(title: &str, user: Option<&str>, body: &str) -> String {
    let account = user.map_or(String::new(), |name| {
        format!(
            "<span class=\"account\">Signed in as <strong>{}</strong> \
             <a href=\"/saml/logout\">Sign out</a></span>",
            escape(name)
        )
    });
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · Google Workspace Backup</title>\
         <link rel=\"stylesheet\" href=\"/static/panel.css\"></head><body>\
         <header class=\"topbar\"><span class=\"product\"><span class=\"logo\" aria-hidden=\"true\">◆</span> \
         Google Workspace Backup <span class=\"tag\">demo panel</span></span>{account}</header>\
         {body}</body></html>\n",
        title = escape(title),
    )
}

/// `x-samlgate-assertion` as people write it: `X-Samlgate-Assertion`.
fn header_label(name: &http::HeaderName) -> String {
    name.as_str()
        .split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or(String::new(), |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// samlgate's published keys, cached.
struct Jwks {
    url: String,
    client: HttpClient,
    state: tokio::sync::Mutex<JwksState>,
}

#[derive(Default)]
struct JwksState {
    keys: HashMap<String, (DecodingKey, Algorithm)>,
    fetched: Option<Instant>,
}

impl Jwks {
    fn new(url: String, client: HttpClient) -> Self {
        Self {
            url,
            client,
            state: tokio::sync::Mutex::new(JwksState::default()),
        }
    }

    /// The key `kid` and the algorithm it is published for; refetches when the
    /// cache is stale, or (rate-limited) when `kid` is unknown, e.g. after a rotation.
    async fn key(&self, kid: &str) -> Result<(DecodingKey, Algorithm), String> {
        let mut state = self.state.lock().await;
        let age = state.fetched.map(|t| t.elapsed());
        let stale = age.is_none_or(|age| age >= JWKS_MAX_AGE);
        let unknown = !state.keys.contains_key(kid) && age.is_none_or(|a| a >= JWKS_MIN_REFETCH);
        if stale || unknown {
            match self.fetch().await {
                Ok(keys) => {
                    state.keys = keys;
                    state.fetched = Some(Instant::now());
                }
                Err(error) => {
                    tracing::warn!(url = self.url, error, "demo panel: cannot fetch the JWKS");
                    if state.keys.is_empty() {
                        return Err(format!("samlgate's JWKS is unavailable ({error})"));
                    }
                }
            }
        }
        state
            .keys
            .get(kid)
            .cloned()
            .ok_or_else(|| "the identity header's key is not in samlgate's JWKS".to_owned())
    }

    async fn fetch(&self) -> Result<HashMap<String, (DecodingKey, Algorithm)>, String> {
        let request = Request::get(&self.url)
            .header(http::header::ACCEPT, "application/json")
            .body(empty())
            .map_err(|e| e.to_string())?;
        let response = tokio::time::timeout(JWKS_TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| "timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        if response.status() != StatusCode::OK {
            return Err(format!("status {}", response.status()));
        }
        let body = tokio::time::timeout(
            JWKS_TIMEOUT,
            Limited::new(response.into_body(), 256 * 1024).collect(),
        )
        .await
        .map_err(|_| "timed out".to_owned())?
        .map_err(|e| e.to_string())?
        .to_bytes();
        parse_jwks(&body)
    }
}

/// The asymmetric signing keys of a JWKS, by `kid`, each with its one algorithm.
fn parse_jwks(body: &[u8]) -> Result<HashMap<String, (DecodingKey, Algorithm)>, String> {
    let set: JwkSet = serde_json::from_slice(body).map_err(|e| format!("not a JWKS: {e}"))?;
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        let (Some(kid), Some(alg)) = (&jwk.common.key_id, jwk.common.key_algorithm) else {
            continue;
        };
        // Only the algorithms samlgate signs with: never an HMAC or "none".
        let Ok(algorithm) = Algorithm::from_str(&alg.to_string()) else {
            continue;
        };
        if !matches!(
            algorithm,
            Algorithm::ES256 | Algorithm::EdDSA | Algorithm::RS256
        ) {
            continue;
        }
        if let Ok(key) = DecodingKey::from_jwk(jwk) {
            keys.insert(kid.clone(), (key, algorithm));
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Algorithm as KeyAlgorithm, IdentityKey};

    #[test]
    fn jwks_keys_keep_their_algorithm_and_hmac_is_ignored() {
        let es = IdentityKey::from_pem(&IdentityKey::generate_pem(KeyAlgorithm::Es256).unwrap())
            .unwrap();
        let ed = IdentityKey::from_pem(&IdentityKey::generate_pem(KeyAlgorithm::EdDsa).unwrap())
            .unwrap();
        let hmac = json!({"kty": "oct", "k": "c2VjcmV0", "kid": "h", "alg": "HS256"});
        let body = json!({"keys": [es.public_jwk(), ed.public_jwk(), hmac]}).to_string();
        let keys = parse_jwks(body.as_bytes()).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[es.kid()].1, Algorithm::ES256);
        assert_eq!(keys[ed.kid()].1, Algorithm::EdDSA);
        assert!(parse_jwks(b"{}").is_err());
    }

    #[test]
    fn header_names_are_shown_in_their_usual_case() {
        let name = http::HeaderName::from_static("x-samlgate-assertion");
        assert_eq!(header_label(&name), "X-Samlgate-Assertion");
    }

    #[test]
    fn every_account_belongs_to_a_demo_company() {
        for account in &ACCOUNTS {
            assert!(matches!(account.company_id, "demo" | "globex"));
            assert!(account
                .email
                .ends_with(&format!("@{}.example", account.company_id)));
        }
        assert!(!ACCOUNTS.iter().any(|a| a.email.starts_with("carol@")));
    }
}
