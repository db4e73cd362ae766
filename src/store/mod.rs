//! Storage boundary: the `Store` trait every backend implements, the records it keeps and its errors.
//!
//! The trait is shaped so that each check-and-change that must be atomic (consuming a ticket,
//! rotating a refresh token) is one step in any backend (a single `findOneAndUpdate` in MongoDB, one
//! critical section in memory); revocations, which only ever add, may take several idempotent
//! writes. Expiry is always checked by the
//! operation itself against the caller's `now`; background purges and TTL monitors are garbage
//! collection only and never decide whether a record is still valid.

use async_trait::async_trait;

pub mod instrumented;
pub mod memory;
pub mod mongo;

pub use instrumented::InstrumentedStore;
pub use memory::MemoryStore;
pub use mongo::MongoStore;

pub use crate::clock::UnixMillis;

/// A stored user account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// The username as registered (display form, also the JWT `sub`).
    pub username: String,
    /// bcrypt hash of the password.
    pub password_hash: String,
    /// Creation time.
    pub created_at: UnixMillis,
}

impl UserRecord {
    /// The uniqueness key: usernames differing only in case are the same account, so that
    /// `Alice` cannot pose as `alice` in a chat.
    pub fn key_of(username: &str) -> String {
        username.to_ascii_lowercase()
    }
}

/// SHA-256 of a ticket's text: all a store ever sees of a ticket.
pub type TicketHash = [u8; 32];

/// A login session: the family of every refresh and access token descended from one login. One
/// record per session, however often it rotates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Session id, also the `sid` claim of its access tokens.
    pub sid: String,
    /// The session's user.
    pub username: String,
    /// When the current refresh token expires (moved forward by every rotation).
    pub expires_at: UnixMillis,
    /// How many rotations happened: the generation of the current refresh token.
    pub generation: u64,
    /// SHA-256 of the current refresh token.
    pub current_hash: [u8; 32],
    /// When the login happened: the oldest sessions are the first to go past the per-user cap.
    pub created_at: UnixMillis,
}

/// A refresh token presented for rotation, and its successor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// The session the presented token names.
    pub sid: String,
    /// The generation the presented token names.
    pub generation: u64,
    /// Hash of the presented token.
    pub presented: [u8; 32],
    /// Hash of the successor (generation + 1).
    pub next: [u8; 32],
    /// Expiry of the successor.
    pub next_expires_at: UnixMillis,
}

/// What presenting a refresh token found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// It was current: the session now holds its successor.
    Rotated {
        /// The session's user.
        username: String,
    },
    /// It was a genuine token of an earlier generation: someone replays a stolen token (or its owner
    /// does, after theft). The caller revokes the session.
    Reused {
        /// Its user.
        username: String,
    },
    /// Unknown session, expired, revoked, or not the session's token.
    Invalid,
}

/// Something revoked, as reported by the revocation feed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Revoked {
    /// One access token, by `jti`.
    Token(String),
    /// Every token of a session, by `sid`.
    Session(String),
}

impl Revoked {
    /// The storage key: `jti:<jti>` or `sid:<sid>`.
    pub fn key(&self) -> String {
        match self {
            Revoked::Token(jti) => format!("jti:{jti}"),
            Revoked::Session(sid) => format!("sid:{sid}"),
        }
    }

    /// Parses a storage key.
    pub fn from_key(key: &str) -> Option<Self> {
        if let Some(jti) = key.strip_prefix("jti:") {
            Some(Revoked::Token(jti.to_owned()))
        } else {
            key.strip_prefix("sid:")
                .map(|sid| Revoked::Session(sid.to_owned()))
        }
    }
}

/// A freshly minted ticket, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketRecord {
    /// Hash of the ticket text.
    pub hash: TicketHash,
    /// The user the ticket is bound to.
    pub username: String,
    /// After this instant the ticket is refused as expired.
    pub expires_at: UnixMillis,
}

/// What consuming a ticket found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TicketOutcome {
    /// The ticket was valid and is now used; it belongs to this user.
    Accepted {
        /// The ticket's user.
        username: String,
    },
    /// The ticket exists but was consumed before.
    Used,
    /// The ticket exists but its `expires_at` has passed.
    Expired,
    /// No such ticket.
    Unknown,
}

