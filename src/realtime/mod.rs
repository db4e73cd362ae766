//! What sockets see: rooms and their presence, delivery of messages, direct messages, typing and
//! events, recovery windows, and targeted closes. The local hub today; the cross-node engine lands
//! here.

pub mod hub;
pub mod inbox;

pub use hub::{
    format_id, parse_id, ConnId, Hub, HubConfig, Joined, NotSubscribed, Published, SubscribeError,
    Unsubscribed, LOBBY, TYPING_INTERVAL,
};
pub use inbox::{Closing, Inbox, Kick};
