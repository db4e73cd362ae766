//! The hub: which socket is subscribed to which room, presence per room, delivery of room
//! messages, direct messages, typing and events, the recovery window of each room, and targeted
//! closes (revocation, reconnect).
//!
//! Delivery: a frame is serialized once into a shared `Utf8Bytes`, and the hub pushes a reference
//! to it into the inbox of every socket subscribed to the room, so a message costs work in
//! proportion to the room's sockets, not to every socket of the node. Each inbox is bounded (the
//! slow-consumer rule, see `inbox`).
//!
//! One short `std::sync::Mutex` guards all of it and is never held across an `.await`. Everything
//! that must be atomic happens in one critical section: an id is assigned and the frame pushed to
//! every subscriber under the lock, so every subscriber of a room sees its messages in one order
//! and ids follow that order; a subscription takes its presence snapshot, queues `subscribed` and
//! the replay of a recovery, and joins the room in one step, so a recovering socket gets no gap and
//! no duplicate, and a new subscriber never sees its own `joined`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::value::RawValue;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::inbox::{Inbox, Kick};
use crate::clock::{now_millis, UnixMillis};
use crate::protocol::ServerFrame;
use crate::store::{direct_stream, room_stream, HistoryEntry, Revoked};

/// The room every socket is subscribed to when it authenticates.
pub const LOBBY: &str = "lobby";

/// A socket's replays of one room (recoveries with frames to replay) are at least this far apart;
/// a `since` sooner than that answers `recovered: false` (the client reads the history): one
/// ~60-byte frame must not buy a thousand frames of egress over and over.
pub const REPLAY_INTERVAL: Duration = Duration::from_secs(5);

/// At most one `typing` per socket and room is relayed in this interval.
pub const TYPING_INTERVAL: Duration = Duration::from_secs(2);

/// Why a socket stopped receiving a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsubscribed {
    /// The socket asked.
    Requested,
    /// Its user was taken off the member list (or left).
    Removed,
    /// The room was deleted.
    Deleted,
}

impl Unsubscribed {
    /// The `reason` of the `unsubscribed` frame.
    pub fn as_str(self) -> &'static str {
        match self {
            Unsubscribed::Requested => "requested",
            Unsubscribed::Removed => "removed",
            Unsubscribed::Deleted => "deleted",
        }
    }
}

/// A subscription the hub refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscribeError {
    /// The socket is in `max_rooms` rooms already.
    TooManyRooms,
    /// Membership changed (someone was removed, a room deleted) since the caller checked access,
    /// or a cluster node's repair replaced the id the request went out under: check again.
    Stale,
    /// The socket is gone.
    Gone,
    /// The cluster could not be reached.
    Unavailable,
}

/// What a socket that left was subscribed to (a cluster node takes it off the cluster's presence).
#[derive(Debug)]
pub struct Left {
    pub user: Arc<str>,
    pub rooms: Vec<Ended>,
}

/// A subscription that ended, for the cluster's presence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    pub room: Arc<str>,
    /// The cluster node's generation it was counted under (see `apply_subscribed`; 0 on a single
    /// node): a later generation's share of the presence does not hold it.
    pub generation: u64,
}

/// What a cluster node needs to ask the cluster for a subscription (see `prepare_subscribe`).
#[derive(Debug)]
pub struct Prepared {
    /// The socket's user.
    pub user: Arc<str>,
    /// The room's last id when the socket subscribed, when it is subscribed already.
    pub already_after: Option<u64>,
    /// Whether a recovery may replay frames (see `REPLAY_INTERVAL`).
    pub replay_allowed: bool,
}

/// The cluster's answer to a subscription (see `Hub::apply_subscribed`).
#[derive(Debug)]
pub struct ClusterAnswer {
    /// The membership epoch the access check was made at (see `Hub::acl_epoch`).
    pub epoch: u64,
    /// The node's generation the script counted the subscription under (see `Ended`).
    pub generation: u64,
    /// The room's presence, sorted.
    pub users: Vec<String>,
    /// The room's last id.
    pub last_id: u64,
    /// The recovery's outcome (`None`: no `since` was given).
    pub recovered: Option<bool>,
    /// The frames to replay, in order.
    pub replay: Vec<Utf8Bytes>,
    /// Whether to queue `subscribed` (a join's `lobby` is answered by `auth_ok` instead).
    pub announce: bool,
}

/// A frame for a room the socket is not subscribed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotSubscribed;

/// Identifies one socket for the life of the process.
pub type ConnId = u64;

/// The hub's bounds.
#[derive(Debug, Clone, Copy)]
pub struct HubConfig {
    /// Frames a socket's inbox may hold before it is a slow consumer.
    pub queue: usize,
    /// Messages per room kept for recovery.
    pub recovery_messages: usize,
    /// How old a message may be and still be recovered from.
    pub recovery_age: Duration,
    /// Rooms a socket may be subscribed to at once (`lobby` included).
    pub max_rooms: usize,
    /// One node of a cluster: presence, ids and recovery come from the cluster engine (`cluster`),
    /// so this hub announces no `joined`/`left` itself and keeps no recovery window.
    pub cluster: bool,
}

/// A message the hub delivered, for the history.
#[derive(Debug, Clone)]
pub struct Published {
    /// Its id.
    pub id: String,
    /// What to store.
    pub entry: HistoryEntry,
}

/// Cheap `Clone` handle to the hub.
#[derive(Clone)]
pub struct Hub {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    config: HubConfig,
    /// The last message id handed out (see `next_id`).
    last_id: AtomicU64,
    next_conn: AtomicU64,
}

#[derive(Default)]
struct State {
    sockets: HashMap<ConnId, Socket>,
    /// Every socket of each user online: direct messages, events to users, kicks.
    users: HashMap<Arc<str>, Vec<ConnId>>,
    /// Rooms with subscribers or a recovery window.
    rooms: HashMap<Arc<str>, Room>,
    /// Bumped by every removal of a member and deletion of a room (see `subscribe`).
    acl_epoch: u64,
}

/// What the hub keeps of one socket: kept small (boxed strings, the rare typing state behind a
/// pointer), since every idle socket carries it.
struct Socket {
    user: Arc<str>,
    /// The `jti` and session `sid` of the token the socket is authenticated with (change on refresh).
    jti: Box<str>,
    sid: Box<str>,
    /// Its frames, and its kick.
    inbox: Arc<Inbox>,
    rooms: Vec<Subscription>,
    /// When it last typed in and recovered each room (`None` until it does either).
    rare: Option<Box<Rare>>,
}

