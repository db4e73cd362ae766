//! MongoDB backend: users, tickets, sessions, revocations, rooms (with their member lists) and
//! history in six collections, shared by every wsgate instance pointed at the same database.
//!
//! Every atomic operation is one server-side step and checks expiry itself against the caller's
//! `now`; the TTL indexes only collect garbage. Every call is bounded by the configured timeout
//! (server selection and the operation itself), so an unreachable or hung database turns into a fast
//! `StoreError::Unavailable` (503) instead of requests piling up; a command the server refuses is
//! `StoreError::Rejected` (500), never mistaken for an outage.
//!
//! Write concerns: users, sessions and revocations are written `{w: "majority", j: true}`, so an
//! acknowledged registration, login or logout survives a crash of the primary (and a failover:
//! a majority-acknowledged write is never rolled back); rooms too (a room and its member list are
//! access control). Tickets are written `w: 1`: a ticket lost in a crash fails safe (the client
//! mints another), and it is the hottest write. History is `w: 1` as well: its writer batches and
//! retries, and a message is already delivered when it is written.

use std::future::IntoFuture;
use std::time::Duration;

use async_trait::async_trait;
use mongodb::bson::{doc, DateTime};
use mongodb::error::{Error as MongoError, ErrorKind, WriteFailure};
use mongodb::options::{
    Acknowledgment, ClientOptions, CollectionOptions, IndexOptions, ReturnDocument, WriteConcern,
};
use mongodb::{Client, Collection, Database, IndexModel};
use serde::{Deserialize, Serialize};

use super::{
    HistoryEntry, RefreshOutcome, Revoked, RoomKind, RoomRecord, Rotation, SessionRecord, Store,
    StoreError, TicketHash, TicketOutcome, TicketRecord, UnixMillis, UserRecord,
};

/// How long history is kept by default (`WSGATE_HISTORY_DAYS`).
pub const DEFAULT_HISTORY_RETENTION: Duration = Duration::from_secs(30 * 86_400);

/// Ticket documents outlive their expiry by this much before the TTL monitor may delete them. Within
/// that minute the store itself still answers `Expired`/`Used` (the monitor runs about every 60 s, so
/// deletion comes 60 to 120 s after expiry, never before). Past it, the gateway no longer asks: a
/// ticket carries its own MAC-protected expiry, checked before the store, so an expired ticket is
/// reported `ticket_expired` whether or not its document still exists.
const TICKET_TTL_GRACE: Duration = Duration::from_secs(60);

const USERS: &str = "users";
const TICKETS: &str = "ws_tickets";
const REVOKED: &str = "revoked_tokens";
const SESSIONS: &str = "sessions";
const ROOMS: &str = "rooms";
const HISTORY: &str = "history";

#[derive(Debug, Serialize, Deserialize)]
struct UserDoc {
    username: String,
    /// Lower-cased username: the unique key.
    username_key: String,
    password_hash: String,
    created_at: DateTime,
}

