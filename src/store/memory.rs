//! Embedded in-memory store: the default backend, needing no external service.
//!
//! A cheap `Clone` handle over `Arc<Shared>`; one `std::sync::Mutex` guards all maps and is never held
//! across an `.await` (every operation is a short synchronous critical section, which is also what makes
//! ticket consumption atomic). Expired records are dropped by `purge_expired`, which the server's
//! maintenance task calls (see `startup`); no check relies on it.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use super::{
    HistoryEntry, RefreshOutcome, Revoked, RoomKind, RoomRecord, Rotation, SessionRecord, Store,
    StoreError, TicketHash, TicketOutcome, TicketRecord, UnixMillis, UserRecord,
};

/// Entries kept per history stream by default (`WSGATE_HISTORY_MAX_PER_ROOM`).
pub const DEFAULT_HISTORY_CAP: usize = 10_000;

/// Handle to the in-memory store.
#[derive(Clone)]
pub struct MemoryStore {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// Entries kept per history stream: the oldest go first.
    history_cap: usize,
}

#[derive(Default)]
struct State {
    /// Users by lower-cased username.
    users: HashMap<String, UserRecord>,
    /// Tickets by hash, with their used flag.
    tickets: HashMap<TicketHash, StoredTicket>,
    /// Revocations by key (`jti:…`, `sid:…`).
    revoked: HashMap<String, StoredRevocation>,
    /// Login sessions by id, one record each however often they rotate.
    sessions: HashMap<String, StoredSession>,
    /// Rooms by id, sorted (listing is by id).
    rooms: BTreeMap<String, StoredRoom>,
    /// History streams by key, oldest first, ids increasing.
    history: HashMap<String, VecDeque<HistoryEntry>>,
}

struct StoredRoom {
    record: RoomRecord,
    members: BTreeSet<String>,
}

struct StoredRevocation {
    /// May be forgotten after this.
    expires_at: UnixMillis,
    /// When it was recorded (for the revocation feed).
    revoked_at: UnixMillis,
}

struct StoredSession {
    username: String,
    created_at: UnixMillis,
    expires_at: UnixMillis,
    revoked: bool,
    generation: u64,
    current_hash: [u8; 32],
}

struct StoredTicket {
    username: String,
    expires_at: UnixMillis,
    used: bool,
}

impl MemoryStore {
    /// An empty store keeping `DEFAULT_HISTORY_CAP` entries per history stream.
    pub fn new() -> Self {
        Self::with_history_cap(DEFAULT_HISTORY_CAP)
    }

