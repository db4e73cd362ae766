//! The WebSocket wire contract (docs/protocol.md): the frames each side sends, and the close codes
//! with their reasons. A leaf: the hub serializes frames with it, the socket loop parses and closes
//! with it, and it depends on neither.

use serde::{Deserialize, Serialize};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

/// Longest chat message, in Unicode scalar values.
pub const MAX_MESSAGE_CHARS: usize = 2000;

/// A frame from the client.
#[derive(Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// First frame: authenticate with a JWT.
    Auth {
        /// The access token.
        token: String,
        /// Recover `lobby` (subscribed at authentication) from after this message id.
        #[serde(default)]
        since: Option<String>,
    },
    /// A chat message to a room (`lobby` when `room` is absent, as in v1).
    Message {
        /// The room.
        #[serde(default)]
        room: Option<String>,
        /// The text, 1 to 2000 characters.
        text: String,
    },
    /// Replace the socket's token with a fresher one of the same user.
    Refresh {
        /// The new access token.
        token: String,
    },
    /// Subscribe to a room, recovering from after `since` when given.
    Subscribe {
        /// The room.
        room: String,
        /// The last message id of the room the client has.
        #[serde(default)]
        since: Option<String>,
    },
    /// Stop receiving a room.
    Unsubscribe {
        /// The room.
        room: String,
    },
    /// "I am typing" to the other subscribers of a room.
    Typing {
        /// The room.
        room: String,
    },
    /// A private message to one user (and the sender's own other sockets).
    Direct {
        /// The recipient.
        to: String,
        /// The text, 1 to 2000 characters.
        text: String,
    },
}

impl ClientFrame {
    /// Parses a client frame: a JSON object with a known `type` and its fields. serde would also
    /// take the tagged enum as an array (`["auth","<jwt>"]`); the contract says objects, so anything
    /// that does not start as one is refused before serde sees it.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        if !text.trim_start().starts_with('{') {
            return Err(serde::de::Error::custom("a frame is a JSON object"));
        }
        serde_json::from_str(text)
    }
}

/// A frame from the server.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame<'a> {
    /// Authentication succeeded.
    AuthOk {
        /// The socket's user.
        user: &'a str,
        /// When the socket's token expires, Unix seconds.
        expires_at: i64,
        /// Presence of `lobby`: sorted, unique, the socket's own user included.
        users: Vec<String>,
        /// Whether `lobby` was recovered from the `auth` frame's `since` (absent without one).
        #[serde(skip_serializing_if = "Option::is_none")]
        recovered: Option<bool>,
    },
    /// A chat message in a room.
    Message {
        /// The room.
        room: &'a str,
        /// Message id: increasing within the room.
        id: &'a str,
        /// Sender.
        from: &'a str,
        /// Text.
        text: &'a str,
        /// Server time of acceptance, Unix milliseconds.
        ts: i64,
    },
    /// An event from the application's backend: to a room (stored, with an id) or to a user.
    Event {
        /// The room, for a publish.
        #[serde(skip_serializing_if = "Option::is_none")]
        room: Option<&'a str>,
        /// The user, for a send.
        #[serde(skip_serializing_if = "Option::is_none")]
        to: Option<&'a str>,
        /// Message id, for a publish.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
        /// The backend's JSON, as it sent it.
        data: &'a serde_json::value::RawValue,
        /// Server time of acceptance, Unix milliseconds.
        ts: i64,
    },
    /// A private message.
    Direct {
        /// Message id: increasing within the conversation.
        id: &'a str,
        /// Sender.
        from: &'a str,
        /// Recipient.
        to: &'a str,
        /// Text.
        text: &'a str,
        /// Server time of acceptance, Unix milliseconds.
        ts: i64,
    },
    /// A user's first socket subscribed to the room.
    Joined {
        /// The room.
        room: &'a str,
        /// Who.
        user: &'a str,
    },
    /// A user's last socket subscribed to the room unsubscribed or closed.
    Left {
        /// The room.
        room: &'a str,
        /// Who.
        user: &'a str,
    },
    /// The socket is subscribed to the room.
    Subscribed {
        /// The room.
        room: &'a str,
        /// Presence of the room, sorted.
        users: Vec<String>,
        /// With `since`: whether every message after it follows (true) or the client must read
        /// the history (false).
        #[serde(skip_serializing_if = "Option::is_none")]
        recovered: Option<bool>,
    },
    /// The socket no longer receives the room.
    Unsubscribed {
        /// The room.
        room: &'a str,
        /// `requested`, `removed` or `deleted`.
        reason: &'a str,
    },
    /// Another user is typing in the room.
    Typing {
        /// The room.
        room: &'a str,
        /// Who.
        user: &'a str,
    },
    /// The socket's token expires soon: refresh over REST and send a `refresh` frame.
    TokenExpiring {
        /// Seconds until `exp`.
        expires_in: i64,
    },
    /// The token was replaced.
    Refreshed {
        /// New expiry, Unix seconds.
        expires_at: i64,
    },
    /// A request was refused; the socket stays open.
    Error {
        /// `bad_request`, `too_long`, `rate_limited`, `unknown_room`, … (docs/protocol.md).
        code: &'a str,
        /// For humans.
        message: &'a str,
        /// The room the refused request named.
        #[serde(skip_serializing_if = "Option::is_none")]
        room: Option<&'a str>,
        /// The user a refused `direct` was for.
        #[serde(skip_serializing_if = "Option::is_none")]
        to: Option<&'a str>,
    },
}

