//! Responses samlgate writes itself: HTML pages for people (askama templates in
//! `templates/`, one stylesheet), JSON for API callers.

use askama::Template;
use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use http::{Response, StatusCode};

use crate::proxy::{empty, full, Body};

/// No script at all, styles only from samlgate itself, never framed. Forms go to
/// samlgate, and the login form's 302 continues to the tenant's IdP (any origin).
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self' https: http:; frame-ancestors 'none'; base-uri 'none'";

/// The stylesheet, compiled in.
const STYLESHEET: &str = include_str!("../../assets/samlgate.css");

/// Where samlgate's own pages live: the stylesheet and the login screen.
#[derive(Debug, Clone)]
pub struct Pages {
    stylesheet: String,
    login_url: String,
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    stylesheet: &'a str,
    action: &'a str,
    company_id: &'a str,
    return_to: &'a str,
    error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage<'a> {
    stylesheet: &'a str,
    title: &'a str,
    paragraphs: &'a [&'a str],
    reference: Option<&'a str>,
    link: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "not_linked.html")]
struct NotLinkedPage<'a> {
    stylesheet: &'a str,
    name_id: &'a str,
    reference: &'a str,
    retry: &'a str,
}

impl Pages {
    /// Pages for samlgate's routes under `path_prefix`.
    pub fn new(path_prefix: &str) -> Self {
        Self {
            stylesheet: format!("{path_prefix}/assets/samlgate.css"),
            login_url: format!("{path_prefix}/login"),
        }
    }

    /// The path the stylesheet is served at.
    pub fn stylesheet_path(&self) -> &str {
        &self.stylesheet
    }

    /// The Okta login screen (SPEC §4): company ID field, hidden `return_to`.
    pub fn login_form(
        &self,
        status: StatusCode,
        company_id: &str,
        return_to: &str,
        error: Option<&str>,
    ) -> Response<Body> {
        html(
            status,
            LoginPage {
                stylesheet: &self.stylesheet,
                action: &self.login_url,
                company_id,
                return_to,
                error,
            }
            .render(),
        )
    }

    /// A refused login: generic wording, the reference id for support.
    pub fn login_refused(&self, reference: &str) -> Response<Body> {
        self.message(
            StatusCode::FORBIDDEN,
            "Sign-in failed",
            &[
                "We could not sign you in with the answer from your identity provider.",
                "Please start again. If this keeps happening, give your administrator the reference below.",
            ],
            Some(reference),
        )
    }

    /// The Okta identity is valid but no panel account is linked to it (SPEC §5).
    pub fn not_linked(&self, name_id: &str, reference: &str) -> Response<Body> {
        html(
            StatusCode::FORBIDDEN,
            NotLinkedPage {
                stylesheet: &self.stylesheet,
                name_id,
                reference,
                retry: &self.login_url,
            }
            .render(),
        )
    }

    /// A dependency (account or tenant lookup, replay store) is unavailable.
    pub fn try_again_shortly(&self, reference: &str) -> Response<Body> {
        self.message(
            StatusCode::SERVICE_UNAVAILABLE,
            "Please try again shortly",
            &["Sign-in is temporarily unavailable. Please try again in a moment."],
            Some(reference),
        )
    }

    /// The POST body was larger than samlgate accepts.
    pub fn too_large(&self) -> Response<Body> {
        self.message(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Request too large",
            &["The sign-in request was larger than samlgate accepts."],
            None,
        )
    }

    /// The upstream could not be reached: a page for people, JSON for everyone else.
    pub fn bad_gateway(&self, navigation: bool) -> Response<Body> {
        if navigation {
            self.message(
                StatusCode::BAD_GATEWAY,
                "Service unavailable",
                &["The backup panel is not answering right now. Please try again in a moment."],
                None,
            )
        } else {
            json_error(StatusCode::BAD_GATEWAY, "bad_gateway")
        }
    }

    /// A state-changing POST from another site.
    pub fn cross_site(&self) -> Response<Body> {
        self.message(
            StatusCode::FORBIDDEN,
            "Request refused",
            &["This request came from another site. Please use the backup panel's own login page."],
            None,
        )
    }

    /// The stylesheet response.
    pub fn stylesheet(&self) -> Response<Body> {
        let mut response = Response::new(full(STYLESHEET));
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/css; charset=utf-8"),
        );
        headers.insert(
            CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=3600"),
        );
        response
    }

    fn message(
        &self,
        status: StatusCode,
        title: &str,
        paragraphs: &[&str],
        reference: Option<&str>,
    ) -> Response<Body> {
        let link = reference.map(|_| self.login_url.as_str());
        html(
            status,
            MessagePage {
                stylesheet: &self.stylesheet,
                title,
                paragraphs,
                reference,
                link,
            }
            .render(),
        )
    }
}

/// A JSON response that no cache may keep.
pub fn json(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The SPEC §4 answer to an unauthenticated API call.
pub fn unauthenticated(login_url: &str) -> Response<Body> {
    let body = serde_json::json!({"error": "unauthenticated", "login_url": login_url});
    json(StatusCode::UNAUTHORIZED, body.to_string())
}

/// A JSON error with a stable machine-readable code.
pub fn json_error(status: StatusCode, code: &str) -> Response<Body> {
    json(status, serde_json::json!({ "error": code }).to_string())
}

/// A redirect (`302 Found` or `303 See Other`) to `location`.
pub fn redirect(status: StatusCode, location: &str) -> Response<Body> {
    let mut response = Response::new(empty());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(location) {
        headers.insert(LOCATION, value);
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn html(status: StatusCode, rendered: askama::Result<String>) -> Response<Body> {
    // The templates take only strings; rendering cannot fail at run time.
    html_page(status, CSP, rendered.expect("templates render"))
}

/// An HTML page (`body` already escaped) with the headers every page of samlgate's
/// (and the demo's) gets: no caching, `csp`, no framing, no sniffing.
pub fn html_page(status: StatusCode, csp: &str, body: String) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(csp) = HeaderValue::from_str(csp) {
        headers.insert("content-security-policy", csp);
    }
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    // `same-origin`, not `no-referrer`: with no-referrer browsers send `Origin: null` on
    // a page's own form POST, which a CSRF check must refuse.
    headers.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;

    async fn text(response: Response<Body>) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn escape_covers_markup_and_quotes() {
        assert_eq!(
            escape(r#"<a href="x" onclick='y'>&</a>"#),
            "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
    }

    #[tokio::test]
    async fn user_input_is_escaped_in_every_page() {
        let pages = Pages::new("/saml");
        let evil = r#""><script>alert(1)</script>"#;
        let login = pages.login_form(StatusCode::BAD_REQUEST, evil, evil, Some(evil));
        assert_eq!(login.status(), StatusCode::BAD_REQUEST);
        assert!(login.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'"));
        let body = text(login).await;
        assert!(!body.contains("<script>"), "{body}");
        assert!(body.contains(r#"action="/saml/login""#), "{body}");
        assert!(
            body.contains(r#"href="/saml/assets/samlgate.css""#),
            "{body}"
        );
        let not_linked = text(pages.not_linked(evil, "ABC")).await;
        assert!(!not_linked.contains("<script>"));
        assert!(not_linked.contains("24 hours") && not_linked.contains("wheel icon"));
    }
}
