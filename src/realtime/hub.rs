//! The hub: who is online, broadcast of chat and presence, and targeted closes (revocation).
//!
//! Broadcasts go through one `tokio::sync::broadcast` ring: each frame is serialized once into a
//! shared `Utf8Bytes` and every socket's receiver clones a reference to it, so a message to N sockets
//! costs one serialization and N reference-count bumps. The ring is the bounded per-socket queue: a
//! socket that falls more than `capacity` frames behind gets `Lagged` and is closed as a slow
//! consumer, so no socket can make the server buffer without limit. `send` on the ring is serialized
//! internally, which gives every socket the same order.
//!
//! Membership and presence live under one short `std::sync::Mutex`, never held across an `.await`.
//! Subscribing happens under that lock after the `joined` delta is sent, so a new socket sees neither
//! its own `joined` nor misses a delta between its snapshot and its subscription.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{broadcast, oneshot};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::clock::now_millis;
use crate::protocol::ServerFrame;
use crate::store::Revoked;

/// Why the hub wants a socket closed; `ws` turns it into a close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kick {
    /// Its token or session was revoked (logout, logout-all, refresh-token reuse, session cap).
    Revoked,
}

/// Identifies one socket for the life of the process.
pub type ConnId = u64;

/// Cheap `Clone` handle to the hub.
#[derive(Clone)]
pub struct Hub {
    shared: Arc<Shared>,
}

struct Shared {
    members: Mutex<Members>,
    /// The broadcast ring; every authenticated socket holds a receiver.
    ring: broadcast::Sender<Utf8Bytes>,
    /// Message-id prefix, random per process, so ids stay unique across restarts and instances.
    id_prefix: String,
    next_message: AtomicU64,
    next_conn: AtomicU64,
}

#[derive(Default)]
struct Members {
    sockets: HashMap<ConnId, Member>,
    /// Users online and how many sockets each has; sorted, for the `auth_ok` snapshot.
    online: BTreeMap<Arc<str>, usize>,
}

struct Member {
    user: Arc<str>,
    /// The `jti` and session `sid` of the token the socket is authenticated with (change on refresh).
    jti: String,
    sid: String,
    /// Closes the socket from outside (revocation). Taken when used.
    kick: Option<oneshot::Sender<Kick>>,
}

/// What a socket gets when it joins.
pub struct Joined {
    /// Users online, the joiner included, sorted and unique.
    pub users: Vec<String>,
    /// The socket's view of the broadcast ring.
    pub feed: broadcast::Receiver<Utf8Bytes>,
    /// Fires when the hub wants the socket closed.
    pub kicked: oneshot::Receiver<Kick>,
}

impl Hub {
    /// A hub whose sockets may each fall `capacity` broadcast frames behind.
    pub fn new(capacity: usize) -> Self {
        let (ring, _) = broadcast::channel(capacity);
        let prefix: [u8; 6] = crate::auth::os_random();
        Self {
            shared: Arc::new(Shared {
                members: Mutex::new(Members::default()),
                ring,
                id_prefix: base64::Engine::encode(
                    &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                    prefix,
                ),
                next_message: AtomicU64::new(1),
                next_conn: AtomicU64::new(1),
            }),
        }
    }

    fn members(&self) -> MutexGuard<'_, Members> {
        self.shared
            .members
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A fresh connection id.
    pub fn next_conn_id(&self) -> ConnId {
        self.shared.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Adds an authenticated socket; announces `joined` if it is the user's first.
    pub fn join(&self, conn: ConnId, user: &str, jti: String, sid: String) -> Joined {
        let (kick, kicked) = oneshot::channel();
        let mut members = self.members();
        let user: Arc<str> = match members.online.get_key_value(user) {
            Some((existing, _)) => existing.clone(),
            None => {
                self.send(ServerFrame::Joined { user }.to_json());
                Arc::from(user)
            }
        };
        *members.online.entry(user.clone()).or_insert(0) += 1;
        members.sockets.insert(
            conn,
            Member {
                user,
                jti,
                sid,
                kick: Some(kick),
            },
        );
        Joined {
            users: members.online.keys().map(|u| u.to_string()).collect(),
            feed: self.shared.ring.subscribe(),
            kicked,
        }
    }

    /// Removes a socket; announces `left` if it was the user's last. Unknown ids are ignored.
    pub fn leave(&self, conn: ConnId) {
        let mut members = self.members();
        let Some(member) = members.sockets.remove(&conn) else {
            return;
        };
        let last = match members.online.get_mut(&member.user) {
            Some(count) if *count > 1 => {
                *count -= 1;
                false
            }
            _ => true,
        };
        if last {
            members.online.remove(&member.user);
            self.send(ServerFrame::Left { user: &member.user }.to_json());
        }
    }

    /// Records that socket `conn` now uses the token `jti` of session `sid` (after an in-band refresh).
    pub fn set_token(&self, conn: ConnId, jti: String, sid: String) {
        if let Some(member) = self.members().sockets.get_mut(&conn) {
            member.jti = jti;
            member.sid = sid;
        }
    }

    /// Closes every socket authenticated with the revoked token or session; returns how many.
    pub fn kick(&self, what: &Revoked, kick: Kick) -> usize {
        self.kick_where(kick, |m| match what {
            Revoked::Token(jti) => m.jti == *jti,
            Revoked::Session(sid) => m.sid == *sid,
        })
    }

    /// Closes every socket of `user`; returns how many.
    pub fn kick_user(&self, user: &str, kick: Kick) -> usize {
        self.kick_where(kick, |m| &*m.user == user)
    }

    fn kick_where(&self, kick: Kick, matches: impl Fn(&Member) -> bool) -> usize {
        let mut members = self.members();
        let mut kicked = 0;
        for member in members.sockets.values_mut().filter(|m| matches(m)) {
            if let Some(sender) = member.kick.take() {
                kicked += usize::from(sender.send(kick).is_ok());
            }
        }
        kicked
    }

    /// Broadcasts a chat message from `from`, serialized once for every socket.
    pub fn publish(&self, from: &str, text: &str) {
        let n = self.shared.next_message.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}-{n}", self.shared.id_prefix);
        self.send(
            ServerFrame::Message {
                id: &id,
                from,
                text,
                ts: now_millis(),
            }
            .to_json(),
        );
    }