    /// An empty store keeping at most `history_cap` entries per history stream.
    pub fn with_history_cap(history_cap: usize) -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                history_cap: history_cap.max(1),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.shared.state)
    }

    /// Number of tickets currently held (used and unused), for tests of the purge.
    pub fn ticket_count(&self) -> usize {
        self.state().tickets.len()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

/// Locks, recovering from poisoning: every critical section leaves the maps consistent, so a panic
/// elsewhere must not take the store down with it.
fn lock(mutex: &Mutex<State>) -> MutexGuard<'_, State> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[async_trait]
impl Store for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn purge_expired(&self, now: UnixMillis) -> Result<usize, StoreError> {
        let mut state = self.state();
        let before = state.tickets.len() + state.revoked.len() + state.sessions.len();
        state.tickets.retain(|_, t| t.expires_at > now);
        state.revoked.retain(|_, r| r.expires_at > now);
        state.sessions.retain(|_, s| s.expires_at > now);
        Ok(before - (state.tickets.len() + state.revoked.len() + state.sessions.len()))
    }

    async fn create_user(&self, user: UserRecord) -> Result<(), StoreError> {
        let mut state = self.state();
        match state.users.entry(UserRecord::key_of(&user.username)) {
            std::collections::hash_map::Entry::Occupied(_) => Err(StoreError::Duplicate),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(user);
                Ok(())
            }
        }
    }

    async fn find_user(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        Ok(self
            .state()
            .users
            .get(&UserRecord::key_of(username))
            .cloned())
    }

    async fn insert_ticket(&self, ticket: TicketRecord) -> Result<(), StoreError> {
        let mut state = self.state();
        if state.tickets.contains_key(&ticket.hash) {
            // 256 random bits never collide; a collision means a caller bug, not a retryable state.
            return Err(StoreError::Duplicate);
        }
        state.tickets.insert(
            ticket.hash,
            StoredTicket {
                username: ticket.username,
                expires_at: ticket.expires_at,
                used: false,
            },
        );
        Ok(())
    }

    async fn consume_ticket(
        &self,
        hash: &TicketHash,
        now: UnixMillis,
    ) -> Result<TicketOutcome, StoreError> {
        let mut state = self.state();
        let Some(ticket) = state.tickets.get_mut(hash) else {
            return Ok(TicketOutcome::Unknown);
        };
        Ok(if ticket.expires_at <= now {
            TicketOutcome::Expired
        } else if ticket.used {
            TicketOutcome::Used
        } else {
            ticket.used = true;
            TicketOutcome::Accepted {
                username: ticket.username.clone(),
            }
        })
    }

    async fn revoke(
        &self,
        what: &Revoked,
        expires_at: UnixMillis,
        now: UnixMillis,
    ) -> Result<(), StoreError> {
        self.state().revoke(what.key(), expires_at, now);
        Ok(())
    }

    async fn is_revoked(&self, jti: &str, sid: &str) -> Result<bool, StoreError> {
        let state = self.state();
        Ok(state
            .revoked
            .contains_key(&Revoked::Token(jti.to_owned()).key())
            || state
                .revoked
                .contains_key(&Revoked::Session(sid.to_owned()).key()))
    }

    async fn revocations_since(&self, since: UnixMillis) -> Result<Vec<Revoked>, StoreError> {
        Ok(self
            .state()
            .revoked
            .iter()
            .filter(|(_, r)| r.revoked_at > since)
            .filter_map(|(key, _)| Revoked::from_key(key))
            .collect())
    }

    async fn create_session(&self, session: SessionRecord) -> Result<(), StoreError> {
        let mut state = self.state();
        match state.sessions.entry(session.sid) {
            std::collections::hash_map::Entry::Occupied(_) => Err(StoreError::Duplicate),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(StoredSession {
                    username: session.username,
                    created_at: session.created_at,
                    expires_at: session.expires_at,
                    revoked: false,
                    generation: session.generation,
                    current_hash: session.current_hash,
                });
                Ok(())
            }
        }
    }

    async fn rotate_refresh(
        &self,
        rotation: &Rotation,
        now: UnixMillis,
    ) -> Result<RefreshOutcome, StoreError> {
        let mut state = self.state();
        let Some(session) = state.sessions.get_mut(&rotation.sid) else {
            return Ok(RefreshOutcome::Invalid);
        };
        if session.revoked || session.expires_at <= now {
            return Ok(RefreshOutcome::Invalid);
        }
        let username = session.username.clone();
        if rotation.generation < session.generation {
            return Ok(RefreshOutcome::Reused { username });
        }
        if rotation.generation > session.generation || rotation.presented != session.current_hash {
            return Ok(RefreshOutcome::Invalid);
        }
        session.generation += 1;
        session.current_hash = rotation.next;
        session.expires_at = session.expires_at.max(rotation.next_expires_at);
        Ok(RefreshOutcome::Rotated { username })
    }

    async fn revoke_session(
        &self,
        sid: &str,
        access_until: UnixMillis,
        now: UnixMillis,
    ) -> Result<(), StoreError> {
        self.state()
            .revoke_sessions(&[sid.to_owned()], access_until, now);
        Ok(())
    }

    async fn revoke_sessions_beyond(
        &self,
        username: &str,
        keep: usize,
        spare: &str,
        access_until: UnixMillis,
        now: UnixMillis,
    ) -> Result<Vec<String>, StoreError> {
        let mut state = self.state();
        let key = UserRecord::key_of(username);
        let mut live: Vec<(UnixMillis, &String)> = state
            .sessions
            .iter()
            .filter(|(sid, s)| *sid != spare && !s.revoked && s.expires_at > now)
            .filter(|(_, s)| UserRecord::key_of(&s.username) == key)
            .map(|(sid, s)| (s.created_at, sid))
            .collect();
        live.sort_unstable_by(|a, b| b.cmp(a));
        // The spared session is not in `live`: it takes one of the `keep` places.
        let sids: Vec<String> = live
            .into_iter()
            .skip(keep.saturating_sub(1))
            .map(|(_, sid)| sid.clone())
            .collect();
        state.revoke_sessions(&sids, access_until, now);
        Ok(sids)
    }

    async fn revoke_user_sessions(
        &self,
        username: &str,
        access_until: UnixMillis,
        now: UnixMillis,
    ) -> Result<Vec<String>, StoreError> {
        let mut state = self.state();
        let key = UserRecord::key_of(username);
        let sids: Vec<String> = state
            .sessions
            .iter()
            .filter(|(_, s)| !s.revoked && UserRecord::key_of(&s.username) == key)
            .map(|(sid, _)| sid.clone())
            .collect();
        state.revoke_sessions(&sids, access_until, now);
        Ok(sids)
    }
    async fn create_room(&self, room: RoomRecord) -> Result<(), StoreError> {
        let mut state = self.state();
        if state.rooms.contains_key(&room.id) {
            return Err(StoreError::Duplicate);
        }
        let members = room.owner.iter().cloned().collect();
        state.rooms.insert(
            room.id.clone(),
            StoredRoom {
                record: room,
                members,
            },
        );
        Ok(())
    }

    async fn find_room(&self, id: &str) -> Result<Option<RoomRecord>, StoreError> {
        Ok(self.state().rooms.get(id).map(|r| r.record.clone()))
    }

    async fn delete_room(&self, id: &str) -> Result<bool, StoreError> {
        let mut state = self.state();
        state.history.remove(&super::room_stream(id));
        Ok(state.rooms.remove(id).is_some())
    }

    async fn rooms_visible_to(&self, user: &str) -> Result<Vec<(RoomRecord, bool)>, StoreError> {
        Ok(self
            .state()
            .rooms
            .values()
            .filter_map(|room| {
                let member = room.members.contains(user);
                (member || room.record.kind == RoomKind::Public)
                    .then(|| (room.record.clone(), member))
            })
            .collect())
    }

    async fn add_member(&self, room: &str, user: &str) -> Result<(), StoreError> {
        if let Some(room) = self.state().rooms.get_mut(room) {
            room.members.insert(user.to_owned());
        }
        Ok(())
    }

    async fn remove_member(&self, room: &str, user: &str) -> Result<bool, StoreError> {
        Ok(self
            .state()
            .rooms
            .get_mut(room)
            .is_some_and(|room| room.members.remove(user)))
    }

    async fn is_member(&self, room: &str, user: &str) -> Result<bool, StoreError> {
        Ok(self
            .state()
            .rooms
            .get(room)
            .is_some_and(|room| room.members.contains(user)))
    }

    async fn room_members(&self, room: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .state()
            .rooms
            .get(room)
            .map(|room| room.members.iter().cloned().collect())
            .unwrap_or_default())
    }

    async fn append_history(&self, entries: &[HistoryEntry]) -> Result<(), StoreError> {
        let cap = self.shared.history_cap;
        let mut state = self.state();
        for entry in entries {
            let stream = state.history.entry(entry.stream.clone()).or_default();
            // Writers append in id order; a retried entry is already there (or was capped away).
            match stream.back() {
                Some(last) if last.id >= entry.id => {
                    let at = stream.partition_point(|e| e.id < entry.id);
                    if stream.get(at).is_some_and(|e| e.id == entry.id) || stream.len() >= cap {
                        continue;
                    }
                    stream.insert(at, entry.clone());
                }
                _ => stream.push_back(entry.clone()),
            }
            while stream.len() > cap {
                stream.pop_front();
            }
        }
        Ok(())
    }

    async fn history(
        &self,
        stream: &str,
        before: Option<u64>,
        limit: usize,
        not_before: UnixMillis,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        let state = self.state();
        let Some(entries) = state.history.get(stream) else {
            return Ok(Vec::new());
        };
        let end = before.map_or(entries.len(), |b| entries.partition_point(|e| e.id < b));
        Ok(entries
            .range(..end)
            .rev()
            .filter(|e| e.ts >= not_before)
            .take(limit)
            .cloned()
            .collect())
    }

    async fn history_contains(
        &self,
        stream: &str,
        id: u64,
        not_before: UnixMillis,
    ) -> Result<bool, StoreError> {
        let state = self.state();
        Ok(state.history.get(stream).is_some_and(|entries| {
            let at = entries.partition_point(|e| e.id < id);
            entries
                .get(at)
                .is_some_and(|e| e.id == id && e.ts >= not_before)
        }))
    }
}