#[derive(Debug, Serialize, Deserialize)]
struct TicketDoc {
    /// Hex SHA-256 of the ticket text.
    #[serde(rename = "_id")]
    id: String,
    username: String,
    expires_at: DateTime,
    used: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct RevokedDoc {
    /// `jti:<jti>` or `sid:<sid>` (see `Revoked::key`).
    #[serde(rename = "_id")]
    id: String,
    /// The last instant a token it covers could be accepted: after this it is garbage.
    expires_at: DateTime,
    /// When it was recorded, for the revocation feed other instances poll.
    revoked_at: DateTime,
}

#[derive(Debug, Serialize, Deserialize)]
struct SessionDoc {
    #[serde(rename = "_id")]
    sid: String,
    username: String,
    username_key: String,
    expires_at: DateTime,
    revoked: bool,
    /// Generation of the current refresh token (BSON has no unsigned integers).
    generation: i64,
    /// Hex SHA-256 of the current refresh token.
    current_hash: String,
    /// When the login happened (absent in sessions written before the per-user cap: those count as
    /// the oldest).
    #[serde(default)]
    created_at: Option<DateTime>,
}

/// A room with its member list in one document, so that creating a room with its owner, and every
/// membership change, is one atomic single-document write. A multikey index on `members` serves
/// "rooms of this user".
#[derive(Debug, Serialize, Deserialize)]
struct RoomDoc {
    #[serde(rename = "_id")]
    id: String,
    kind: String,
    title: String,
    owner: Option<String>,
    created_at: DateTime,
    /// Left out by projections that do not need it.
    #[serde(default)]
    members: Vec<String>,
}

impl RoomDoc {
    fn record(self) -> Result<RoomRecord, StoreError> {
        let kind = RoomKind::parse(&self.kind).ok_or_else(|| StoreError::Rejected {
            code: None,
            message: format!("room {} has an unknown kind {:?}", self.id, self.kind),
        })?;
        Ok(RoomRecord {
            id: self.id,
            kind,
            title: self.title,
            owner: self.owner,
            created_at: self.created_at.timestamp_millis(),
        })
    }
}

/// One history entry; unique by `(stream, id)`, collected by a TTL index on `at`.
#[derive(Debug, Serialize, Deserialize)]
struct HistoryDoc {
    stream: String,
    /// The message id (BSON has no unsigned integers; ids stay below 2^63).
    id: i64,
    at: DateTime,
    frame: String,
}

impl From<HistoryDoc> for HistoryEntry {
    fn from(doc: HistoryDoc) -> Self {
        HistoryEntry {
            stream: doc.stream,
            id: doc.id as u64,
            ts: doc.at.timestamp_millis(),
            frame: doc.frame,
        }
    }
}

/// Handle to the MongoDB store. Cheap to clone (the driver's client is a shared pool).
#[derive(Clone)]
pub struct MongoStore {
    db: Database,
    users: Collection<UserDoc>,
    tickets: Collection<TicketDoc>,
    revoked: Collection<RevokedDoc>,
    sessions: Collection<SessionDoc>,
    rooms: Collection<RoomDoc>,
    history: Collection<HistoryDoc>,
    timeout: Duration,
    history_retention: Duration,
}

/// The hosts of a connection string, for logs: never the credentials.
pub fn redacted_hosts(options: &ClientOptions) -> String {
    options
        .hosts
        .iter()
        .map(|h| h.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn unavailable(err: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(err.to_string())
}

/// Server error codes that mean "not now" rather than "never": the server is unreachable through
/// it, shutting down, changing primaries, or out of time (the retryable codes of the drivers' spec,
/// plus write-concern and time-limit failures).
const TRANSIENT_CODES: &[i32] = &[
    6,     // HostUnreachable
    7,     // HostNotFound
    50,    // MaxTimeMSExpired
    64,    // WriteConcernFailed (wtimeout)
    89,    // NetworkTimeout
    91,    // ShutdownInProgress
    134,   // ReadConcernMajorityNotAvailableYet
    189,   // PrimarySteppedDown
    262,   // ExceededTimeLimit
    9001,  // SocketException
    10107, // NotWritablePrimary
    11600, // InterruptedAtShutdown
    11602, // InterruptedDueToReplStateChange
    13435, // NotPrimaryNoSecondaryOk
    13436, // NotPrimaryOrSecondary
];

/// The server's error code inside a driver error, when the server sent one.
fn server_code(err: &MongoError) -> Option<i32> {
    match err.kind.as_ref() {
        ErrorKind::Command(e) => Some(e.code),
        ErrorKind::Write(WriteFailure::WriteError(e)) => Some(e.code),
        ErrorKind::Write(WriteFailure::WriteConcernError(e)) => Some(e.code),
        ErrorKind::InsertMany(e) => e
            .write_errors
            .iter()
            .flatten()
            .map(|w| w.code)
            .next()
            .or(e.write_concern_error.as_ref().map(|w| w.code)),
        _ => None,
    }
}

/// Sorts a driver error: a duplicate key, an outage (503), or a refusal (500).
fn classify(err: MongoError) -> StoreError {
    if is_duplicate(&err) {
        return StoreError::Duplicate;
    }
    let code = server_code(&err);
    let outage = match err.kind.as_ref() {
        ErrorKind::Io(_)
        | ErrorKind::ServerSelection { .. }
        | ErrorKind::ConnectionPoolCleared { .. }
        | ErrorKind::DnsResolve { .. }
        | ErrorKind::Shutdown => true,
        _ => {
            code.is_some_and(|c| TRANSIENT_CODES.contains(&c))
                || err.contains_label("RetryableWriteError")
                || err.contains_label("TransientTransactionError")
        }
    };
    if outage {
        StoreError::Unavailable(err.to_string())
    } else {
        StoreError::Rejected {
            code,
            message: err.to_string(),
        }
    }
}

/// Whether a driver error is a duplicate-key violation (code 11000), whichever kind wraps it.
fn is_duplicate(err: &MongoError) -> bool {
    const DUPLICATE_KEY: i32 = 11000;
    match err.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(e)) => e.code == DUPLICATE_KEY,
        ErrorKind::Command(e) => e.code == DUPLICATE_KEY,
        ErrorKind::InsertMany(e) => e
            .write_errors
            .iter()
            .flatten()
            .any(|w| w.code == DUPLICATE_KEY),
        // Servers put the code in the message too ("E11000 duplicate key error …").
        _ => err.to_string().contains("E11000"),
    }
}

/// Whether every failure of an unordered bulk insert is a duplicate key (and nothing else failed).
fn only_duplicates(err: &MongoError) -> bool {
    const DUPLICATE_KEY: i32 = 11000;
    match err.kind.as_ref() {
        ErrorKind::InsertMany(e) => {
            e.write_concern_error.is_none()
                && e.write_errors
                    .as_ref()
                    .is_some_and(|w| !w.is_empty() && w.iter().all(|w| w.code == DUPLICATE_KEY))
        }
        ErrorKind::Write(WriteFailure::WriteError(e)) => e.code == DUPLICATE_KEY,
        _ => false,
    }
}

/// A TTL index on `expires_at` that lets the monitor delete a document as soon as it expires.
fn ttl_index() -> IndexModel {
    IndexModel::builder()
        .keys(doc! {"expires_at": 1})
        .options(
            IndexOptions::builder()
                .expire_after(Duration::ZERO)
                .name("expires_at_ttl".to_string())
                .build(),
        )
        .build()
}

fn hex(hash: &[u8; 32]) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

impl MongoStore {
    /// Connects, checks the server answers, and creates the indexes (idempotent). `timeout` bounds
    /// server selection, connection and every later operation.
    pub async fn connect(uri: &str, db: &str, timeout: Duration) -> Result<Self, StoreError> {
        Self::connect_with_retention(uri, db, timeout, DEFAULT_HISTORY_RETENTION).await
    }

