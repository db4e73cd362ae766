//! HTTP boundary errors: `ApiError`, its JSON body `{"error","message"}`, the one mapping of every
//! module's errors to it, and the one `recover` function that turns every warp rejection into that
//! body.

use std::convert::Infallible;
use std::time::Duration;

use http::{header, HeaderValue, StatusCode};
use serde::Serialize;
use warp::reject::Reject;
use warp::reply::Response;
use warp::{Rejection, Reply};

use crate::store::StoreError;

/// Every error a client can get from the REST routes or a refused upgrade.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// Body is not JSON, lacks a field, has a wrong type; or the request is otherwise malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The request body did not arrive in time.
    #[error("the request body took too long to arrive")]
    RequestTimeout,
    /// Too much work queued (password hashing); retry shortly.
    #[error("the server is busy, retry shortly")]
    Busy,
    /// Body over the route's limit (16 KiB; 64 KiB for the server API).
    #[error("the request body is larger than {0} KiB")]
    PayloadTooLarge(u64),
    /// A server-API event whose `data` is over 16 KiB (compact JSON).
    #[error("data is larger than 16 KiB")]
    DataTooLarge,
    /// A room id, kind or title out of bounds.
    #[error("{0}")]
    InvalidRoom(&'static str),
    /// Creation of a room whose id exists.
    #[error("a room with this id already exists")]
    RoomExists,
    /// No such room, or a private room the caller is not a member of (one answer for both).
    #[error("no such room")]
    UnknownRoom,
    /// No such user.
    #[error("no such user")]
    UnknownUser,
    /// Only the room's owner may do this.
    #[error("only the owner of the room may do this")]
    NotRoomOwner,
    /// Username does not match `^[A-Za-z0-9_]{3,32}$`.
    #[error("username must be 3 to 32 characters: letters, digits or underscore")]
    InvalidUsername,
    /// Password outside 8..=72 bytes.
    #[error("{0}")]
    InvalidPassword(&'static str),
    /// Registration of an existing username.
    #[error("this username is already taken")]
    UsernameTaken,
    /// Unknown user or wrong password (indistinguishable on purpose).
    #[error("unknown username or wrong password")]
    InvalidCredentials,
    /// Unknown or expired refresh token, or its session was revoked.
    #[error("the refresh token is not valid, sign in again")]
    InvalidRefreshToken,
    /// A refresh token that had already been rotated: the session is revoked.
    #[error("this refresh token was already used; the session has been revoked, sign in again")]
    RefreshTokenReused,
    /// Missing, malformed, expired or revoked bearer token.
    #[error("a valid bearer token is required")]
    Unauthorized,
    /// Per-IP limit exceeded.
    #[error("too many requests, retry later")]
    RateLimited {
        /// When the next request will be allowed.
        retry_after: Duration,
    },
    /// The server is shutting down: a request still arriving is answered at once, not waited for.
    #[error("the server is shutting down, retry shortly")]
    ShuttingDown,
    /// The store did not answer.
    #[error("the store is unavailable, retry later")]
    StoreUnavailable,
    /// The cluster (Redis) did not answer: nothing was published.
    #[error("redis is unavailable, retry later")]
    ClusterUnavailable,
    /// Upgrade from an origin not in the allow list.
    #[error("this origin may not open WebSockets here")]
    OriginForbidden,
    /// `/ws` without a ticket, or with an empty one.
    #[error("the ticket query parameter is missing")]
    TicketMissing,
    /// Malformed, forged or unknown ticket.
    #[error("the ticket is not valid")]
    TicketInvalid,
    /// Ticket past its expiry.
    #[error("the ticket has expired, mint a new one")]
    TicketExpired,
    /// Ticket consumed before.
    #[error("the ticket was already used, mint a new one")]
    TicketUsed,
    /// `/ws` requested without a WebSocket handshake.
    #[error("this route needs a WebSocket upgrade (HTTP/1.1, Upgrade: websocket, version 13)")]
    UpgradeRequired,
    /// No such route or file.
    #[error("not found")]
    NotFound,
    /// Route exists, method does not.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A bug or an unexpected failure; details are logged, not sent.
    #[error("internal error")]
    Internal,
}

impl Reject for ApiError {}

impl From<crate::realtime::EngineError> for ApiError {
    fn from(_: crate::realtime::EngineError) -> Self {
        ApiError::ClusterUnavailable
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            // Only a username can legitimately collide; the register handler maps that case itself.
            StoreError::Duplicate => {
                tracing::error!("unexpected duplicate key in the store");
                ApiError::Internal
            }
            StoreError::Unavailable(reason) => {
                tracing::warn!(%reason, "store unavailable");
                ApiError::StoreUnavailable
            }
            // Not an outage: the database refused what wsgate asked. Someone must look at it.
            StoreError::Rejected { code, message } => {
                tracing::error!(code, %message, "store rejected an operation");
                ApiError::Internal
            }
        }
    }
}

