//! The realtime seam: what the rest of the server asks of delivery, with two interchangeable
//! engines behind it: `Local` (this process is the whole service: the hub alone) and `Cluster`
//! (several nodes on Redis, see `cluster`). Callers never know which one runs; the scenario suite
//! runs against both.

use serde_json::value::RawValue;
use tokio::time::Instant;

use super::cluster::{Cluster, ClusterError, Target};
use super::hub::{ConnId, Hub, Joined, NotSubscribed, Published, SubscribeError};
use super::inbox::Kick;
use crate::clock::now_millis;
use crate::protocol::{FrameTemplate, ServerFrame, TEMPLATE_ID};
use crate::store::Revoked;

/// The realtime engine: cheap to clone.
#[derive(Clone)]
pub enum Engine {
    /// One process: the hub is everything.
    Local(Hub),
    /// One node of a cluster.
    Cluster(Cluster),
}

/// What an engine could not do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The cluster (Redis) could not be reached: nothing was published.
    #[error("the cluster is unavailable")]
    Unavailable,
}

impl From<ClusterError> for EngineError {
    fn from(err: ClusterError) -> Self {
        tracing::warn!(%err, "cluster request failed");
        EngineError::Unavailable
    }
}

/// Why a socket's frame was not published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishError {
    /// The socket is not subscribed to the room.
    NotSubscribed,
    /// The cluster could not be reached.
    Unavailable,
}

impl From<NotSubscribed> for PublishError {
    fn from(_: NotSubscribed) -> Self {
        PublishError::NotSubscribed
    }
}

impl From<EngineError> for PublishError {
    fn from(_: EngineError) -> Self {
        PublishError::Unavailable
    }
}

impl Engine {
    /// The hub of this process (its sockets, counts).
    pub fn hub(&self) -> &Hub {
        match self {
            Engine::Local(hub) => hub,
            Engine::Cluster(cluster) => cluster.hub(),
        }
    }

