//! A real local HTTP server standing in for the panel's lookup APIs in tests.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{Request, Response, StatusCode};
use http_body_util::{Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use url::Url;

use crate::proxy::{boxed, empty, Body};

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    /// The raw query string, as sent.
    pub query: String,
    /// The query, decoded.
    pub params: Vec<(String, String)>,
    pub authorization: Option<String>,
}

impl Seen {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// How the server answers one request.
pub enum Reply {
    Json(String),
    Status(u16),
    Slow(Duration, String),
    StalledBody,
}

impl Reply {
    pub fn json(body: &str) -> Self {
        Self::Json(body.to_owned())
    }

    pub fn status(status: u16) -> Self {
        Self::Status(status)
    }

    /// A 200 with `body`, after `delay`.
    pub fn slow(delay: Duration, body: &str) -> Self {
        Self::Slow(delay, body.to_owned())
    }

    /// A 200 whose body starts and never finishes.
    pub fn stalled_body() -> Self {
        Self::StalledBody
    }
}

type Handler = dyn Fn(&Seen) -> Reply + Send + Sync;

/// The running server; stops accepting connections when dropped.
pub struct PanelServer {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    accept_loop: JoinHandle<()>,
}

impl PanelServer {
    pub async fn start(handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let shared = seen.clone();
        let accept_loop = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let seen = shared.clone();
                let handler = handler.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let reply = record(&seen, &*handler, &req);
                        async move { Ok::<_, Infallible>(respond(reply).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            addr,
            seen,
            accept_loop,
        }
    }

    /// `path` on this server.
    pub fn url(&self, path: &str) -> Url {
        Url::parse(&format!("http://{}{path}", self.addr)).unwrap()
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for PanelServer {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

fn record(seen: &Mutex<Vec<Seen>>, handler: &Handler, req: &Request<Incoming>) -> Reply {
    let query = req.uri().query().unwrap_or_default().to_owned();
    let request = Seen {
        path: req.uri().path().to_owned(),
        params: url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect(),
        query,
        authorization: req
            .headers()
            .get(AUTHORIZATION)
            .map(|v| v.to_str().unwrap().to_owned()),
    };
    let reply = handler(&request);
    seen.lock().unwrap().push(request);
    reply
}

async fn respond(reply: Reply) -> Response<Body> {
    let json = |body: String| {
        Response::builder()
            .header(CONTENT_TYPE, "application/json")
            .body(boxed(Full::new(Bytes::from(body))))
            .unwrap()
    };
    match reply {
        Reply::Json(body) => json(body),
        Reply::Status(status) => {
            let mut response = Response::new(empty());
            *response.status_mut() = StatusCode::from_u16(status).unwrap();
            response
        }
        Reply::Slow(delay, body) => {
            tokio::time::sleep(delay).await;
            json(body)
        }
        Reply::StalledBody => {
            let start = Frame::data(Bytes::from_static(br#"{"account_id": "#));
            let frames = futures_util::stream::iter([Ok::<_, Infallible>(start)])
                .chain(futures_util::stream::pending());
            Response::builder()
                .header(CONTENT_TYPE, "application/json")
                .body(boxed(StreamBody::new(frames)))
                .unwrap()
        }
    }
}
