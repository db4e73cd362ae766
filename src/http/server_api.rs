//! The server API for the application's backend (`/api/server/*`): publish to a room, send to a
//! user, log a user out everywhere, ask who is in a room, make a user's sockets reconnect. On only
//! when `WSGATE_API_KEY` is set (otherwise every route is 404, before any key check); the key is
//! the bearer token, compared in constant time. Not under the per-IP limits: a backend is one IP
//! speaking for every user.

use std::sync::Arc;

use http::StatusCode;
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::body::{json_body_limited, MAX_SERVER_BODY_BYTES};
use super::error::ApiError;
use super::{bearer_token, with_app};
use crate::realtime::Kick;
use crate::rooms;
use crate::state::App;

/// Largest `data` of an event, as compact JSON.
pub const MAX_DATA_BYTES: usize = 16 * 1024;

/// Every route of the server API.
pub fn routes(app: Arc<App>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let publish_body = json_body_limited::<Publish>(&app, MAX_SERVER_BODY_BYTES);
    let send_body = json_body_limited::<Send>(&app, MAX_SERVER_BODY_BYTES);
    let base = warp::path!("api" / "server" / ..).and(authorized(app));
    let publish = base
        .clone()
        .and(warp::path!("publish"))
        .and(warp::post())
        .and(publish_body)
        .and_then(|app: Arc<App>, body: Publish| async move {
            handle_publish(&app, body).await.map_err(Rejection::from)
        });
    let send = base
        .clone()
        .and(warp::path!("send"))
        .and(warp::post())
        .and(send_body)
        .and_then(|app: Arc<App>, body: Send| async move {
            handle_send(&app, body).await.map_err(Rejection::from)
        });
    let logout_all = base
        .clone()
        .and(warp::path!("users" / String / "logout-all"))
        .and(warp::post())
        .and_then(|app: Arc<App>, user: String| async move {
            handle_logout_all(&app, &user)
                .await
                .map_err(Rejection::from)
        });
    let disconnect = base
        .clone()
        .and(warp::path!("users" / String / "disconnect"))
        .and(warp::post())
        .and_then(|app: Arc<App>, user: String| async move {
            handle_disconnect(&app, &user)
                .await
                .map_err(Rejection::from)
        });
    let presence = base
        .and(warp::path!("rooms" / String / "presence"))
        .and(warp::get())
        .and_then(|app: Arc<App>, room: String| async move {
            handle_presence(&app, &room).await.map_err(Rejection::from)
        });
    publish
        .or(send)
        .unify()
        .or(logout_all)
        .unify()
        .or(disconnect)
        .unify()
        .or(presence)
        .unify()
}

/// The state, when the API is on and the request carries its key.
fn authorized(app: Arc<App>) -> impl Filter<Extract = (Arc<App>,), Error = Rejection> + Clone {
    with_app(app)
        .and(warp::header::optional::<String>("authorization"))
        .and_then(|app: Arc<App>, auth: Option<String>| async move {
            let Some(key) = &app.settings.rooms.api_key else {
                return Err(Rejection::from(ApiError::NotFound));
            };
            let presented = auth.as_deref().and_then(bearer_token).unwrap_or_default();
            if !same_key(presented, key.expose()) {
                return Err(Rejection::from(ApiError::Unauthorized));
            }
            Ok(app)
        })
}

/// Constant time in the keys' contents and lengths: both are hashed first, and the digests
/// compared without an early exit.
fn same_key(presented: &str, key: &str) -> bool {
    let a = Sha256::digest(presented.as_bytes());
    let b = Sha256::digest(key.as_bytes());
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

#[derive(Deserialize)]
struct Publish {
    room: String,
    data: Box<RawValue>,
}

#[derive(Deserialize)]
struct Send {
    user: String,
    data: Box<RawValue>,
}

/// `data` as compact JSON (whitespace outside strings removed), at most `MAX_DATA_BYTES`. The
/// text is already valid JSON (serde checked it), so dropping insignificant whitespace is all it
/// takes, and numbers keep every digit the backend sent.
fn compact(data: &RawValue) -> Result<Box<RawValue>, ApiError> {
    let text = data.get();
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            ' ' | '\t' | '\n' | '\r' => {}
            '"' => {
                in_string = true;
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    if out.len() > MAX_DATA_BYTES {
        return Err(ApiError::DataTooLarge);
    }
    RawValue::from_string(out).map_err(|e| ApiError::BadRequest(format!("invalid data: {e}")))
}

async fn handle_publish(app: &App, body: Publish) -> Result<Response, ApiError> {
    let data = compact(&body.data)?;
    if !rooms::exists(app, &body.room).await? {
        return Err(ApiError::UnknownRoom);
    }
    let published = app.engine.publish_event(&body.room, &data).await?;
    app.history.record(published.entry);
    tracing::debug!(room = %body.room, "server event published");
    Ok(warp::reply::json(&json!({"id": published.id})).into_response())
}

async fn handle_send(app: &App, body: Send) -> Result<Response, ApiError> {
    let data = compact(&body.data)?;
    let user = rooms::resolve_user(app, &body.user).await?;
    app.engine.send_to_user(&user, &data).await?;
    tracing::debug!(%user, "server event sent");
    Ok(StatusCode::ACCEPTED.into_response())
}

async fn handle_logout_all(app: &App, user: &str) -> Result<Response, ApiError> {
    let user = rooms::resolve_user(app, user).await?;
    let closed = crate::sessions::end_all(app, &user).await?;
    tracing::info!(%user, sockets_closed = closed, "logout everywhere by the server API");
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn handle_disconnect(app: &App, user: &str) -> Result<Response, ApiError> {
    let user = rooms::resolve_user(app, user).await?;
    let closed = app.engine.kick_user(&user, Kick::Reconnect).await;
    tracing::info!(%user, sockets_closed = closed, "reconnect asked by the server API");
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn handle_presence(app: &App, room: &str) -> Result<Response, ApiError> {
    if !rooms::exists(app, room).await? {
        return Err(ApiError::UnknownRoom);
    }
    let users = app.engine.presence(room).await?;
    Ok(warp::reply::json(&json!({ "users": users })).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_is_measured_compact_and_keeps_its_digits() {
        let raw: Box<RawValue> = serde_json::from_str(
            "{ \"a\" : [ 1 , 2 ],\n \"s\": \"x \\\" y\", \"n\": 123456789012345678901234567890 }",
        )
        .unwrap();
        assert_eq!(
            compact(&raw).unwrap().get(),
            r#"{"a":[1,2],"s":"x \" y","n":123456789012345678901234567890}"#
        );
        let big = format!("\"{}\"", "x".repeat(MAX_DATA_BYTES - 2));
        let raw: Box<RawValue> = serde_json::from_str(&big).unwrap();
        assert!(compact(&raw).is_ok());
        let over = format!("\"{}\"", "x".repeat(MAX_DATA_BYTES - 1));
        let raw: Box<RawValue> = serde_json::from_str(&over).unwrap();
        assert!(matches!(compact(&raw), Err(ApiError::DataTooLarge)));
    }

    #[test]
    fn keys_compare_by_content() {
        assert!(same_key("k".repeat(40).as_str(), &"k".repeat(40)));
        assert!(!same_key("k".repeat(39).as_str(), &"k".repeat(40)));
        assert!(!same_key("", &"k".repeat(40)));
    }
}