/// What most sockets never use, behind one pointer.
#[derive(Default)]
struct Rare {
    /// When each room last relayed this socket's `typing`.
    typing: Vec<(Arc<str>, Instant)>,
    /// When this socket last had a replay of each room (kept across unsubscribing).
    replays: Vec<(Arc<str>, Instant)>,
}

struct Subscription {
    room: Arc<str>,
    /// The room's last message id when the socket subscribed: everything after it was delivered.
    after: u64,
    /// See `Ended::generation`.
    generation: u64,
}

impl Subscription {
    fn ended(&self) -> Ended {
        Ended {
            room: self.room.clone(),
            generation: self.generation,
        }
    }
}

#[derive(Default)]
struct Room {
    subscribers: HashMap<ConnId, Arc<Inbox>>,
    /// Users subscribed and how many of their sockets; sorted, for snapshots.
    presence: BTreeMap<Arc<str>, usize>,
    /// The last message id of the room (0: none in this process).
    last_id: u64,
    /// The newest messages, oldest first, for recovery.
    window: VecDeque<Recent>,
}

struct Recent {
    id: u64,
    ts: UnixMillis,
    frame: Utf8Bytes,
}

/// What a socket gets when it authenticates.
pub struct Joined {
    /// Presence of `lobby`, the joiner included, sorted and unique.
    pub users: Vec<String>,
    /// Whether `lobby` was recovered from the given `since` (`None` without one).
    pub recovered: Option<bool>,
    /// The socket's queue, which also carries the hub's kick.
    pub inbox: Arc<Inbox>,
}

/// A message id as the wire carries it.
pub fn format_id(id: u64) -> String {
    id.to_string()
}

