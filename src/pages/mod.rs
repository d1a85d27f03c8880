//! Responses samlgate writes itself: HTML pages for people, JSON for API callers.

use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use http::{Response, StatusCode};

use crate::proxy::{full, Body};

const CSP: &str = "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; form-action 'self' https: http:; frame-ancestors 'none'; base-uri 'none'";

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
    let mut response = Response::new(crate::proxy::empty());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(location) {
        headers.insert(LOCATION, value);
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The upstream could not be reached: a page for people, JSON for everyone else.
pub fn bad_gateway(navigation: bool) -> Response<Body> {
    if navigation {
        html(
            StatusCode::BAD_GATEWAY,
            "Service unavailable",
            "<p>The backup panel is not answering right now. Please try again in a moment.</p>",
        )
    } else {
        json_error(StatusCode::BAD_GATEWAY, "bad_gateway")
    }
}

/// An HTML page in samlgate's layout; `body` must already be escaped HTML.
pub fn html(status: StatusCode, title: &str, body: &str) -> Response<Body> {
    let page = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head>\
         <body><main><h1>{title}</h1>{body}</main></body></html>\n",
        title = escape(title),
    );
    let mut response = Response::new(full(page));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("content-security-policy", HeaderValue::from_static(CSP));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    response
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;background:#f4f6f8;color:#1d2733;margin:0}\
main{max-width:28rem;margin:4rem auto;background:#fff;padding:2rem 2.5rem;border-radius:8px;\
box-shadow:0 1px 4px rgba(0,0,0,.12)}h1{font-size:1.4rem;margin-top:0}label{display:block;\
font-weight:600;margin-bottom:.4rem}input[type=text]{width:100%;box-sizing:border-box;padding:.6rem;\
font-size:1rem;border:1px solid #8a96a3;border-radius:4px}button{margin-top:1rem;padding:.6rem 1.2rem;\
font-size:1rem;background:#1f5fbf;color:#fff;border:0;border-radius:4px;cursor:pointer}\
.error{color:#a4161a;font-weight:600}.hint{color:#4a5663;font-size:.9rem}code{background:#eef1f4;padding:0 .2rem}";

/// The Okta login screen (SPEC §4): company ID field, hidden `return_to`.
pub fn login_form(
    status: StatusCode,
    action: &str,
    company_id: &str,
    return_to: &str,
    error: Option<&str>,
) -> Response<Body> {
    let error = error.map_or(String::new(), |e| {
        format!(
            "<p class=\"error\" role=\"alert\" id=\"error\">{}</p>",
            escape(e)
        )
    });
    let described = if error.is_empty() {
        "hint"
    } else {
        "hint error"
    };
    let body = format!(
        "<p>Sign in to the backup panel with your company's Okta account.</p>{error}\
         <form method=\"post\" action=\"{action}\">\
         <label for=\"company_id\">Okta company ID</label>\
         <input type=\"text\" id=\"company_id\" name=\"company_id\" value=\"{company}\" \
         required autocomplete=\"organization\" autocapitalize=\"none\" spellcheck=\"false\" \
         aria-describedby=\"{described}\" autofocus>\
         <p class=\"hint\" id=\"hint\">The company ID your administrator set up for Okta \
         (shown on Okta's \"View SAML setup instructions\" page).</p>\
         <input type=\"hidden\" name=\"return_to\" value=\"{return_to}\">\
         <button type=\"submit\">Continue with Okta</button></form>",
        action = escape(action),
        company = escape(company_id),
        return_to = escape(return_to),
    );
    html(status, "Sign in with Okta", &body)
}

/// A refused login: generic wording, the reference id for support.
pub fn login_refused(reference: &str) -> Response<Body> {
    html(
        StatusCode::FORBIDDEN,
        "Sign-in failed",
        &format!(
            "<p>We could not sign you in with the answer from your identity provider.</p>\
             <p>Please start again from the login page. If this keeps happening, give your \
             administrator this reference: <code>{}</code></p><p><a href=\"/\">Try again</a></p>",
            escape(reference)
        ),
    )
}

/// The Okta identity is valid but no panel account is linked to it (SPEC §5).
pub fn not_linked(name_id: &str, reference: &str) -> Response<Body> {
    html(
        StatusCode::FORBIDDEN,
        "Your account is not linked yet",
        &format!(
            "<p>You signed in to Okta as <strong>{}</strong>, but the backup panel has no \
             account for this identity yet.</p>\
             <p>Accounts are synchronised from Google Workspace once every 24 hours, so a user \
             who was created recently may not be there yet. An administrator of the backup panel \
             can trigger the synchronisation by hand: <strong>Service → Protection</strong>, then \
             the wheel icon in the top-right corner.</p>\
             <p>Then try again. Reference: <code>{}</code></p><p><a href=\"/\">Try again</a></p>",
            escape(name_id),
            escape(reference)
        ),
    )
}

/// A dependency (account or tenant lookup, replay store) is unavailable.
pub fn try_again_shortly(reference: &str) -> Response<Body> {
    html(
        StatusCode::SERVICE_UNAVAILABLE,
        "Please try again shortly",
        &format!(
            "<p>Sign-in is temporarily unavailable. Please try again in a moment.</p>\
             <p>Reference: <code>{}</code></p>",
            escape(reference)
        ),
    )
}

/// The POST body was larger than samlgate accepts.
pub fn too_large() -> Response<Body> {
    html(
        StatusCode::PAYLOAD_TOO_LARGE,
        "Request too large",
        "<p>The sign-in request was larger than samlgate accepts.</p>",
    )
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

    #[test]
    fn escape_covers_markup_and_quotes() {
        assert_eq!(
            escape(r#"<a href="x" onclick='y'>&</a>"#),
            "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
    }
}
