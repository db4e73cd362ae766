//! The cluster engine: several nodes on one Redis. Ids, the recovery window and presence live in
//! Redis; every delivery goes through one pub/sub channel that every node reads, so every node
//! delivers a room's frames in the one order Redis executed them; this node's hub delivers them
//! to its own sockets.
//!
//! Design (after Centrifugo's Redis engine, `scripts` has the details):
//! - A publish is one script (one round trip): the next id, the capped window stream, the
//!   `PUBLISH`. The frame is serialized once, by the script, and turned into one shared buffer per
//!   node.
//! - A subscription is one script too: presence, `joined` for the user's first socket anywhere,
//!   and its answer (snapshot, recovery, replay) on this node's own channel, read by the same
//!   connection as the bus. Redis writes both channels to that connection in execution order, so
//!   the dispatcher applies the answer exactly between what came before and after it: no gap, no
//!   duplicate, and no socket ever sees its own `joined`.
//! - Nodes renew a heartbeat; any node buries a node whose heartbeat expired (its users are
//!   `left` everywhere), once. A silence of the whole cluster (Redis paused, the host suspended,
//!   the clock jumped) is nobody's death: the heartbeat script moves every deadline on by it
//!   (less one interval). A burial re-checks the deadline, so a node that renewed meanwhile stays.
//! - A presence update whose effect is unknown (a timeout) is retried under an operation id that
//!   Redis applies once; only when retries fail is it counted as a gap.
//! - Pub/sub is at most once: when this node's connection drops (or its inbound queue overflows)
//!   it may have missed frames. It then starts a new generation (a new node id), buries the old
//!   one and asks every local socket to reconnect (1012): the clients resubscribe with `since`
//!   and recover exactly from the window when it survived, or are told `recovered: false`. The
//!   hub keeps the generation each subscription was counted under: one that ends later leaves
//!   that generation's share (nothing to do once it is buried), never the new one's, where
//!   another socket of the same user may be counted. A socket asked to reconnect is not subscribed anew, and one
//!   that subscribes while the stream may have a gap is asked to reconnect too.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, ProtocolVersion, PushKind, Script, Value};
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_util::sync::CancellationToken;

use super::hub::{parse_id, ClusterAnswer, ConnId, Ended, Hub, Published, SubscribeError, LOBBY};
use super::inbox::Kick;
use super::scripts;
use crate::metrics::ClusterMetrics;
use crate::protocol::FrameTemplate;
use crate::store::{direct_stream, room_stream, HistoryEntry, Revoked};

/// The channel every node reads.
const BUS: &str = "wsgate:bus";
/// Node registrations and their heartbeat expiry.
const NODES: &str = "wsgate:nodes";
/// When any node last beat (see `scripts::HEARTBEAT`).
const LAST_BEAT: &str = "wsgate:nodes:beat";
/// Frames Redis delivered that the dispatcher has not applied yet; past it the node counts its
/// stream as lost (see the module doc), never buffering without limit.
const INBOUND_QUEUE: usize = 65_536;
/// A recovery's replay travels in one pub/sub message; past this many bytes of frames the answer
/// is `recovered: false` (the client reads the history), far below Redis's default 32 MiB
/// output-buffer limit for subscribers.
const MAX_REPLAY_BYTES: usize = 4 * 1024 * 1024;
/// How long a subscription waits for its answer through the channel.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// Redis command and connection timeouts: a request fails `unavailable` rather than hang.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);
/// A presence update that failed is tried this many more times, after this pause, doubling:
/// with `REDIS_TIMEOUT` per attempt, about ten seconds in all.
const LEAVE_RETRIES: u32 = 3;
const LEAVE_BACKOFF: Duration = Duration::from_millis(250);
/// How long Redis remembers that a presence update ran, for its retries.
const LEAVE_OP_TTL_MS: u64 = 60_000;
/// The soonest an early repair runs after the last heartbeat round, so that one burst of losses
/// is one repair. Early repairs are also at least a heartbeat interval apart: a node that keeps
/// losing its stream asks its sockets to reconnect no more often than it did before they existed.
const REPAIR_GAP: Duration = Duration::from_millis(100);
/// The id of a conversation is kept this long (ids also have the clock as their floor).
const DIRECT_ID_TTL_MS: u64 = 24 * 3600 * 1000;

/// What the cluster engine could not do.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Redis could not be reached, or did not answer in time.
    #[error("redis unavailable: {0}")]
    Unavailable(String),
}

impl From<redis::RedisError> for ClusterError {
    fn from(err: redis::RedisError) -> Self {
        // The error's text never carries the URL or its password.
        ClusterError::Unavailable(err.to_string())
    }
}

/// The cluster engine's settings.
#[derive(Clone)]
pub struct ClusterConfig {
    /// `redis://` or `rediss://` (a secret: may hold a password).
    pub url: String,
    /// A node whose heartbeat is this old is dead.
    pub node_timeout: Duration,
    /// Messages per room kept for recovery.
    pub recovery_messages: usize,
    /// How old a message may be and still be recovered from.
    pub recovery_age: Duration,
}

/// Without the URL, which may hold a password.
impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("url", &"<redacted>")
            .field("node_timeout", &self.node_timeout)
            .field("recovery_messages", &self.recovery_messages)
            .field("recovery_age", &self.recovery_age)
            .finish()
    }
}

