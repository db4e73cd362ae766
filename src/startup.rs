//! Startup and serving: `Application::build` binds the listener and assembles the state;
//! `run_until_stopped` accepts connections until a shutdown future resolves, then closes every socket
//! with 1001 and waits (bounded) for all connection tasks.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_service::Service;
use warp::Filter;

use crate::auth::password::PasswordError;
use crate::auth::{PasswordHasher, RefreshCodec, TicketCodec, TokenKeys};
use crate::config::Settings;
use crate::edge::{ClientAddr, ConnSlot, PerIpCounts};
use crate::history::History;
use crate::metrics::{Held, Metrics};
use crate::ratelimit::IpLimits;
use crate::realtime::{Cluster, ClusterConfig, Engine, Hub, HubConfig};
use crate::state::App;
use crate::store::{InstrumentedStore, MemoryStore, MongoStore, Store};

/// How long shutdown waits for connections to finish before giving up on them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Largest HTTP read buffer per connection (hyper's default is about 400 KiB).
const MAX_HTTP_BUFFER: usize = 16 * 1024;
/// How often idle per-IP limiter state is forgotten.
const LIMITER_SWEEP: Duration = Duration::from_secs(60);
/// How often expired records are purged from the store (a no-op on MongoDB, whose TTL indexes do it).
const STORE_PURGE: Duration = Duration::from_secs(30);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The password hasher could not be initialised.
    #[error(transparent)]
    Password(#[from] PasswordError),
    /// The address file could not be written.
    #[error("cannot write the address file {path}: {source}")]
    AddrFile {
        /// The file.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The configured store could not be reached or prepared.
    #[error("cannot use the store: {0}")]
    Store(#[from] crate::store::StoreError),
    /// Redis (WSGATE_REDIS_URL) could not be reached.
    #[error("cannot join the cluster: {0}")]
    Cluster(#[from] crate::realtime::ClusterError),
}

/// Connections the metrics-only listener serves at once: scrapers, not clients.
const METRICS_CONNECTIONS: usize = 16;

/// A bound, ready-to-run server.
pub struct Application {
    listener: TcpListener,
    local_addr: SocketAddr,
    metrics_listener: Option<TcpListener>,
    app: Arc<App>,
    slots: Arc<Semaphore>,
}

/// Writes `addr` to `path` in one step (a temporary file renamed over it), so that a reader never
/// sees half an address. Connections that arrive before serving starts wait in the backlog.
fn write_addr_file(path: &std::path::Path, addr: SocketAddr) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, format!("{addr}\n"))?;
    std::fs::rename(&tmp, path)
}

async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), StartupError> {
    let failed = |source| StartupError::Bind { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(failed)?;
    let local = listener.local_addr().map_err(failed)?;
    Ok((listener, local))
}

impl Application {
    /// Binds the configured address and builds the state over the configured store: MongoDB when
    /// `WSGATE_MONGODB_URI` is set, the embedded store otherwise. An unreachable database is a startup
    /// error (exit non-zero), not a retry loop: a supervisor restarting the process is clearer than a
    /// server that listens but cannot serve.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let store: Arc<dyn Store> = match settings.mongodb() {
            Some((uri, db, timeout)) => Arc::new(
                MongoStore::connect_with_retention(
                    uri.expose(),
                    db,
                    timeout,
                    settings.rooms.history_days,
                )
                .await?,
            ),
            None => Arc::new(MemoryStore::with_history_cap(
                settings.rooms.history_max_per_room,
            )),
        };
        Self::build_with_store(settings, store).await
    }

    /// Binds the configured address and builds the state over the given store.
    pub async fn build_with_store(
        settings: Settings,
        store: Arc<dyn Store>,
    ) -> Result<Self, StartupError> {
        let (listener, local_addr) = bind(settings.net.addr).await?;
        if let Some(path) = &settings.net.addr_file {
            write_addr_file(path, local_addr).map_err(|source| StartupError::AddrFile {
                path: path.clone(),
                source,
            })?;
        }
        let metrics_listener = match settings.ops.metrics_addr {
            Some(addr) => Some(bind(addr).await?.0),
            None => None,
        };
        // Never public by default: on the main listener only when nothing but this machine can
        // reach it directly and no proxy forwards the world to it.
        let metrics_on_main = metrics_listener.is_none()
            && local_addr.ip().is_loopback()
            && settings.net.trusted_proxies.is_empty();
        let metrics = Arc::new(Metrics::new());
        let store: Arc<dyn Store> = Arc::new(InstrumentedStore::new(store, metrics.clone()));
        let secret = match &settings.auth.jwt_secret {
            Some(secret) => secret.expose().as_bytes().to_vec(),
            None => {
                tracing::warn!(
                    "WSGATE_JWT_SECRET is not set: using a random secret for this process only. \
                     Tokens will not survive a restart and cannot be shared between instances."
                );
                crate::auth::os_random::<32>().to_vec()
            }
        };
        let previous = settings
            .auth
            .jwt_previous_secret
            .as_ref()
            .map(|s| s.expose().as_bytes());
        let shutdown = CancellationToken::new();
        let hub = Hub::new(HubConfig {
            queue: settings.limits.outbound_queue,
            recovery_messages: settings.rooms.recovery_messages,
            recovery_age: settings.rooms.recovery_age,
            max_rooms: settings.rooms.max_rooms_per_socket,
            cluster: settings.cluster.redis_url.is_some(),
        });
        let engine = match &settings.cluster.redis_url {
            Some(url) => Engine::Cluster(
                Cluster::connect(
                    ClusterConfig {
                        url: url.expose().to_owned(),
                        node_timeout: settings.cluster.node_timeout,
                        recovery_messages: settings.rooms.recovery_messages,
                        recovery_age: settings.rooms.recovery_age,
                    },
                    hub.clone(),
                    metrics.cluster.clone(),
                    shutdown.clone(),
                )
                .await?,
            ),
            None => Engine::Local(hub.clone()),
        };
        let app = Arc::new(App {
            tokens: TokenKeys::new(
                &secret,
                previous,
                settings.auth.jwt_ttl,
                settings.auth.jwt_leeway,
            ),
            tickets: TicketCodec::new(&secret, previous),
            refresh_tokens: RefreshCodec::new(&secret, previous),
            passwords: PasswordHasher::new(settings.auth.bcrypt_cost, metrics.bcrypt_queue.clone())
                .await?,
            hub,
            engine,
            history: History::new(
                store.clone(),
                metrics.clone(),
                settings.rooms.history_buffer,
                settings.rooms.history_days,
            ),
            limits: IpLimits::new(&settings.limits),
            origins: crate::edge::Origins::resolve(&settings.net.allowed_origins.0, local_addr),
            ws_config: App::websocket_config(settings.limits.max_frame_bytes),
            shutdown,
            tasks: TaskTracker::new(),
            metrics,
            metrics_on_main,
            store,
            settings,
        });
        Ok(Self {
            listener,
            local_addr,
            metrics_listener,
            slots: Arc::new(Semaphore::new(app.settings.net.max_connections)),
            app,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The metrics-only listener's address, when `WSGATE_METRICS_ADDR` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// The shared state, for embedding and tests (hub counts, store).
    pub fn app(&self) -> Arc<App> {
        self.app.clone()
    }

    /// Serves until `shutdown` resolves, then stops accepting, closes every socket with 1001 and waits
    /// up to `SHUTDOWN_GRACE` for connection tasks to end.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) {
        let Self {
            listener,
            local_addr,
            metrics_listener,
            app,
            slots,
        } = self;
        tracing::info!(
            addr = %local_addr,
            store = app.store.kind(),
            origins = ?app.origins.allowed(),
            "wsgate listening"
        );
        // Every background task runs in the tracker and ends on the one shutdown token.
        app.tasks.spawn(maintenance(app.clone()));
        app.tasks
            .spawn(crate::sessions::follow_revocations(app.clone()));
        app.tasks
            .spawn(app.history.clone().run_writer(app.shutdown.clone()));
        // The filter tree is built once; each connection gets a cheap clone.
        let routes = crate::http::routes(app.clone());
        if let Some(metrics_listener) = metrics_listener {
            if let Ok(addr) = metrics_listener.local_addr() {
                tracing::info!(%addr, "metrics listening");
            }
            let scrapers = Arc::new(Semaphore::new(METRICS_CONNECTIONS));
            let routes = crate::http::health::metrics_only(app.clone());
            app.tasks.spawn(accept_loop(
                metrics_listener,
                app.clone(),
                scrapers,
                routes,
                None,
            ));
        }
        let per_ip = app
            .settings
            .net
            .max_connections_per_ip
            .get()
            .map(|n| n as usize);
        tokio::select! {
            _ = accept_loop(listener, app.clone(), slots, routes, per_ip) => {}
            _ = shutdown => tracing::info!("shutdown requested"),
        }
        app.shutdown.cancel();
        // Authenticated sockets hear of it from the hub, in their inbox: a wait on the token in
        // each would cost every socket 72 bytes and a poll at every wake-up. A socket that joins
        // after this sees the token cancelled (`ws::conn`); PENDING sockets wait on the token.
        app.hub.shut_down();
        app.tasks.close();
        let open = app.tasks.len();
        if tokio::time::timeout(SHUTDOWN_GRACE, app.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                remaining = app.tasks.len(),
                "connections still open after the grace period"
            );
        }
        app.engine.depart().await;
        tracing::info!(connections = open, "wsgate stopped");
    }
}