impl State {
    /// Marks sessions revoked and records their `sid:` revocations.
    fn revoke_sessions(&mut self, sids: &[String], access_until: UnixMillis, now: UnixMillis) {
        for sid in sids {
            if let Some(session) = self.sessions.get_mut(sid) {
                session.revoked = true;
            }
            self.revoke(Revoked::Session(sid.clone()).key(), access_until, now);
        }
    }

    fn revoke(&mut self, key: String, expires_at: UnixMillis, now: UnixMillis) {
        let entry = self.revoked.entry(key).or_insert(StoredRevocation {
            expires_at,
            revoked_at: now,
        });
        entry.expires_at = entry.expires_at.max(expires_at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::now_millis;

    #[tokio::test]
    async fn purge_drops_expired_records_only() {
        let store = MemoryStore::new();
        let now = now_millis();
        for (i, ttl) in [(1u8, -1_000i64), (2, 60_000)] {
            store
                .insert_ticket(TicketRecord {
                    hash: [i; 32],
                    username: "alice".into(),
                    expires_at: now + ttl,
                })
                .await
                .unwrap();
        }
        assert_eq!(store.ticket_count(), 2);
        assert_eq!(store.purge_expired(now).await.unwrap(), 1);
        assert_eq!(store.ticket_count(), 1);
        assert!(matches!(
            store.consume_ticket(&[2; 32], now_millis()).await.unwrap(),
            TicketOutcome::Accepted { .. }
        ));
    }

    #[tokio::test]
    async fn history_keeps_the_newest_entries_up_to_the_cap() {
        let store = MemoryStore::with_history_cap(3);
        let now = now_millis();
        let entries: Vec<HistoryEntry> = (1..=5)
            .map(|id| HistoryEntry {
                stream: "room:a".into(),
                id,
                ts: now,
                frame: String::new(),
            })
            .collect();
        store.append_history(&entries).await.unwrap();
        let kept = store.history("room:a", None, 10, 0).await.unwrap();
        assert_eq!(kept.iter().map(|e| e.id).collect::<Vec<_>>(), [5, 4, 3]);
        // A retry of entries already capped away does not bring them back.
        store.append_history(&entries[..2]).await.unwrap();
        assert_eq!(store.history("room:a", None, 10, 0).await.unwrap().len(), 3);
    }
}