/// Cheap `Clone` handle to the cluster engine.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    hub: Hub,
    redis: ConnectionManager,
    config: ClusterConfig,
    /// This process's channel: `wsgate:node:{process}`.
    channel: String,
    process: String,
    /// The current generation (see the module doc); its node id is `node_id(generation)`.
    generation: AtomicU64,
    /// Subscriptions waiting for their answer.
    pending: Waiters,
    next_token: AtomicU64,
    /// Presence updates' operation ids (see `spawn_leave`).
    next_op: AtomicU64,
    /// The stream of frames may have a gap (a dropped connection, an overflow) not yet repaired.
    /// While it is set, no frame is delivered to a socket: a socket's last id stays before the gap,
    /// so its `since` after the repair recovers exactly.
    lost: AtomicBool,
    /// Losses so far: a repair clears `lost` only if none happened while it ran.
    losses: AtomicU64,
    /// The last heartbeat reached Redis.
    reachable: AtomicBool,
    overflowed: Arc<AtomicBool>,
    /// Wakes the heartbeat task to repair now: while `lost`, the node delivers nothing, so the
    /// repair does not wait for the next heartbeat.
    repair_now: Notify,
    metrics: ClusterMetrics,
    scripts: Scripts,
}

/// Why this node's stream may have a gap.
#[derive(Debug, Clone, Copy)]
enum Gap {
    /// The connection to Redis dropped: pub/sub is at most once.
    Disconnected,
    /// The inbound queue overflowed.
    FellBehind,
    /// A presence update failed: Redis may or may not have applied it.
    PresenceLost,
    /// Another node buried this one (its heartbeat expired while it could not reach Redis).
    DeclaredDead,
    /// A subscription found this node unregistered.
    NotRegistered,
}

impl Gap {
    /// The metric's label.
    fn reason(self) -> &'static str {
        match self {
            Gap::Disconnected => "disconnected",
            Gap::FellBehind => "fell_behind",
            Gap::PresenceLost => "presence_lost",
            Gap::DeclaredDead => "declared_dead",
            Gap::NotRegistered => "not_registered",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Gap::Disconnected => "lost the connection to redis",
            Gap::FellBehind => "the node fell behind the cluster's stream",
            Gap::PresenceLost => "a presence update was lost",
            Gap::DeclaredDead => "this node was declared dead",
            Gap::NotRegistered => "this node is not registered",
        }
    }
}

struct Scripts {
    publish: Script,
    direct: Script,
    subscribe: Script,
    check: Script,
    leave: Script,
    heartbeat: Script,
    bury: Script,
    delete_room: Script,
}

/// A subscription's presence snapshot and recovery outcome.
type Snapshot = (Vec<String>, Option<bool>);

/// A subscription asked of the cluster, applied by the dispatcher when its answer arrives.
struct Pending {
    epoch: u64,
    announce: bool,
    reply: oneshot::Sender<Result<Snapshot, SubscribeError>>,
}

/// The subscriptions waiting for the dispatcher's answer, by token. Closed when the dispatcher
/// returns: nothing would answer any more, so every waiter is told at once (and a stopping node's
/// sockets close at once) instead of at `ANSWER_TIMEOUT`.
#[derive(Default)]
struct Waiters(Mutex<WaitersState>);

#[derive(Default)]
struct WaitersState {
    closed: bool,
    by_token: HashMap<u64, Pending>,
}

impl Waiters {
    fn state(&self) -> std::sync::MutexGuard<'_, WaitersState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a waiter; `false` once the dispatcher has returned.
    fn add(&self, token: u64, pending: Pending) -> bool {
        let mut state = self.state();
        if state.closed {
            return false;
        }
        state.by_token.insert(token, pending);
        true
    }

    /// The waiter of `token`, if it is still waiting.
    fn take(&self, token: u64) -> Option<Pending> {
        self.state().by_token.remove(&token)
    }

    /// Refuses new waiters and fails the waiting ones: a dropped reply ends its `answer` at once.
    fn close(&self) {
        let waiting = {
            let mut state = self.state();
            state.closed = true;
            std::mem::take(&mut state.by_token)
        };
        drop(waiting);
    }
}

/// The answer of `scripts::SUBSCRIBE`.
#[derive(Deserialize)]
struct Answer {
    room: String,
    user: String,
    conn: String,
    /// The node id the script counted the subscription under.
    node: String,
    /// `cjson` encodes an empty array as `{}`: both are read as empty.
    #[serde(deserialize_with = "lenient_strings")]
    users: Vec<String>,
    last: String,
    rec: String,
    #[serde(deserialize_with = "lenient_strings")]
    replay: Vec<String>,
}

fn lenient_strings<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Array(items) => Ok(items
            .into_iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()),
        _ => Ok(Vec::new()),
    }
}

