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
         <title>{title}</title></head>\
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
