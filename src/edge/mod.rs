//! The edge: who the client is and whether it may connect. The client's address behind trusted
//! proxies and the key per-IP limits use (`client`), connection slots and per-IP caps (`admission`),
//! and which web pages may talk to the server (`origin`).

pub mod admission;
pub mod client;
pub mod origin;

pub use admission::{ConnSlot, IpShare, PerIpCounts};
pub use client::{client_key, ClientAddr, TrustedProxies};
pub use origin::Origins;
