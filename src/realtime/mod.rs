//! What sockets see: who is online, and the broadcast of chat and presence. The local hub today;
//! rooms and the cross-node engine land here.

pub mod hub;

pub use hub::{ConnId, Hub, Joined, Kick};