impl ServerFrame<'_> {
    /// Serializes the frame (infallible for these shapes).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("server frames always serialize")
    }
}

/// A frame serialized once with its `id` and `ts` left open, for whoever assigns them (the
/// cluster's Redis script, which owns a room's ids): `head` + id + `mid` + ts + `tail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameTemplate {
    pub head: String,
    pub mid: String,
    pub tail: String,
}

/// Placeholders no serialized frame contains otherwise: the id's is escaped by JSON (a quote in a
/// value is escaped, so the quoted pair cannot occur inside one), and `ts` is the frame's last key.
const ID_MARK: &str = r"\u0000";
const TS_MARK: &str = "\"ts\":-9223372036854775808}";

impl FrameTemplate {
    /// The template of a frame of id `\u{0}` and ts `i64::MIN` (a message, an event to a room, a
    /// direct message: frames whose last key is `ts`).
    pub fn of(frame: &ServerFrame<'_>) -> Self {
        let json = frame.to_json();
        let id_at = json
            .find(&format!("\"id\":\"{ID_MARK}\""))
            .expect("the frame has the id placeholder")
            + "\"id\":\"".len();
        let ts_at = json.rfind(TS_MARK).expect("ts is the frame's last key") + "\"ts\":".len();
        Self {
            head: json[..id_at].to_owned(),
            mid: json[id_at + ID_MARK.len()..ts_at].to_owned(),
            tail: "}".to_owned(),
        }
    }

    /// The frame with its id and ts.
    pub fn fill(&self, id: &str, ts: &str) -> String {
        let mut out =
            String::with_capacity(self.head.len() + id.len() + self.mid.len() + ts.len() + 1);
        out.push_str(&self.head);
        out.push_str(id);
        out.push_str(&self.mid);
        out.push_str(ts);
        out.push_str(&self.tail);
        out
    }
}

/// The id placeholder of `FrameTemplate::of`.
pub const TEMPLATE_ID: &str = "\u{0}";

