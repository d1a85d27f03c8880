//! Listeners, TLS, graceful shutdown, and routing of each request.

mod listener;
mod routes;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

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

/// Builds a multi-threaded runtime and serves until SIGTERM or SIGINT.
pub fn run_blocking(config: Config) -> Result<(), ServerError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(ServerError::Runtime)?
        .block_on(run(config))
}

/// Serves the public and admin listeners until SIGTERM or SIGINT, then drains.
pub async fn run(config: Config) -> Result<(), ServerError> {
    let public = bind(config.listen).await?;
    let admin_listener = bind(config.admin_listen).await?;
    let metrics = Arc::new(Metrics::new());
    let readiness = Arc::new(Readiness::default());
    let admin = Admin {
        metrics: metrics.clone(),
        readiness: readiness.clone(),
    };
    let tls = config.tls.clone();
    let replay = ReplayStore::new(config.replay.redis_url.as_ref()).map_err(ServerError::Replay)?;
    let app = Arc::new(App::new(&config, replay, metrics));

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(ServerError::Signals)?;
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(ServerError::Signals)?;

    tracing::info!(
        addr = %public.local_addr().map_err(ServerError::Runtime)?,
        admin_addr = %admin_listener.local_addr().map_err(ServerError::Runtime)?,
        tls = tls.is_some(),
        "listening"
    );
    let admin_task = tokio::spawn(listener::serve_admin(admin_listener, admin));
    let public_task = tokio::spawn(listener::serve_public(
        public,
        tls,
        app,
        config.limits.clone(),
        stop_rx,
    ));

    tokio::select! {
        _ = terminate.recv() => tracing::info!(signal = "SIGTERM", "draining"),
        _ = interrupt.recv() => tracing::info!(signal = "SIGINT", "draining"),
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

async fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })
}
