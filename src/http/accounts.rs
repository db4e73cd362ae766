//! `POST /api/register` and `POST /api/login`.

use std::net::IpAddr;
use std::sync::Arc;

use http::StatusCode;
use serde::Deserialize;
use serde_json::json;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::error::ApiError;
use super::{json_body_after_limit, post_json};
use crate::state::App;

/// `{username, password}` of register and login.
#[derive(Deserialize)]
pub(crate) struct Credentials {
    username: String,
    password: String,
}

pub fn register(app: Arc<App>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    post_json("register")
        .and(json_body_after_limit(app, |l| &l.register))
        .and_then(
            |app: Arc<App>, _ip: IpAddr, creds: Credentials| async move {
                crate::accounts::register(&app, &creds.username, creds.password)
                    .await
                    .map_err(|err| Rejection::from(ApiError::from(err)))?;
                Ok::<_, Rejection>(
                    warp::reply::with_status(
                        warp::reply::json(&json!({"username": creds.username})),
                        StatusCode::CREATED,
                    )
                    .into_response(),
                )
            },
        )
}

pub fn login(app: Arc<App>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    post_json("login")
        .and(json_body_after_limit(app, |l| &l.login))
        .and_then(
            |app: Arc<App>, _ip: IpAddr, creds: Credentials| async move {
                let result = crate::accounts::login(&app, &creds.username, creds.password)
                    .await
                    .map_err(ApiError::from);
                app.metrics.login(match &result {
                    Ok(_) => "ok",
                    Err(err) => err.code(),
                });
                result
                    .map(|tokens| warp::reply::json(&tokens).into_response())
                    .map_err(Rejection::from)
            },
        )
}