/// Parses a wire message id.
pub fn parse_id(text: &str) -> Option<u64> {
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

impl Room {
    fn deliver(&self, frame: &Utf8Bytes, queue: usize, skip: impl Fn(ConnId) -> bool) {
        for (conn, inbox) in &self.subscribers {
            if !skip(*conn) {
                inbox.push(frame.clone(), queue);
            }
        }
    }

    /// Drops window entries older than the recovery age.
    fn prune(&mut self, now: UnixMillis, age: Duration) {
        let oldest = now - age.as_millis() as i64;
        while self.window.front().is_some_and(|r| r.ts < oldest) {
            self.window.pop_front();
        }
    }

    /// The window position just after `since`, when `since` itself is in the window.
    fn after(&self, since: u64) -> Option<usize> {
        let at = self.window.partition_point(|r| r.id < since);
        self.window
            .get(at)
            .is_some_and(|r| r.id == since)
            .then_some(at + 1)
    }

    fn users(&self) -> Vec<String> {
        self.presence.keys().map(|u| u.to_string()).collect()
    }

    fn is_idle(&self) -> bool {
        self.subscribers.is_empty() && self.window.is_empty()
    }
}

impl Hub {
    /// An empty hub.
    pub fn new(config: HubConfig) -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                config: HubConfig {
                    queue: config.queue.max(1),
                    recovery_messages: if config.cluster {
                        0
                    } else {
                        config.recovery_messages
                    },
                    recovery_age: config.recovery_age,
                    max_rooms: config.max_rooms.max(1),
                    cluster: config.cluster,
                },
                last_id: AtomicU64::new(0),
                next_conn: AtomicU64::new(1),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A fresh connection id.
    pub fn next_conn_id(&self) -> ConnId {
        self.shared.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// A message id and its timestamp. Ids are the server's clock in milliseconds shifted left by
    /// ten bits, bumped past the last id: increasing within the process, and (clock permitting)
    /// past every id an earlier run of the server handed out, so `before` paging stays in order
    /// across restarts. Callers take it under the hub lock, which orders it within a room.
    fn next_id(&self) -> (u64, UnixMillis) {
        let ts = now_millis();
        let floor = (ts.max(0) as u64) << 10;
        let previous = self
            .shared
            .last_id
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
                Some(last.saturating_add(1).max(floor))
            })
            .unwrap_or_else(|last| last);
        (previous.saturating_add(1).max(floor), ts)
    }

    /// Adds an authenticated socket and subscribes it to `lobby`, recovering from `since` when
    /// given.
    pub fn join(
        &self,
        conn: ConnId,
        user: &str,
        jti: String,
        sid: String,
        since: Option<&str>,
    ) -> Joined {
        let mut state = self.state();
        let inbox = add_socket_locked(&mut state, conn, user, jti, sid);
        let (users, recovered) = self.subscribe_locked(&mut state, conn, LOBBY, since, false);
        Joined {
            users,
            recovered,
            inbox,
        }
    }

    /// Adds an authenticated socket in no room (a cluster node subscribes it to `lobby` once the
    /// cluster answered, see `apply_subscribed`).
    pub fn add_socket(&self, conn: ConnId, user: &str, jti: String, sid: String) -> Arc<Inbox> {
        add_socket_locked(&mut self.state(), conn, user, jti, sid)
    }

    /// Removes a socket from every room it is in; announces `left` where it was its user's last
    /// socket. Unknown ids are ignored.
    pub fn leave(&self, conn: ConnId) -> Option<Left> {
        let mut state = self.state();
        let socket = state.sockets.remove(&conn)?;
        let config = self.shared.config;
        for subscription in &socket.rooms {
            leave_room(&mut state, conn, &socket.user, &subscription.room, &config);
        }
        if let Some(conns) = state.users.get_mut(&socket.user) {
            conns.retain(|c| *c != conn);
            if conns.is_empty() {
                state.users.remove(&socket.user);
            }
        }
        Some(Left {
            rooms: socket.rooms.iter().map(Subscription::ended).collect(),
            user: socket.user,
        })
    }

    /// The membership epoch: read it before checking a socket's access to a room, and hand it to
    /// `subscribe`, which refuses (`Stale`) when a removal or deletion happened in between, so a
    /// check that raced a removal cannot subscribe a socket that just lost access.
    pub fn acl_epoch(&self) -> u64 {
        self.state().acl_epoch
    }

    /// Subscribes a socket to a room it may read (the caller checked, at `epoch`), queueing
    /// `subscribed` and, with `since`, the replay. Subscribing twice answers `subscribed` again.
    pub fn subscribe(
        &self,
        conn: ConnId,
        room: &str,
        since: Option<&str>,
        epoch: u64,
    ) -> Result<(), SubscribeError> {
        let mut state = self.state();
        if state.acl_epoch != epoch {
            return Err(SubscribeError::Stale);
        }
        let Some(socket) = state.sockets.get(&conn) else {
            return Err(SubscribeError::Gone);
        };
        let subscribed = socket.rooms.iter().any(|s| &*s.room == room);
        if !subscribed && socket.rooms.len() >= self.shared.config.max_rooms {
            return Err(SubscribeError::TooManyRooms);
        }
        self.subscribe_locked(&mut state, conn, room, since, true);
        Ok(())
    }

    /// The subscription itself: `subscribed` (queued when `announce`, else returned for
    /// `auth_ok`), the replay, presence. Returns the presence snapshot and the recovery outcome.
    fn subscribe_locked(
        &self,
        state: &mut State,
        conn: ConnId,
        room_id: &str,
        since: Option<&str>,
        announce: bool,
    ) -> (Vec<String>, Option<bool>) {
        let config = self.shared.config;
        let now = now_millis();
        let state = &mut *state;
        let socket = state.sockets.get_mut(&conn).expect("caller checked");
        let room_key: Arc<str> = match state.rooms.get_key_value(room_id) {
            Some((key, _)) => key.clone(),
            None => Arc::from(room_id),
        };
        let room = state.rooms.entry(room_key.clone()).or_default();
        room.prune(now, config.recovery_age);
        let since = since.map(|s| parse_id(s).and_then(|id| room.after(id).map(|at| (id, at))));
        if let Some(existing) = socket.rooms.iter().find(|s| s.room == room_key) {
            // Already subscribed: everything after its subscription point was delivered live, so
            // `since` is recovered exactly when nothing between it and that point is missing.
            let recovered = since.map(|found| found.is_some_and(|(id, _)| id >= existing.after));
            let users = room.users();
            if announce {
                let frame = subscribed_frame(room_id, &users, recovered);
                socket.inbox.push(frame, config.queue);
            }
            return (users, recovered);
        }
        // A replay within `REPLAY_INTERVAL` of this socket's last one of this room is refused.
        let since = match since {
            Some(Some((id, at))) if at < room.window.len() => {
                let now = Instant::now();
                let replays = &mut socket.rare.get_or_insert_with(Box::default).replays;
                replays.retain(|(_, last)| now.duration_since(*last) < REPLAY_INTERVAL);
                if replays.iter().any(|(r, _)| **r == *room_id) {
                    Some(None)
                } else {
                    replays.push((room_key.clone(), now));
                    Some(Some((id, at)))
                }
            }
            other => other,
        };
        let user = socket.user.clone();
        let first = !room.presence.contains_key(&user);
        if first && !config.cluster {
            let joined = ServerFrame::Joined {
                room: room_id,
                user: &user,
            };
            room.deliver(&joined.to_json().into(), config.queue, |_| false);
        }
        *room.presence.entry(user).or_insert(0) += 1;
        let users = room.users();
        let recovered = since.map(|found| found.is_some());
        if announce {
            // With the replay that follows: neither counts toward the socket's bound.
            socket
                .inbox
                .push_unbounded(subscribed_frame(room_id, &users, recovered));
        }
        if let Some(Some((_, at))) = since {
            for recent in room.window.range(at..) {
                socket.inbox.push_unbounded(recent.frame.clone());
            }
        }
        room.subscribers.insert(conn, socket.inbox.clone());
        socket.rooms.push(Subscription {
            room: room_key,
            after: room.last_id,
            generation: 0,
        });
        (users, recovered)
    }

    /// Unsubscribes a socket from a room (or confirms it is not in it): `unsubscribed`, reason
    /// `requested`.
    /// Returns the socket's user and its subscription when it was subscribed (a cluster node
    /// updates the presence).
    pub fn unsubscribe(&self, conn: ConnId, room: &str) -> Option<(Arc<str>, Ended)> {
        let mut state = self.state();
        self.unsubscribe_locked(&mut state, conn, room, Unsubscribed::Requested)
    }

    fn unsubscribe_locked(
        &self,
        state: &mut State,
        conn: ConnId,
        room: &str,
        reason: Unsubscribed,
    ) -> Option<(Arc<str>, Ended)> {
        let queue = self.shared.config.queue;
        let socket = state.sockets.get_mut(&conn)?;
        let user = socket.user.clone();
        let inbox = socket.inbox.clone();
        let ended = match socket.rooms.iter().position(|s| &*s.room == room) {
            Some(at) => {
                let ended = socket.rooms.swap_remove(at).ended();
                if let Some(rare) = &mut socket.rare {
                    rare.typing.retain(|(r, _)| &**r != room);
                }
                Some(ended)
            }
            None => None,
        };
        if ended.is_some() {
            leave_room(state, conn, &user, room, &self.shared.config);
        }
        let frame = ServerFrame::Unsubscribed {
            room,
            reason: reason.as_str(),
        };
        inbox.push(frame.to_json().into(), queue);
        ended.map(|ended| (user, ended))
    }

    /// Whether the socket is subscribed to the room.
    pub fn is_subscribed(&self, conn: ConnId, room: &str) -> bool {
        self.state()
            .sockets
            .get(&conn)
            .is_some_and(|s| s.rooms.iter().any(|r| &*r.room == room))
    }

    /// A chat message from socket `conn` to a room it is subscribed to: an id, delivery to every
    /// subscriber (the sender's sockets included), the recovery window.
    pub fn publish(
        &self,
        conn: ConnId,
        room: &str,
        text: &str,
    ) -> Result<Published, NotSubscribed> {
        let mut state = self.state();
        let socket = state.sockets.get(&conn).ok_or(NotSubscribed)?;
        if !socket.rooms.iter().any(|r| &*r.room == room) {
            return Err(NotSubscribed);
        }
        let from = socket.user.clone();
        Ok(self.publish_locked(&mut state, room, |id, ts| {
            ServerFrame::Message {
                room,
                id,
                from: &from,
                text,
                ts,
            }
            .to_json()
        }))
    }

    /// An event from the application's backend to a room (which the caller checked exists).
    pub fn publish_event(&self, room: &str, data: &RawValue) -> Published {
        let mut state = self.state();
        self.publish_locked(&mut state, room, |id, ts| {
            ServerFrame::Event {
                room: Some(room),
                to: None,
                id: Some(id),
                data,
                ts,
            }
            .to_json()
        })
    }

    /// Assigns the next id, serializes the frame with it (`frame(id, ts)`), delivers it to the
    /// room and keeps it in the room's window.
    fn publish_locked(
        &self,
        state: &mut State,
        room_id: &str,
        frame: impl FnOnce(&str, i64) -> String,
    ) -> Published {
        let config = self.shared.config;
        let (id, ts) = self.next_id();
        let id_text = format_id(id);
        let json = frame(&id_text, ts);
        let bytes = Utf8Bytes::from(json.clone());
        let room = match state.rooms.get_mut(room_id) {
            Some(room) => room,
            None => state.rooms.entry(Arc::from(room_id)).or_default(),
        };
        room.last_id = id;
        room.deliver(&bytes, config.queue, |_| false);
        if config.recovery_messages > 0 {
            room.window.push_back(Recent {
                id,
                ts,
                frame: bytes,
            });
            while room.window.len() > config.recovery_messages {
                room.window.pop_front();
            }
        }
        Published {
            id: id_text,
            entry: HistoryEntry {
                stream: room_stream(room_id),
                id,
                ts,
                frame: json,
            },
        }
    }

    /// Relays `typing` from socket `conn` to the other users' sockets subscribed to the room, at
    /// most once per `TYPING_INTERVAL` per socket and room (extra ones are dropped silently).
    pub fn typing(&self, conn: ConnId, room: &str, now: Instant) -> Result<(), NotSubscribed> {
        if let Some(user) = self.typing_gate(conn, room, now)? {
            let frame = ServerFrame::Typing { room, user: &user }.to_json().into();
            self.deliver_about(room, &user, &frame);
        }
        Ok(())
    }

    /// The typing throttle: the user to relay for, or `None` when this one is dropped.
    pub fn typing_gate(
        &self,
        conn: ConnId,
        room: &str,
        now: Instant,
    ) -> Result<Option<Arc<str>>, NotSubscribed> {
        let mut state = self.state();
        let state = &mut *state;
        let socket = state.sockets.get_mut(&conn).ok_or(NotSubscribed)?;
        let Some(subscription) = socket.rooms.iter().find(|r| &*r.room == room) else {
            return Err(NotSubscribed);
        };
        let typing = &mut socket.rare.get_or_insert_with(Box::default).typing;
        match typing.iter_mut().find(|(r, _)| &**r == room) {
            Some((_, last)) if now.duration_since(*last) < TYPING_INTERVAL => return Ok(None),
            Some((_, last)) => *last = now,
            None => typing.push((subscription.room.clone(), now)),
        }
        Ok(Some(socket.user.clone()))
    }

    /// The user of socket `conn` when it is subscribed to the room (it may publish there).
    pub fn sender(&self, conn: ConnId, room: &str) -> Result<Arc<str>, NotSubscribed> {
        let state = self.state();
        let socket = state.sockets.get(&conn).ok_or(NotSubscribed)?;
        if socket.rooms.iter().any(|r| &*r.room == room) {
            Ok(socket.user.clone())
        } else {
            Err(NotSubscribed)
        }
    }

    /// A direct message from `from` to `to` (both the registered forms of the names): to every
    /// socket of `to` and of `from`, once each.
    pub fn direct(&self, from: &str, to: &str, text: &str) -> Published {
        let queue = self.shared.config.queue;
        let state = self.state();
        let (id, ts) = self.next_id();
        let id_text = format_id(id);
        let json = ServerFrame::Direct {
            id: &id_text,
            from,
            to,
            text,
            ts,
        }
        .to_json();
        let bytes = Utf8Bytes::from(json.clone());
        let mut users = vec![from];
        if !to.eq_ignore_ascii_case(from) {
            users.push(to);
        }
        for user in users {
            for socket in user_sockets(&state, user) {
                socket.inbox.push(bytes.clone(), queue);
            }
        }
        Published {
            id: id_text,
            entry: HistoryEntry {
                stream: direct_stream(from, to),
                id,
                ts,
                frame: json,
            },
        }
    }

    /// An event from the application's backend to every socket of `user`; how many.
    pub fn send_to_user(&self, user: &str, data: &RawValue) -> usize {
        let queue = self.shared.config.queue;
        let state = self.state();
        let frame: Utf8Bytes = ServerFrame::Event {
            room: None,
            to: Some(user),
            id: None,
            data,
            ts: now_millis(),
        }
        .to_json()
        .into();
        let mut sent = 0;
        for socket in user_sockets(&state, user) {
            sent += usize::from(socket.inbox.push(frame.clone(), queue));
        }
        sent
    }

    /// Takes `user` out of a room at once (they were removed from its member list, or left):
    /// their subscribed sockets get `unsubscribed` (reason `removed`), the others `left`.
    /// Returns the subscriptions it ended, one per socket of the user's that was subscribed.
    pub fn remove_member(&self, room: &str, user: &str) -> Vec<Ended> {
        let mut state = self.state();
        state.acl_epoch += 1;
        let conns: Vec<ConnId> = state.users.get(user).cloned().unwrap_or_default();
        let mut ended = Vec::new();
        for conn in conns {
            // Only its subscribed sockets hear of it (`unsubscribe_locked` confirms to any).
            let subscribed = state
                .sockets
                .get(&conn)
                .is_some_and(|s| s.rooms.iter().any(|r| &*r.room == room));
            if subscribed {
                ended.extend(
                    self.unsubscribe_locked(&mut state, conn, room, Unsubscribed::Removed)
                        .map(|(_, e)| e),
                );
            }
        }
        ended
    }

    /// Ends a deleted room: every subscriber gets `unsubscribed` (reason `deleted`), its window
    /// goes.
    /// Returns every subscription it ended, with its socket's user.
    pub fn delete_room(&self, room: &str) -> Vec<(Arc<str>, Ended)> {
        let queue = self.shared.config.queue;
        let mut state = self.state();
        state.acl_epoch += 1;
        let Some(gone) = state.rooms.remove(room) else {
            return Vec::new();
        };
        let mut ended = Vec::with_capacity(gone.subscribers.len());
        let frame: Utf8Bytes = ServerFrame::Unsubscribed {
            room,
            reason: Unsubscribed::Deleted.as_str(),
        }
        .to_json()
        .into();
        for (conn, inbox) in gone.subscribers {
            if let Some(socket) = state.sockets.get_mut(&conn) {
                if let Some(at) = socket.rooms.iter().position(|s| &*s.room == room) {
                    ended.push((socket.user.clone(), socket.rooms.swap_remove(at).ended()));
                }
                if let Some(rare) = &mut socket.rare {
                    rare.typing.retain(|(r, _)| &**r != room);
                }
            }
            inbox.push(frame.clone(), queue);
        }
        ended
    }

    /// The users subscribed to a room, sorted.
    pub fn presence(&self, room: &str) -> Vec<String> {
        self.state()
            .rooms
            .get(room)
            .map(Room::users)
            .unwrap_or_default()
    }

    /// Records that socket `conn` now uses the token `jti` of session `sid` (after an in-band refresh).
    pub fn set_token(&self, conn: ConnId, jti: String, sid: String) {
        if let Some(socket) = self.state().sockets.get_mut(&conn) {
            socket.jti = jti.into();
            socket.sid = sid.into();
        }
    }

    /// Closes every socket authenticated with the revoked token or session; returns how many.
    pub fn kick(&self, what: &Revoked, kick: Kick) -> usize {
        let mut state = self.state();
        let matching = state.sockets.values_mut().filter(|s| match what {
            Revoked::Token(jti) => *s.jti == **jti,
            Revoked::Session(sid) => *s.sid == **sid,
        });
        kick_all(matching, kick)
    }

    /// Closes every socket of `user`; returns how many.
    pub fn kick_user(&self, user: &str, kick: Kick) -> usize {
        let mut state = self.state();
        let conns = state.users.get(user).cloned().unwrap_or_default();
        let matching = state
            .sockets
            .iter_mut()
            .filter(|(conn, _)| conns.contains(conn))
            .map(|(_, s)| s);
        kick_all(matching, kick)
    }

    /// Drops recovery windows past their age, and rooms nobody is in whose window is empty:
    /// the hub's memory stays bounded by live subscriptions and recent messages.
    pub fn prune(&self) {
        let age = self.shared.config.recovery_age;
        let now = now_millis();
        let mut state = self.state();
        state.rooms.retain(|_, room| {
            room.prune(now, age);
            !room.is_idle()
        });
    }

    /// Whether `user` (exactly this form of the name) has a socket here: such a name is a
    /// registered one, so a direct message to it needs no store lookup.
    pub fn is_online(&self, user: &str) -> bool {
        self.state().users.contains_key(user)
    }

    /// Authenticated sockets right now.
    pub fn socket_count(&self) -> usize {
        self.state().sockets.len()
    }

    /// Users online right now.
    pub fn user_count(&self) -> usize {
        self.state().users.len()
    }

    /// Rooms with subscribers or a recovery window right now.
    pub fn room_count(&self) -> usize {
        self.state().rooms.len()
    }
}

