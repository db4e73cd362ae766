//! wsgate: a WebSocket authentication gateway. Users log in over REST and get a short-lived JWT, trade
//! it for a single-use WebSocket ticket, upgrade with the ticket, and authenticate the socket with the
//! JWT in its first frame; authenticated sockets then use rooms, direct messages and history
//! through the hub.
//!
//! The wire contract is in `docs/protocol.md`; `startup::Application` is the entry point.

pub mod accounts;
pub mod auth;
pub mod clock;
pub mod config;
pub mod edge;
pub mod history;
pub mod http;
pub mod metrics;
pub mod protocol;
pub mod ratelimit;
pub mod realtime;
pub mod rooms;
pub mod sessions;
pub mod startup;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod ws;

#[cfg(test)]
mod proptests;

pub use config::Settings;
pub use startup::Application;
