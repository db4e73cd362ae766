//! The room routes (`/api/rooms…`) and direct-conversation history (`/api/direct/{user}/messages`),
//! for the bearer's user. Access rules live in `rooms`; this file is requests and responses.

use std::collections::HashMap;
use std::sync::Arc;

use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::body::json_body;
use super::error::ApiError;
use super::{authenticate, with_app};
use crate::history::Page;
use crate::rooms::{self, RoomView};
use crate::state::App;
use crate::store::RoomRecord;

/// Every route of this file.
pub fn routes(app: Arc<App>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    create(app.clone())
        .or(list(app.clone()))
        .unify()
        .or(get(app.clone()))
        .unify()
        .or(delete(app.clone()))
        .unify()
        .or(add_member(app.clone()))
        .unify()
        .or(remove_member(app.clone()))
        .unify()
        .or(room_messages(app.clone()))
        .unify()
        .or(direct_messages(app))
        .unify()
}

#[derive(Deserialize)]
struct CreateRoom {
    id: String,
    kind: String,
    #[serde(default)]
    title: Option<String>,
}

/// The state and the bearer's user name.
fn user(app: Arc<App>) -> impl Filter<Extract = (Arc<App>, String), Error = Rejection> + Clone {
    with_app(app)
        .and(warp::header::optional::<String>("authorization"))
        .and_then(|app: Arc<App>, auth: Option<String>| async move {
            match authenticate(&app, auth).await {
                Ok(claims) => Ok((app, claims.sub)),
                Err(err) => Err(Rejection::from(err)),
            }
        })
        .untuple_one()
}

fn room_json(room: &RoomRecord) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    out.insert("id".into(), json!(room.id));
    out.insert("kind".into(), json!(room.kind.as_str()));
    out.insert("title".into(), json!(room.title));
    out.insert("owner".into(), json!(room.owner));
    out.insert("created_at".into(), json!(room.created_at));
    out
}

fn view_json(view: &RoomView) -> Value {
    let mut out = room_json(&view.room);
    out.insert("member".into(), json!(view.member));
    if let Some(members) = &view.members {
        out.insert("members".into(), json!(members));
    }
    Value::Object(out)
}

fn page_json(page: &Page) -> Response {
    // The frames as sockets got them: stored verbatim, so parsing cannot fail for entries this
    // server wrote; anything else is skipped rather than failing the whole page.
    let messages: Vec<Value> = page
        .entries
        .iter()
        .filter_map(|e| serde_json::from_str(&e.frame).ok())
        .collect();
    warp::reply::json(&json!({"messages": messages, "has_more": page.has_more})).into_response()
}

fn reply<T>(
    result: Result<T, ApiError>,
    ok: impl FnOnce(T) -> Response,
) -> Result<Response, Rejection> {
    result.map(ok).map_err(Rejection::from)
}

fn no_content(_: ()) -> Response {
    StatusCode::NO_CONTENT.into_response()
}

fn create(app: Arc<App>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let body = json_body::<CreateRoom>(&app);
    warp::path!("api" / "rooms")
        .and(warp::post())
        .and(user(app))
        .and(body)
        .and_then(|app: Arc<App>, user: String, body: CreateRoom| async move {
            let created = rooms::create(&app, &user, &body.id, &body.kind, body.title).await;
            if let Ok(room) = &created {
                tracing::info!(%user, room = %room.id, kind = room.kind.as_str(), "room created");
            }
            reply(created.map_err(ApiError::from), |room| {
                warp::reply::with_status(
                    warp::reply::json(&Value::Object(room_json(&room))),
                    StatusCode::CREATED,
                )
                .into_response()
            })
        })
}

fn list(app: Arc<App>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("api" / "rooms")
        .and(warp::get())
        .and(user(app))
        .and_then(|app: Arc<App>, user: String| async move {
            reply(
                rooms::list(&app, &user).await.map_err(ApiError::from),
                |all| {
                    let rooms: Vec<Value> = all
                        .iter()
                        .map(|(room, member)| {
                            let mut out = room_json(room);
                            out.insert("member".into(), json!(member));
                            Value::Object(out)
                        })
                        .collect();
                    warp::reply::json(&json!({ "rooms": rooms })).into_response()
                },
            )
        })
}

fn get(app: Arc<App>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("api" / "rooms" / String)
        .and(warp::get())
        .and(user(app))
        .and_then(|id: String, app: Arc<App>, user: String| async move {
            reply(
                rooms::get(&app, &user, &id).await.map_err(ApiError::from),
                |view| warp::reply::json(&view_json(&view)).into_response(),
            )
        })
}

fn delete(app: Arc<App>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("api" / "rooms" / String)
        .and(warp::delete())
        .and(user(app))
        .and_then(|id: String, app: Arc<App>, user: String| async move {
            let deleted = rooms::delete(&app, &user, &id).await;
            if deleted.is_ok() {
                tracing::info!(%user, room = %id, "room deleted");
            }
            reply(deleted.map_err(ApiError::from), no_content)
        })
}

fn add_member(app: Arc<App>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("api" / "rooms" / String / "members" / String)
        .and(warp::put())
        .and(user(app))
        .and_then(
            |id: String, member: String, app: Arc<App>, user: String| async move {
                let added = rooms::add_member(&app, &user, &id, &member).await;
                reply(added.map_err(ApiError::from), no_content)
            },
        )
}

fn remove_member(app: Arc<App>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("api" / "rooms" / String / "members" / String)
        .and(warp::delete())
        .and(user(app))
        .and_then(
            |id: String, member: String, app: Arc<App>, user: String| async move {
                let removed = rooms::remove_member(&app, &user, &id, &member).await;
                reply(removed.map_err(ApiError::from), no_content)
            },
        )
}

/// `before` and `limit` of a history query.
fn paging(
) -> impl Filter<Extract = (Option<String>, Result<usize, ApiError>), Error = Rejection> + Clone {
    warp::query::<HashMap<String, String>>()
        .map(|mut query: HashMap<String, String>| {
            let limit =
                rooms::page_size(query.get("limit").map(String::as_str)).map_err(ApiError::from);
            (query.remove("before"), limit)
        })
        .untuple_one()
}

fn room_messages(app: Arc<App>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("api" / "rooms" / String / "messages")
        .and(warp::get())
        .and(user(app))
        .and(paging())
        .and_then(
            |id: String, app: Arc<App>, user: String, before: Option<String>, limit| async move {
                let page = async {
                    let limit = limit?;
                    Ok(rooms::room_history(&app, &user, &id, before.as_deref(), limit).await?)
                };
                reply(page.await, |page| page_json(&page))
            },
        )
}

fn direct_messages(app: Arc<App>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("api" / "direct" / String / "messages")
        .and(warp::get())
        .and(user(app))
        .and(paging())
        .and_then(
            |other: String, app: Arc<App>, user: String, before: Option<String>, limit| async move {
                let page = async {
                    let limit = limit?;
                    Ok(
                        rooms::direct_history(&app, &user, &other, before.as_deref(), limit)
                            .await?,
                    )
                };
                reply(page.await, |page| page_json(&page))
            },
        )
}