/// What a cluster node applies: the cluster engine (`cluster`) assigns ids, keeps presence and
/// recovery in Redis, and hands each node what it delivered, in one order for every node; the
/// hub only delivers it to this node's sockets.
impl Hub {
    /// Checks what a subscription needs before the cluster is asked: the socket, the room limit,
    /// and (for a recovery) whether a replay is allowed now.
    pub fn prepare_subscribe(&self, conn: ConnId, room: &str) -> Result<Prepared, SubscribeError> {
        let state = self.state();
        let socket = state.sockets.get(&conn).ok_or(SubscribeError::Gone)?;
        // A socket that is closing is not subscribed anew (see `apply_subscribed`).
        if socket.inbox.is_kicked() {
            return Err(SubscribeError::Gone);
        }
        let already_after = socket
            .rooms
            .iter()
            .find(|s| &*s.room == room)
            .map(|s| s.after);
        if already_after.is_none() && socket.rooms.len() >= self.shared.config.max_rooms {
            return Err(SubscribeError::TooManyRooms);
        }
        let now = Instant::now();
        let replay_allowed = socket.rare.as_ref().is_none_or(|rare| {
            !rare
                .replays
                .iter()
                .any(|(r, last)| &**r == room && now.duration_since(*last) < REPLAY_INTERVAL)
        });
        Ok(Prepared {
            user: socket.user.clone(),
            already_after,
            replay_allowed,
        })
    }

