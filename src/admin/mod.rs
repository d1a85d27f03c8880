//! The admin listener: `/healthz`, `/readyz` and `/metrics`.

mod metrics;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::pages;
use crate::proxy::{full, Body};

pub use metrics::{Metrics, RouteClass};

/// Whether the process should receive traffic.
#[derive(Debug, Default)]
pub struct Readiness {
    draining: AtomicBool,
}

impl Readiness {
    /// Marks the process as shutting down: `/readyz` answers 503 from now on.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Whether the process is shutting down.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

/// Shared state of the admin routes.
#[derive(Debug, Clone)]
pub struct Admin {
    /// Metrics registry.
    pub metrics: Arc<Metrics>,
    /// Readiness flag.
    pub readiness: Arc<Readiness>,
}

impl Admin {
    /// Answers one admin request.
    pub fn handle(&self, req: &Request<Incoming>) -> Response<Body> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return pages::json_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
        }
        match req.uri().path() {
            "/healthz" => text(StatusCode::OK, "ok\n", "text/plain"),
            "/readyz" if self.readiness.is_draining() => {
                text(StatusCode::SERVICE_UNAVAILABLE, "draining\n", "text/plain")
            }
            "/readyz" => text(StatusCode::OK, "ready\n", "text/plain"),
            "/metrics" if accepts_openmetrics(req) => text(
                StatusCode::OK,
                self.metrics.encode(),
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            ),
            "/metrics" => text(
                StatusCode::OK,
                self.metrics.encode_classic(),
                "text/plain; version=0.0.4; charset=utf-8",
            ),
            _ => pages::json_error(StatusCode::NOT_FOUND, "not_found"),
        }
    }
}

/// Prometheus asks for OpenMetrics in `Accept`; everything else gets the classic format.
fn accepts_openmetrics<B>(req: &Request<B>) -> bool {
    req.headers()
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"))
}

fn text(
    status: StatusCode,
    body: impl Into<bytes::Bytes>,
    content_type: &'static str,
) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}