/// Accepts connections while a slot is free, each capped at `per_ip` per client (trusted proxies
/// excepted), until shutdown.
async fn accept_loop<R>(
    listener: TcpListener,
    app: Arc<App>,
    slots: Arc<Semaphore>,
    routes: R,
    per_ip: Option<usize>,
) where
    R: Filter<Extract = (warp::reply::Response,), Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
{
    let per_ip = per_ip.map(PerIpCounts::new);
    loop {
        // Waiting for a slot before accepting leaves excess connections in the kernel backlog
        // instead of failing accept() with EMFILE in a busy loop.
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            _ = app.shutdown.cancelled() => return,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = app.shutdown.cancelled() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let share = match &per_ip {
                    // A trusted proxy carries many clients: it is not capped as one.
                    Some(_) if app.settings.net.trusted_proxies.contains(peer.ip()) => None,
                    None => None,
                    Some(per_ip) => match per_ip.admit(peer.ip()) {
                        Some(share) => Some(share),
                        None => {
                            // Dropping the stream closes it: one client may not hold every slot.
                            tracing::debug!(peer = %peer.ip(), "per-IP connection cap reached");
                            continue;
                        }
                    },
                };
                let slot = ConnSlot::new(permit, share);
                let _ = stream.set_nodelay(true);
                app.tasks.spawn(serve_connection(
                    stream,
                    peer,
                    app.clone(),
                    slot,
                    routes.clone(),
                ));
            }
            Err(err) => {
                tracing::warn!(%err, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Serves HTTP/1.1 on one TCP connection (REST, static files, and the upgrade request).
async fn serve_connection<R>(
    stream: TcpStream,
    peer: SocketAddr,
    app: Arc<App>,
    slot: ConnSlot,
    routes: R,
) where
    R: Filter<Extract = (warp::reply::Response,), Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
{
    let routes = warp::service(routes);
    let proxies = app.settings.net.trusted_proxies.clone();
    let metrics = app.metrics.clone();
    let service = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
        // Behind a trusted proxy the client is named by X-Forwarded-For (every line of it); otherwise
        // it is the peer. A line that is not text cannot name anyone: it stops the walk.
        let forwarded_for = req
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .map(|line| line.to_str().unwrap_or("-"));
        let client = proxies.client(peer.ip(), forwarded_for);
        req.extensions_mut()
            .insert(ClientAddr(SocketAddr::new(client, peer.port())));
        req.extensions_mut().insert(slot.clone());
        let mut routes = routes.clone();
        let in_flight = Held::new(&metrics.http_in_flight);
        async move {
            let response = routes.call(req).await;
            drop(in_flight);
            response
        }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        // Slow-loris protection; the body has its own deadline in `http::json_body`.
        .header_read_timeout(app.settings.net.request_timeout)
        // Bounds what one connection can make hyper buffer (request head, pipelined input).
        .max_buf_size(MAX_HTTP_BUFFER)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = app.shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(SHUTDOWN_GRACE, conn).await {
                Ok(result) => result,
                Err(_) => return,
            }
        }
    };
    if let Err(err) = result {
        tracing::debug!(%err, "http connection ended with an error");
    }
}

/// Garbage collection until shutdown: idle per-IP limiter state, and expired store records.
async fn maintenance(app: Arc<App>) {
    let mut limiters = tokio::time::interval(LIMITER_SWEEP);
    let mut store = tokio::time::interval(STORE_PURGE);
    for ticker in [&mut limiters, &mut store] {
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    loop {
        tokio::select! {
            _ = app.shutdown.cancelled() => return,
            _ = limiters.tick() => {
                app.limits.forget_idle();
                app.hub.prune();
            }
            _ = store.tick() => {
                if let Err(err) = app.store.purge_expired(crate::clock::now_millis()).await {
                    tracing::debug!(%err, "purging expired records failed");
                }
            }
        }
    }
}

/// A future that resolves on SIGINT (Ctrl-C) or SIGTERM. The handlers are installed when this is
/// called, not when the future is first polled, so a signal that arrives while the server is still
/// starting is not lost to the default "terminate now" action. Call it inside the runtime.
pub fn shutdown_signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            match (interrupt, terminate) {
                (Ok(mut interrupt), Ok(mut terminate)) => {
                    tokio::select! {
                        _ = interrupt.recv() => {}
                        _ = terminate.recv() => {}
                    }
                }
                (interrupt, terminate) => {
                    tracing::warn!(
                        sigint = interrupt.is_ok(),
                        sigterm = terminate.is_ok(),
                        "cannot install signal handlers; falling back to Ctrl-C only"
                    );
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
