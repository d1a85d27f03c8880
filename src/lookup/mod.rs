//! The panel's account and tenant lookup APIs (SPEC §5, §6), cached with moka.
//!
//! Concurrent misses for one key share a single upstream call; only definite answers
//! (found, or 404) are cached, so a failing panel is asked again on the next login.

mod account;
mod tenant;

#[cfg(test)]
mod testing;

use std::error::Error as _;
use std::fmt::Write as _;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION};
use http::{HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt as _, Limited};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde_json::error::Category;
use url::Url;

use crate::config::Secret;
use crate::proxy::{empty, HttpClient};

pub use account::{Account, AccountLookup};
pub use tenant::TenantDirectory;

/// Why a lookup gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// 404: no such account / tenant (for accounts: "not linked yet").
    #[error("not found")]
    NotFound,
    /// Timeout, connection error, other status, malformed or invalid answer; a short reason for the log.
    #[error("lookup unavailable: {0}")]
    Unavailable(String),
}

/// Upper bound of entries per cache, so random keys cannot grow memory without limit.
const CACHE_CAPACITY: u64 = 10_000;

/// Answers are a few hundred bytes; anything far larger is not a lookup answer.
const BODY_LIMIT: usize = 64 * 1024;

/// RFC 3986 unreserved characters stay as they are; everything else is percent-encoded,
/// including space (as `%20`, never `+`) so that form and plain decoders agree.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `base` with `pairs` appended to its query, after any query it already has.
fn with_query(base: &Url, pairs: &[(&str, &str)]) -> Url {
    let mut url = base.clone();
    let mut query = url.query().unwrap_or_default().to_owned();
    for (name, value) in pairs {
        if !query.is_empty() {
            query.push('&');
        }
        write!(query, "{name}={}", utf8_percent_encode(value, QUERY_VALUE))
            .expect("writing to a String cannot fail");
    }
    url.set_query(Some(&query));
    url.set_fragment(None);
    url
}

/// GETs `url`: the body of a 200, `None` for a 404, otherwise a short reason that
/// holds neither the token nor the response body.
async fn get(
    client: &HttpClient,
    url: &Url,
    token: Option<&Secret>,
    timeout: Duration,
) -> Result<Option<Bytes>, String> {
    let uri: Uri = url
        .as_str()
        .parse()
        .map_err(|_| "lookup URL is not a valid request URI".to_owned())?;
    let mut request = Request::builder()
        .method(Method::GET)
        .uri(uri)
        .header(ACCEPT, HeaderValue::from_static("application/json"));
    if let Some(token) = token {
        let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
            .map_err(|_| "bearer token is not a valid header value".to_owned())?;
        value.set_sensitive(true);
        request = request.header(AUTHORIZATION, value);
    }
    let request = request
        .body(empty())
        .map_err(|_| "cannot build the lookup request".to_owned())?;
    // One deadline for headers and body: a panel that stalls mid-body must not hold a login.
    let exchange = async {
        let response = client.request(request).await.map_err(|e| {
            let mut reason = format!("request failed: {e}");
            let mut source = e.source();
            while let Some(cause) = source {
                write!(reason, ": {cause}").expect("writing to a String cannot fail");
                source = cause.source();
            }
            reason
        })?;
        match response.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Ok(None),
            status => return Err(format!("status {}", status.as_u16())),
        }
        let body = Limited::new(response.into_body(), BODY_LIMIT)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    format!("response body larger than {BODY_LIMIT} bytes")
                } else {
                    "reading the response body failed".to_owned()
                }
            })?;
        Ok(Some(body.to_bytes()))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("timeout after {}", humantime::format_duration(timeout)))?
}

/// A JSON parse failure described by position only: serde's messages can quote the body.
fn json_error(e: &serde_json::Error) -> String {
    let kind = match e.classify() {
        Category::Io => "read error",
        Category::Syntax => "syntax error",
        Category::Data => "unexpected fields or types",
        Category::Eof => "truncated",
    };
    format!(
        "invalid JSON ({kind} at line {}, column {})",
        e.line(),
        e.column()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_is_appended_and_percent_encoded() {
        let base = Url::parse("http://panel.test/api/accounts?v=2#frag").unwrap();
        let url = with_query(&base, &[("company_id", "acme"), ("name_id", "a+b c@d/é&=")]);
        assert_eq!(
            url.as_str(),
            "http://panel.test/api/accounts?v=2&company_id=acme&name_id=a%2Bb%20c%40d%2F%C3%A9%26%3D"
        );
        let plain = Url::parse("http://panel.test/api/accounts").unwrap();
        assert_eq!(
            with_query(&plain, &[("company_id", "acme")]).as_str(),
            "http://panel.test/api/accounts?company_id=acme"
        );
    }

    #[test]
    fn json_errors_do_not_quote_the_body() {
        let e =
            serde_json::from_str::<Account>(r#"{"account_id": "u-1", "roles": "leaked-value"}"#)
                .unwrap_err();
        // serde itself quotes the offending value, which is why it is not used for the log.
        assert!(e.to_string().contains("leaked-value"));
        let reason = json_error(&e);
        assert_eq!(
            reason,
            "invalid JSON (unexpected fields or types at line 1, column 45)"
        );
        let e = serde_json::from_str::<Account>("{\"account_id\": ").unwrap_err();
        assert_eq!(
            json_error(&e),
            "invalid JSON (truncated at line 1, column 15)"
        );
    }
}