    /// `connect`, with history kept for `history_retention` (the TTL index on `history.at`).
    pub async fn connect_with_retention(
        uri: &str,
        db: &str,
        timeout: Duration,
        history_retention: Duration,
    ) -> Result<Self, StoreError> {
        let mut options = ClientOptions::parse(uri)
            .await
            .map_err(|e| StoreError::Unavailable(format!("invalid MongoDB URI: {e}")))?;
        options.app_name = Some("wsgate".into());
        options.server_selection_timeout = Some(timeout);
        options.connect_timeout = Some(timeout);
        let hosts = redacted_hosts(&options);
        let client = Client::with_options(options).map_err(unavailable)?;
        let db = client.database(db);
        // What must survive a crash once acknowledged (see the module comment). The server gives up
        // waiting for the majority when the store's own deadline would.
        let durable = CollectionOptions::builder()
            .write_concern(
                WriteConcern::builder()
                    .w(Acknowledgment::Majority)
                    .journal(true)
                    .w_timeout(timeout)
                    .build(),
            )
            .build();
        // Set, not inherited: a deployment default of `majority` would otherwise slow the hottest
        // writes for a promise they do not need.
        let fast = CollectionOptions::builder()
            .write_concern(
                WriteConcern::builder()
                    .w(Acknowledgment::Nodes(1))
                    .w_timeout(timeout)
                    .build(),
            )
            .build();
        let store = Self {
            users: db.collection_with_options(USERS, durable.clone()),
            tickets: db.collection_with_options(TICKETS, fast.clone()),
            revoked: db.collection_with_options(REVOKED, durable.clone()),
            sessions: db.collection_with_options(SESSIONS, durable.clone()),
            rooms: db.collection_with_options(ROOMS, durable),
            // History is batched and retried by its writer; one acknowledgement is enough.
            history: db.collection_with_options(HISTORY, fast),
            db,
            timeout,
            history_retention,
        };
        store
            .ping()
            .await
            .map_err(|e| StoreError::Unavailable(format!("MongoDB at {hosts}: {e}")))?;
        store.create_indexes().await?;
        tracing::info!(hosts = %hosts, db = store.db.name(), "connected to MongoDB");
        Ok(store)
    }

