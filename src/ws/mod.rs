//! The WebSocket side: upgrade checks, per-socket sessions, the hub, and the wire contract.

pub mod conn;
pub mod hub;
pub mod protocol;
pub mod upgrade;
