//! Accept loops: HTTP/1.1 and HTTP/2 (h2c or ALPN), optional TLS, graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::admin::Admin;
use crate::config::LimitsConfig;
use crate::proxy::ClientInfo;

use super::Current;

/// Time a client has to complete a TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head (request line and headers); larger gets 431.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most request headers; more gets 431.
const MAX_HEADERS: usize = 100;
/// Most concurrent HTTP/2 streams per connection.
const MAX_H2_STREAMS: u32 = 256;

/// Serves the public listener until `stop` flips, then waits for open connections.
pub(super) async fn serve_public(
    listener: TcpListener,
    current: Arc<ArcSwap<Current>>,
    limits: LimitsConfig,
    mut stop: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    // Past `max_connections` samlgate stops accepting (the kernel backlog queues)
    // instead of running out of memory or descriptors.
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let header_read_timeout = limits.header_read_timeout;
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            _ = stop.changed() => break,
        };
        let (stream, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let app = current.clone();
        let watcher = graceful.watcher();
        let acceptor = current.load().tls.clone();
        tokio::spawn(async move {
            let _slot = slot;
            match acceptor {
                None => {
                    let client = ClientInfo::new(addr, false);
                    serve_connection(stream, client, app, watcher, header_read_timeout).await;
                }
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
                    match handshake {
                        Ok(Ok(stream)) => {
                            let client = ClientInfo::new(addr, true);
                            serve_connection(stream, client, app, watcher, header_read_timeout)
                                .await;
                        }
                        Ok(Err(error)) => tracing::debug!(%error, %addr, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Serves one connection. Boxed, so that a plain connection's task is not sized
/// for a TLS one.
fn serve_connection<IO>(
    io: IO,
    client: ClientInfo,
    current: Arc<ArcSwap<Current>>,
    watcher: hyper_util::server::graceful::Watcher,
    header_read_timeout: Duration,
) -> Pin<Box<dyn Future<Output = ()> + Send>>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    Box::pin(async move {
        let addr = client.addr;
        // Each request takes the configuration in force when it arrives, so a reload
        // reaches keep-alive connections too. The request future is boxed: hyper keeps
        // room for it in every connection for the connection's whole life, idle or not,
        // so unboxed it would cost every idle keep-alive connection its size.
        let service = service_fn(move |req| {
            let app = current.load().app.clone();
            let client = client.clone();
            Box::pin(async move { Ok::<_, Infallible>(app.handle(req, client).await) })
        });
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout)
            .max_buf_size(MAX_HEAD_BYTES)
            .max_headers(MAX_HEADERS);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(MAX_HEAD_BYTES as u32)
            .max_concurrent_streams(MAX_H2_STREAMS)
            .keep_alive_interval(header_read_timeout);
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
        if let Err(error) = watcher.watch(connection.into_owned()).await {
            tracing::debug!(%error, %addr, "connection ended with an error");
        }
    })
}

/// Serves the admin listener; it stays up while the public side drains, so
/// `/readyz` can say so.
pub(super) async fn serve_admin(listener: TcpListener, admin: Admin) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let admin = admin.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let response = admin.handle(&req);
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