    /// Subscribes a socket as the cluster answered. Queued (when `announce`): `subscribed`, then
    /// the replay; everything the cluster delivers after this goes to it live.
    /// Refused (`Stale`) when a removal or deletion was applied since `epoch`, `Gone` when the
    /// socket closed or was kicked meanwhile: the caller takes the subscription off the cluster's
    /// presence.
    pub fn apply_subscribed(
        &self,
        conn: ConnId,
        room_id: &str,
        answer: ClusterAnswer,
    ) -> Result<(Vec<String>, Option<bool>), SubscribeError> {
        let ClusterAnswer {
            epoch,
            generation,
            users,
            last_id,
            recovered,
            replay,
            announce,
        } = answer;
        let mut state = self.state();
        // Nobody is ever removed from `lobby` nor can it be deleted: its joins never go stale.
        if room_id != LOBBY && state.acl_epoch != epoch {
            return Err(SubscribeError::Stale);
        }
        let state = &mut *state;
        let socket = state.sockets.get_mut(&conn).ok_or(SubscribeError::Gone)?;
        if socket.inbox.is_kicked() {
            // It is closing (a repair asked every socket to reconnect, say): a subscription now
            // would only announce a `joined` and, at once, its `left`.
            return Err(SubscribeError::Gone);
        }
        if socket.rooms.iter().any(|s| &*s.room == room_id) {
            // Subscribed twice: the cluster counted it once more; the caller takes one off.
            return Err(SubscribeError::Gone);
        }
        let room_key: Arc<str> = match state.rooms.get_key_value(room_id) {
            Some((key, _)) => key.clone(),
            None => Arc::from(room_id),
        };
        let room = state.rooms.entry(room_key.clone()).or_default();
        if !replay.is_empty() {
            let replays = &mut socket.rare.get_or_insert_with(Box::default).replays;
            let now = Instant::now();
            replays.retain(|(_, last)| now.duration_since(*last) < REPLAY_INTERVAL);
            replays.push((room_key.clone(), now));
        }
        if announce {
            socket
                .inbox
                .push_unbounded(subscribed_frame(room_id, &users, recovered));
        }
        for frame in replay {
            socket.inbox.push_unbounded(frame);
        }
        *room.presence.entry(socket.user.clone()).or_insert(0) += 1;
        room.last_id = room.last_id.max(last_id);
        room.subscribers.insert(conn, socket.inbox.clone());
        socket.rooms.push(Subscription {
            room: room_key,
            after: room.last_id,
            generation,
        });
        Ok((users, recovered))
    }

