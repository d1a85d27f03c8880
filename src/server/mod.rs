//! Listeners, TLS, graceful shutdown, and routing of each request.

mod listener;
mod routes;

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::admin::{Admin, Metrics, Readiness};
use crate::config::Config;
use crate::replay::ReplayStore;

pub use routes::App;

/// How long in-flight requests may take to finish after SIGTERM.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
    /// The async runtime could not start.
    #[error("cannot start the runtime: {0}")]
    Runtime(io::Error),
    /// The replay store could not be set up.
    #[error("{0}")]
    Replay(crate::replay::ReplayError),
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(io::Error),
}

/// What requests are served with; replaced as a whole on reload.
pub(crate) struct Current {
    app: Arc<App>,
    tls: Option<TlsAcceptor>,
}

/// Builds a multi-threaded runtime and serves until SIGTERM or SIGINT; SIGHUP
/// reloads the configuration from `reload_from`.
pub fn run_blocking(config: Config, reload_from: Option<PathBuf>) -> Result<(), ServerError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(ServerError::Runtime)?
        .block_on(serve(config, reload_from))
}

/// Serves the public and admin listeners until SIGTERM or SIGINT, then drains.
pub async fn run(config: Config) -> Result<(), ServerError> {
    serve(config, None).await
}

/// [`run`], reloading from `reload_from` on SIGHUP.
pub async fn serve(config: Config, reload_from: Option<PathBuf>) -> Result<(), ServerError> {
    let public = bind(config.listen).await?;
    let admin_listener = bind(config.admin_listen).await?;
    let metrics = Arc::new(Metrics::new());
    let readiness = Arc::new(Readiness::default());
    let admin = Admin {
        metrics: metrics.clone(),
        readiness: readiness.clone(),
    };
    let tls = config.tls.is_some();
    let replay = ReplayStore::new(config.replay.redis_url.as_ref()).map_err(ServerError::Replay)?;
    let current = Arc::new(ArcSwap::from_pointee(Current::new(
        &config,
        replay.clone(),
        metrics.clone(),
    )));
    let mut reloader = Reloader {
        path: reload_from,
        config,
        replay,
        metrics: metrics.clone(),
    };

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(ServerError::Signals)?;
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(ServerError::Signals)?;

    tracing::info!(
        addr = %public.local_addr().map_err(ServerError::Runtime)?,
        admin_addr = %admin_listener.local_addr().map_err(ServerError::Runtime)?,
        tls,
        "listening"
    );
    let admin_task = tokio::spawn(listener::serve_admin(admin_listener, admin));
    let public_task = tokio::spawn(listener::serve_public(
        public,
        current.clone(),
        reloader.config.limits.clone(),
        stop_rx,
    ));

    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(ServerError::Signals)?;
    loop {
        tokio::select! {
            _ = terminate.recv() => {
                tracing::info!(signal = "SIGTERM", "draining");
                break;
            }
            _ = interrupt.recv() => {
                tracing::info!(signal = "SIGINT", "draining");
                break;
            }
            _ = hangup.recv() => {
                if let Some(next) = reloader.reload() {
                    current.store(Arc::new(next));
                }
            }
        }
    }
    readiness.start_draining();
    let _ = stop_tx.send(true);
    match tokio::time::timeout(DRAIN_TIMEOUT, public_task).await {
        Ok(_) => tracing::info!("drained"),
        Err(_) => tracing::warn!(
            timeout_s = DRAIN_TIMEOUT.as_secs(),
            "drain timed out; closing remaining connections"
        ),
    }
    admin_task.abort();
    Ok(())
}

impl Current {
    fn new(config: &Config, replay: ReplayStore, metrics: Arc<Metrics>) -> Self {
        Self {
            app: Arc::new(App::new(config, replay, metrics)),
            tls: config.tls.clone().map(TlsAcceptor::from),
        }
    }
}

/// Re-reads the configuration file on SIGHUP.
struct Reloader {
    path: Option<PathBuf>,
    config: Config,
    replay: ReplayStore,
    metrics: Arc<Metrics>,
}

impl Reloader {
    /// The state for the new configuration, or `None` (old one stays) when the file
    /// has problems; they are logged exactly as `samlgate check` prints them.
    fn reload(&mut self) -> Option<Current> {
        let Some(path) = &self.path else {
            tracing::warn!("SIGHUP ignored: no configuration file to reload");
            return None;
        };
        let next = match crate::config::load(Some(path)) {
            Ok(next) => next,
            Err(errors) => {
                for problem in &errors.0 {
                    tracing::error!(problem = %problem, "configuration reload refused");
                }
                self.metrics.config_reload(false);
                return None;
            }
        };
        if next.listen != self.config.listen
            || next.admin_listen != self.config.admin_listen
            || next.limits.max_connections != self.config.limits.max_connections
            || next.limits.header_read_timeout != self.config.limits.header_read_timeout
        {
            tracing::warn!(
                "listen, admin_listen and [limits] changes take effect at the next restart"
            );
        }
        // The replay store outlives reloads: a new empty one would forget every
        // Assertion already consumed.
        if next.replay.redis_url != self.config.replay.redis_url {
            match ReplayStore::new(next.replay.redis_url.as_ref()) {
                Ok(replay) => self.replay = replay,
                Err(error) => {
                    tracing::error!(%error, "configuration reload refused");
                    self.metrics.config_reload(false);
                    return None;
                }
            }
        }
        let current = Current::new(&next, self.replay.clone(), self.metrics.clone());
        tracing::info!(tenants = next.tenants.len(), "configuration reloaded");
        self.metrics.config_reload(true);
        self.config = next;
        Some(current)
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })
}