    async fn create_indexes(&self) -> Result<(), StoreError> {
        let unique_user = IndexModel::builder()
            .keys(doc! {"username_key": 1})
            .options(
                IndexOptions::builder()
                    .unique(true)
                    .name("username_unique".to_string())
                    .build(),
            )
            .build();
        self.bounded(self.users.create_index(unique_user)).await?;
        let ticket_ttl = IndexModel::builder()
            .keys(doc! {"expires_at": 1})
            .options(
                IndexOptions::builder()
                    .expire_after(TICKET_TTL_GRACE)
                    .name("expires_at_ttl".to_string())
                    .build(),
            )
            .build();
        self.bounded(self.tickets.create_index(ticket_ttl)).await?;
        // A revocation is useless once the tokens it covers are past `exp` + leeway, which is what
        // `expires_at` holds, so the monitor may delete it right then. Sessions and refresh tokens
        // likewise: every read checks `expires_at` itself, the monitor only reclaims space.
        self.bounded(self.revoked.create_index(ttl_index())).await?;
        self.bounded(self.sessions.create_index(ttl_index()))
            .await?;
        let feed = IndexModel::builder()
            .keys(doc! {"revoked_at": 1})
            .options(
                IndexOptions::builder()
                    .name("revoked_at".to_string())
                    .build(),
            )
            .build();
        self.bounded(self.revoked.create_index(feed)).await?;
        let by_user = IndexModel::builder()
            .keys(doc! {"username_key": 1})
            .options(
                IndexOptions::builder()
                    .name("username_key".to_string())
                    .build(),
            )
            .build();
        self.bounded(self.sessions.create_index(by_user)).await?;
        let by_member = IndexModel::builder()
            .keys(doc! {"members": 1})
            .options(IndexOptions::builder().name("members".to_string()).build())
            .build();
        self.bounded(self.rooms.create_index(by_member)).await?;
        let by_kind = IndexModel::builder()
            .keys(doc! {"kind": 1, "_id": 1})
            .options(IndexOptions::builder().name("kind_id".to_string()).build())
            .build();
        self.bounded(self.rooms.create_index(by_kind)).await?;
        let by_stream = IndexModel::builder()
            .keys(doc! {"stream": 1, "id": -1})
            .options(
                IndexOptions::builder()
                    .unique(true)
                    .name("stream_id".to_string())
                    .build(),
            )
            .build();
        self.bounded(self.history.create_index(by_stream)).await?;
        self.history_ttl_index().await
    }