    /// Queues `subscribed` for a socket that was subscribed already (the cluster told whether
    /// `since` is still in the room's window: `since_found`).
    pub fn resubscribed(
        &self,
        conn: ConnId,
        room: &str,
        users: &[String],
        since: Option<(u64, bool)>,
    ) {
        let queue = self.shared.config.queue;
        let state = self.state();
        let Some(socket) = state.sockets.get(&conn) else {
            return;
        };
        let Some(existing) = socket.rooms.iter().find(|s| &*s.room == room) else {
            return;
        };
        let recovered = since.map(|(id, found)| found && id >= existing.after);
        socket
            .inbox
            .push(subscribed_frame(room, users, recovered), queue);
    }

    /// A room's message or event, as the cluster ordered it: to every subscriber here.
    pub fn deliver_room(&self, room_id: &str, id: u64, frame: &Utf8Bytes) {
        let queue = self.shared.config.queue;
        let mut state = self.state();
        if let Some(room) = state.rooms.get_mut(room_id) {
            room.last_id = room.last_id.max(id);
            room.deliver(frame, queue, |_| false);
        }
    }

    /// A frame about `user` in a room (`joined`, `left`, `typing`): to every subscriber here that
    /// is not one of the user's own sockets.
    pub fn deliver_about(&self, room_id: &str, user: &str, frame: &Utf8Bytes) {
        let queue = self.shared.config.queue;
        let state = self.state();
        if let Some(room) = state.rooms.get(room_id) {
            let sockets = &state.sockets;
            room.deliver(frame, queue, |c| {
                sockets.get(&c).is_some_and(|s| &*s.user == user)
            });
        }
    }

    /// A frame for every socket here of each of `users` (a user named twice gets it once).
    pub fn deliver_users(&self, users: &[&str], frame: &Utf8Bytes) -> usize {
        let queue = self.shared.config.queue;
        let state = self.state();
        let mut sent = 0;
        for (at, user) in users.iter().enumerate() {
            if users[..at].iter().any(|u| u.eq_ignore_ascii_case(user)) {
                continue;
            }
            for socket in user_sockets(&state, user) {
                sent += usize::from(socket.inbox.push(frame.clone(), queue));
            }
        }
        sent
    }

    /// Asks one socket to close (see `Inbox::kick`); false when it is gone or was kicked already.
    pub fn kick_socket(&self, conn: ConnId, kick: Kick) -> bool {
        let state = self.state();
        state
            .sockets
            .get(&conn)
            .is_some_and(|socket| socket.inbox.kick(kick))
    }

    /// Closes every socket here (the node lost the cluster's stream of events); how many.
    pub fn kick_all(&self, kick: Kick) -> usize {
        let mut state = self.state();
        kick_all(state.sockets.values_mut(), kick)
    }

    /// Tells every socket here that the server is stopping (each closes 1001, unless it was
    /// already kicked or overflowed: that reason stands).
    pub fn shut_down(&self) {
        for socket in self.state().sockets.values() {
            socket.inbox.shut_down();
        }
    }
}

/// Adds a socket, in no room yet, and returns its inbox.
fn add_socket_locked(
    state: &mut State,
    conn: ConnId,
    user: &str,
    jti: String,
    sid: String,
) -> Arc<Inbox> {
    let inbox = Arc::new(Inbox::default());
    let user: Arc<str> = match state.users.get_key_value(user) {
        Some((existing, _)) => existing.clone(),
        None => Arc::from(user),
    };
    state.users.entry(user.clone()).or_default().push(conn);
    state.sockets.insert(
        conn,
        Socket {
            user,
            jti: jti.into(),
            sid: sid.into(),
            inbox: inbox.clone(),
            rooms: Vec::with_capacity(1),
            rare: None,
        },
    );
    inbox
}

/// The `subscribed` frame.
fn subscribed_frame(room: &str, users: &[String], recovered: Option<bool>) -> Utf8Bytes {
    ServerFrame::Subscribed {
        room,
        users: users.to_vec(),
        recovered,
    }
    .to_json()
    .into()
}

/// Every socket of a user (the registered form of the name).
fn user_sockets<'s>(state: &'s State, user: &str) -> impl Iterator<Item = &'s Socket> {
    state
        .users
        .get(user)
        .into_iter()
        .flatten()
        .filter_map(|conn| state.sockets.get(conn))
}

fn kick_all<'s>(sockets: impl Iterator<Item = &'s mut Socket>, kick: Kick) -> usize {
    sockets
        .map(|socket| usize::from(socket.inbox.kick(kick)))
        .sum()
}

