//! Shared application state handed to every route and socket: one `Arc<App>` per server.

use std::sync::Arc;

use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{PasswordHasher, RefreshCodec, TicketCodec, TokenKeys};
use crate::config::Settings;
use crate::history::History;
use crate::metrics::Metrics;
use crate::ratelimit::IpLimits;
use crate::realtime::{Engine, Hub};
use crate::store::Store;

/// Read buffer per WebSocket. Chat frames are small; tungstenite's 128 KiB default would be resident
/// (and zero-filled before each read) for every idle socket, and it is most of what an idle socket
/// costs. It is also the most one read takes. tungstenite reserves a whole frame's length on top of
/// what it already holds of it, so any frame over half the buffer doubles it, for good: at 1,024
/// bytes an idle socket kept 1,024, at 512 the `auth` frame (about 350 bytes) grew it to 1,024, at
/// 256 it grows to what the `auth` frame needs (about 600) and chat frames fit in that. Larger
/// frames still work: the buffer grows for them and the frame-size limit bounds how far.
pub const WS_READ_BUFFER: usize = 256;

/// Everything the server shares. Built once by `startup`; handed around as `Arc<App>`. Its fields
/// are the crate's; embedders and tests read it through the accessors.
pub struct App {
    /// Validated configuration.
    pub(crate) settings: Settings,
    /// The backend.
    pub(crate) store: Arc<dyn Store>,
    /// JWT signing and verification.
    pub(crate) tokens: TokenKeys,
    /// Ticket minting and verification.
    pub(crate) tickets: TicketCodec,
    /// Refresh-token minting and verification.
    pub(crate) refresh_tokens: RefreshCodec,
    /// bcrypt, off the async workers.
    pub(crate) passwords: PasswordHasher,
    /// This process's sockets, rooms and delivery.
    pub(crate) hub: Hub,
    /// The realtime engine (local, or a node of a cluster): what crosses nodes goes through it.
    pub(crate) engine: Engine,
    /// History: the writer's buffer and reads.
    pub(crate) history: History,
    /// Per-IP limits.
    pub(crate) limits: IpLimits,
    /// Origins allowed to upgrade and to change state.
    pub(crate) origins: crate::edge::Origins,
    /// The WebSocket settings wsgate owns (read buffer, frame limits).
    pub(crate) ws_config: WebSocketConfig,
    /// Operational metrics.
    pub(crate) metrics: Arc<Metrics>,
    /// Whether the main listener answers `GET /metrics` (see `startup`).
    pub(crate) metrics_on_main: bool,
    /// Cancelled when the server shuts down; every connection watches it.
    pub(crate) shutdown: CancellationToken,
    /// Every connection task, so shutdown can wait for them.
    pub(crate) tasks: TaskTracker,
}

impl App {
    /// The validated configuration.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Who is online (socket and user counts).
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// The realtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The server's metrics (what `/metrics` serves).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The history (writer buffer and reads).
    pub fn history(&self) -> &History {
        &self.history
    }

    /// The store, instrumented.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The WebSocket configuration for the given frame limit.
    pub fn websocket_config(max_frame_bytes: usize) -> WebSocketConfig {
        WebSocketConfig::default()
            .read_buffer_size(WS_READ_BUFFER)
            // Data frames are written by `ws::conn` itself; tungstenite's write buffer only carries
            // its own pongs and close frames, so it stays small.
            .max_message_size(Some(max_frame_bytes))
            .max_frame_size(Some(max_frame_bytes))
    }
}
