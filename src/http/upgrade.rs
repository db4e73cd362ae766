//! `GET /ws?ticket=…`: the checks before the 101 (handshake, Origin, rate limit, ticket), then the
//! 101 itself, answered by wsgate so that `ws` owns the whole `WebSocketConfig` (warp's `ws()`
//! filter hides the read-buffer size, which dominates per-socket memory).

use std::net::IpAddr;
use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Response as HttpResponse, StatusCode};
use hyper::upgrade::OnUpgrade;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use warp::reply::Response;
use warp::{Filter, Rejection};

use super::client_ip;
use super::error::ApiError;
use crate::clock::now_millis;
use crate::edge::ConnSlot;
use crate::state::App;
use crate::store::TicketOutcome;

/// The `/ws` route.
pub fn route(app: Arc<App>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path("ws")
        .and(warp::path::end())
        .and(warp::get())
        .and(warp::any().map(move || app.clone()))
        .and(client_ip())
        .and(warp::header::headers_cloned())
        // Raw query, parsed here: warp's typed `query()` logs the query string when it fails to decode,
        // and the query string carries the ticket.
        .and(warp::query::raw().or(warp::any().map(String::new)).unify())
        .and(warp::ext::optional::<OnUpgrade>())
        .and(warp::ext::optional::<ConnSlot>())
        .and_then(
            |app: Arc<App>, ip, headers, query: String, on_upgrade, slot| async move {
                let result = upgrade(app.clone(), ip, headers, &query, on_upgrade, slot).await;
                app.metrics.upgrade(match &result {
                    Ok(_) => "accepted",
                    Err(refusal) => refusal.code(),
                });
                result.map_err(Rejection::from)
            },
        )
}

/// The `Sec-WebSocket-Key` of a well-formed RFC 6455 handshake.
fn handshake_key(headers: &HeaderMap) -> Option<&HeaderValue> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str().is_ok_and(|v| {
                v.split(',')
                    .any(|part| part.trim().eq_ignore_ascii_case(token))
            })
        })
    };
    let version_ok = headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v == "13");
    let key = headers.get(header::SEC_WEBSOCKET_KEY)?;
    (has_token(header::CONNECTION, "upgrade")
        && has_token(header::UPGRADE, "websocket")
        && version_ok
        && key.len() == 24)
        .then_some(key)
}

/// The `ticket` parameter of a raw query string; `None` when absent or empty.
pub fn ticket_param(query: &str) -> Option<&str> {
    query
        .split('&')
        .filter_map(|pair| pair.strip_prefix("ticket="))
        .find(|value| !value.is_empty())
}

async fn upgrade(
    app: Arc<App>,
    ip: IpAddr,
    headers: HeaderMap,
    query: &str,
    on_upgrade: Option<OnUpgrade>,
    slot: Option<ConnSlot>,
) -> Result<Response, ApiError> {
    // A plain GET cannot burn a ticket: the handshake is checked first.
    let key = handshake_key(&headers).ok_or(ApiError::UpgradeRequired)?;
    let on_upgrade = on_upgrade.ok_or(ApiError::UpgradeRequired)?;

    // 1. Origin, before the ticket is touched, so a forbidden page cannot burn the user's ticket.
    let origin = headers.get(header::ORIGIN);
    if !app.origins.allow(origin) {
        tracing::info!(
            origin = crate::edge::origin::printable(origin),
            "upgrade from forbidden origin"
        );
        return Err(ApiError::OriginForbidden);
    }

    // 2. Rate limit.
    app.limits.upgrade.check(ip)?;

    // 3. Ticket: shape and MAC, then its own expiry, then one atomic consume in the store.
    let text = ticket_param(query).ok_or(ApiError::TicketMissing)?;
    let ticket = app.tickets.verify(text).ok_or(ApiError::TicketInvalid)?;
    let now = now_millis();
    if ticket.expires_at <= now {
        return Err(ApiError::TicketExpired);
    }
    let username = match app.store.consume_ticket(&ticket.hash, now).await? {
        TicketOutcome::Accepted { username } => {
            app.metrics.tickets_consumed.inc();
            username
        }
        TicketOutcome::Used => return Err(ApiError::TicketUsed),
        TicketOutcome::Expired => return Err(ApiError::TicketExpired),
        TicketOutcome::Unknown => return Err(ApiError::TicketInvalid),
    };

    let accept = derive_accept_key(key.as_bytes());
    // The socket keeps its connection slot after the HTTP connection hands it over.
    crate::ws::spawn(app, on_upgrade, username, ip, slot);

    let response = HttpResponse::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .body(Default::default())
        .map_err(|_| ApiError::Internal)?;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticket_param_finds_non_empty_values() {
        assert_eq!(ticket_param("ticket=abc"), Some("abc"));
        assert_eq!(ticket_param("x=1&ticket=abc&y=2"), Some("abc"));
        assert_eq!(ticket_param("ticket="), None);
        assert_eq!(ticket_param(""), None);
        assert_eq!(ticket_param("tickets=abc"), None);
    }

    #[test]
    fn handshake_needs_every_header() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "keep-alive, Upgrade".parse().unwrap());
        h.insert(header::UPGRADE, "WebSocket".parse().unwrap());
        h.insert(header::SEC_WEBSOCKET_VERSION, "13".parse().unwrap());
        h.insert(
            header::SEC_WEBSOCKET_KEY,
            "dGhlIHNhbXBsZSBub25jZQ==".parse().unwrap(),
        );
        assert!(handshake_key(&h).is_some());
        for name in [
            header::CONNECTION,
            header::UPGRADE,
            header::SEC_WEBSOCKET_VERSION,
            header::SEC_WEBSOCKET_KEY,
        ] {
            let mut missing = h.clone();
            missing.remove(&name);
            assert!(handshake_key(&missing).is_none(), "{name}");
        }
    }
}
