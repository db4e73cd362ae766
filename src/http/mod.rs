//! The HTTP surface: the assembly of every route with the JSON `recover`, request logging and
//! security headers, and the filters the routes share (client IP, per-IP limits, bearer tokens, the
//! cross-site guard). One file per resource: `accounts` (register, login), `tokens` (refresh,
//! logout), `tickets`, `rooms` (rooms, members, history), `server_api` (the backend's API),
//! `health` (health and metrics), `upgrade` (`GET /ws`); `body` reads request bodies; `error` is
//! the one mapping of every module's errors to HTTP.

pub mod accounts;
pub mod body;
pub mod error;
pub mod health;
pub mod rooms;
pub mod server_api;
pub mod tickets;
pub mod tokens;
pub mod upgrade;

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use http::{HeaderMap, HeaderValue};
use serde::de::DeserializeOwned;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use crate::auth::Claims;
use crate::edge::ClientAddr;
use crate::ratelimit::{IpLimit, IpLimits};
use crate::sessions::TokenRefused;
use crate::state::App;
pub use body::MAX_BODY_BYTES;
use error::{recover, ApiError};

/// Every route, with errors as JSON, request logs and security headers.
pub fn routes(app: Arc<App>) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    let api = accounts::register(app.clone())
        .or(accounts::login(app.clone()))
        .unify()
        .or(tokens::refresh(app.clone()))
        .unify()
        .or(tokens::logout(app.clone()))
        .unify()
        .or(tokens::logout_all(app.clone()))
        .unify()
        .or(tickets::ws_ticket(app.clone()))
        .unify()
        .or(rooms::routes(app.clone()))
        .unify()
        .or(server_api::routes(app.clone()))
        .unify()
        .or(health::health(app.clone()))
        .unify()
        .or(health::metrics(app.clone()))
        .unify()
        .with(warp::reply::with::header(
            http::header::CACHE_CONTROL,
            "no-store",
        ))
        .map(Reply::into_response);
    // `no-cache`: browsers revalidate (cheaply, by Last-Modified) instead of running an old client
    // against a new server after a deploy.
    let static_files = warp::get()
        .and(warp::fs::dir(app.settings.net.client_dir.clone()))
        .with(warp::reply::with::header(
            http::header::CACHE_CONTROL,
            "no-cache",
        ))
        .map(Reply::into_response);
    // The guard stands before every route, so a refused request tries no other.
    cross_site_guard(app.clone())
        .and(api.or(upgrade::route(app)).unify().or(static_files).unify())
        .recover(recover)
        .unify()
        .with(warp::log::custom(log_request))
        .with(warp::reply::with::headers(security_headers()))
        .map(Reply::into_response)
}

/// Refuses a state-changing request (any method but GET and HEAD) whose `Origin` is present and not
/// allowed: another site's page could otherwise post a form (`text/plain`, no preflight) from a
/// visitor's browser and register accounts, or log in, from the visitor's IP. The same allowlist as
/// the upgrade; requests without `Origin` (curl, backends) are unaffected.
fn cross_site_guard(app: Arc<App>) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    let origin = warp::header::value(http::header::ORIGIN.as_str())
        .map(Some)
        .or(warp::any().map(|| None))
        .unify();
    warp::method()
        .and(origin)
        .and(with_app(app))
        .and_then(
            |method: http::Method, origin: Option<HeaderValue>, app: Arc<App>| async move {
                let safe = method == http::Method::GET || method == http::Method::HEAD;
                if safe || app.origins.allow(origin.as_ref()) {
                    return Ok(());
                }
                tracing::info!(
                    origin = crate::edge::origin::printable(origin.as_ref()),
                    %method,
                    "state-changing request from a forbidden origin"
                );
                Err(Rejection::from(ApiError::OriginForbidden))
            },
        )
        .untuple_one()
}

fn security_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        (
            "content-security-policy",
            "default-src 'self'; connect-src 'self'; img-src 'self' data:; \
             frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers
}

/// Logs method, path (never the query string: it carries tickets), status and latency.
fn log_request(info: warp::log::Info<'_>) {
    tracing::info!(
        target: "wsgate::http",
        method = %info.method(),
        path = truncated(info.path(), 256),
        status = info.status().as_u16(),
        elapsed_ms = info.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
}

/// At most `max` bytes of `text` (on a character boundary): attacker-chosen strings must not make
/// log lines arbitrarily long.
pub fn truncated(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

pub(crate) fn with_app(
    app: Arc<App>,
) -> impl Filter<Extract = (Arc<App>,), Error = Infallible> + Clone {
    warp::any().map(move || app.clone())
}

/// The client's IP (see `edge::ClientAddr`).
pub fn client_ip() -> impl Filter<Extract = (IpAddr,), Error = Infallible> + Copy {
    warp::ext::optional::<ClientAddr>().map(|addr: Option<ClientAddr>| {
        addr.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.0.ip())
    })
}

/// Checks one per-IP limit before anything else of the request (its body included) is read.
pub(crate) fn limited(
    app: Arc<App>,
    limit: fn(&IpLimits) -> &IpLimit,
) -> impl Filter<Extract = (Arc<App>, IpAddr), Error = Rejection> + Clone {
    with_app(app)
        .and(client_ip())
        .and_then(move |app: Arc<App>, ip: IpAddr| async move {
            limit(&app.limits)
                .check(ip)
                .map_err(|limited| Rejection::from(ApiError::from(limited)))?;
            Ok::<_, Rejection>((app, ip))
        })
        .untuple_one()
}

/// The per-IP limit, then the JSON body: the state, the client IP and the body.
pub(crate) fn json_body_after_limit<T: DeserializeOwned + Send>(
    app: Arc<App>,
    limit: fn(&IpLimits) -> &IpLimit,
) -> impl Filter<Extract = (Arc<App>, IpAddr, T), Error = Rejection> + Clone {
    let body = body::json_body::<T>(&app);
    limited(app, limit).and(body)
}

pub(crate) fn post_json(
    path: &'static str,
) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::path("api")
        .and(warp::path(path))
        .and(warp::path::end())
        .and(warp::post())
}

/// Verifies `Authorization: Bearer <jwt>` by the one token rule (`sessions::accept_token`).
pub(crate) async fn authenticate(app: &App, header: Option<String>) -> Result<Claims, ApiError> {
    let header = header.ok_or(ApiError::Unauthorized)?;
    let token = bearer_token(&header).ok_or(ApiError::Unauthorized)?;
    crate::sessions::accept_token(app, token)
        .await
        .map_err(|refused| match refused {
            TokenRefused::Store(err) => ApiError::from(err),
            _ => ApiError::Unauthorized,
        })
}

/// The token of an `Authorization: Bearer <token>` value (scheme case-insensitive, RFC 9110 11.1).
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

pub(crate) fn bearer_post(
    path: &'static str,
    app: Arc<App>,
) -> impl Filter<Extract = (Arc<App>, IpAddr, Option<String>), Error = Rejection> + Clone {
    post_json(path)
        .and(with_app(app))
        .and(client_ip())
        .and(warp::header::optional::<String>("authorization"))
}
