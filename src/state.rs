//! Shared application state handed to every route and socket: one `Arc<App>` per server.

use std::sync::Arc;

use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{PasswordHasher, RefreshCodec, TicketCodec, TokenKeys};
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::ratelimit::IpLimits;
use crate::realtime::Hub;
use crate::store::Store;

/// Read buffer per WebSocket. Chat frames are small; tungstenite's 128 KiB default would be resident
/// (and zero-filled before each read) for every idle socket, and it is most of what an idle socket
/// costs. Larger frames still work: the buffer grows for them and the frame-size limit bounds how far.
pub const WS_READ_BUFFER: usize = 1024;

/// Everything the server shares. Built once by `startup`; handed around as `Arc<App>`.
pub struct App {
    /// Validated configuration.
    pub settings: Settings,
    /// The backend.
    pub store: Arc<dyn Store>,
    /// JWT signing and verification.
    pub tokens: TokenKeys,
    /// Ticket minting and verification.
    pub tickets: TicketCodec,
    /// Refresh-token minting and verification.
    pub refresh_tokens: RefreshCodec,
    /// bcrypt, off the async workers.
    pub passwords: PasswordHasher,
    /// Online sockets and broadcast.
    pub hub: Hub,
    /// Per-IP limits.
    pub limits: IpLimits,
    /// Origins allowed to upgrade and to change state.
    pub origins: crate::edge::Origins,
    /// The WebSocket settings wsgate owns (read buffer, frame limits).
    pub ws_config: WebSocketConfig,
    /// Operational metrics.
    pub metrics: Arc<Metrics>,
    /// Whether the main listener answers `GET /metrics` (see `startup`).
    pub metrics_on_main: bool,
    /// Cancelled when the server shuts down; every connection watches it.
    pub shutdown: CancellationToken,
    /// Every connection task, so shutdown can wait for them.
    pub tasks: TaskTracker,
}

impl App {
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