/// Takes socket `conn` of `user` out of a room's subscribers and presence (`left` when it was the
/// user's last socket there), dropping the room when nothing is left of it.
fn leave_room(state: &mut State, conn: ConnId, user: &Arc<str>, room_id: &str, config: &HubConfig) {
    let queue = config.queue;
    let Some(room) = state.rooms.get_mut(room_id) else {
        return;
    };
    room.subscribers.remove(&conn);
    let last = match room.presence.get_mut(user) {
        Some(count) if *count > 1 => {
            *count -= 1;
            false
        }
        Some(_) => true,
        None => false,
    };
    if last {
        room.presence.remove(user);
    }
    // A cluster's `left` comes from the cluster's presence (see `cluster`).
    if last && !config.cluster {
        let left = ServerFrame::Left {
            room: room_id,
            user,
        };
        room.deliver(&left.to_json().into(), queue, |_| false);
    }
    if room.is_idle() {
        state.rooms.remove(room_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::realtime::inbox::Closing;

    fn hub() -> Hub {
        Hub::new(HubConfig {
            queue: 64,
            recovery_messages: 5,
            recovery_age: Duration::from_secs(300),
            max_rooms: 3,
            cluster: false,
        })
    }

    fn frames(inbox: &Inbox) -> Vec<serde_json::Value> {
        inbox
            .take()
            .unwrap()
            .iter()
            .map(|m| serde_json::from_str(m.as_str()).unwrap())
            .collect()
    }

    fn types(inbox: &Inbox) -> Vec<String> {
        frames(inbox)
            .iter()
            .map(|f| f["type"].as_str().unwrap().to_owned())
            .collect()
    }

    fn join(hub: &Hub, conn: ConnId, user: &str) -> Joined {
        hub.join(conn, user, format!("j{conn}"), format!("s{conn}"), None)
    }

    #[test]
    fn lobby_presence_deltas_and_snapshots() {
        let hub = hub();
        let a = join(&hub, 1, "alice");
        assert_eq!(a.users, vec!["alice"]);
        assert!(a.inbox.is_empty(), "no own joined");

        let b = join(&hub, 2, "bob");
        assert_eq!(b.users, vec!["alice", "bob"]);
        let joined = frames(&a.inbox);
        assert_eq!(joined[0]["type"], "joined");
        assert_eq!(joined[0]["room"], "lobby");

        let _b2 = join(&hub, 3, "bob");
        assert!(a.inbox.is_empty(), "second socket is silent");
        hub.leave(3);
        assert!(a.inbox.is_empty(), "bob still has a socket");
        hub.leave(2);
        let left = frames(&a.inbox);
        assert_eq!(
            (left[0]["type"].as_str(), left[0]["user"].as_str()),
            (Some("left"), Some("bob"))
        );
        assert_eq!(hub.user_count(), 1);
        hub.leave(2); // idempotent
    }

    #[test]
    fn a_room_reaches_its_subscribers_only_in_one_order() {
        let hub = hub();
        let a = join(&hub, 1, "alice");
        let b = join(&hub, 2, "bob");
        let c = join(&hub, 3, "carol");
        let epoch = hub.acl_epoch();
        hub.subscribe(1, "den", None, epoch).unwrap();
        hub.subscribe(2, "den", None, epoch).unwrap();
        for inbox in [&a.inbox, &b.inbox, &c.inbox] {
            inbox.take().unwrap();
        }
        for i in 0..5 {
            hub.publish(if i % 2 == 0 { 1 } else { 2 }, "den", &i.to_string())
                .unwrap();
        }
        let seen_a = frames(&a.inbox);
        let seen_b = frames(&b.inbox);
        assert_eq!(seen_a, seen_b);
        assert_eq!(seen_a.len(), 5);
        let ids: Vec<u64> = seen_a
            .iter()
            .map(|f| parse_id(f["id"].as_str().unwrap()).unwrap())
            .collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        assert!(c.inbox.is_empty(), "carol is not in den");
        assert_eq!(hub.publish(3, "den", "x").unwrap_err(), NotSubscribed);
    }

    #[test]
    fn recovery_replays_exactly_what_followed_since() {
        let hub = hub();
        let a = join(&hub, 1, "alice");
        let ids: Vec<String> = (0..4)
            .map(|i| hub.publish(1, LOBBY, &i.to_string()).unwrap().id)
            .collect();
        a.inbox.take().unwrap();
        let b = hub.join(2, "bob", "j".into(), "s".into(), Some(&ids[1]));
        assert_eq!(b.recovered, Some(true));
        let texts: Vec<_> = frames(&b.inbox)
            .iter()
            .map(|f| f["text"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(texts, ["2", "3"]);

        // Five kept: once five more came after it, `since` is gone.
        for i in 4..9 {
            hub.publish(1, LOBBY, &i.to_string()).unwrap();
        }
        let c = hub.join(3, "carol", "j".into(), "s".into(), Some(&ids[3]));
        assert_eq!(c.recovered, Some(false));
        assert!(c.inbox.is_empty(), "nothing replayed");
        let d = hub.join(4, "dave", "j".into(), "s".into(), Some("nonsense"));
        assert_eq!(d.recovered, Some(false));
    }

    #[test]
    fn a_socket_replays_a_room_at_most_once_per_interval() {
        let hub = hub();
        let _a = join(&hub, 1, "alice");
        let b = join(&hub, 2, "bob");
        let epoch = hub.acl_epoch();
        hub.subscribe(1, "den", None, epoch).unwrap();
        let first = hub.publish(1, "den", "one").unwrap().id;
        hub.publish(1, "den", "two").unwrap();
        b.inbox.take().unwrap();
        let recovered = |inbox: &Inbox| {
            frames(inbox)
                .iter()
                .find(|f| f["type"] == "subscribed")
                .map(|f| f["recovered"].clone())
        };
        hub.subscribe(2, "den", Some(&first), epoch).unwrap();
        assert_eq!(recovered(&b.inbox), Some(serde_json::json!(true)));
        hub.unsubscribe(2, "den");
        b.inbox.take().unwrap();
        hub.subscribe(2, "den", Some(&first), epoch).unwrap();
        assert_eq!(
            recovered(&b.inbox),
            Some(serde_json::json!(false)),
            "a second replay of the room within the interval"
        );
    }

    #[test]
    fn removal_and_deletion_take_effect_at_once() {
        let hub = hub();
        let a = join(&hub, 1, "alice");
        let b = join(&hub, 2, "bob");
        let epoch = hub.acl_epoch();
        hub.subscribe(1, "den", None, epoch).unwrap();
        hub.subscribe(2, "den", None, epoch).unwrap();
        a.inbox.take().unwrap();
        b.inbox.take().unwrap();
        hub.remove_member("den", "bob");
        assert_eq!(types(&b.inbox), ["unsubscribed"]);
        assert_eq!(types(&a.inbox), ["left"]);
        hub.publish(1, "den", "after").unwrap();
        assert!(b.inbox.is_empty());
        assert_eq!(
            hub.subscribe(2, "den", None, epoch),
            Err(SubscribeError::Stale),
            "a check made before the removal no longer counts"
        );
        a.inbox.take().unwrap();
        hub.delete_room("den");
        let gone = frames(&a.inbox);
        assert_eq!(gone[0]["reason"], "deleted");
        assert!(!hub.is_subscribed(1, "den"));
    }

    #[test]
    fn typing_goes_to_other_users_at_most_every_two_seconds() {
        let hub = hub();
        let a = join(&hub, 1, "alice");
        let a2 = join(&hub, 2, "alice");
        let b = join(&hub, 3, "bob");
        for inbox in [&a.inbox, &a2.inbox, &b.inbox] {
            inbox.take().unwrap();
        }
        let now = Instant::now();
        hub.typing(1, LOBBY, now).unwrap();
        hub.typing(1, LOBBY, now + Duration::from_millis(500))
            .unwrap();
        hub.typing(2, LOBBY, now).unwrap();
        assert_eq!(types(&b.inbox), ["typing", "typing"]);
        assert!(
            a.inbox.is_empty() && a2.inbox.is_empty(),
            "not to the typist's own sockets"
        );
        hub.typing(1, LOBBY, now + TYPING_INTERVAL).unwrap();
        assert_eq!(types(&b.inbox), ["typing"]);
        assert_eq!(hub.typing(1, "den", now), Err(NotSubscribed));
    }

    #[test]
    fn direct_reaches_both_users_once() {
        let hub = hub();
        let a = join(&hub, 1, "alice");
        let a2 = join(&hub, 2, "alice");
        let b = join(&hub, 3, "bob");
        let c = join(&hub, 4, "carol");
        for inbox in [&a.inbox, &a2.inbox, &b.inbox, &c.inbox] {
            inbox.take().unwrap();
        }
        hub.direct("alice", "bob", "hi");
        for inbox in [&a.inbox, &a2.inbox, &b.inbox] {
            assert_eq!(types(inbox), ["direct"]);
        }
        assert!(c.inbox.is_empty());
        hub.direct("alice", "alice", "note");
        assert_eq!(types(&a.inbox), ["direct"]);
    }

    #[test]
    fn kick_targets_the_token_only() {
        let hub = hub();
        let a = join(&hub, 1, "alice");
        let b = join(&hub, 2, "alice");
        a.inbox.take().unwrap();
        b.inbox.take().unwrap();
        let kicked = |inbox: &Inbox| match inbox.take() {
            Err(Closing::Kicked(kick)) => Some(kick),
            _ => None,
        };
        let revoked = |jti: &str| Revoked::Token(jti.into());
        assert_eq!(hub.kick(&revoked("j1"), Kick::Revoked), 1);
        assert_eq!(kicked(&a.inbox), Some(Kick::Revoked));
        assert_eq!(kicked(&b.inbox), None);
        hub.set_token(2, "j3".into(), "s3".into());
        assert_eq!(hub.kick(&revoked("j2"), Kick::Revoked), 0);
        assert_eq!(hub.kick(&Revoked::Session("s2".into()), Kick::Revoked), 0);
        assert_eq!(
            hub.kick_user("alice", Kick::Reconnect),
            1,
            "a was kicked already"
        );
        assert_eq!(kicked(&b.inbox), Some(Kick::Reconnect));
    }

    #[test]
    fn the_room_limit_counts_lobby() {
        let hub = hub();
        let _a = join(&hub, 1, "alice");
        let epoch = hub.acl_epoch();
        hub.subscribe(1, "one", None, epoch).unwrap();
        hub.subscribe(1, "two", None, epoch).unwrap();
        assert_eq!(
            hub.subscribe(1, "three", None, epoch),
            Err(SubscribeError::TooManyRooms)
        );
        hub.subscribe(1, "two", None, epoch).unwrap();
    }

    #[test]
    fn a_slow_socket_overflows() {
        let hub = Hub::new(HubConfig {
            queue: 4,
            recovery_messages: 0,
            recovery_age: Duration::from_secs(1),
            max_rooms: 2,
            cluster: false,
        });
        let a = join(&hub, 1, "alice");
        for _ in 0..10 {
            hub.publish(1, LOBBY, "x").unwrap();
        }
        assert!(a.inbox.take().is_err());
    }

    /// A cluster's answer with nothing in it but the generation it was counted under.
    fn answer(hub: &Hub, generation: u64) -> ClusterAnswer {
        ClusterAnswer {
            epoch: hub.acl_epoch(),
            generation,
            users: Vec::new(),
            last_id: 0,
            recovered: None,
            replay: Vec::new(),
            announce: true,
        }
    }

    #[test]
    fn a_cluster_subscription_ends_under_the_generation_it_was_counted_under() {
        let hub = Hub::new(HubConfig {
            cluster: true,
            ..hub().shared.config
        });
        let ended = |room: &str, generation| Ended {
            room: room.into(),
            generation,
        };
        hub.add_socket(1, "carol", "j1".into(), "s1".into());
        hub.add_socket(2, "carol", "j2".into(), "s2".into());
        // Socket 1 subscribed before a repair (generation 0), and to `den` after it (1).
        hub.apply_subscribed(1, LOBBY, answer(&hub, 0)).unwrap();
        hub.apply_subscribed(1, "den", answer(&hub, 1)).unwrap();
        hub.apply_subscribed(2, "den", answer(&hub, 1)).unwrap();
        hub.apply_subscribed(2, "nook", answer(&hub, 1)).unwrap();
        hub.apply_subscribed(2, "attic", answer(&hub, 2)).unwrap();
        let (user, unsubscribed) = hub.unsubscribe(2, "nook").unwrap();
        assert_eq!((&*user, unsubscribed), ("carol", ended("nook", 1)));
        assert_eq!(hub.remove_member("attic", "carol"), [ended("attic", 2)]);
        assert_eq!(
            hub.delete_room("den"),
            vec![("carol".into(), ended("den", 1)); 2],
            "one per subscribed socket"
        );
        let left = hub.leave(1).unwrap();
        assert_eq!(left.rooms, [ended(LOBBY, 0)]);
    }

    #[test]
    fn a_kicked_socket_is_not_subscribed_anew() {
        let hub = Hub::new(HubConfig {
            cluster: true,
            ..hub().shared.config
        });
        let inbox = hub.add_socket(1, "carol", "j1".into(), "s1".into());
        hub.apply_subscribed(1, LOBBY, answer(&hub, 0)).unwrap();
        // A repair asked every socket to reconnect; this one's subscription was on its way.
        assert!(hub.kick_socket(1, Kick::Reconnect));
        assert!(!hub.kick_socket(1, Kick::Revoked), "the first kick stands");
        assert!(!hub.kick_socket(9, Kick::Reconnect), "no such socket");
        assert_eq!(inbox.take(), Err(Closing::Kicked(Kick::Reconnect)));
        assert_eq!(
            hub.prepare_subscribe(1, "den").err(),
            Some(SubscribeError::Gone)
        );
        assert_eq!(
            hub.apply_subscribed(1, "den", answer(&hub, 1)).err(),
            Some(SubscribeError::Gone),
            "an answer that comes after the kick is refused: the caller takes it back"
        );
        assert!(!hub.is_subscribed(1, "den"));
        assert!(hub.presence("den").is_empty());
    }
}
