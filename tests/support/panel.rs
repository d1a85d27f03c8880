//! A mock of the panel, the one component we may mock: it records what it receives
//! and offers slow, streaming and upgrading endpoints.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use samlgate::proxy::{boxed, Body};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// One request as the panel saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path_and_query: String,
    pub headers: Vec<(String, String)>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

#[derive(Default)]
struct State {
    seen: Mutex<Vec<Seen>>,
    first_upload_frame: Notify,
    release_stream: Notify,
}

/// The running mock panel.
#[derive(Clone)]
pub struct Panel {
    pub addr: SocketAddr,
    state: Arc<State>,
}

impl Panel {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let shared = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(handle(state, req).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { addr, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// The last request whose path starts with `prefix`.
    pub fn last(&self, prefix: &str) -> Seen {
        self.seen()
            .into_iter()
            .rev()
            .find(|s| s.path_and_query.starts_with(prefix))
            .unwrap_or_else(|| panic!("the panel saw no request for {prefix}"))
    }

    /// Resolves once `/upload` has received its first body frame.
    pub async fn first_upload_frame(&self) {
        self.state.first_upload_frame.notified().await;
    }

    /// Lets `/stream` send its second chunk.
    pub fn release_stream(&self) {
        self.state.release_stream.notify_one();
    }
}

async fn handle(state: Arc<State>, mut req: Request<Incoming>) -> Response<Body> {
    let seen = Seen {
        method: req.method().to_string(),
        path_and_query: req
            .uri()
            .path_and_query()
            .map_or("/".into(), |p| p.to_string()),
        headers: req
            .headers()
            .iter()
            .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
            .collect(),
    };
    state.seen.lock().unwrap().push(seen.clone());
    let path = req.uri().path().to_owned();
    match path.as_str() {
        "/slow" => {
            let ms = req
                .uri()
                .query()
                .and_then(|q| q.strip_prefix("ms="))
                .and_then(|v| v.parse().ok())
                .unwrap_or(1000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            text(StatusCode::OK, format!("slow {ms}"))
        }
        "/stream" => {
            let (mut tx, body) = http_body_util::channel::Channel::<Bytes, Infallible>::new(1);
            tokio::spawn(async move {
                let _ = tx.send_data(Bytes::from_static(b"first\n")).await;
                state.release_stream.notified().await;
                let _ = tx.send_data(Bytes::from_static(b"second\n")).await;
            });
            Response::new(boxed(body))
        }
        "/upload" => {
            let mut body = req.into_body();
            let mut total = 0usize;
            let mut first = true;
            while let Some(frame) = body.frame().await {
                let Ok(frame) = frame else { break };
                if let Some(data) = frame.data_ref() {
                    total += data.len();
                    if first {
                        first = false;
                        state.first_upload_frame.notify_one();
                    }
                }
            }
            text(StatusCode::OK, format!("received {total}"))
        }
        "/ws" => {
            let upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(upgraded) = upgrade.await {
                    let mut io = TokioIo::new(upgraded);
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = io.read(&mut buf).await {
                        if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            });
            Response::builder()
                .status(StatusCode::SWITCHING_PROTOCOLS)
                .header("connection", "upgrade")
                .header("upgrade", "websocket")
                .body(samlgate::proxy::empty())
                .unwrap()
        }
        _ => {
            let mut response = text(StatusCode::OK, format!("panel saw {}", seen.path_and_query));
            response
                .headers_mut()
                .insert("x-panel", http::HeaderValue::from_static("1"));
            response
                .headers_mut()
                .insert("keep-alive", http::HeaderValue::from_static("timeout=5"));
            response
        }
    }
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(boxed(Full::new(Bytes::from(body))));
    *response.status_mut() = status;
    response
}
