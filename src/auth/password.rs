//! Password hashing with bcrypt, always on the blocking pool and never more at once than there are cores.
//!
//! bcrypt at cost 12 takes a quarter of a second of CPU; run on an async worker it would stall every
//! socket that worker serves. The semaphore keeps a login storm from spawning hundreds of blocking
//! threads that would then fight over the same cores.

use std::sync::Arc;

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::Semaphore;

use crate::metrics::Held;

/// Longest a request waits for a free core to run bcrypt on.
pub const QUEUE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Why hashing failed.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// bcrypt refused the input or the blocking task died.
    #[error("password hashing failed: {0}")]
    Hashing(String),
    /// Too many hashes queued: the request waited `QUEUE_TIMEOUT` for a core.
    #[error("password hashing is saturated")]
    Busy,
}

/// Hashes and verifies passwords off the async workers.
#[derive(Clone)]
pub struct PasswordHasher {
    cost: u32,
    permits: Arc<Semaphore>,
    /// Hashes waiting for a permit or running (the bcrypt queue depth of `/metrics`).
    queue: Gauge,
    /// A real hash of a random password, verified against when the user does not exist, so that an
    /// unknown user costs the same time as a wrong password.
    dummy_hash: Arc<str>,
}

impl PasswordHasher {
    /// Builds the hasher and its dummy hash (one bcrypt run, on the blocking pool). `queue` counts
    /// the hashes waiting or running.
    pub async fn new(cost: u32, queue: Gauge) -> Result<Self, PasswordError> {
        let permits = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let mut hasher = Self {
            cost,
            permits: Arc::new(Semaphore::new(permits)),
            queue,
            dummy_hash: Arc::from(""),
        };
        let random = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            super::os_random::<18>(),
        );
        hasher.dummy_hash = Arc::from(hasher.hash(random).await?);
        Ok(hasher)
    }

    /// Hashes `password` with a fresh salt.
    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        let cost = self.cost;
        self.blocking(move || bcrypt::hash(password, cost))
            .await?
            .map_err(|e| PasswordError::Hashing(e.to_string()))
    }

    /// Checks `password` against `hash`; with `None` it checks against the dummy hash and returns
    /// false, taking the same time as a real check. `Err(Busy)` when no core freed up in time.
    pub async fn verify(
        &self,
        password: String,
        hash: Option<String>,
    ) -> Result<bool, PasswordError> {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy_hash.to_string());
        let matches = self
            .blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
            .await?;
        Ok(known && matches)
    }

    async fn blocking<T, F>(&self, work: F) -> Result<T, PasswordError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let queued = Held::new(&self.queue);
        // A bounded wait: under a login flood, refuse quickly (503, Retry-After) instead of holding
        // every connection in an ever longer queue.
        let permit = tokio::time::timeout(QUEUE_TIMEOUT, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| PasswordError::Busy)?
            .map_err(|e| PasswordError::Hashing(e.to_string()))?;
        // The permit and the queue count go with the hash: a client that disconnects drops this
        // future, but the blocking task runs to the end, and must keep holding its core's permit.
        tokio::task::spawn_blocking(move || {
            let _held = (permit, queued);
            work()
        })
        .await
        .map_err(|e| PasswordError::Hashing(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_then_verify() {
        let hasher = PasswordHasher::new(4, Gauge::default()).await.unwrap();
        let hash = hasher.hash("correct horse".into()).await.unwrap();
        assert!(hash.starts_with("$2"));
        let verify = |password: &str, hash: Option<String>| hasher.verify(password.into(), hash);
        assert!(verify("correct horse", Some(hash.clone())).await.unwrap());
        assert!(!verify("wrong horse", Some(hash)).await.unwrap());
        assert!(!verify("correct horse", None).await.unwrap());
    }
}
