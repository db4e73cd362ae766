//! Operational metrics: what a production team scrapes from `GET /metrics` (OpenMetrics text, which
//! Prometheus reads).
//!
//! Built on `prometheus-client`, the Prometheus project's own Rust client, because it has no global
//! recorder: each server owns its registry, so tests that run many servers in one process see exact
//! counts for each, and an embedder's own metrics never mix with wsgate's. Every handle is taken once
//! at startup and is an `Arc` around atomics: recording on the hot paths is one atomic add, with no
//! lookup, lock or allocation (frames delivered are counted once per write, not once per frame).
//! Labelled families are looked up only on rarer events (an upgrade, a login, a close).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabel {
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabel {
    version: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Store operations take from well under a millisecond (embedded) to the 2 s timeout (MongoDB).
fn store_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.5, 12))
}

/// Every metric of one server.
pub struct Metrics {
    registry: Registry,
    /// Sockets past their 101 that have not authenticated yet.
    pub sockets_pending: Gauge,
    /// Authenticated sockets.
    pub sockets_authenticated: Gauge,
    upgrades: Family<OutcomeLabel, Counter>,
    auth_failures: Family<ReasonLabel, Counter>,
    /// Chat messages accepted from clients.
    pub messages_received: Counter,
    /// Data frames written to sockets.
    pub frames_delivered: Counter,
    socket_closes: Family<ReasonLabel, Counter>,
    /// Tickets minted.
    pub tickets_minted: Counter,
    /// Tickets redeemed by an upgrade.
    pub tickets_consumed: Counter,
    logins: Family<OutcomeLabel, Counter>,
    store_seconds: HistogramFamily<OpLabel>,
    store_errors: Family<KindLabel, Counter>,
    /// Password hashes waiting for a core, or running.
    pub bcrypt_queue: Gauge,
    /// HTTP requests being handled (upgrades until their 101).
    pub http_in_flight: Gauge,
    /// History entries written to the store.
    pub history_written: Counter,
    /// History entries waiting for the writer (the store is slow or down).
    pub history_pending: Gauge,
    /// History entries lost: the buffer was full, or the store refused them.
    pub history_dropped: Counter,
    /// The cluster engine's events.
    pub cluster: ClusterMetrics,
}

/// What the cluster engine counts: a cheap clone of registered handles, kept by the engine.
#[derive(Clone, Debug, Default)]
pub struct ClusterMetrics {
    gaps: Family<ReasonLabel, Counter>,
    /// Dead nodes this node buried (their users reported `left` everywhere).
    pub nodes_buried: Counter,
}