impl From<crate::accounts::AccountError> for ApiError {
    fn from(err: crate::accounts::AccountError) -> Self {
        use crate::accounts::AccountError;
        match err {
            AccountError::InvalidUsername => ApiError::InvalidUsername,
            AccountError::InvalidPassword(why) => ApiError::InvalidPassword(why),
            AccountError::UsernameTaken => ApiError::UsernameTaken,
            AccountError::InvalidCredentials => ApiError::InvalidCredentials,
            AccountError::Password(err) => err.into(),
            AccountError::Session(err) => err.into(),
            AccountError::Store(err) => err.into(),
        }
    }
}

impl From<crate::rooms::RoomError> for ApiError {
    fn from(err: crate::rooms::RoomError) -> Self {
        use crate::rooms::RoomError;
        match err {
            RoomError::InvalidRoom(why) => ApiError::InvalidRoom(why),
            RoomError::BadRequest(why) => ApiError::BadRequest(why.into()),
            RoomError::RoomExists => ApiError::RoomExists,
            RoomError::UnknownRoom => ApiError::UnknownRoom,
            RoomError::UnknownUser => ApiError::UnknownUser,
            RoomError::NotOwner => ApiError::NotRoomOwner,
            RoomError::Store(err) => err.into(),
        }
    }
}

impl From<crate::sessions::SessionError> for ApiError {
    fn from(err: crate::sessions::SessionError) -> Self {
        use crate::sessions::SessionError;
        match err {
            SessionError::InvalidRefreshToken => ApiError::InvalidRefreshToken,
            SessionError::RefreshTokenReused => ApiError::RefreshTokenReused,
            SessionError::Store(err) => err.into(),
        }
    }
}

impl From<crate::ratelimit::Limited> for ApiError {
    fn from(limited: crate::ratelimit::Limited) -> Self {
        ApiError::RateLimited {
            retry_after: limited.retry_after,
        }
    }
}

impl From<crate::auth::password::PasswordError> for ApiError {
    fn from(err: crate::auth::password::PasswordError) -> Self {
        match err {
            crate::auth::password::PasswordError::Busy => ApiError::Busy,
            err => {
                tracing::error!(%err, "password hashing failed");
                ApiError::Internal
            }
        }
    }
}