    /// The TTL index collecting history after the retention. An existing index with another
    /// retention is changed in place (`collMod`); reads filter by age themselves, so a database
    /// that cannot change it only keeps entries longer, never shows them.
    async fn history_ttl_index(&self) -> Result<(), StoreError> {
        const NAME: &str = "at_ttl";
        let ttl = IndexModel::builder()
            .keys(doc! {"at": 1})
            .options(
                IndexOptions::builder()
                    .expire_after(self.history_retention)
                    .name(NAME.to_string())
                    .build(),
            )
            .build();
        match self.bounded(self.history.create_index(ttl)).await {
            Ok(_) => Ok(()),
            Err(StoreError::Rejected { .. }) => {
                let change = doc! {
                    "collMod": HISTORY,
                    "index": {"name": NAME, "expireAfterSeconds": self.history_retention.as_secs() as i64},
                };
                if let Err(err) = self.bounded(self.db.run_command(change)).await {
                    tracing::warn!(%err, "could not change the retention of the history TTL index");
                }
                Ok(())
            }
            Err(err) => Err(err),
        }
    }

    /// Runs a driver call with the store's deadline; a failure is sorted by `classify`, no answer in
    /// time is `Unavailable`.
    async fn bounded<T>(
        &self,
        call: impl IntoFuture<Output = Result<T, MongoError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.timeout, call.into_future())
            .await
            .map_err(|_| StoreError::Unavailable(format!("no answer within {:?}", self.timeout)))?
            .map_err(classify)
    }

    /// Inserts a document; a duplicate key is `StoreError::Duplicate`.
    async fn insert<D: Serialize + Send + Sync>(
        &self,
        collection: &Collection<D>,
        doc: D,
    ) -> Result<(), StoreError> {
        self.bounded(collection.insert_one(doc)).await.map(|_| ())
    }

    /// The database this store writes to.
    pub fn database_name(&self) -> &str {
        self.db.name()
    }
}