/// Why the server closes a socket. The close reason is exactly `name()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// 4400: first frame was binary, not JSON, not `auth`, or had no string token.
    BadRequest,
    /// 4401: the JWT is malformed, forged or otherwise unacceptable.
    TokenInvalid,
    /// 4401: the JWT expired (at auth, at refresh, or while the socket was open).
    TokenExpired,
    /// 4401: the JWT was revoked (logout).
    TokenRevoked,
    /// 4403: the JWT's `sub` is not the ticket's user.
    TicketUserMismatch,
    /// 4408: no valid first frame within the auth timeout.
    AuthTimeout,
    /// 4408: nothing received, not even a pong, for two heartbeat intervals.
    HeartbeatTimeout,
    /// 4429: sustained message flood.
    RateLimited,
    /// 1009: a frame or message over the size limit.
    MessageTooBig,
    /// 1013: the socket fell too far behind what the hub sent it (slow consumer).
    SlowConsumer,
    /// 1011: the store failed while checking the token.
    StoreUnavailable,
    /// 1013: a cluster node could not reach Redis to join the socket to `lobby`: try again later.
    ClusterUnavailable,
    /// 1011: the store refused an operation, or another server-side fault.
    Internal,
    /// 1002: the client broke RFC 6455 (RSV bits without an extension, an unmasked frame, a
    /// reserved opcode, an oversized or fragmented control frame, a bad close payload).
    ProtocolError,
    /// 1007: a text frame that is not UTF-8.
    InvalidUtf8,
    /// 1001: the server is shutting down.
    ServerShutdown,
    /// 1012: the application's backend asked the client to reconnect (server API `disconnect`).
    Reconnect,
}

impl CloseReason {
    /// The close code.
    pub fn code(self) -> u16 {
        use CloseReason::*;
        match self {
            BadRequest => 4400,
            TokenInvalid | TokenExpired | TokenRevoked => 4401,
            TicketUserMismatch => 4403,
            AuthTimeout | HeartbeatTimeout => 4408,
            RateLimited => 4429,
            MessageTooBig => 1009,
            SlowConsumer | ClusterUnavailable => 1013,
            StoreUnavailable | Internal => 1011,
            ProtocolError => 1002,
            InvalidUtf8 => 1007,
            ServerShutdown => 1001,
            Reconnect => 1012,
        }
    }

    /// The close reason text.
    pub fn name(self) -> &'static str {
        use CloseReason::*;
        match self {
            BadRequest => "bad_request",
            TokenInvalid => "token_invalid",
            TokenExpired => "token_expired",
            TokenRevoked => "token_revoked",
            TicketUserMismatch => "ticket_user_mismatch",
            AuthTimeout => "auth_timeout",
            HeartbeatTimeout => "heartbeat_timeout",
            RateLimited => "rate_limited",
            MessageTooBig => "message_too_big",
            SlowConsumer => "slow_consumer",
            StoreUnavailable => "store_unavailable",
            ClusterUnavailable => "unavailable",
            Internal => "internal_error",
            ProtocolError => "protocol_error",
            InvalidUtf8 => "invalid_utf8",
            ServerShutdown => "server_shutdown",
            Reconnect => "reconnect",
        }
    }

    /// The close frame.
    pub fn frame(self) -> CloseFrame {
        CloseFrame {
            code: CloseCode::from(self.code()),
            reason: self.name().into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_frames_parse_and_reject_strictly() {
        assert!(matches!(
            ClientFrame::from_json(r#"{"type":"auth","token":"t"}"#),
            Ok(ClientFrame::Auth { .. })
        ));
        for bad in [
            r#"{"type":"auth","token":5}"#,
            r#"{"type":"auth"}"#,
            r#"{"type":"hello"}"#,
            r#"{"token":"t"}"#,
            "[]",
            r#"["auth","t"]"#,
            r#"  ["message","hi"]"#,
        ] {
            assert!(ClientFrame::from_json(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn server_frames_have_the_documented_shape() {
        let json = ServerFrame::Message {
            room: "lobby",
            id: "a-1",
            from: "alice",
            text: "hi",
            ts: 5,
        }
        .to_json();
        assert_eq!(
            json,
            r#"{"type":"message","room":"lobby","id":"a-1","from":"alice","text":"hi","ts":5}"#
        );
        let json = ServerFrame::AuthOk {
            user: "bob",
            expires_at: 9,
            users: vec!["bob".into()],
            recovered: None,
        }
        .to_json();
        assert_eq!(
            json,
            r#"{"type":"auth_ok","user":"bob","expires_at":9,"users":["bob"]}"#
        );
        assert_eq!(
            CloseReason::TicketUserMismatch.frame().reason,
            "ticket_user_mismatch"
        );
    }
}
