//! What sockets see: rooms and their presence, delivery of messages, direct messages, typing and
//! events, recovery windows, and targeted closes. `engine` is the seam: the local hub alone, or a
//! node of a cluster on Redis (`cluster`), which delivers through the same hub.

pub mod cluster;
pub mod engine;
pub mod hub;
pub mod inbox;
// Public for the cluster tests, which run a script against a real Redis.
pub mod scripts;

pub use cluster::{Cluster, ClusterConfig, ClusterError};
pub use engine::{Engine, EngineError, PublishError};
pub use hub::{
    format_id, parse_id, ConnId, Hub, HubConfig, Joined, NotSubscribed, Published, SubscribeError,
    Unsubscribed, LOBBY, TYPING_INTERVAL,
};
pub use inbox::{Closing, Inbox, Kick};