impl Cluster {
    /// Connects to Redis (RESP3, one connection manager that reconnects and resubscribes by
    /// itself), registers this node, and starts the dispatcher and the heartbeat; both stop with
    /// `shutdown`.
    pub async fn connect(
        config: ClusterConfig,
        hub: Hub,
        metrics: ClusterMetrics,
        shutdown: CancellationToken,
    ) -> Result<Self, ClusterError> {
        let info = config.url.as_str().into_connection_info()?;
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let client = redis::Client::open(info.set_redis_settings(settings))?;
        let (tx, rx) = mpsc::channel::<redis::PushInfo>(INBOUND_QUEUE);
        let overflowed = Arc::new(AtomicBool::new(false));
        let flag = overflowed.clone();
        let manager_config = ConnectionManagerConfig::new()
            .set_push_sender(move |push: redis::PushInfo| {
                if tx.try_send(push).is_err() {
                    flag.store(true, Ordering::SeqCst);
                }
                Ok::<(), ()>(())
            })
            .set_automatic_resubscription()
            .set_connection_timeout(Some(REDIS_TIMEOUT))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_max_delay(Duration::from_secs(1))
            .set_number_of_retries(2);
        let redis = client
            .get_connection_manager_with_config(manager_config)
            .await?;
        let process = random_id();
        let inner = Arc::new(Inner {
            hub,
            redis,
            channel: format!("wsgate:node:{process}"),
            process,
            generation: AtomicU64::new(0),
            pending: Waiters::default(),
            next_token: AtomicU64::new(1),
            next_op: AtomicU64::new(1),
            lost: AtomicBool::new(false),
            losses: AtomicU64::new(0),
            reachable: AtomicBool::new(false),
            overflowed,
            repair_now: Notify::new(),
            metrics,
            scripts: Scripts {
                publish: Script::new(scripts::PUBLISH),
                direct: Script::new(scripts::DIRECT),
                subscribe: Script::new(scripts::SUBSCRIBE),
                check: Script::new(scripts::CHECK),
                leave: Script::new(scripts::LEAVE),
                heartbeat: Script::new(scripts::HEARTBEAT),
                bury: Script::new(scripts::BURY),
                delete_room: Script::new(scripts::DELETE_ROOM),
            },
            config,
        });
        let cluster = Cluster { inner };
        cluster.listen().await?;
        cluster.heartbeat(true).await?;
        tokio::spawn(cluster.clone().dispatch(rx, shutdown.clone()));
        tokio::spawn(cluster.clone().beat(shutdown));
        tracing::info!(node = %cluster.node_id(cluster.generation()), "joined the cluster");
        Ok(cluster)
    }

    /// The stream may have a gap from here on: stop delivering, and repair now.
    fn mark_lost(&self, gap: Gap) {
        self.inner.losses.fetch_add(1, Ordering::SeqCst);
        if !self.inner.lost.swap(true, Ordering::SeqCst) {
            self.inner.metrics.gap(gap.reason());
            tracing::warn!(
                why = gap.describe(),
                "the cluster stream may have a gap: repairing"
            );
        }
        self.inner.repair_now.notify_one();
    }

