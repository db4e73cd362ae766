//! Storage boundary: the `Store` trait every backend implements, the records it keeps and its errors.
//!
//! The trait is shaped so that each operation is one atomic step in any backend (a single
//! `findOneAndUpdate` in MongoDB, one critical section in memory). Expiry is always checked by the
//! operation itself against the caller's `now`; background purges and TTL monitors are garbage
//! collection only and never decide whether a record is still valid.

use async_trait::async_trait;

pub mod memory;
pub mod mongo;

pub use memory::MemoryStore;
pub use mongo::MongoStore;

/// Milliseconds since the Unix epoch: the one time unit of every stored expiry.
pub type UnixMillis = i64;

/// Current wall-clock time in Unix milliseconds.
pub fn now_millis() -> UnixMillis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

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

/// Failures of the storage boundary.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness constraint was violated (the username is taken).
    #[error("duplicate key")]
    Duplicate,
    /// The backend could not be reached or did not answer in time.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// The operations wsgate needs from a backend. Implementations are cheap to share (`Arc<dyn Store>`).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `"memory"` or `"mongodb"`, as reported by `/api/health`.
    fn kind(&self) -> &'static str;

    /// Checks that the backend answers.
    async fn ping(&self) -> Result<(), StoreError>;

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

    /// Records that the token `jti` is revoked until `expires_at` (its `exp` plus the verification
    /// leeway: the last instant it could still be accepted).
    async fn revoke_token(&self, jti: &str, expires_at: UnixMillis) -> Result<(), StoreError>;

    /// Whether `jti` is revoked.
    async fn is_revoked(&self, jti: &str) -> Result<bool, StoreError>;
}