#[async_trait]
impl Store for MongoStore {
    fn kind(&self) -> &'static str {
        "mongodb"
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.bounded(self.db.run_command(doc! {"ping": 1}))
            .await
            .map(|_| ())
    }

    async fn create_user(&self, user: UserRecord) -> Result<(), StoreError> {
        let doc = UserDoc {
            username_key: UserRecord::key_of(&user.username),
            username: user.username,
            password_hash: user.password_hash,
            created_at: DateTime::from_millis(user.created_at),
        };
        self.insert(&self.users, doc).await
    }

    async fn find_user(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        let found = self
            .bounded(
                self.users
                    .find_one(doc! {"username_key": UserRecord::key_of(username)}),
            )
            .await?;
        Ok(found.map(|u| UserRecord {
            username: u.username,
            password_hash: u.password_hash,
            created_at: u.created_at.timestamp_millis(),
        }))
    }

    async fn insert_ticket(&self, ticket: TicketRecord) -> Result<(), StoreError> {
        let doc = TicketDoc {
            id: hex(&ticket.hash),
            username: ticket.username,
            expires_at: DateTime::from_millis(ticket.expires_at),
            used: false,
        };
        self.insert(&self.tickets, doc).await
    }

    async fn consume_ticket(
        &self,
        hash: &TicketHash,
        now: UnixMillis,
    ) -> Result<TicketOutcome, StoreError> {
        let id = hex(hash);
        let now = DateTime::from_millis(now);
        // One atomic step: only an unused, unexpired ticket flips to used. Concurrent consumers
        // race on this document and exactly one of them matches.
        let claimed = self
            .bounded(
                self.tickets
                    .find_one_and_update(
                        doc! {"_id": &id, "used": false, "expires_at": {"$gt": now}},
                        doc! {"$set": {"used": true}},
                    )
                    .return_document(ReturnDocument::Before),
            )
            .await?;
        if let Some(ticket) = claimed {
            return Ok(TicketOutcome::Accepted {
                username: ticket.username,
            });
        }
        // Not claimable: find out why, for a precise error.
        let existing = self
            .bounded(self.tickets.find_one(doc! {"_id": &id}))
            .await?;
        Ok(match existing {
            None => TicketOutcome::Unknown,
            Some(t) if t.expires_at <= now => TicketOutcome::Expired,
            // Used, or claimed by a concurrent consumer between our two reads.
            Some(_) => TicketOutcome::Used,
        })
    }

    async fn revoke(
        &self,
        what: &Revoked,
        expires_at: UnixMillis,
        now: UnixMillis,
    ) -> Result<(), StoreError> {
        self.bounded(
            self.revoked
                .update_one(
                    doc! {"_id": what.key()},
                    doc! {
                        "$max": {"expires_at": DateTime::from_millis(expires_at)},
                        "$setOnInsert": {"revoked_at": DateTime::from_millis(now)},
                    },
                )
                .upsert(true),
        )
        .await
        .map(|_| ())
    }

    async fn is_revoked(&self, jti: &str, sid: &str) -> Result<bool, StoreError> {
        let keys = [
            Revoked::Token(jti.to_owned()).key(),
            Revoked::Session(sid.to_owned()).key(),
        ];
        Ok(self
            .bounded(self.revoked.find_one(doc! {"_id": {"$in": keys.to_vec()}}))
            .await?
            .is_some())
    }

    async fn revocations_since(&self, since: UnixMillis) -> Result<Vec<Revoked>, StoreError> {
        use futures_util::TryStreamExt;
        let cursor = self
            .bounded(
                self.revoked
                    .find(doc! {"revoked_at": {"$gt": DateTime::from_millis(since)}}),
            )
            .await?;
        let docs: Vec<RevokedDoc> = self.bounded(cursor.try_collect()).await?;
        Ok(docs
            .iter()
            .filter_map(|d| Revoked::from_key(&d.id))
            .collect())
    }

    async fn create_session(&self, session: SessionRecord) -> Result<(), StoreError> {
        self.insert(
            &self.sessions,
            SessionDoc {
                username_key: UserRecord::key_of(&session.username),
                username: session.username,
                sid: session.sid,
                expires_at: DateTime::from_millis(session.expires_at),
                revoked: false,
                generation: session.generation as i64,
                current_hash: hex(&session.current_hash),
                created_at: Some(DateTime::from_millis(session.created_at)),
            },
        )
        .await
    }

    async fn rotate_refresh(
        &self,
        rotation: &Rotation,
        now: UnixMillis,
    ) -> Result<RefreshOutcome, StoreError> {
        let now = DateTime::from_millis(now);
        let generation = rotation.generation as i64;
        // One compare-and-set on the session: only the current generation with the current hash
        // moves it on, so of concurrent rotations with one token exactly one matches.
        let rotated = self
            .bounded(self.sessions.find_one_and_update(
                doc! {
                    "_id": &rotation.sid,
                    "revoked": false,
                    "expires_at": {"$gt": now},
                    "generation": generation,
                    "current_hash": hex(&rotation.presented),
                },
                doc! {
                    "$set": {"generation": generation + 1, "current_hash": hex(&rotation.next)},
                    "$max": {"expires_at": DateTime::from_millis(rotation.next_expires_at)},
                },
            ))
            .await?;
        if let Some(session) = rotated {
            return Ok(RefreshOutcome::Rotated {
                username: session.username,
            });
        }
        // Not rotatable: find out why.
        let session = self
            .bounded(self.sessions.find_one(doc! {"_id": &rotation.sid}))
            .await?;
        Ok(match session {
            Some(s) if !s.revoked && s.expires_at > now && generation < s.generation => {
                RefreshOutcome::Reused {
                    username: s.username,
                }
            }
            _ => RefreshOutcome::Invalid,
        })
    }

    async fn revoke_session(
        &self,
        sid: &str,
        access_until: UnixMillis,
        now: UnixMillis,
    ) -> Result<(), StoreError> {
        self.revoke_sessions(&[sid.to_owned()], access_until, now)
            .await
    }

    async fn revoke_sessions_beyond(
        &self,
        username: &str,
        keep: usize,
        spare: &str,
        access_until: UnixMillis,
        now: UnixMillis,
    ) -> Result<Vec<String>, StoreError> {
        let filter = doc! {
            "username_key": UserRecord::key_of(username),
            "_id": {"$ne": spare},
            "revoked": false,
            "expires_at": {"$gt": DateTime::from_millis(now)},
        };
        let beyond = self
            .session_ids(
                self.sessions
                    .find(filter)
                    .sort(doc! {"created_at": -1, "_id": -1})
                    .skip(keep.saturating_sub(1) as u64),
            )
            .await?;
        self.revoke_sessions(&beyond, access_until, now).await?;
        Ok(beyond)
    }

    async fn revoke_user_sessions(
        &self,
        username: &str,
        access_until: UnixMillis,
        now: UnixMillis,
    ) -> Result<Vec<String>, StoreError> {
        let filter = doc! {"username_key": UserRecord::key_of(username), "revoked": false};
        let sids = self.session_ids(self.sessions.find(filter)).await?;
        self.revoke_sessions(&sids, access_until, now).await?;
        Ok(sids)
    }

    async fn create_room(&self, room: RoomRecord) -> Result<(), StoreError> {
        let doc = RoomDoc {
            members: room.owner.iter().cloned().collect(),
            id: room.id,
            kind: room.kind.as_str().to_owned(),
            title: room.title,
            owner: room.owner,
            created_at: DateTime::from_millis(room.created_at),
        };
        self.insert(&self.rooms, doc).await
    }

    async fn find_room(&self, id: &str) -> Result<Option<RoomRecord>, StoreError> {
        // The member list can be long and is not needed here.
        let found = self
            .bounded(
                self.rooms
                    .find_one(doc! {"_id": id})
                    .projection(doc! {"members": 0}),
            )
            .await?;
        found.map(RoomDoc::record).transpose()
    }

    async fn delete_room(&self, id: &str) -> Result<bool, StoreError> {
        let deleted = self
            .bounded(self.rooms.delete_one(doc! {"_id": id}))
            .await?;
        // The room is gone once its document is. Its history may take longer than one call's
        // deadline to delete; what is left is never shown (a room's history starts at its
        // `created_at`) and the TTL index collects it.
        if let Err(err) = self
            .bounded(
                self.history
                    .delete_many(doc! {"stream": super::room_stream(id)}),
            )
            .await
        {
            tracing::warn!(%err, room = id, "history of a deleted room left to the TTL index");
        }
        Ok(deleted.deleted_count > 0)
    }

    async fn rooms_visible_to(&self, user: &str) -> Result<Vec<(RoomRecord, bool)>, StoreError> {
        use futures_util::TryStreamExt;
        let cursor = self
            .bounded(
                self.rooms
                    .find(doc! {"$or": [{"kind": "public"}, {"members": user}]})
                    .sort(doc! {"_id": 1}),
            )
            .await?;
        let docs: Vec<RoomDoc> = self.bounded(cursor.try_collect()).await?;
        docs.into_iter()
            .map(|doc| {
                let member = doc.members.iter().any(|m| m == user);
                doc.record().map(|room| (room, member))
            })
            .collect()
    }

    async fn add_member(&self, room: &str, user: &str) -> Result<(), StoreError> {
        self.bounded(
            self.rooms
                .update_one(doc! {"_id": room}, doc! {"$addToSet": {"members": user}}),
        )
        .await
        .map(|_| ())
    }

    async fn remove_member(&self, room: &str, user: &str) -> Result<bool, StoreError> {
        let updated = self
            .bounded(
                self.rooms
                    .update_one(doc! {"_id": room}, doc! {"$pull": {"members": user}}),
            )
            .await?;
        Ok(updated.modified_count > 0)
    }

    async fn is_member(&self, room: &str, user: &str) -> Result<bool, StoreError> {
        let found = self
            .bounded(
                self.rooms
                    .count_documents(doc! {"_id": room, "members": user}),
            )
            .await?;
        Ok(found > 0)
    }

    async fn room_members(&self, room: &str) -> Result<Vec<String>, StoreError> {
        let found = self
            .bounded(self.rooms.find_one(doc! {"_id": room}))
            .await?;
        let mut members = found.map(|r| r.members).unwrap_or_default();
        members.sort_unstable();
        Ok(members)
    }

    async fn append_history(&self, entries: &[HistoryEntry]) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let docs = entries.iter().map(|e| HistoryDoc {
            stream: e.stream.clone(),
            id: e.id as i64,
            at: DateTime::from_millis(e.ts),
            frame: e.frame.clone(),
        });
        // Unordered: one duplicate (an entry a failed batch did write) does not stop the rest, and
        // a batch whose only failures are duplicates is fully stored.
        let insert = self.history.insert_many(docs).ordered(false).into_future();
        match tokio::time::timeout(self.timeout, insert).await {
            Err(_) => Err(StoreError::Unavailable(format!(
                "no answer within {:?}",
                self.timeout
            ))),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(err)) if only_duplicates(&err) => Ok(()),
            Ok(Err(err)) => Err(classify(err)),
        }
    }

    async fn history(
        &self,
        stream: &str,
        before: Option<u64>,
        limit: usize,
        not_before: UnixMillis,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        use futures_util::TryStreamExt;
        let mut filter = doc! {"stream": stream, "at": {"$gte": DateTime::from_millis(not_before)}};
        if let Some(before) = before {
            filter.insert("id", doc! {"$lt": before as i64});
        }
        let cursor = self
            .bounded(
                self.history
                    .find(filter)
                    .sort(doc! {"id": -1})
                    .limit(limit as i64),
            )
            .await?;
        let docs: Vec<HistoryDoc> = self.bounded(cursor.try_collect()).await?;
        Ok(docs.into_iter().map(HistoryEntry::from).collect())
    }

    async fn history_contains(
        &self,
        stream: &str,
        id: u64,
        not_before: UnixMillis,
    ) -> Result<bool, StoreError> {
        let found = self
            .bounded(self.history.count_documents(doc! {
                "stream": stream,
                "id": id as i64,
                "at": {"$gte": DateTime::from_millis(not_before)},
            }))
            .await?;
        Ok(found > 0)
    }
}

impl MongoStore {
    /// The ids of the sessions a query finds.
    async fn session_ids(
        &self,
        query: mongodb::action::Find<'_, SessionDoc>,
    ) -> Result<Vec<String>, StoreError> {
        use futures_util::TryStreamExt;
        let cursor = self.bounded(query).await?;
        let sessions: Vec<SessionDoc> = self.bounded(cursor.try_collect()).await?;
        Ok(sessions.into_iter().map(|s| s.sid).collect())
    }

    /// Marks sessions revoked (their refresh tokens stop working), then records their `sid:`
    /// revocations (their access tokens stop working). Each write is idempotent, so a failure part
    /// way is mended by doing it again.
    async fn revoke_sessions(
        &self,
        sids: &[String],
        access_until: UnixMillis,
        now: UnixMillis,
    ) -> Result<(), StoreError> {
        if sids.is_empty() {
            return Ok(());
        }
        self.bounded(self.sessions.update_many(
            doc! {"_id": {"$in": sids}},
            doc! {"$set": {"revoked": true}},
        ))
        .await?;
        for sid in sids {
            self.revoke(&Revoked::Session(sid.clone()), access_until, now)
                .await?;
        }
        Ok(())
    }
}
