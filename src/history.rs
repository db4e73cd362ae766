//! History: the writer that takes delivered messages into the store off the delivery path, in
//! batches and through outages, and history reads, which also see what is still waiting.
//!
//! Delivery never waits for the store: the hub delivers, then `record` appends the entry to a
//! bounded buffer and returns. One writer task drains the buffer in batches; when the store fails
//! it keeps the batch and retries with backoff, so an outage delays history but does not stop live
//! chat, and loses nothing until the buffer is full. What does not fit is counted
//! (`wsgate_history_dropped_total`) and logged, never dropped silently. Entries leave the buffer
//! only once written, and reads merge the buffer with the store, so a client reading the history
//! right after sending sees its own message even while the writer is behind (a read needs the store
//! to answer, though: during an outage it is a 503).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock::{now_millis, UnixMillis};
use crate::metrics::Metrics;
use crate::store::{HistoryEntry, Store, StoreError};

/// Entries written per store call at most.
const BATCH: usize = 500;
/// Backoff between failed writes: doubling from the first to the last.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_LAST: Duration = Duration::from_secs(5);
/// How long the writer lets entries gather after the first one arrives, at least and at most: one
/// store call (and one wake of the writer) per interval under steady chat instead of one per
/// message. Reads merge the buffer, so nobody waits for it.
///
/// Each wait is drawn at random in this range. A fixed wait locks onto periodic traffic: with 50 ms
/// and a chat at 20 messages/s, every write fell on the instant the next message arrived. The write
/// costs this server little (the MongoDB driver is 0.3 % of its CPU there), but the store works
/// while that message's fan-out is being read; in the benchmark the store shares the clients'
/// core, and every delivery was late: p50 +1.7 ms, p99 1.4× the embedded store's
/// (docs/benchmarks.md). A random wait meets a fan-out only as often as the server is busy.
const LINGER_MIN_MS: u64 = 100;
const LINGER_MAX_MS: u64 = 300;
/// How long shutdown waits for the buffer to reach the store.
const FLUSH_ON_SHUTDOWN: Duration = Duration::from_secs(5);

/// Cheap `Clone` handle to the history.
#[derive(Clone)]
pub struct History {
    shared: Arc<Shared>,
}

struct Shared {
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    pending: Mutex<VecDeque<HistoryEntry>>,
    capacity: usize,
    retention: Duration,
    wake: Notify,
}

/// A page of history, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The entries, oldest first.
    pub entries: Vec<HistoryEntry>,
    /// Whether older entries exist.
    pub has_more: bool,
}

