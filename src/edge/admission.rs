//! Whether a connection may be served: a slot of the server's connection cap, and a share of its
//! client's per-IP cap, held for as long as the connection (and a WebSocket upgraded from it) lives.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedSemaphorePermit;

/// Holds a connection slot (of `max_connections`, and of the client's per-IP share) for as long as any
/// clone lives: the HTTP connection holds one, and a WebSocket upgraded from it holds another.
#[derive(Clone)]
pub struct ConnSlot(#[allow(dead_code)] Arc<(OwnedSemaphorePermit, Option<IpShare>)>);

impl ConnSlot {
    /// A slot holding `permit` (and, when capped, the client's `share`).
    pub fn new(permit: OwnedSemaphorePermit, share: Option<IpShare>) -> Self {
        Self(Arc::new((permit, share)))
    }
}

/// Open connections per client key (IPv4 address or IPv6 /64).
pub struct PerIpCounts {
    cap: usize,
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's share of its client's per-IP budget; released on drop.
pub struct IpShare {
    counts: Arc<PerIpCounts>,
    key: IpAddr,
}

impl PerIpCounts {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts for a cap of `cap` connections per client key.
    pub fn new(cap: usize) -> Arc<Self> {
        Arc::new(Self {
            cap,
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// A share for `ip`, or `None` when the client is at its cap.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<IpShare> {
        let key = super::client_key(ip);
        let mut counts = self.lock();
        let count = counts.entry(key).or_insert(0);
        if *count >= self.cap {
            return None;
        }
        *count += 1;
        Some(IpShare {
            counts: self.clone(),
            key,
        })
    }
}

impl Drop for IpShare {
    fn drop(&mut self) {
        let mut counts = self.counts.lock();
        if let Some(count) = counts.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}
