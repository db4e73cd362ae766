//! Integration tests: the real server on 127.0.0.1:0, driven over HTTP and WebSocket like a client.
//! One test binary (several modules) keeps link time down.

mod architecture;
mod cluster;
mod helpers;
mod hostile;
mod lifecycle;
mod metrics;
mod mongo;
mod raw;
mod scenarios;
mod server;
mod store;