impl History {
    /// A history over `store` holding at most `capacity` unwritten entries, keeping entries for
    /// `retention`.
    pub fn new(
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        capacity: usize,
        retention: Duration,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                store,
                metrics,
                pending: Mutex::new(VecDeque::new()),
                capacity: capacity.max(1),
                retention,
                wake: Notify::new(),
            }),
        }
    }

    fn pending(&self) -> MutexGuard<'_, VecDeque<HistoryEntry>> {
        self.shared
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues a delivered entry for the store; never waits. Returns whether it fit.
    pub fn record(&self, entry: HistoryEntry) -> bool {
        let (queued, first) = {
            let mut pending = self.pending();
            if pending.len() >= self.shared.capacity {
                (false, false)
            } else {
                pending.push_back(entry);
                self.shared
                    .metrics
                    .history_pending
                    .set(pending.len() as i64);
                (true, pending.len() == 1)
            }
        };
        // The writer only waits on an empty buffer: only the entry that ends that must wake it.
        if first {
            self.shared.wake.notify_one();
        }
        if !queued {
            self.shared.metrics.history_dropped.inc();
            // One line per dropped entry would flood the log during an outage: every 1000th.
            let dropped = self.shared.metrics.history_dropped.get();
            if dropped % 1000 == 1 {
                tracing::error!(
                    dropped_total = dropped,
                    capacity = self.shared.capacity,
                    "history buffer full: a delivered message was not stored"
                );
            }
        }
        queued
    }

    /// Entries waiting for the writer.
    pub fn pending_count(&self) -> usize {
        self.pending().len()
    }

    /// The oldest instant still in the history.
    fn not_before(&self) -> UnixMillis {
        now_millis() - self.shared.retention.as_millis() as i64
    }

    /// Up to `limit` entries of `stream` before id `before` (the newest without), at or after
    /// `since` (and within the retention), oldest first.
    pub async fn page(
        &self,
        stream: &str,
        before: Option<u64>,
        limit: usize,
        since: UnixMillis,
    ) -> Result<Page, StoreError> {
        let not_before = self.not_before().max(since);
        // The buffer first, then the store: an entry leaves the buffer only once it is stored, so
        // in this order a batch the writer finishes between the two reads is seen in one of them
        // (the other order could miss it in both).
        let waiting = self.newest_waiting(stream, before, limit + 1, not_before);
        let stored = self
            .shared
            .store
            .history(stream, before, limit + 1, not_before)
            .await?;
        let mut entries = stored;
        entries.extend(waiting);
        entries.sort_unstable_by_key(|e| std::cmp::Reverse(e.id));
        entries.dedup_by_key(|e| e.id);
        let has_more = entries.len() > limit;
        entries.truncate(limit);
        entries.reverse();
        Ok(Page { entries, has_more })
    }

    /// The newest `limit` waiting entries of `stream` before `before`: only those are copied, and
    /// the buffer's lock (which every delivered message takes) is held for one pass.
    fn newest_waiting(
        &self,
        stream: &str,
        before: Option<u64>,
        limit: usize,
        not_before: UnixMillis,
    ) -> Vec<HistoryEntry> {
        let pending = self.pending();
        let mut found: Vec<&HistoryEntry> = pending
            .iter()
            .filter(|e| e.stream == stream && e.ts >= not_before && before.is_none_or(|b| e.id < b))
            .collect();
        found.sort_unstable_by_key(|e| std::cmp::Reverse(e.id));
        found.truncate(limit);
        found.into_iter().cloned().collect()
    }

    /// Whether `id` is an entry of `stream` (stored or waiting) at or after `since`.
    pub async fn contains(
        &self,
        stream: &str,
        id: u64,
        since: UnixMillis,
    ) -> Result<bool, StoreError> {
        let not_before = self.not_before().max(since);
        if self
            .pending()
            .iter()
            .any(|e| e.id == id && e.stream == stream && e.ts >= not_before)
        {
            return Ok(true);
        }
        self.shared
            .store
            .history_contains(stream, id, not_before)
            .await
    }

    /// The writer: drains the buffer into the store until `shutdown`, then flushes what it can
    /// within `FLUSH_ON_SHUTDOWN`.
    pub async fn run_writer(self, shutdown: CancellationToken) {
        let mut backoff = RETRY_FIRST;
        loop {
            let batch = self.next_batch();
            if batch.is_empty() {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = self.shared.wake.notified() => {}
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(linger()) => continue,
                }
            }
            match self.write(&batch).await {
                Ok(()) => backoff = RETRY_FIRST,
                Err(()) => {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(RETRY_LAST);
                }
            }
        }
        let flushed = tokio::time::timeout(FLUSH_ON_SHUTDOWN, async {
            loop {
                let batch = self.next_batch();
                if batch.is_empty() || self.write(&batch).await.is_err() {
                    break;
                }
            }
        })
        .await;
        let left = self.pending_count();
        if flushed.is_err() || left > 0 {
            tracing::warn!(left, "shutdown: history entries not written to the store");
        }
    }

    /// A copy of the oldest waiting entries (they stay in the buffer, and visible to reads, until
    /// written).
    fn next_batch(&self) -> Vec<HistoryEntry> {
        self.pending().iter().take(BATCH).cloned().collect()
    }

    /// Writes a batch and removes it from the buffer. An outage keeps it for a retry; a refusal
    /// (which a retry will not fix) drops it, counted and logged.
    async fn write(&self, batch: &[HistoryEntry]) -> Result<(), ()> {
        match self.shared.store.append_history(batch).await {
            Ok(()) => {
                self.remove_front(batch.len());
                self.shared
                    .metrics
                    .history_written
                    .inc_by(batch.len() as u64);
                Ok(())
            }
            Err(StoreError::Unavailable(reason)) => {
                tracing::warn!(%reason, waiting = self.pending_count(), "history write failed, will retry");
                Err(())
            }
            Err(err) => {
                tracing::error!(%err, entries = batch.len(), "the store refused history entries; they are dropped");
                self.remove_front(batch.len());
                self.shared
                    .metrics
                    .history_dropped
                    .inc_by(batch.len() as u64);
                Ok(())
            }
        }
    }

    fn remove_front(&self, n: usize) {
        let mut pending = self.pending();
        // Only the writer removes, and always from the front, what it copied from the front.
        let n = n.min(pending.len());
        pending.drain(..n);
        self.shared
            .metrics
            .history_pending
            .set(pending.len() as i64);
    }
}

