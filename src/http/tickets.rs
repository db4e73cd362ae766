//! `POST /api/ws-ticket`: a single-use WebSocket ticket for the bearer's user.

use std::net::IpAddr;
use std::sync::Arc;

use http::StatusCode;
use serde_json::json;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::error::ApiError;
use super::{authenticate, bearer_post};
use crate::clock::now_millis;
use crate::state::App;

pub fn ws_ticket(app: Arc<App>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    bearer_post("ws-ticket", app).and_then(|app: Arc<App>, ip, auth| async move {
        handle_ws_ticket(app, ip, auth)
            .await
            .map_err(Rejection::from)
    })
}

async fn handle_ws_ticket(
    app: Arc<App>,
    ip: IpAddr,
    auth: Option<String>,
) -> Result<Response, ApiError> {
    app.limits.ticket.check(ip)?;
    let claims = authenticate(&app, auth).await?;
    let ttl = app.settings.auth.ticket_ttl;
    let ticket = app.tickets.mint(now_millis() + ttl.as_millis() as i64);
    app.store
        .insert_ticket(crate::store::TicketRecord {
            hash: ticket.hash,
            username: claims.sub.clone(),
            expires_at: ticket.expires_at,
        })
        .await?;
    app.metrics.tickets_minted.inc();
    tracing::debug!(user = %claims.sub, "ticket minted");
    Ok(warp::reply::with_status(
        warp::reply::json(&json!({"ticket": ticket.text, "expires_in": ttl.as_secs()})),
        StatusCode::CREATED,
    )
    .into_response())
}