/// Whether anyone may read a room, or only its members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RoomKind {
    /// Any authenticated user may subscribe and read its history.
    Public,
    /// Only members; to everyone else the room does not exist.
    Private,
}

impl RoomKind {
    /// `"public"` or `"private"`, as on the wire and in MongoDB.
    pub fn as_str(self) -> &'static str {
        match self {
            RoomKind::Public => "public",
            RoomKind::Private => "private",
        }
    }

    /// Parses the wire form.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "public" => Some(RoomKind::Public),
            "private" => Some(RoomKind::Private),
            _ => None,
        }
    }
}

/// A stored room (`lobby` is never stored: it always exists and is built by `rooms`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomRecord {
    /// The id, `^[a-z0-9][a-z0-9_-]{2,31}$`.
    pub id: String,
    /// Public or private.
    pub kind: RoomKind,
    /// 0 to 100 characters.
    pub title: String,
    /// The creator (the registered form of the username); `None` only for `lobby`.
    pub owner: Option<String>,
    /// Creation time.
    pub created_at: UnixMillis,
}

/// One entry of a history stream: a room's (`room:<id>`) or a direct conversation's
/// (`direct:<a>:<b>`, see `rooms::direct_stream`). `frame` is the JSON frame exactly as sockets got
/// it, so history and recovery return the same bytes as live delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// The stream key.
    pub stream: String,
    /// The message id: increasing within a stream.
    pub id: u64,
    /// Server time of acceptance.
    pub ts: UnixMillis,
    /// The frame as delivered.
    pub frame: String,
}

/// The history stream of a room.
pub fn room_stream(room: &str) -> String {
    format!("room:{room}")
}

/// The history stream of the direct conversation between two users: one stream whichever of
/// them writes (the lower-cased names, sorted, so the key is the same from both sides).
pub fn direct_stream(a: &str, b: &str) -> String {
    let (a, b) = (UserRecord::key_of(a), UserRecord::key_of(b));
    let (low, high) = if a <= b { (a, b) } else { (b, a) };
    format!("direct:{low}:{high}")
}

/// Failures of the storage boundary.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness constraint was violated (the username is taken).
    #[error("duplicate key")]
    Duplicate,
    /// The backend could not be reached, did not answer in time, or is passing through a state in
    /// which it cannot serve (shutting down, electing a primary): retrying later may succeed (503).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The backend answered and refused the operation (a bad value, an unsupported operator, a
    /// failed validation): a bug or a misconfigured database, not an outage, and a retry will not
    /// help (500). `code` is the server's error code when it gave one.
    #[error("store rejected the operation (code {code:?}): {message}")]
    Rejected {
        /// The server's error code.
        code: Option<i32>,
        /// The server's message.
        message: String,
    },
}

