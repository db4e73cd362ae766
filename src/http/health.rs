//! `GET /api/health` and `GET /metrics` (on the main listener where it may be served, or alone on
//! `WSGATE_METRICS_ADDR`).

use std::convert::Infallible;
use std::sync::Arc;

use serde_json::json;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::error::{recover, ApiError};
use super::with_app;
use crate::state::App;

/// `GET /metrics` on the main listener, where `startup` decided it may be served (404 elsewhere).
pub fn metrics(app: Arc<App>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("metrics")
        .and(warp::get())
        .and(with_app(app))
        .and_then(|app: Arc<App>| async move {
            if app.metrics_on_main {
                Ok(metrics_reply(&app))
            } else {
                Err(Rejection::from(ApiError::NotFound))
            }
        })
}

fn metrics_reply(app: &App) -> Response {
    warp::reply::with_header(
        app.metrics.encode(),
        http::header::CONTENT_TYPE,
        "application/openmetrics-text; version=1.0.0; charset=utf-8",
    )
    .into_response()
}

/// Everything the metrics-only listener (`WSGATE_METRICS_ADDR`) serves: `GET /metrics`, and 404.
pub fn metrics_only(
    app: Arc<App>,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    warp::path!("metrics")
        .and(warp::get())
        .and(with_app(app))
        .map(|app: Arc<App>| metrics_reply(&app))
        .recover(recover)
        .unify()
        .with(warp::reply::with::header(
            http::header::CACHE_CONTROL,
            "no-store",
        ))
        .map(Reply::into_response)
}

pub fn health(app: Arc<App>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("api" / "health")
        .and(warp::get())
        .and(with_app(app))
        .and_then(|app: Arc<App>| async move {
            if let Err(err) = app.store.ping().await {
                return Err(Rejection::from(ApiError::from(err)));
            }
            match app.engine.cluster_healthy() {
                None => Ok(warp::reply::json(&json!({
                    "status": "ok",
                    "store": app.store.kind(),
                }))
                .into_response()),
                Some(true) => Ok(warp::reply::json(&json!({
                    "status": "ok",
                    "store": app.store.kind(),
                    "redis": "ok",
                }))
                .into_response()),
                Some(false) => Err(Rejection::from(ApiError::ClusterUnavailable)),
            }
        })
}