    /// This node's hub.
    pub fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::SeqCst)
    }

    /// The id this process is (or was) registered under in `generation`.
    fn node_id(&self, generation: u64) -> String {
        format!("{}-{generation}", self.inner.process)
    }

    /// The generation of this process that `node` (an id Redis handed back) names.
    fn generation_of(&self, node: &str) -> Option<u64> {
        node.strip_prefix(self.inner.process.as_str())?
            .strip_prefix('-')?
            .parse()
            .ok()
    }

    fn conn(&self) -> ConnectionManager {
        self.inner.redis.clone()
    }

    async fn listen(&self) -> Result<(), ClusterError> {
        let mut redis = self.conn();
        bounded(redis.subscribe(&[BUS, self.inner.channel.as_str()])).await?;
        Ok(())
    }

    /// Whether the node is fully part of the cluster: Redis answers and no gap is unrepaired.
    pub fn healthy(&self) -> bool {
        self.inner.reachable.load(Ordering::SeqCst) && !self.inner.lost.load(Ordering::SeqCst)
    }

    /// Joins an authenticated socket and subscribes it to `lobby` (recovering from `since`).
    pub async fn join(
        &self,
        conn: ConnId,
        user: &str,
        jti: String,
        sid: String,
        since: Option<&str>,
    ) -> Result<super::Joined, ClusterError> {
        let inbox = self.inner.hub.add_socket(conn, user, jti, sid);
        // `Stale` only says that some room's members, or this node's id, changed meanwhile: ask
        // again.
        for _ in 0..3 {
            let epoch = self.inner.hub.acl_epoch();
            match self.subscribe_as(conn, LOBBY, since, epoch, false).await {
                Ok((users, recovered)) => {
                    return Ok(super::Joined {
                        users,
                        recovered,
                        inbox,
                    })
                }
                Err(SubscribeError::Stale) => continue,
                Err(_) => break,
            }
        }
        // Whatever was applied meanwhile comes off the presence again.
        self.leave(conn);
        Err(ClusterError::Unavailable(
            "the cluster did not answer".into(),
        ))
    }

    /// Takes a closed socket out of the hub and of the cluster's presence.
    pub fn leave(&self, conn: ConnId) {
        if let Some(left) = self.inner.hub.leave(conn) {
            self.leave_ended(&left.user, left.rooms);
        }
    }

    /// Takes ended subscriptions off the presence, each from the generation it was counted
    /// under (see `spawn_leave`).
    fn leave_ended(&self, user: &str, ended: Vec<Ended>) {
        let mut by_generation: Vec<(u64, Vec<String>)> = Vec::new();
        for Ended { room, generation } in ended {
            match by_generation.iter_mut().find(|(g, _)| *g == generation) {
                Some((_, rooms)) => rooms.push(room.to_string()),
                None => by_generation.push((generation, vec![room.to_string()])),
            }
        }
        for (generation, rooms) in by_generation {
            self.spawn_leave(generation, user.to_owned(), rooms);
        }
    }

    /// Takes sockets of `user` off the presence of `rooms`, in a task: a failed attempt (Redis
    /// slow or away, the script's effect unknown) is tried again under the same operation id,
    /// which the script applies at most once. Only when every attempt failed is the presence
    /// counted lost, and repaired.
    ///
    /// It goes to `generation`, the one the subscriptions were counted under, never to a later
    /// one's share, where another socket of the user's may be counted. An older generation is
    /// buried already (the script then changes nothing), or still registered because its burial
    /// failed: then this takes the entries off before its heartbeat expires.
    fn spawn_leave(&self, generation: u64, user: String, rooms: Vec<String>) {
        if rooms.is_empty() {
            return;
        }
        let node = self.node_id(generation);
        let cluster = self.clone();
        let op = format!(
            "wsgate:op:{}:{}",
            self.inner.process,
            self.inner.next_op.fetch_add(1, Ordering::Relaxed)
        );
        tokio::spawn(async move {
            let mut backoff = LEAVE_BACKOFF;
            for attempt in 0..=LEAVE_RETRIES {
                match cluster.leave_rooms(&node, &op, &user, &rooms).await {
                    Ok(()) => return,
                    Err(err) if attempt < LEAVE_RETRIES => {
                        tracing::debug!(%err, attempt, "presence update failed, trying again");
                        tokio::time::sleep(backoff).await;
                        backoff *= 2;
                    }
                    // A repair replaced the generation meanwhile: its share, this entry with it,
                    // is buried already.
                    Err(_) if cluster.generation() != generation => return,
                    Err(err) => {
                        // The cluster's presence is now wrong about this node: repair it (a new
                        // generation buries the old one's share, see the module doc).
                        tracing::warn!(%err, "presence update lost");
                        cluster.mark_lost(Gap::PresenceLost);
                    }
                }
            }
        });
    }

    async fn leave_rooms(
        &self,
        node: &str,
        op: &str,
        user: &str,
        rooms: &[String],
    ) -> Result<(), ClusterError> {
        let mut call = self.inner.scripts.leave.prepare_invoke();
        call.key(format!("wsgate:np:{node}"))
            .key(BUS)
            .key(NODES)
            .key(op)
            .arg(node)
            .arg(user)
            .arg(LEAVE_OP_TTL_MS);
        for room in rooms {
            call.arg(room);
        }
        let _: i64 = bounded(call.invoke_async(&mut self.conn())).await?;
        Ok(())
    }

    /// Subscribes a socket to a room it may read (checked at `epoch`).
    pub async fn subscribe(
        &self,
        conn: ConnId,
        room: &str,
        since: Option<&str>,
        epoch: u64,
    ) -> Result<(), SubscribeError> {
        self.subscribe_as(conn, room, since, epoch, true)
            .await
            .map(|_| ())
    }

    async fn subscribe_as(
        &self,
        conn: ConnId,
        room: &str,
        since: Option<&str>,
        epoch: u64,
        announce: bool,
    ) -> Result<Snapshot, SubscribeError> {
        let prepared = self.inner.hub.prepare_subscribe(conn, room)?;
        let age_ms = self.inner.config.recovery_age.as_millis() as u64;
        // An id that is not one of ours is in no window: `recovered: false`, as for an old one.
        let since_arg = since.map(|s| parse_id(s).map(|id| id.to_string()).unwrap_or_default());
        if let Some(after) = prepared.already_after {
            let mut call = self.inner.scripts.check.prepare_invoke();
            call.key(format!("wsgate:pu:{room}"))
                .key(format!("wsgate:win:{room}"))
                .arg(since_arg.clone().unwrap_or_default())
                .arg(age_ms);
            let out: Vec<String> = bounded(call.invoke_async(&mut self.conn()))
                .await
                .map_err(|_| SubscribeError::Unavailable)?;
            let found = out.first().is_some_and(|f| f == "1");
            let mut users: Vec<String> = out.into_iter().skip(1).collect();
            users.sort();
            let since = since.map(|s| (parse_id(s).unwrap_or(0), found));
            let recovered = since.map(|(id, found)| found && id >= after);
            self.inner.hub.resubscribed(conn, room, &users, since);
            return Ok((users, recovered));
        }
        let token = self.inner.next_token.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        let waiting = Pending {
            epoch,
            announce,
            reply,
        };
        // Refused before the script runs once the dispatcher has stopped; a waiter added just
        // before that is failed by `Waiters::close` and takes its presence back (below).
        if !self.inner.pending.add(token, waiting) {
            return Err(SubscribeError::Unavailable);
        }
        let generation = self.generation();
        let node = self.node_id(generation);
        let since_given = since_arg
            .as_deref()
            .map(|s| if s.is_empty() { "0" } else { s });
        let mut call = self.inner.scripts.subscribe.prepare_invoke();
        call.key(format!("wsgate:pu:{room}"))
            .key(format!("wsgate:np:{node}"))
            .key(format!("wsgate:win:{room}"))
            .key(BUS)
            .key(&self.inner.channel)
            .key(NODES)
            .arg(room)
            .arg(&*prepared.user)
            .arg(token)
            .arg(conn)
            .arg(since_given.unwrap_or(""))
            .arg(if prepared.replay_allowed { "1" } else { "0" })
            .arg(age_ms)
            .arg(&node)
            .arg(MAX_REPLAY_BYTES);
        let sent: Result<i64, _> = bounded(call.invoke_async(&mut self.conn())).await;
        let mut answer = answer;
        if let Err(err) = sent {
            if self.forget(token).is_none() {
                // Only the script's reply was lost (a timeout): the dispatcher has its answer,
                // and its reply is on the way.
                return answer.await.unwrap_or(Err(SubscribeError::Unavailable));
            }
            if err.to_string().contains("NODE") {
                // An id a repair has replaced meanwhile: ask again under the new one.
                if self.generation() != generation {
                    return Err(SubscribeError::Stale);
                }
                // Still ours: we were buried, and repair.
                self.mark_lost(Gap::NotRegistered);
            }
            return Err(SubscribeError::Unavailable);
        }
        match tokio::time::timeout(ANSWER_TIMEOUT, &mut answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => {
                // The dispatcher stopped before the answer: the script ran, nothing applied it.
                self.spawn_leave(generation, prepared.user.to_string(), vec![room.to_owned()]);
                Err(SubscribeError::Unavailable)
            }
            Err(_) => {
                if self.forget(token).is_some() {
                    // Not answered: if the answer still comes, the dispatcher finds no waiter
                    // and takes the subscription off the presence again.
                    return Err(SubscribeError::Unavailable);
                }
                // The dispatcher is applying it right now: its reply is on the way.
                answer.await.unwrap_or(Err(SubscribeError::Unavailable))
            }
        }
    }

    fn forget(&self, token: u64) -> Option<Pending> {
        self.inner.pending.take(token)
    }

    /// Unsubscribes a socket (`unsubscribed`, reason `requested`).
    pub fn unsubscribe(&self, conn: ConnId, room: &str) {
        if let Some((user, ended)) = self.inner.hub.unsubscribe(conn, room) {
            self.leave_ended(&user, vec![ended]);
        }
    }

    /// A room's message or event: an id from the room's stream, delivered by every node in the
    /// one order. `frame` is the frame's template (see `FrameTemplate`).
    pub async fn publish(
        &self,
        room: &str,
        frame: &FrameTemplate,
    ) -> Result<Published, ClusterError> {
        let cap = self.inner.config.recovery_messages;
        let keep = self.inner.config.recovery_age.as_millis().max(1) as u64;
        let mut call = self.inner.scripts.publish.prepare_invoke();
        call.key(format!("wsgate:last:{}", room_stream(room)))
            .key(format!("wsgate:win:{room}"))
            .key(BUS)
            .arg(room)
            .arg(&frame.head)
            .arg(&frame.mid)
            .arg(&frame.tail)
            .arg(cap)
            .arg(keep);
        let (id, ts): (String, String) = bounded(call.invoke_async(&mut self.conn())).await?;
        Ok(published(room_stream(room), &id, &ts, frame))
    }

    /// A direct message: an id of the conversation, to every socket of both users on every node.
    pub async fn direct(
        &self,
        from: &str,
        to: &str,
        frame: &FrameTemplate,
    ) -> Result<Published, ClusterError> {
        let stream = direct_stream(from, to);
        let mut call = self.inner.scripts.direct.prepare_invoke();
        call.key(format!("wsgate:last:{stream}"))
            .key(BUS)
            .arg(from)
            .arg(to)
            .arg(&frame.head)
            .arg(&frame.mid)
            .arg(&frame.tail)
            .arg(DIRECT_ID_TTL_MS);
        let (id, ts): (String, String) = bounded(call.invoke_async(&mut self.conn())).await?;
        Ok(published(stream, &id, &ts, frame))
    }

    /// Something every node applies as it is (typing, events to a user, kicks, removals).
    async fn broadcast(&self, payload: String) -> Result<(), ClusterError> {
        let mut redis = self.conn();
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(BUS).arg(payload);
        let _: i64 = bounded(cmd.query_async(&mut redis)).await?;
        Ok(())
    }

    /// `typing` of `user` in a room, relayed by every node to the other users' sockets.
    pub async fn typing(&self, room: &str, user: &str, frame: &str) -> Result<(), ClusterError> {
        self.broadcast(format!("t\x1f{room}\x1f{user}\x1f{frame}"))
            .await
    }

    /// An event to every socket of a user.
    pub async fn send_to_user(&self, user: &str, frame: &str) -> Result<(), ClusterError> {
        self.broadcast(format!("e\x1f{user}\x1f{frame}")).await
    }

    /// Closes the sockets of a revoked token or session, or of a user, on every node. This node's
    /// are closed at once; returns how many. The other nodes are told until they hear it (see
    /// `until_sent`).
    pub async fn kick(&self, what: Target<'_>, kick: Kick) -> usize {
        let closed = apply_kick(&self.inner.hub, &what, kick);
        let kind = match kick {
            Kick::Revoked => 'R',
            Kick::Reconnect => 'C',
        };
        let (target, value) = match what {
            Target::Token(jti) => ('t', jti),
            Target::Session(sid) => ('s', sid),
            Target::User(user) => ('u', user),
        };
        self.publish_until_sent("kick", format!("k\x1f{kind}\x1f{target}\x1f{value}"))
            .await;
        closed
    }

    /// A member was removed: every node unsubscribes the user's sockets from the room (this
    /// node's at once; the others until they hear it).
    pub async fn remove_member(&self, room: &str, user: &str) {
        self.removed(room, user);
        self.publish_until_sent("member removal", format!("r\x1f{room}\x1f{user}"))
            .await;
    }

    /// Publishes on the bus now, or (when Redis does not answer) again in the background until it
    /// does: a removal or a close that never reaches the other nodes would leave sockets reading
    /// what they may no longer read.
    async fn publish_until_sent(&self, what: &'static str, payload: String) {
        if let Err(err) = self.broadcast(payload.clone()).await {
            tracing::warn!(%err, what, "not sent to the other nodes yet: retrying");
            self.until_sent(what, move |cluster| {
                let payload = payload.clone();
                async move { cluster.broadcast(payload).await }
            });
        }
    }

    /// Retries `attempt` with backoff (0.2 s doubling to 10 s) for about five minutes.
    fn until_sent<F, Fut>(&self, what: &'static str, attempt: F)
    where
        F: Fn(Cluster) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<(), ClusterError>> + Send,
    {
        let cluster = self.clone();
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(200);
            for _ in 0..40 {
                tokio::time::sleep(delay).await;
                if attempt(cluster.clone()).await.is_ok() {
                    tracing::info!(what, "sent to the other nodes after a retry");
                    return;
                }
                delay = (delay * 2).min(Duration::from_secs(10));
            }
            tracing::error!(what, "never reached the other nodes");
        });
    }

    /// A room was deleted: its window goes, every node ends its subscriptions.
    /// The window goes and `x` is on the bus before this node takes its subscriptions off the
    /// presence: the `left` those leaves may publish reach no node that still has the room.
    pub async fn delete_room(&self, room: &str) {
        let sent = self.send_deletion(room.to_owned()).await;
        // Whoever takes the room out of the hub first (this call, or the dispatcher applying `x`)
        // takes its subscriptions off the presence, once.
        self.deleted(room);
        if let Err(err) = sent {
            tracing::warn!(%err, "room deletion not sent to the other nodes yet: retrying");
            let room = room.to_owned();
            self.until_sent("room deletion", move |cluster| {
                let room = room.clone();
                async move { cluster.send_deletion(room).await }
            });
        }
    }

    async fn send_deletion(&self, room: String) -> Result<(), ClusterError> {
        let mut call = self.inner.scripts.delete_room.prepare_invoke();
        call.key(format!("wsgate:win:{room}")).key(BUS).arg(&room);
        let _: i64 = bounded(call.invoke_async(&mut self.conn())).await?;
        Ok(())
    }

    fn removed(&self, room: &str, user: &str) {
        let ended = self.inner.hub.remove_member(room, user);
        self.leave_ended(user, ended);
    }

    fn deleted(&self, room: &str) {
        let mut by_user: HashMap<Arc<str>, Vec<Ended>> = HashMap::new();
        for (user, ended) in self.inner.hub.delete_room(room) {
            by_user.entry(user).or_default().push(ended);
        }
        for (user, ended) in by_user {
            self.leave_ended(&user, ended);
        }
    }

    /// The presence of a room over every live node, sorted.
    pub async fn presence(&self, room: &str) -> Result<Vec<String>, ClusterError> {
        let mut redis = self.conn();
        let mut cmd = redis::cmd("HKEYS");
        cmd.arg(format!("wsgate:pu:{room}"));
        let mut users: Vec<String> = bounded(cmd.query_async(&mut redis)).await?;
        users.sort();
        Ok(users)
    }

    /// Leaves the cluster on a clean shutdown: this node's share of the presence goes at once.
    pub async fn depart(&self) {
        if let Err(err) = self.bury(&self.node_id(self.generation()), false).await {
            tracing::debug!(%err, "could not leave the cluster cleanly");
        }
    }

    /// Buries `node` (see `scripts::BURY`); with `only_if_expired`, not if it renewed its
    /// heartbeat since it was reported dead.
    async fn bury(&self, node: &str, only_if_expired: bool) -> Result<i64, ClusterError> {
        let mut call = self.inner.scripts.bury.prepare_invoke();
        call.key(NODES)
            .key(BUS)
            .arg(node)
            .arg(if only_if_expired { "1" } else { "0" });
        bounded(call.invoke_async(&mut self.conn())).await
    }

    /// One heartbeat: renews this node, buries the dead. A node that finds itself unregistered
    /// (declared dead while it could not reach Redis) repairs its stream.
    async fn heartbeat(&self, first: bool) -> Result<(), ClusterError> {
        self.heartbeat_as(&self.node_id(self.generation()), first)
            .await
    }

    async fn heartbeat_as(&self, node: &str, first: bool) -> Result<(), ClusterError> {
        let (interval, dead_after) = self.timing();
        let mut call = self.inner.scripts.heartbeat.prepare_invoke();
        call.key(NODES)
            .key(LAST_BEAT)
            .arg(node)
            .arg(dead_after.as_millis() as u64)
            .arg(if first { "1" } else { "0" })
            .arg(interval.as_millis() as u64);
        let out: Vec<Value> = bounded(call.invoke_async(&mut self.conn())).await?;
        self.inner.reachable.store(true, Ordering::SeqCst);
        let had = matches!(out.first(), Some(Value::Int(1)));
        if !had && !first {
            self.mark_lost(Gap::DeclaredDead);
        }
        // Burials in tasks of their own: this node's next heartbeat never waits for them.
        for dead in out.iter().skip(1) {
            if let Ok(dead) = redis::from_redis_value_ref::<String>(dead) {
                let cluster = self.clone();
                tokio::spawn(async move {
                    if let Ok(n) = cluster.bury(&dead, true).await {
                        if n >= 0 {
                            cluster.inner.metrics.nodes_buried.inc();
                            tracing::warn!(node = %dead, entries = n, "buried a dead node");
                        }
                    }
                });
            }
        }
        Ok(())
    }

    /// Heartbeat interval and how long after its last heartbeat a node counts as dead: a node is
    /// reported dead within the configured timeout of its death (interval = timeout / 5; dead
    /// after three missed heartbeats).
    fn timing(&self) -> (Duration, Duration) {
        let timeout = self.inner.config.node_timeout;
        let interval = (timeout / 5).max(Duration::from_millis(100));
        (interval, timeout.saturating_sub(interval * 2).max(interval))
    }

    async fn beat(self, shutdown: CancellationToken) {
        let (interval, _) = self.timing();
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_round = tokio::time::Instant::now();
        let mut last_early: Option<tokio::time::Instant> = None;
        loop {
            let early = tokio::select! {
                _ = ticker.tick() => false,
                _ = self.inner.repair_now.notified() => true,
                _ = shutdown.cancelled() => return,
            };
            if early {
                // Not before `REPAIR_GAP` after the last round, nor within an interval of the last
                // early one (see `REPAIR_GAP`); while Redis is unreachable the next tick retries,
                // as it would anyway.
                let mut at = last_round + REPAIR_GAP;
                if let Some(last) = last_early {
                    at = at.max(last + interval);
                }
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = shutdown.cancelled() => return,
                }
                if !self.inner.lost.load(Ordering::SeqCst)
                    || !self.inner.reachable.load(Ordering::SeqCst)
                {
                    continue;
                }
                last_early = Some(tokio::time::Instant::now());
            }
            last_round = tokio::time::Instant::now();
            match self.heartbeat(false).await {
                Ok(()) if self.inner.lost.load(Ordering::SeqCst) => {
                    if let Err(err) = self.repair().await {
                        tracing::warn!(%err, "stream repair failed, retrying");
                    }
                }
                Ok(()) => {}
                Err(err) => {
                    if self.inner.reachable.swap(false, Ordering::SeqCst) {
                        tracing::error!(%err, "redis unreachable");
                    }
                }
            }
        }
    }

    /// After a possible gap: listen again, start a new generation, bury the old one, and ask
    /// every local socket to reconnect and recover (see the module doc).
    async fn repair(&self) -> Result<(), ClusterError> {
        let losses = self.inner.losses.load(Ordering::SeqCst);
        self.listen().await?;
        // Only this task (the heartbeat's) changes the generation.
        let old = self.generation();
        let new = old + 1;
        // Registered before anything goes out under it: a subscription under an id Redis does not
        // know yet would be refused, and counted as a new gap.
        self.heartbeat_as(&self.node_id(new), true).await?;
        self.inner.generation.store(new, Ordering::SeqCst);
        // Kicked before delivery resumes: a kick goes before any frame still queued.
        let asked = self.inner.hub.kick_all(Kick::Reconnect);
        let _ = self.bury(&self.node_id(old), false).await;
        if self.inner.losses.load(Ordering::SeqCst) == losses {
            self.inner.lost.store(false, Ordering::SeqCst);
        }
        tracing::warn!(
            sockets = asked,
            "cluster stream repaired: sockets asked to reconnect and recover"
        );
        Ok(())
    }

    async fn dispatch(
        self,
        mut inbound: mpsc::Receiver<redis::PushInfo>,
        shutdown: CancellationToken,
    ) {
        loop {
            let push = tokio::select! {
                push = inbound.recv() => match push {
                    Some(push) => push,
                    None => {
                        // Cannot happen while `self` holds the connection manager that feeds it;
                        // said loudly if it ever does (the next heartbeat would not notice).
                        tracing::error!("the cluster's inbound channel closed: this node receives nothing more");
                        break;
                    }
                },
                _ = shutdown.cancelled() => break,
            };
            match push.kind {
                PushKind::Message => {
                    if let Some(Value::BulkString(payload)) = push.data.get(1) {
                        match std::str::from_utf8(payload) {
                            Ok(payload) => self.apply(payload),
                            Err(_) => {
                                tracing::warn!("a cluster frame that is not UTF-8 was dropped")
                            }
                        }
                    }
                }
                PushKind::Disconnection => {
                    self.inner.reachable.store(false, Ordering::SeqCst);
                    self.mark_lost(Gap::Disconnected);
                }
                _ => {}
            }
            if self.inner.overflowed.swap(false, Ordering::SeqCst) {
                self.mark_lost(Gap::FellBehind);
            }
        }
        self.inner.pending.close();
    }

    /// Applies one frame of the bus or of this node's channel to the hub.
    fn apply(&self, payload: &str) {
        let mut parts = payload.splitn(2, '\x1f');
        let (Some(kind), Some(rest)) = (parts.next(), parts.next()) else {
            return;
        };
        let hub = &self.inner.hub;
        // Deliveries wait for the repair (see `lost`); closes, removals and answers never do.
        if self.inner.lost.load(Ordering::SeqCst)
            && matches!(kind, "m" | "j" | "l" | "t" | "d" | "e")
        {
            return;
        }
        match kind {
            "m" => {
                let [room, id, frame] = split3(rest);
                let id = id.parse().unwrap_or(0);
                hub.deliver_room(room, id, &Utf8Bytes::from(frame.to_owned()));
            }
            "j" | "l" | "t" => {
                let [room, user, frame] = split3(rest);
                hub.deliver_about(room, user, &Utf8Bytes::from(frame.to_owned()));
            }
            "d" => {
                let [from, to, frame] = split3(rest);
                hub.deliver_users(&[from, to], &Utf8Bytes::from(frame.to_owned()));
            }
            "e" => {
                if let Some((user, frame)) = rest.split_once('\x1f') {
                    hub.deliver_users(&[user], &Utf8Bytes::from(frame.to_owned()));
                }
            }
            "r" => {
                if let Some((room, user)) = rest.split_once('\x1f') {
                    self.removed(room, user);
                }
            }
            "x" => self.deleted(rest),
            "k" => {
                let [kind, target, value] = split3(rest);
                let kick = if kind == "C" {
                    Kick::Reconnect
                } else {
                    Kick::Revoked
                };
                let what = match target {
                    "t" => Target::Token(value),
                    "s" => Target::Session(value),
                    _ => Target::User(value),
                };
                apply_kick(hub, &what, kick);
            }
            "s" => {
                if let Some((token, answer)) = rest.split_once('\x1f') {
                    self.answered(token.parse().unwrap_or(0), answer);
                }
            }
            _ => tracing::debug!(kind, "unknown cluster frame"),
        }
    }

    /// A subscription's answer, applied here, in the stream's order.
    fn answered(&self, token: u64, answer: &str) {
        let Ok(answer) = serde_json::from_str::<Answer>(answer) else {
            // Not this build's script. Whatever it counted cannot be taken back without its
            // room and user: the presence is repaired with the generation.
            tracing::warn!("unreadable subscription answer");
            if let Some(pending) = self.forget(token) {
                let _ = pending.reply.send(Err(SubscribeError::Unavailable));
            }
            self.mark_lost(Gap::PresenceLost);
            return;
        };
        // Never another process's id: this node's channel carries only its own answers.
        let generation = self.generation_of(&answer.node).unwrap_or(u64::MAX);
        let pending = self.forget(token);
        let Some(pending) = pending else {
            // Its waiter gave up: take the subscription off the presence again.
            self.spawn_leave(generation, answer.user, vec![answer.room]);
            return;
        };
        let conn: ConnId = answer.conn.parse().unwrap_or(0);
        let recovered = match answer.rec.as_str() {
            "1" => Some(true),
            "0" => Some(false),
            _ => None,
        };
        let last_id = answer
            .last
            .split('-')
            .next()
            .and_then(|id| id.parse().ok())
            .unwrap_or(0);
        let mut users = answer.users;
        users.sort();
        let replay = answer.replay.into_iter().map(Utf8Bytes::from).collect();
        let result = self.inner.hub.apply_subscribed(
            conn,
            &answer.room,
            ClusterAnswer {
                epoch: pending.epoch,
                generation,
                users,
                last_id,
                recovered,
                replay,
                announce: pending.announce,
            },
        );
        if result.is_err() {
            self.spawn_leave(generation, answer.user, vec![answer.room]);
        } else if self.inner.lost.load(Ordering::SeqCst) {
            // Subscribed while the stream may have a gap: what follows is not delivered until the
            // repair ends, and the repair's kick may have come before this socket. It reconnects
            // and recovers like the others.
            self.inner.hub.kick_socket(conn, Kick::Reconnect);
        }
        let _ = pending.reply.send(result);
    }
}