/// The operations wsgate needs from a backend. Implementations are cheap to share (`Arc<dyn Store>`).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `"memory"` or `"mongodb"`, as reported by `/api/health`.
    fn kind(&self) -> &'static str;

    /// Checks that the backend answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Drops records expired at `now` (garbage collection only: every check compares expiry
    /// itself); how many. The default does nothing, for backends that collect their own garbage
    /// (MongoDB's TTL indexes).
    async fn purge_expired(&self, _now: UnixMillis) -> Result<usize, StoreError> {
        Ok(0)
    }

    /// Creates a user; `StoreError::Duplicate` when the username (case-insensitively) exists.
    async fn create_user(&self, user: UserRecord) -> Result<(), StoreError>;

    /// Finds a user by username, case-insensitively.
    async fn find_user(&self, username: &str) -> Result<Option<UserRecord>, StoreError>;

    /// Stores a new ticket (unused).
    async fn insert_ticket(&self, ticket: TicketRecord) -> Result<(), StoreError>;

    /// Atomically marks the ticket used if it is unused and `expires_at > now`, and says what it found.
    /// Of any number of concurrent calls with one hash, at most one returns `Accepted`.
    async fn consume_ticket(
        &self,
        hash: &TicketHash,
        now: UnixMillis,
    ) -> Result<TicketOutcome, StoreError>;

    /// Records a revocation, remembered until `expires_at` (the last instant a token it covers could
    /// still be accepted) and stamped `now` for the revocation feed.
    async fn revoke(
        &self,
        what: &Revoked,
        expires_at: UnixMillis,
        now: UnixMillis,
    ) -> Result<(), StoreError>;

    /// Whether an access token is revoked, by its own `jti` or through its session `sid`.
    async fn is_revoked(&self, jti: &str, sid: &str) -> Result<bool, StoreError>;

    /// Revocations stamped after `since`, for instances to close their own sockets of a token or
    /// session revoked through another instance.
    async fn revocations_since(&self, since: UnixMillis) -> Result<Vec<Revoked>, StoreError>;

    /// Starts a session (generation 0).
    async fn create_session(&self, session: SessionRecord) -> Result<(), StoreError>;

    /// Rotates a session's refresh token, atomically: only the current generation with the current
    /// hash moves the session on. Of concurrent calls with one token exactly one is `Rotated`; the
    /// others, and any later call with that token, are `Reused`.
    async fn rotate_refresh(
        &self,
        rotation: &Rotation,
        now: UnixMillis,
    ) -> Result<RefreshOutcome, StoreError>;

    /// Marks a session revoked (its refresh tokens stop working) and records the `sid:` revocation
    /// for its access tokens until `access_until`.
    async fn revoke_session(
        &self,
        sid: &str,
        access_until: UnixMillis,
        now: UnixMillis,
    ) -> Result<(), StoreError>;

    /// Revokes, as `revoke_session` does, every live (unrevoked, unexpired at `now`) session of
    /// `username` but `spare` and the `keep - 1` newest others (by `created_at`, then id); returns
    /// the ids it revoked. `spare` is the session a login just created: whatever the clocks of
    /// other instances wrote, it is never the one to go.
    async fn revoke_sessions_beyond(
        &self,
        username: &str,
        keep: usize,
        spare: &str,
        access_until: UnixMillis,
        now: UnixMillis,
    ) -> Result<Vec<String>, StoreError>;

    /// Revokes every session of `username`; returns their ids.
    async fn revoke_user_sessions(
        &self,
        username: &str,
        access_until: UnixMillis,
        now: UnixMillis,
    ) -> Result<Vec<String>, StoreError>;
    /// Creates a room with its owner as first member, in one step; `StoreError::Duplicate` when the
    /// id exists.
    async fn create_room(&self, room: RoomRecord) -> Result<(), StoreError>;

    /// Finds a room by id.
    async fn find_room(&self, id: &str) -> Result<Option<RoomRecord>, StoreError>;

    /// Deletes a room, its member list and its history; whether it existed.
    async fn delete_room(&self, id: &str) -> Result<bool, StoreError>;

    /// Every public room and every private room `user` is a member of, with whether `user` is on
    /// the member list, sorted by id.
    async fn rooms_visible_to(&self, user: &str) -> Result<Vec<(RoomRecord, bool)>, StoreError>;

    /// Puts `user` on the member list of `room` (idempotent).
    async fn add_member(&self, room: &str, user: &str) -> Result<(), StoreError>;

    /// Takes `user` off the member list of `room`; whether it was on it.
    async fn remove_member(&self, room: &str, user: &str) -> Result<bool, StoreError>;

    /// Whether `user` is on the member list of `room`.
    async fn is_member(&self, room: &str, user: &str) -> Result<bool, StoreError>;

    /// The member list of `room`, sorted.
    async fn room_members(&self, room: &str) -> Result<Vec<String>, StoreError>;

    /// Appends history entries. Idempotent by `(stream, id)`: a batch retried after a partial
    /// write stores each entry once.
    async fn append_history(&self, entries: &[HistoryEntry]) -> Result<(), StoreError>;

    /// Up to `limit` entries of `stream` with an id below `before` (all when `None`) and `ts` at
    /// or after `not_before` (retention: never trust the TTL monitor), newest first.
    async fn history(
        &self,
        stream: &str,
        before: Option<u64>,
        limit: usize,
        not_before: UnixMillis,
    ) -> Result<Vec<HistoryEntry>, StoreError>;

    /// Whether `stream` holds an entry with this id (at or after `not_before`).
    async fn history_contains(
        &self,
        stream: &str,
        id: u64,
        not_before: UnixMillis,
    ) -> Result<bool, StoreError>;
}
