//! The HTTP surface: REST routes (register, login, logout, ws-ticket, health), the static client, and
//! the assembly of every filter with the JSON `recover`, request logging and security headers.
//!
//! One function per route filter, one handler per route; state arrives through `with_app`.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use bytes::{Buf, BufMut, BytesMut};
use futures_util::{Stream, StreamExt};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use crate::auth::Claims;
use crate::error::{recover, ApiError};
use crate::ratelimit::{IpLimit, IpLimits};
use crate::sessions::TokenRefused;
use crate::state::App;
use crate::store::{now_millis, UserRecord};

/// Largest accepted request body.
pub const MAX_BODY_BYTES: u64 = 16 * 1024;

/// The peer address of the TCP connection, inserted by the connection service in `startup`.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// Every route, with errors as JSON, request logs and security headers.
pub fn routes(app: Arc<App>) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    let api = register(app.clone())
        .or(login(app.clone()))
        .unify()
        .or(token_refresh(app.clone()))
        .unify()
        .or(logout(app.clone()))
        .unify()
        .or(logout_all(app.clone()))
        .unify()
        .or(ws_ticket(app.clone()))
        .unify()
        .or(health(app.clone()))
        .unify()
        .or(metrics(app.clone()))
        .unify()
        .with(warp::reply::with::header(
            http::header::CACHE_CONTROL,
            "no-store",
        ))
        .map(Reply::into_response);
    // `no-cache`: browsers revalidate (cheaply, by Last-Modified) instead of running an old client
    // against a new server after a deploy.
    let static_files = warp::get()
        .and(warp::fs::dir(app.settings.client_dir.clone()))
        .with(warp::reply::with::header(
            http::header::CACHE_CONTROL,
            "no-cache",
        ))
        .map(Reply::into_response);
    // The guard stands before every route, so a refused request tries no other.
    cross_site_guard(app.clone())
        .and(
            api.or(crate::ws::upgrade::route(app))
                .unify()
                .or(static_files)
                .unify(),
        )
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
                if safe || app.origin_allowed(origin.as_ref()) {
                    return Ok(());
                }
                tracing::info!(
                    origin = printable_origin(origin.as_ref()),
                    %method,
                    "state-changing request from a forbidden origin"
                );
                Err(Rejection::from(ApiError::OriginForbidden))
            },
        )
        .untuple_one()
}

/// An `Origin` value fit for a log line: bounded, and only if it is text.
pub fn printable_origin(origin: Option<&HeaderValue>) -> &str {
    origin
        .and_then(|o| o.to_str().ok())
        .map_or("", |o| truncated(o, 256))
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

fn with_app(app: Arc<App>) -> impl Filter<Extract = (Arc<App>,), Error = Infallible> + Clone {
    warp::any().map(move || app.clone())
}

/// The client's IP (the TCP peer).
pub fn client_ip() -> impl Filter<Extract = (IpAddr,), Error = Infallible> + Copy {
    warp::ext::optional::<ClientAddr>().map(|addr: Option<ClientAddr>| {
        addr.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.0.ip())
    })
}

/// A JSON body of at most 16 KiB, with or without `Content-Length`, as `T`; every failure is a clear
/// `bad_request` or `payload_too_large`. The content type is not checked: the body is JSON or it is
/// refused, and no route relies on cookies, so a cross-site form gains nothing from a lax type.
fn json_body<T: DeserializeOwned + Send>(
    app: &App,
) -> impl Filter<Extract = (T,), Error = Rejection> + Clone {
    let deadline = app.settings.request_timeout;
    let shutdown = app.shutdown.clone();
    warp::header::optional::<u64>("content-length")
        .and(warp::body::stream())
        .and_then(move |length: Option<u64>, body| {
            let shutdown = shutdown.clone();
            async move {
                if length.is_some_and(|l| l > MAX_BODY_BYTES) {
                    return Err(Rejection::from(ApiError::PayloadTooLarge));
                }
                // The header timeout does not cover the body: a client that announces a body and never
                // sends it would hold its connection slot forever. Nor may it hold up a shutdown: the
                // server answers it 503 at once instead of waiting out the grace period.
                let bytes = tokio::select! {
                    read = tokio::time::timeout(deadline, read_limited(body)) => {
                        read.map_err(|_| Rejection::from(ApiError::RequestTimeout))??
                    }
                    _ = shutdown.cancelled() => return Err(Rejection::from(ApiError::ShuttingDown)),
                };
                parse_body(&bytes).map_err(Rejection::from)
            }
        })
}