/// A Redis request with wsgate's own bound: while the connection manager reconnects, a request
/// waits for the reconnection; it fails `unavailable` after `REDIS_TIMEOUT` instead.
async fn bounded<T>(
    request: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, ClusterError> {
    match tokio::time::timeout(REDIS_TIMEOUT, request).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(ClusterError::Unavailable(format!(
            "no answer within {REDIS_TIMEOUT:?}"
        ))),
    }
}

/// Whose sockets a kick closes.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// Those authenticated with this token (`jti`).
    Token(&'a str),
    /// Those of this session (`sid`).
    Session(&'a str),
    /// Every socket of this user.
    User(&'a str),
}

impl<'a> From<&'a Revoked> for Target<'a> {
    fn from(what: &'a Revoked) -> Self {
        match what {
            Revoked::Token(jti) => Target::Token(jti),
            Revoked::Session(sid) => Target::Session(sid),
        }
    }
}

fn apply_kick(hub: &Hub, what: &Target<'_>, kick: Kick) -> usize {
    match *what {
        Target::Token(jti) => hub.kick(&Revoked::Token(jti.to_owned()), kick),
        Target::Session(sid) => hub.kick(&Revoked::Session(sid.to_owned()), kick),
        Target::User(user) => hub.kick_user(user, kick),
    }
}

fn split3(text: &str) -> [&str; 3] {
    let mut parts = text.splitn(3, '\x1f');
    [
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    ]
}

fn published(stream: String, id: &str, ts: &str, frame: &FrameTemplate) -> Published {
    Published {
        id: id.to_owned(),
        entry: HistoryEntry {
            stream,
            id: id.parse().unwrap_or(0),
            ts: ts.parse().unwrap_or(0),
            frame: frame.fill(id, ts),
        },
    }
}

/// 16 random hex characters: a process's id in the cluster.
fn random_id() -> String {
    use rand::Rng;
    let bytes: [u8; 8] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot::error::TryRecvError;

    fn waiter() -> (Pending, oneshot::Receiver<Result<Snapshot, SubscribeError>>) {
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            epoch: 0,
            announce: true,
            reply,
        };
        (pending, answer)
    }

    #[test]
    fn the_settings_debug_without_the_url() {
        let config = ClusterConfig {
            url: "redis://:hunter2@redis.internal:6379".into(),
            node_timeout: Duration::from_secs(15),
            recovery_messages: 1000,
            recovery_age: Duration::from_secs(300),
        };
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("redis.internal"),
            "{shown}"
        );
        assert!(shown.contains("node_timeout: 15s"), "{shown}");
    }

    #[test]
    fn closed_waiters_fail_every_wait_at_once_and_refuse_new_ones() {
        let waiters = Waiters::default();
        let (first, mut first_answer) = waiter();
        let (second, _second_answer) = waiter();
        assert!(waiters.add(1, first));
        assert!(waiters.add(2, second));
        let taken = waiters.take(2);
        assert!(taken.is_some(), "a waiter is there until taken");
        assert!(waiters.take(2).is_none(), "and taken once");
        assert!(matches!(first_answer.try_recv(), Err(TryRecvError::Empty)));

        waiters.close();
        assert!(
            matches!(first_answer.try_recv(), Err(TryRecvError::Closed)),
            "the waiting one is told now, not at its timeout"
        );
        drop(taken);
        let (late, mut late_answer) = waiter();
        assert!(!waiters.add(3, late), "nothing would answer it");
        assert!(matches!(late_answer.try_recv(), Err(TryRecvError::Closed)));
        assert!(waiters.take(1).is_none());
    }
}
