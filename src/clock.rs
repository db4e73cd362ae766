//! The one wall clock: Unix time in milliseconds (every stored expiry) and seconds (JWT claims).
//!
//! Durations inside the process (timeouts, heartbeats, rate windows) use tokio's monotonic clock,
//! which tests can pause; this clock is for instants that leave the process (stored, signed, or
//! compared across instances).

/// Milliseconds since the Unix epoch: the one time unit of every stored expiry.
pub type UnixMillis = i64;

/// Current wall-clock time in Unix milliseconds.
pub fn now_millis() -> UnixMillis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Current Unix time in seconds.
pub fn unix_now() -> i64 {
    now_millis() / 1000
}
