//! `POST /api/token/refresh`, `/api/logout` and `/api/logout-all`: a session's refresh-token
//! rotation and its end.

use std::net::IpAddr;
use std::sync::Arc;

use http::StatusCode;
use serde::Deserialize;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::error::ApiError;
use super::{authenticate, bearer_post, json_body_after_limit};
use crate::state::App;

/// `{refresh_token}` of the refresh route.
#[derive(Deserialize)]
pub(crate) struct RefreshRequest {
    refresh_token: String,
}

pub fn refresh(app: Arc<App>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("api" / "token" / "refresh")
        .and(warp::post())
        .and(json_body_after_limit(app, |l| &l.refresh))
        .and_then(
            |app: Arc<App>, _ip: IpAddr, body: RefreshRequest| async move {
                crate::sessions::refresh(&app, &body.refresh_token)
                    .await
                    .map(|tokens| warp::reply::json(&tokens).into_response())
                    .map_err(|err| Rejection::from(ApiError::from(err)))
            },
        )
}

pub fn logout(app: Arc<App>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    bearer_post("logout", app).and_then(|app: Arc<App>, _ip, auth| async move {
        handle_logout(app, auth).await.map_err(Rejection::from)
    })
}

async fn handle_logout(app: Arc<App>, auth: Option<String>) -> Result<Response, ApiError> {
    let claims = authenticate(&app, auth).await?;
    let closed = crate::sessions::end(&app, &claims).await?;
    tracing::info!(user = %claims.sub, sockets_closed = closed, "logout");
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub fn logout_all(app: Arc<App>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    bearer_post("logout-all", app).and_then(|app: Arc<App>, _ip, auth| async move {
        let result = async {
            let claims = authenticate(&app, auth).await?;
            let closed = crate::sessions::end_all(&app, &claims.sub).await?;
            tracing::info!(user = %claims.sub, sockets_closed = closed, "logout everywhere");
            Ok::<_, ApiError>(StatusCode::NO_CONTENT.into_response())
        };
        result.await.map_err(Rejection::from)
    })
}
