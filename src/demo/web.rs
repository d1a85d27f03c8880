//! The little HTTP plumbing the development IdP and the demo panel share: an
//! HTTP/1.1 accept loop, HTML pages with security headers, forms and cookies.

use std::convert::Infallible;
use std::future::Future;

use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::proxy::{empty, full, Body};

/// Largest form body the demo servers read.
const MAX_FORM_BYTES: usize = 16 * 1024;

/// Serves HTTP/1.1 on `listener` with `handle` until the runtime stops.
pub(super) async fn serve<H, F>(listener: TcpListener, handle: H)
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Body>> + Send + 'static,
{
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "demo: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let answer = handle(req);
                async move { Ok::<_, Infallible>(answer.await) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// An HTML page: `body` must already be escaped HTML; `csp` is the page's policy.
pub(super) fn html(status: StatusCode, csp: &str, body: String) -> Response<Body> {
    crate::pages::html_page(status, csp, body)
}

/// A static asset (stylesheet, script) that browsers may cache briefly.
pub(super) fn asset(content_type: &'static str, body: &'static str) -> Response<Body> {
    let mut response = Response::new(full(body));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("max-age=300"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// A JSON answer (the panel's lookup API).
pub(super) fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(full(value.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    no_store(headers);
    response
}

/// A bodiless answer with `status`.
pub(super) fn status(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(empty());
    *response.status_mut() = status;
    no_store(response.headers_mut());
    response
}

/// `303 See Other` to `location`.
pub(super) fn see_other(location: &str) -> Response<Body> {
    let mut response = status(StatusCode::SEE_OTHER);
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

fn no_store(headers: &mut HeaderMap) {
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// The decoded `name=value` pairs of a query string or urlencoded form.
pub(super) fn pairs(bytes: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(bytes).into_owned().collect()
}

/// The first value called `name` in `pairs`.
pub(super) fn value<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// The query string's pairs.
pub(super) fn query<B>(req: &Request<B>) -> Vec<(String, String)> {
    pairs(req.uri().query().unwrap_or("").as_bytes())
}

/// Reads an urlencoded form body (at most 16 KiB); `None` when it is larger or broken.
pub(super) async fn form(req: Request<Incoming>) -> Option<Vec<(String, String)>> {
    let body: Bytes = Limited::new(req.into_body(), MAX_FORM_BYTES)
        .collect()
        .await
        .ok()?
        .to_bytes();
    Some(pairs(&body))
}

/// The first cookie called `name`.
pub(super) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    crate::session::cookies(headers, name)
        .next()
        .map(str::to_owned)
}

/// `_` followed by 32 random hex digits: SAML IDs, session tokens, request handles.
pub(super) fn random_id() -> String {
    use rand::RngCore as _;
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("_{hex}")
}