    /// Whether this process is one node of a cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self, Engine::Cluster(_))
    }

    /// `None` for a single node; for a cluster node, whether Redis answers and its stream is whole.
    pub fn cluster_healthy(&self) -> Option<bool> {
        match self {
            Engine::Local(_) => None,
            Engine::Cluster(cluster) => Some(cluster.healthy()),
        }
    }

    /// Adds an authenticated socket, subscribed to `lobby` (recovering from `since`).
    pub async fn join(
        &self,
        conn: ConnId,
        user: &str,
        jti: String,
        sid: String,
        since: Option<&str>,
    ) -> Result<Joined, EngineError> {
        match self {
            Engine::Local(hub) => Ok(hub.join(conn, user, jti, sid, since)),
            Engine::Cluster(cluster) => Ok(cluster.join(conn, user, jti, sid, since).await?),
        }
    }

    /// A socket closed.
    pub fn leave(&self, conn: ConnId) {
        match self {
            Engine::Local(hub) => {
                hub.leave(conn);
            }
            Engine::Cluster(cluster) => cluster.leave(conn),
        }
    }

    /// Subscribes a socket to a room it may read (checked at `epoch`, see `Hub::acl_epoch`).
    pub async fn subscribe(
        &self,
        conn: ConnId,
        room: &str,
        since: Option<&str>,
        epoch: u64,
    ) -> Result<(), SubscribeError> {
        match self {
            Engine::Local(hub) => hub.subscribe(conn, room, since, epoch),
            Engine::Cluster(cluster) => cluster.subscribe(conn, room, since, epoch).await,
        }
    }

    /// Unsubscribes a socket (reason `requested`).
    pub fn unsubscribe(&self, conn: ConnId, room: &str) {
        match self {
            Engine::Local(hub) => {
                hub.unsubscribe(conn, room);
            }
            Engine::Cluster(cluster) => cluster.unsubscribe(conn, room),
        }
    }

    /// A chat message from a socket to a room it is subscribed to.
    pub async fn publish(
        &self,
        conn: ConnId,
        room: &str,
        text: &str,
    ) -> Result<Published, PublishError> {
        match self {
            Engine::Local(hub) => Ok(hub.publish(conn, room, text)?),
            Engine::Cluster(cluster) => {
                let from = cluster.hub().sender(conn, room)?;
                let frame = FrameTemplate::of(&ServerFrame::Message {
                    room,
                    id: TEMPLATE_ID,
                    from: &from,
                    text,
                    ts: i64::MIN,
                });
                Ok(cluster
                    .publish(room, &frame)
                    .await
                    .map_err(EngineError::from)?)
            }
        }
    }

    /// An event from the application's backend to a room.
    pub async fn publish_event(
        &self,
        room: &str,
        data: &RawValue,
    ) -> Result<Published, EngineError> {
        match self {
            Engine::Local(hub) => Ok(hub.publish_event(room, data)),
            Engine::Cluster(cluster) => {
                let frame = FrameTemplate::of(&ServerFrame::Event {
                    room: Some(room),
                    to: None,
                    id: Some(TEMPLATE_ID),
                    data,
                    ts: i64::MIN,
                });
                Ok(cluster.publish(room, &frame).await?)
            }
        }
    }

    /// `typing` from a socket (throttled per socket and room).
    pub async fn typing(&self, conn: ConnId, room: &str, now: Instant) -> Result<(), PublishError> {
        match self {
            Engine::Local(hub) => Ok(hub.typing(conn, room, now)?),
            Engine::Cluster(cluster) => {
                let Some(user) = cluster.hub().typing_gate(conn, room, now)? else {
                    return Ok(());
                };
                let frame = ServerFrame::Typing { room, user: &user }.to_json();
                Ok(cluster
                    .typing(room, &user, &frame)
                    .await
                    .map_err(EngineError::from)?)
            }
        }
    }

    /// A direct message (both names in their registered form).
    pub async fn direct(&self, from: &str, to: &str, text: &str) -> Result<Published, EngineError> {
        match self {
            Engine::Local(hub) => Ok(hub.direct(from, to, text)),
            Engine::Cluster(cluster) => {
                let frame = FrameTemplate::of(&ServerFrame::Direct {
                    id: TEMPLATE_ID,
                    from,
                    to,
                    text,
                    ts: i64::MIN,
                });
                Ok(cluster.direct(from, to, &frame).await?)
            }
        }
    }

    /// An event from the application's backend to every socket of a user.
    pub async fn send_to_user(&self, user: &str, data: &RawValue) -> Result<(), EngineError> {
        match self {
            Engine::Local(hub) => {
                hub.send_to_user(user, data);
                Ok(())
            }
            Engine::Cluster(cluster) => {
                let frame = ServerFrame::Event {
                    room: None,
                    to: Some(user),
                    id: None,
                    data,
                    ts: now_millis(),
                }
                .to_json();
                Ok(cluster.send_to_user(user, &frame).await?)
            }
        }
    }

    /// A member was removed from a room (the store says so already): at once, on every node.
    pub async fn remove_member(&self, room: &str, user: &str) {
        match self {
            Engine::Local(hub) => {
                hub.remove_member(room, user);
            }
            Engine::Cluster(cluster) => cluster.remove_member(room, user).await,
        }
    }

    /// A room was deleted (from the store already): at once, on every node.
    pub async fn delete_room(&self, room: &str) {
        match self {
            Engine::Local(hub) => {
                hub.delete_room(room);
            }
            Engine::Cluster(cluster) => cluster.delete_room(room).await,
        }
    }

    /// Closes the sockets of a revoked token or session, on every node; how many of this node's.
    pub async fn kick(&self, what: &Revoked, kick: Kick) -> usize {
        match self {
            Engine::Local(hub) => hub.kick(what, kick),
            Engine::Cluster(cluster) => cluster.kick(what.into(), kick).await,
        }
    }

    /// Closes every socket of a user, on every node; how many of this node's.
    pub async fn kick_user(&self, user: &str, kick: Kick) -> usize {
        match self {
            Engine::Local(hub) => hub.kick_user(user, kick),
            Engine::Cluster(cluster) => cluster.kick(Target::User(user), kick).await,
        }
    }

    /// The users subscribed to a room (on every node), sorted.
    pub async fn presence(&self, room: &str) -> Result<Vec<String>, EngineError> {
        match self {
            Engine::Local(hub) => Ok(hub.presence(room)),
            Engine::Cluster(cluster) => Ok(cluster.presence(room).await?),
        }
    }

    /// On a clean shutdown: a cluster node takes its share of the presence away at once.
    pub async fn depart(&self) {
        if let Engine::Cluster(cluster) = self {
            cluster.depart().await;
        }
    }
}

/// The local engine of a hub (tests, embedding).
impl From<Hub> for Engine {
    fn from(hub: Hub) -> Self {
        Engine::Local(hub)
    }
}