impl ClusterMetrics {
    /// Counts a possible gap in this node's cluster stream, by what caused it. Each one is
    /// repaired by asking this node's sockets to reconnect (1012).
    pub fn gap(&self, reason: &'static str) {
        self.gaps.get_or_create(&ReasonLabel { reason }).inc();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric, under the `wsgate_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("wsgate");
        let sockets = Family::<StateLabel, Gauge>::default();
        registry.register(
            "sockets",
            "Open WebSockets by state: pending (upgraded, not yet authenticated) or authenticated",
            sockets.clone(),
        );
        let metrics = Self {
            sockets_pending: sockets.get_or_create_owned(&StateLabel { state: "pending" }),
            sockets_authenticated: sockets.get_or_create_owned(&StateLabel {
                state: "authenticated",
            }),
            upgrades: Family::default(),
            auth_failures: Family::default(),
            messages_received: Counter::default(),
            frames_delivered: Counter::default(),
            socket_closes: Family::default(),
            tickets_minted: Counter::default(),
            tickets_consumed: Counter::default(),
            logins: Family::default(),
            store_seconds: Family::new_with_constructor(store_histogram),
            store_errors: Family::default(),
            bcrypt_queue: Gauge::default(),
            http_in_flight: Gauge::default(),
            history_written: Counter::default(),
            history_pending: Gauge::default(),
            history_dropped: Counter::default(),
            cluster: ClusterMetrics::default(),
            registry: Registry::default(),
        };
        registry.register(
            "history_written",
            "History entries written to the store",
            metrics.history_written.clone(),
        );
        registry.register(
            "history_pending",
            "History entries waiting for the writer (the store is slow or down)",
            metrics.history_pending.clone(),
        );
        registry.register(
            "history_dropped",
            "History entries lost: the buffer was full (WSGATE_HISTORY_BUFFER) or the store refused them",
            metrics.history_dropped.clone(),
        );
        registry.register(
            "cluster_stream_gaps",
            "Possible gaps in this node's cluster stream by cause (disconnected, fell_behind, presence_lost, declared_dead, not_registered); each makes the node ask its sockets to reconnect (1012)",
            metrics.cluster.gaps.clone(),
        );
        registry.register(
            "cluster_nodes_buried",
            "Dead nodes this node buried: their users were reported left everywhere",
            metrics.cluster.nodes_buried.clone(),
        );
        registry.register(
            "upgrades",
            "WebSocket upgrade requests by outcome: accepted, or the refusal's error code",
            metrics.upgrades.clone(),
        );
        registry.register(
            "auth_failures",
            "Pending sockets that did not authenticate, by close reason",
            metrics.auth_failures.clone(),
        );
        registry.register(
            "messages_received",
            "Chat messages accepted from clients",
            metrics.messages_received.clone(),
        );
        registry.register(
            "frames_delivered",
            "Data frames written to sockets",
            metrics.frames_delivered.clone(),
        );
        registry.register(
            "socket_closes",
            "Closed WebSockets by reason (slow_consumer, rate_limited, heartbeat_timeout, peer_closed, …)",
            metrics.socket_closes.clone(),
        );
        registry.register(
            "tickets_minted",
            "WebSocket tickets minted",
            metrics.tickets_minted.clone(),
        );
        registry.register(
            "tickets_consumed",
            "WebSocket tickets redeemed by an upgrade",
            metrics.tickets_consumed.clone(),
        );
        registry.register(
            "logins",
            "Login attempts by outcome: ok, or the error code",
            metrics.logins.clone(),
        );
        registry.register_with_unit(
            "store_operation_duration",
            "Store operation latency by operation",
            Unit::Seconds,
            metrics.store_seconds.clone(),
        );
        registry.register(
            "store_errors",
            "Failed store operations by kind: unavailable (an outage), rejected (refused by the database), duplicate",
            metrics.store_errors.clone(),
        );
        registry.register(
            "bcrypt_queue_depth",
            "Password hashes waiting for a core or running",
            metrics.bcrypt_queue.clone(),
        );
        registry.register(
            "http_requests_in_flight",
            "HTTP requests being handled",
            metrics.http_in_flight.clone(),
        );
        let build = Family::<BuildLabel, Gauge>::default();
        build
            .get_or_create(&BuildLabel {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("build_info", "wsgate's version (always 1)", build);
        Self {
            registry,
            ..metrics
        }
    }

    /// Counts an upgrade request: `accepted`, or the error code of its refusal.
    pub fn upgrade(&self, outcome: &'static str) {
        self.upgrades.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    /// Counts a pending socket that did not authenticate.
    pub fn auth_failed(&self, reason: &'static str) {
        self.auth_failures
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// Counts a closed socket.
    pub fn socket_closed(&self, reason: &'static str) {
        self.socket_closes
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// Counts a login attempt: `ok`, or the error code.
    pub fn login(&self, outcome: &'static str) {
        self.logins.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    /// Records one store operation: its latency, and its failure's kind if it failed.
    pub fn store_op(&self, op: &'static str, took: Duration, failed: Option<&'static str>) {
        self.store_seconds
            .get_or_create(&OpLabel { op })
            .observe(took.as_secs_f64());
        if let Some(kind) = failed {
            self.store_errors.get_or_create(&KindLabel { kind }).inc();
        }
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Holds one unit of a gauge (a socket in a state, a request in flight) for as long as it lives.
pub struct Held(Gauge);

impl Held {
    /// Adds one to `gauge` until the returned guard is dropped.
    pub fn new(gauge: &Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions() {
        let metrics = Metrics::new();
        metrics.upgrade("accepted");
        metrics.upgrade("ticket_used");
        metrics.login("ok");
        metrics.socket_closed("slow_consumer");
        metrics.store_op("find_user", Duration::from_millis(3), None);
        metrics.store_op("find_user", Duration::from_millis(3), Some("unavailable"));
        metrics.frames_delivered.inc_by(64);
        metrics.cluster.gap("declared_dead");
        metrics.cluster.nodes_buried.inc();
        let held = Held::new(&metrics.sockets_pending);
        let text = metrics.encode();
        for line in [
            "wsgate_upgrades_total{outcome=\"accepted\"} 1",
            "wsgate_upgrades_total{outcome=\"ticket_used\"} 1",
            "wsgate_logins_total{outcome=\"ok\"} 1",
            "wsgate_socket_closes_total{reason=\"slow_consumer\"} 1",
            "wsgate_store_operation_duration_seconds_count{op=\"find_user\"} 2",
            "wsgate_store_errors_total{kind=\"unavailable\"} 1",
            "wsgate_frames_delivered_total 64",
            "wsgate_cluster_stream_gaps_total{reason=\"declared_dead\"} 1",
            "wsgate_cluster_nodes_buried_total 1",
            "wsgate_sockets{state=\"pending\"} 1",
            "wsgate_sockets{state=\"authenticated\"} 0",
            "wsgate_build_info{version=\"",
            "# EOF",
        ] {
            assert!(text.contains(line), "missing `{line}` in:\n{text}");
        }
        drop(held);
        assert!(metrics
            .encode()
            .contains("wsgate_sockets{state=\"pending\"} 0"));
    }
}