/// One wait of the writer, at random between `LINGER_MIN_MS` and `LINGER_MAX_MS`.
fn linger() -> Duration {
    use rand::Rng;
    Duration::from_millis(rand::rng().random_range(LINGER_MIN_MS..=LINGER_MAX_MS))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn entry(stream: &str, id: u64) -> HistoryEntry {
        HistoryEntry {
            stream: stream.into(),
            id,
            ts: now_millis(),
            frame: format!("{{\"id\":\"{id}\"}}"),
        }
    }

    fn history(capacity: usize) -> History {
        History::new(
            Arc::new(MemoryStore::new()),
            Arc::new(Metrics::new()),
            capacity,
            Duration::from_secs(3600),
        )
    }

    #[tokio::test]
    async fn reads_see_waiting_entries_and_pages_go_back_in_order() {
        let history = history(100);
        for id in 1..=5 {
            history.record(entry("room:a", id));
        }
        history.record(entry("room:b", 6));
        let page = history.page("room:a", None, 2, 0).await.unwrap();
        assert_eq!(
            page.entries.iter().map(|e| e.id).collect::<Vec<_>>(),
            [4, 5]
        );
        assert!(page.has_more);
        let older = history.page("room:a", Some(4), 10, 0).await.unwrap();
        assert_eq!(
            older.entries.iter().map(|e| e.id).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert!(!older.has_more);
        assert!(history.contains("room:a", 3, 0).await.unwrap());
        assert!(!history.contains("room:a", 6, 0).await.unwrap());
        let later = now_millis() + 60_000;
        assert!(!history.contains("room:a", 3, later).await.unwrap());
        assert!(history
            .page("room:a", None, 10, later)
            .await
            .unwrap()
            .entries
            .is_empty());
    }

    #[tokio::test]
    async fn the_writer_moves_entries_to_the_store_without_duplicates() {
        let history = history(100);
        let shutdown = CancellationToken::new();
        let writer = tokio::spawn(history.clone().run_writer(shutdown.clone()));
        for id in 1..=700 {
            history.record(entry("room:a", id));
        }
        shutdown.cancel();
        writer.await.unwrap();
        assert_eq!(history.pending_count(), 0);
        let page = history.page("room:a", None, 1000, 0).await.unwrap();
        assert_eq!(
            page.entries.len(),
            100,
            "the buffer held 100; 600 were counted as dropped"
        );
        assert_eq!(history.shared.metrics.history_dropped.get(), 600);
    }

    #[test]
    fn the_writers_wait_stays_in_its_range_and_varies() {
        let waits: std::collections::BTreeSet<Duration> = (0..200).map(|_| linger()).collect();
        let (lo, hi) = (waits.first().unwrap(), waits.last().unwrap());
        assert!(*lo >= Duration::from_millis(LINGER_MIN_MS), "{lo:?}");
        assert!(*hi <= Duration::from_millis(LINGER_MAX_MS), "{hi:?}");
        // A fixed wait locks onto periodic traffic: 200 draws from 201 values give far more than
        // 20 distinct ones.
        assert!(waits.len() > 20, "{} distinct waits", waits.len());
    }
}