    fn send(&self, json: String) {
        // An error only means nobody is subscribed, which is fine.
        let _ = self.shared.ring.send(Utf8Bytes::from(json));
    }

    /// Authenticated sockets right now.
    pub fn socket_count(&self) -> usize {
        self.members().sockets.len()
    }

    /// Users online right now.
    pub fn user_count(&self) -> usize {
        self.members().online.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recv(feed: &mut broadcast::Receiver<Utf8Bytes>) -> Option<serde_json::Value> {
        feed.try_recv()
            .ok()
            .map(|m| serde_json::from_str(m.as_str()).unwrap())
    }

    #[test]
    fn presence_deltas_and_snapshots() {
        let hub = Hub::new(16);
        let mut a = hub.join(1, "alice", "j1".into(), "s1".into());
        assert_eq!(a.users, vec!["alice"]);
        assert!(recv(&mut a.feed).is_none(), "no own joined");

        let b = hub.join(2, "bob", "j2".into(), "s2".into());
        assert_eq!(b.users, vec!["alice", "bob"]);
        assert_eq!(recv(&mut a.feed).unwrap()["type"], "joined");

        let _b2 = hub.join(3, "bob", "j3".into(), "s3".into());
        assert!(recv(&mut a.feed).is_none(), "second socket is silent");
        hub.leave(3);
        assert!(recv(&mut a.feed).is_none(), "bob still has a socket");
        hub.leave(2);
        let left = recv(&mut a.feed).unwrap();
        assert_eq!(
            (left["type"].as_str(), left["user"].as_str()),
            (Some("left"), Some("bob"))
        );
        assert_eq!(hub.user_count(), 1);
        hub.leave(2); // idempotent
    }

    #[test]
    fn kick_targets_the_token_only() {
        let hub = Hub::new(16);
        let mut a = hub.join(1, "alice", "j1".into(), "s1".into());
        let mut b = hub.join(2, "alice", "j2".into(), "s2".into());
        let revoked = |jti: &str| Revoked::Token(jti.into());
        assert_eq!(hub.kick(&revoked("j1"), Kick::Revoked), 1);
        assert_eq!(a.kicked.try_recv().unwrap(), Kick::Revoked);
        assert!(b.kicked.try_recv().is_err());
        hub.set_token(2, "j3".into(), "s3".into());
        assert_eq!(hub.kick(&revoked("j2"), Kick::Revoked), 0);
        assert_eq!(hub.kick(&Revoked::Session("s2".into()), Kick::Revoked), 0);
        assert_eq!(hub.kick_user("alice", Kick::Revoked), 1);
        assert_eq!(b.kicked.try_recv().unwrap(), Kick::Revoked);
    }

    #[test]
    fn message_ids_are_unique_and_order_is_shared() {
        let hub = Hub::new(64);
        let mut a = hub.join(1, "alice", "j1".into(), "s1".into());
        let mut b = hub.join(2, "bob", "j2".into(), "s2".into());
        recv(&mut a.feed); // bob joined
        for i in 0..10 {
            hub.publish("alice", &i.to_string());
        }
        let ids_a: Vec<_> = (0..10).map(|_| recv(&mut a.feed).unwrap()).collect();
        let ids_b: Vec<_> = (0..10).map(|_| recv(&mut b.feed).unwrap()).collect();
        assert_eq!(ids_a, ids_b);
        let unique: std::collections::HashSet<_> = ids_a.iter().map(|m| m["id"].clone()).collect();
        assert_eq!(unique.len(), 10);
    }

    #[test]
    fn a_lagging_socket_is_told() {
        let hub = Hub::new(4);
        let mut a = hub.join(1, "alice", "j1".into(), "s1".into());
        for _ in 0..10 {
            hub.publish("bob", "x");
        }
        assert!(matches!(
            a.feed.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(_))
        ));
    }
}