/// A request body as `T`; anything else is `bad_request`, with serde's reason.
pub(crate) fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice::<T>(bytes)
        .map_err(|err| ApiError::BadRequest(format!("invalid JSON body: {err}")))
}

/// Reads a body, refusing it as soon as it passes the limit (a chunked body has no length to check).
pub(crate) async fn read_limited<S, B>(body: S) -> Result<BytesMut, ApiError>
where
    S: Stream<Item = Result<B, warp::Error>>,
    B: Buf,
{
    let mut body = std::pin::pin!(body);
    let mut bytes = BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk =
            chunk.map_err(|err| ApiError::BadRequest(format!("could not read body: {err}")))?;
        if (bytes.len() + chunk.remaining()) as u64 > MAX_BODY_BYTES {
            return Err(ApiError::PayloadTooLarge);
        }
        bytes.put(chunk);
    }
    Ok(bytes)
}

/// `{username, password}` of register and login.
#[derive(Deserialize)]
pub(crate) struct Credentials {
    username: String,
    password: String,
}

fn valid_username(name: &str) -> bool {
    (3..=32).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Password rules; `Err` holds the message. 72 bytes is bcrypt's input limit: longer passwords are
/// refused rather than silently truncated.
fn check_password(password: &str) -> Result<(), &'static str> {
    if password.len() < 8 {
        Err("password must be at least 8 bytes")
    } else if password.len() > 72 {
        Err("password must be at most 72 bytes (bcrypt's limit)")
    } else if password.contains('\0') {
        Err("password must not contain NUL characters")
    } else {
        Ok(())
    }
}

/// Checks one per-IP limit before anything else of the request (its body included) is read.
fn limited(
    app: Arc<App>,
    limit: fn(&IpLimits) -> &IpLimit,
) -> impl Filter<Extract = (Arc<App>, IpAddr), Error = Rejection> + Clone {
    with_app(app)
        .and(client_ip())
        .and_then(move |app: Arc<App>, ip: IpAddr| async move {
            limit(&app.limits).check(ip).map_err(Rejection::from)?;
            Ok::<_, Rejection>((app, ip))
        })
        .untuple_one()
}

/// The per-IP limit, then the JSON body: the state, the client IP and the body.
fn json_body_after_limit<T: DeserializeOwned + Send>(
    app: Arc<App>,
    limit: fn(&IpLimits) -> &IpLimit,
) -> impl Filter<Extract = (Arc<App>, IpAddr, T), Error = Rejection> + Clone {
    let body = json_body::<T>(&app);
    limited(app, limit).and(body)
}

fn post_json(path: &'static str) -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::path("api")
        .and(warp::path(path))
        .and(warp::path::end())
        .and(warp::post())
}

fn register(app: Arc<App>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    post_json("register")
        .and(json_body_after_limit(app, |l| &l.register))
        .and_then(|app: Arc<App>, _ip: IpAddr, creds| async move {
            handle_register(app, creds).await.map_err(Rejection::from)
        })
}

async fn handle_register(app: Arc<App>, creds: Credentials) -> Result<Response, ApiError> {
    if !valid_username(&creds.username) {
        return Err(ApiError::InvalidUsername);
    }
    check_password(&creds.password).map_err(ApiError::InvalidPassword)?;
    // Cheap pre-check so a taken name does not cost a bcrypt run; the insert below stays authoritative.
    if app.store.find_user(&creds.username).await?.is_some() {
        return Err(ApiError::UsernameTaken);
    }
    let password_hash = app.passwords.hash(creds.password).await?;
    app.store
        .create_user(UserRecord {
            username: creds.username.clone(),
            password_hash,
            created_at: now_millis(),
        })
        .await
        .map_err(|err| match err {
            crate::store::StoreError::Duplicate => ApiError::UsernameTaken,
            err => ApiError::from(err),
        })?;
    tracing::info!(user = %creds.username, "user registered");
    Ok(warp::reply::with_status(
        warp::reply::json(&json!({"username": creds.username})),
        StatusCode::CREATED,
    )
    .into_response())
}