impl ApiError {
    /// HTTP status.
    pub fn status(&self) -> StatusCode {
        use ApiError::*;
        match self {
            BadRequest(_) | InvalidUsername | InvalidPassword(_) => StatusCode::BAD_REQUEST,
            PayloadTooLarge(_) | DataTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            InvalidRoom(_) => StatusCode::BAD_REQUEST,
            RoomExists => StatusCode::CONFLICT,
            UnknownRoom | UnknownUser => StatusCode::NOT_FOUND,
            NotRoomOwner => StatusCode::FORBIDDEN,
            RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Busy => StatusCode::SERVICE_UNAVAILABLE,
            UsernameTaken => StatusCode::CONFLICT,
            InvalidCredentials | InvalidRefreshToken | RefreshTokenReused | Unauthorized
            | TicketMissing | TicketInvalid | TicketExpired | TicketUsed => {
                StatusCode::UNAUTHORIZED
            }
            RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            StoreUnavailable | ClusterUnavailable | ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            OriginForbidden => StatusCode::FORBIDDEN,
            UpgradeRequired => StatusCode::UPGRADE_REQUIRED,
            NotFound => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Machine-readable code, the `error` field.
    pub fn code(&self) -> &'static str {
        use ApiError::*;
        match self {
            BadRequest(_) => "bad_request",
            PayloadTooLarge(_) | DataTooLarge => "payload_too_large",
            InvalidRoom(_) => "invalid_room",
            RoomExists => "room_exists",
            UnknownRoom => "unknown_room",
            UnknownUser => "unknown_user",
            NotRoomOwner => "not_room_owner",
            RequestTimeout => "request_timeout",
            Busy => "server_busy",
            InvalidUsername => "invalid_username",
            InvalidPassword(_) => "invalid_password",
            UsernameTaken => "username_taken",
            InvalidCredentials => "invalid_credentials",
            InvalidRefreshToken => "invalid_refresh_token",
            RefreshTokenReused => "refresh_token_reused",
            Unauthorized => "unauthorized",
            RateLimited { .. } => "rate_limited",
            StoreUnavailable => "store_unavailable",
            ClusterUnavailable => "unavailable",
            ShuttingDown => "shutting_down",
            OriginForbidden => "origin_forbidden",
            TicketMissing => "ticket_missing",
            TicketInvalid => "ticket_invalid",
            TicketExpired => "ticket_expired",
            TicketUsed => "ticket_used",
            UpgradeRequired => "upgrade_required",
            NotFound => "not_found",
            MethodNotAllowed => "method_not_allowed",
            Internal => "internal",
        }
    }

    /// The JSON response, with `Retry-After` on 429, `WWW-Authenticate` on bearer failures.
    pub fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Body<'a> {
            error: &'a str,
            message: String,
        }
        let body = Body {
            error: self.code(),
            message: self.to_string(),
        };
        let mut response =
            warp::reply::with_status(warp::reply::json(&body), self.status()).into_response();
        let headers = response.headers_mut();
        match &self {
            ApiError::RateLimited { retry_after } => {
                let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
                headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            ApiError::Busy | ApiError::ShuttingDown => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(1u64));
            }
            ApiError::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::UpgradeRequired => {
                headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            }
            _ => {}
        }
        response
    }
}

/// The single rejection handler: every rejection leaves as `{"error","message"}` JSON.
pub async fn recover(rejection: Rejection) -> Result<Response, Infallible> {
    let err = if let Some(err) = rejection.find::<ApiError>() {
        err.clone()
    } else if rejection.is_not_found() {
        ApiError::NotFound
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError::MethodNotAllowed
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        ApiError::PayloadTooLarge(super::MAX_BODY_BYTES / 1024)
    } else if let Some(e) = rejection.find::<warp::reject::InvalidHeader>() {
        ApiError::BadRequest(e.to_string())
    } else if let Some(e) = rejection.find::<warp::reject::MissingHeader>() {
        ApiError::BadRequest(e.to_string())
    } else if let Some(e) = rejection.find::<warp::reject::InvalidQuery>() {
        ApiError::BadRequest(e.to_string())
    } else {
        tracing::error!(?rejection, "unhandled rejection");
        ApiError::Internal
    };
    Ok(err.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A log sink for one test.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The error `make` returns, and the one JSON log line it wrote.
    fn logged(make: impl FnOnce() -> ApiError) -> (ApiError, serde_json::Value) {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .json()
            .flatten_event(true)
            .finish();
        let err = tracing::subscriber::with_default(subscriber, make);
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let line = serde_json::from_str(text.lines().next().expect("one log line")).unwrap();
        (err, line)
    }

    #[test]
    fn a_refused_operation_is_a_500_logged_at_error_with_the_servers_code() {
        let (err, line) = logged(|| {
            ApiError::from(StoreError::Rejected {
                code: Some(2),
                message: "BadValue: unknown operator".into(),
            })
        });
        assert_eq!((err.status().as_u16(), err.code()), (500, "internal"));
        assert_eq!(line["level"], "ERROR", "{line}");
        assert_eq!(line["code"], 2, "{line}");
    }

    #[test]
    fn an_outage_is_a_503_logged_as_a_warning() {
        let (err, line) =
            logged(|| ApiError::from(StoreError::Unavailable("no answer within 2s".into())));
        assert_eq!(
            (err.status().as_u16(), err.code()),
            (503, "store_unavailable")
        );
        assert_eq!(line["level"], "WARN", "{line}");
    }
}
