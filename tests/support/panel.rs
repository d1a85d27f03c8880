//! A mock of the panel, the one component we may mock: it records what it receives
//! and offers slow, streaming and upgrading endpoints, and the lookup API samlgate
//! calls (SPEC §5 accounts, §6 tenants).

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

/// One call of the account lookup API, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    pub company_id: String,
    pub name_id: String,
    pub authorization: Option<String>,
}

/// How `/internal/samlgate/accounts` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LookupMode {
    /// 200 for registered accounts, 404 otherwise.
    #[default]
    Normal,
    /// 500 for everything (an outage).
    Error,
    /// Never answers (well, after an hour).
    Hang,
}

#[derive(Default)]
struct State {
    seen: Mutex<Vec<Seen>>,
    first_upload_frame: Notify,
    release_stream: Notify,
    /// (company_id, name_id) → answer JSON.
    accounts: Mutex<Vec<(String, String, serde_json::Value)>>,
    lookups: Mutex<Vec<Lookup>>,
    lookup_mode: Mutex<LookupMode>,
    tenants: Mutex<Vec<serde_json::Value>>,
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

    /// Registers an account for the lookup API: `name_id` of `company_id` is
    /// `account_id` (email = the NameID, name "Test User", roles ["user"]).
    pub fn add_account(&self, company_id: &str, name_id: &str, account_id: &str) {
        self.add_account_json(
            company_id,
            name_id,
            serde_json::json!({
                "account_id": account_id,
                "email": name_id,
                "name": "Test User",
                "roles": ["user"],
            }),
        );
    }

    /// Registers an account with an exact answer body.
    pub fn add_account_json(&self, company_id: &str, name_id: &str, answer: serde_json::Value) {
        self.state.accounts.lock().unwrap().push((
            company_id.to_owned(),
            name_id.to_owned(),
            answer,
        ));
    }

    /// Every call of the account lookup API so far, in order.
    pub fn lookups(&self) -> Vec<Lookup> {
        self.state.lookups.lock().unwrap().clone()
    }

    /// The NameIDs the account lookup API was asked about, in order.
    pub fn looked_up_name_ids(&self) -> Vec<String> {
        self.lookups().into_iter().map(|l| l.name_id).collect()
    }

    /// Switches the account lookup API between normal, failing (500) and hanging.
    pub fn set_lookup_mode(&self, mode: LookupMode) {
        *self.state.lookup_mode.lock().unwrap() = mode;
    }

    /// Registers a tenant for the tenant lookup API (the JSON of SPEC §6; it is
    /// found by its `company_id` or `idp_issuer` field).
    pub fn add_tenant(&self, tenant: serde_json::Value) {
        self.state.tenants.lock().unwrap().push(tenant);
    }
}

fn query_pairs(req: &Request<Incoming>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn query_value<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

async fn accounts(state: Arc<State>, req: &Request<Incoming>) -> Response<Body> {
    let pairs = query_pairs(req);
    let lookup = Lookup {
        company_id: query_value(&pairs, "company_id").unwrap_or("").to_owned(),
        name_id: query_value(&pairs, "name_id").unwrap_or("").to_owned(),
        authorization: req
            .headers()
            .get("authorization")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
    };
    state.lookups.lock().unwrap().push(lookup.clone());
    let mode = *state.lookup_mode.lock().unwrap();
    match mode {
        LookupMode::Error => {
            return json(
                StatusCode::INTERNAL_SERVER_ERROR,
                &serde_json::json!({"error": "database is down"}),
            )
        }
        LookupMode::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            return json(StatusCode::GATEWAY_TIMEOUT, &serde_json::json!({}));
        }
        LookupMode::Normal => {}
    }
    let found = state
        .accounts
        .lock()
        .unwrap()
        .iter()
        .find(|(company, name_id, _)| *company == lookup.company_id && *name_id == lookup.name_id)
        .map(|(_, _, answer)| answer.clone());
    match found {
        Some(answer) => json(StatusCode::OK, &answer),
        None => json(
            StatusCode::NOT_FOUND,
            &serde_json::json!({"error": "not found"}),
        ),
    }
}

fn tenants(state: &State, req: &Request<Incoming>) -> Response<Body> {
    let pairs = query_pairs(req);
    let wanted = query_value(&pairs, "company_id")
        .map(|v| ("company_id", v))
        .or_else(|| query_value(&pairs, "idp_issuer").map(|v| ("idp_issuer", v)));
    let found = wanted.and_then(|(field, value)| {
        state
            .tenants
            .lock()
            .unwrap()
            .iter()
            .find(|t| t[field].as_str() == Some(value))
            .cloned()
    });
    match found {
        Some(tenant) => json(StatusCode::OK, &tenant),
        None => json(
            StatusCode::NOT_FOUND,
            &serde_json::json!({"error": "not found"}),
        ),
    }
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut response = text(status, value.to_string());
    response.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/json"),
    );
    response
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
        "/internal/samlgate/accounts" => accounts(state, &req).await,
        "/internal/samlgate/tenants" => tenants(&state, &req),
        "/reset" => {
            // Headers and half a body, then the connection dies.
            let (mut tx, body) = http_body_util::channel::Channel::<Bytes, std::io::Error>::new(1);
            tokio::spawn(async move {
                let _ = tx.send_data(Bytes::from_static(b"partial")).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
                tx.abort(std::io::Error::other("reset"));
            });
            let mut response = Response::new(boxed(body));
            response
                .headers_mut()
                .insert("content-length", http::HeaderValue::from_static("1000"));
            response
        }
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