fn login(app: Arc<App>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    post_json("login")
        .and(json_body_after_limit(app, |l| &l.login))
        .and_then(|app: Arc<App>, _ip: IpAddr, creds| async move {
            let result = handle_login(app.clone(), creds).await;
            app.metrics.login(match &result {
                Ok(_) => "ok",
                Err(err) => err.code(),
            });
            result.map_err(Rejection::from)
        })
}

async fn handle_login(app: Arc<App>, creds: Credentials) -> Result<Response, ApiError> {
    let user = if valid_username(&creds.username) && check_password(&creds.password).is_ok() {
        app.store.find_user(&creds.username).await?
    } else {
        None
    };
    // Unknown users are verified against a dummy hash: same work, same time, same answer.
    let (username, hash) = match user {
        Some(user) => (Some(user.username), Some(user.password_hash)),
        None => (None, None),
    };
    if !app.passwords.verify(creds.password, hash).await? {
        return Err(ApiError::InvalidCredentials);
    }
    let username = username.ok_or(ApiError::InvalidCredentials)?;
    let tokens = crate::sessions::start(&app, &username).await?;
    tracing::info!(user = %username, "login");
    Ok(warp::reply::json(&tokens).into_response())
}

/// `{refresh_token}` of the refresh route.
#[derive(Deserialize)]
pub(crate) struct RefreshRequest {
    refresh_token: String,
}

fn token_refresh(app: Arc<App>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("api" / "token" / "refresh")
        .and(warp::post())
        .and(json_body_after_limit(app, |l| &l.refresh))
        .and_then(
            |app: Arc<App>, _ip: IpAddr, body: RefreshRequest| async move {
                crate::sessions::refresh(&app, &body.refresh_token)
                    .await
                    .map(|tokens| warp::reply::json(&tokens).into_response())
                    .map_err(Rejection::from)
            },
        )
}

/// Verifies `Authorization: Bearer <jwt>` by the one token rule (`sessions::accept_token`).
async fn authenticate(app: &App, header: Option<String>) -> Result<Claims, ApiError> {
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

fn bearer_post(
    path: &'static str,
    app: Arc<App>,
) -> impl Filter<Extract = (Arc<App>, IpAddr, Option<String>), Error = Rejection> + Clone {
    post_json(path)
        .and(with_app(app))
        .and(client_ip())
        .and(warp::header::optional::<String>("authorization"))
}

fn logout(app: Arc<App>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
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

fn logout_all(app: Arc<App>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
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

fn ws_ticket(app: Arc<App>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
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
    let ttl = app.settings.ticket_ttl;
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

/// `GET /metrics` on the main listener, where `startup` decided it may be served (404 elsewhere).
fn metrics(app: Arc<App>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
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

fn health(app: Arc<App>) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    warp::path!("api" / "health")
        .and(warp::get())
        .and(with_app(app))
        .and_then(|app: Arc<App>| async move {
            match app.store.ping().await {
                Ok(()) => Ok(warp::reply::json(&json!({
                    "status": "ok",
                    "store": app.store.kind(),
                }))
                .into_response()),
                Err(err) => Err(Rejection::from(ApiError::from(err))),
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn username_rule() {
        for ok in ["abc", "a_b_9", &"x".repeat(32)] {
            assert!(valid_username(ok), "{ok}");
        }
        for bad in ["ab", &"x".repeat(33), "a-b", "a b", "émile", ""] {
            assert!(!valid_username(bad), "{bad}");
        }
    }

    #[test]
    fn password_rule_counts_bytes() {
        assert!(check_password("12345678").is_ok());
        assert!(check_password("1234567").is_err());
        assert!(check_password(&"x".repeat(72)).is_ok());
        assert!(check_password(&"x".repeat(73)).is_err());
        // 24 three-byte characters are 72 bytes; 25 are 75.
        assert!(check_password(&"€".repeat(24)).is_ok());
        assert!(check_password(&"€".repeat(25)).is_err());
        assert!(check_password("12345678\0").is_err());
    }
}
