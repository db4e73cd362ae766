//! A `Store` that times every operation of the store it wraps and counts its failures by kind, for
//! `/metrics`. Wrapping (rather than timing inside each backend) measures both backends the same way.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use super::{
    HistoryEntry, RefreshOutcome, Revoked, RoomRecord, Rotation, SessionRecord, Store, StoreError,
    TicketHash, TicketOutcome, TicketRecord, UnixMillis, UserRecord,
};
use crate::metrics::Metrics;

/// `inner`, measured into `metrics`.
pub struct InstrumentedStore {
    inner: Arc<dyn Store>,
    metrics: Arc<Metrics>,
}

impl InstrumentedStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Store>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }

    fn record<T>(
        &self,
        op: &'static str,
        started: Instant,
        result: Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let failed = result.as_ref().err().map(|err| match err {
            StoreError::Duplicate => "duplicate",
            StoreError::Unavailable(_) => "unavailable",
            StoreError::Rejected { .. } => "rejected",
        });
        self.metrics.store_op(op, started.elapsed(), failed);
        result
    }
}

/// Times one call of the inner store: `measured!(self, op, method(args…))`.
macro_rules! measured {
    ($self:ident, $op:literal, $method:ident($($arg:expr),*)) => {{
        let started = Instant::now();
        let result = $self.inner.$method($($arg),*).await;
        $self.record($op, started, result)
    }};
}

#[async_trait]
impl Store for InstrumentedStore {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        measured!(self, "ping", ping())
    }

    async fn purge_expired(&self, now: UnixMillis) -> Result<usize, StoreError> {
        measured!(self, "purge_expired", purge_expired(now))
    }

    async fn create_user(&self, user: UserRecord) -> Result<(), StoreError> {
        measured!(self, "create_user", create_user(user))
    }

    async fn find_user(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        measured!(self, "find_user", find_user(username))
    }

    async fn insert_ticket(&self, ticket: TicketRecord) -> Result<(), StoreError> {
        measured!(self, "insert_ticket", insert_ticket(ticket))
    }

    async fn consume_ticket(
        &self,
        hash: &TicketHash,
        now: UnixMillis,
    ) -> Result<TicketOutcome, StoreError> {
        measured!(self, "consume_ticket", consume_ticket(hash, now))
    }

    async fn revoke(
        &self,
        what: &Revoked,
        expires_at: UnixMillis,
        now: UnixMillis,
    ) -> Result<(), StoreError> {
        measured!(self, "revoke", revoke(what, expires_at, now))
    }

    async fn is_revoked(&self, jti: &str, sid: &str) -> Result<bool, StoreError> {
        measured!(self, "is_revoked", is_revoked(jti, sid))
    }

    async fn revocations_since(&self, since: UnixMillis) -> Result<Vec<Revoked>, StoreError> {
        measured!(self, "revocations_since", revocations_since(since))
    }

    async fn create_session(&self, session: SessionRecord) -> Result<(), StoreError> {
        measured!(self, "create_session", create_session(session))
    }

    async fn rotate_refresh(
        &self,
        rotation: &Rotation,
        now: UnixMillis,
    ) -> Result<RefreshOutcome, StoreError> {
        measured!(self, "rotate_refresh", rotate_refresh(rotation, now))
    }

    async fn revoke_session(
        &self,
        sid: &str,
        access_until: UnixMillis,
        now: UnixMillis,
    ) -> Result<(), StoreError> {
        measured!(
            self,
            "revoke_session",
            revoke_session(sid, access_until, now)
        )
    }

    async fn revoke_sessions_beyond(
        &self,
        username: &str,
        keep: usize,
        spare: &str,
        access_until: UnixMillis,
        now: UnixMillis,
    ) -> Result<Vec<String>, StoreError> {
        measured!(
            self,
            "revoke_sessions_beyond",
            revoke_sessions_beyond(username, keep, spare, access_until, now)
        )
    }

    async fn revoke_user_sessions(
        &self,
        username: &str,
        access_until: UnixMillis,
        now: UnixMillis,
    ) -> Result<Vec<String>, StoreError> {
        measured!(
            self,
            "revoke_user_sessions",
            revoke_user_sessions(username, access_until, now)
        )
    }

    async fn create_room(&self, room: RoomRecord) -> Result<(), StoreError> {
        measured!(self, "create_room", create_room(room))
    }

    async fn find_room(&self, id: &str) -> Result<Option<RoomRecord>, StoreError> {
        measured!(self, "find_room", find_room(id))
    }

    async fn delete_room(&self, id: &str) -> Result<bool, StoreError> {
        measured!(self, "delete_room", delete_room(id))
    }

    async fn rooms_visible_to(&self, user: &str) -> Result<Vec<(RoomRecord, bool)>, StoreError> {
        measured!(self, "rooms_visible_to", rooms_visible_to(user))
    }

    async fn add_member(&self, room: &str, user: &str) -> Result<(), StoreError> {
        measured!(self, "add_member", add_member(room, user))
    }

    async fn remove_member(&self, room: &str, user: &str) -> Result<bool, StoreError> {
        measured!(self, "remove_member", remove_member(room, user))
    }

    async fn is_member(&self, room: &str, user: &str) -> Result<bool, StoreError> {
        measured!(self, "is_member", is_member(room, user))
    }

    async fn room_members(&self, room: &str) -> Result<Vec<String>, StoreError> {
        measured!(self, "room_members", room_members(room))
    }

    async fn append_history(&self, entries: &[HistoryEntry]) -> Result<(), StoreError> {
        measured!(self, "append_history", append_history(entries))
    }

    async fn history(
        &self,
        stream: &str,
        before: Option<u64>,
        limit: usize,
        not_before: UnixMillis,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        measured!(self, "history", history(stream, before, limit, not_before))
    }

    async fn history_contains(
        &self,
        stream: &str,
        id: u64,
        not_before: UnixMillis,
    ) -> Result<bool, StoreError> {
        measured!(
            self,
            "history_contains",
            history_contains(stream, id, not_before)
        )
    }
}
