//! Session lifecycle: login sessions as refresh-token families, rotation with reuse detection,
//! logout of one session or of all of a user's sessions, and closing the sockets they cover.
//!
//! A login starts a session (`sid`). Every access token carries its session's `sid`; every refresh
//! token belongs to it. Refreshing spends the presented refresh token and issues a new pair in the
//! same session. Presenting a spent refresh token again means two parties hold it — one of them a
//! thief — so the whole session is revoked: its refresh tokens stop working, its access tokens are
//! refused (by `sid`), and its sockets are closed with 4401 `token_revoked`.

use serde::Serialize;

use crate::auth::refresh::new_session_id;
use crate::auth::{Claims, TokenError};
use crate::clock::now_millis;
use crate::realtime::Kick;
use crate::state::App;
use crate::store::{RefreshOutcome, Revoked, Rotation, SessionRecord, StoreError, UnixMillis};

/// Why an access token is not accepted (REST bearer, socket `auth`, socket `refresh`).
#[derive(Debug, thiserror::Error)]
pub enum TokenRefused {
    /// Malformed, forged, foreign or expired.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// Its token id or its session was revoked (logout, reuse detection).
    #[error("token revoked")]
    Revoked,
    /// It names no account, or an account created after it was issued: after the embedded store
    /// restarts someone may register the same name, and an old token must not act for them.
    #[error("token does not belong to an existing account")]
    NoAccount,
    /// The store could not answer.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The one rule that accepts an access token, wherever it is presented: signature, algorithm,
/// issuer, audience and expiry; then revocation; then that its account exists and is not younger
/// than the token.
pub async fn accept_token(app: &App, token: &str) -> Result<Claims, TokenRefused> {
    let claims = app.tokens.verify(token)?;
    if app.store.is_revoked(&claims.jti, &claims.sid).await? {
        return Err(TokenRefused::Revoked);
    }
    // `iat` has whole seconds (and the leeway allows for clock skew between instances): an account
    // created within the token's issuing second, or the leeway after it, still counts as older.
    let issued_by = (claims.iat + app.tokens.leeway().as_secs() as i64) * 1000 + 999;
    match app.store.find_user(&claims.sub).await? {
        Some(user) if user.created_at <= issued_by => Ok(claims),
        _ => Err(TokenRefused::NoAccount),
    }
}

/// Why a session operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Unknown, expired or forged refresh token, or its session was revoked.
    #[error("invalid refresh token")]
    InvalidRefreshToken,
    /// A spent refresh token was presented again: its session is now revoked.
    #[error("refresh token reused")]
    RefreshTokenReused,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What login and refresh return.
#[derive(Debug, Serialize)]
pub struct TokenPair {
    /// The JWT. Secret.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Access-token lifetime, seconds.
    pub expires_in: u64,
    /// The opaque refresh token. Secret.
    pub refresh_token: String,
    /// Refresh-token lifetime, seconds.
    pub refresh_expires_in: u64,
}

fn pair(app: &App, username: &str, sid: &str, refresh_token: String) -> TokenPair {
    TokenPair {
        access_token: app.tokens.issue(username, sid).token,
        token_type: "Bearer",
        expires_in: app.tokens.ttl().as_secs(),
        refresh_token,
        refresh_expires_in: app.settings.auth.refresh_ttl.as_secs(),
    }
}

/// Until when a session revocation must be remembered: every access token of the session issued up
/// to now is past `exp` + leeway by then.
fn access_until(app: &App, now: UnixMillis) -> UnixMillis {
    now + (app.tokens.ttl() + app.tokens.leeway()).as_millis() as i64 + 1000
}

fn refresh_expiry(app: &App, now: UnixMillis) -> UnixMillis {
    now + app.settings.auth.refresh_ttl.as_millis() as i64
}

/// Starts a session for a user who just proved their password. A user keeps at most
/// `WSGATE_MAX_SESSIONS_PER_USER` live sessions: past that, the oldest are revoked and their sockets
/// closed, so that logins in a loop cannot grow the store without bound.
pub async fn start(app: &App, username: &str) -> Result<TokenPair, SessionError> {
    let now = now_millis();
    let sid = new_session_id();
    let first = app.refresh_tokens.mint(&sid, 0);
    app.store
        .create_session(SessionRecord {
            sid: sid.clone(),
            username: username.to_owned(),
            expires_at: refresh_expiry(app, now),
            generation: 0,
            current_hash: first.hash,
            created_at: now,
        })
        .await?;
    let evicted = app
        .store
        .revoke_sessions_beyond(
            username,
            app.settings.auth.max_sessions_per_user,
            &sid,
            access_until(app, now),
            now,
        )
        .await?;
    if !evicted.is_empty() {
        let mut closed = 0;
        for sid in evicted {
            closed += app.engine.kick(&Revoked::Session(sid), Kick::Revoked).await;
        }
        tracing::info!(
            user = %username,
            limit = app.settings.auth.max_sessions_per_user,
            sockets_closed = closed,
            "session limit reached: the oldest sessions were revoked"
        );
    }
    Ok(pair(app, username, &sid, first.text))
}

/// Rotates a refresh token. Reuse of a spent one revokes its session and closes its sockets.
pub async fn refresh(app: &App, presented: &str) -> Result<TokenPair, SessionError> {
    let now = now_millis();
    // Forged or foreign tokens stop here, before the store.
    let opened = app
        .refresh_tokens
        .open(presented)
        .ok_or(SessionError::InvalidRefreshToken)?;
    let next = app.refresh_tokens.mint(&opened.sid, opened.generation + 1);
    let rotation = Rotation {
        sid: opened.sid.clone(),
        generation: opened.generation,
        presented: opened.hash,
        next: next.hash,
        next_expires_at: refresh_expiry(app, now),
    };
    match app.store.rotate_refresh(&rotation, now).await? {
        RefreshOutcome::Rotated { username } => Ok(pair(app, &username, &opened.sid, next.text)),
        RefreshOutcome::Reused { username } => {
            tracing::warn!(user = %username, "refresh token reused: revoking the session");
            revoke(app, Revoked::Session(opened.sid), now).await?;
            Err(SessionError::RefreshTokenReused)
        }
        RefreshOutcome::Invalid => Err(SessionError::InvalidRefreshToken),
    }
}

/// Logout: revokes the presented access token and its whole session, and closes their sockets.
pub async fn end(app: &App, claims: &Claims) -> Result<usize, SessionError> {
    // The session's revocation covers the presented token too (it carries the `sid`, and the
    // revocation outlives every access token of the session), so one store write and one kick do.
    revoke(app, Revoked::Session(claims.sid.clone()), now_millis()).await
}

/// Logout everywhere: revokes every session of the user and closes every socket of the user.
pub async fn end_all(app: &App, username: &str) -> Result<usize, SessionError> {
    let now = now_millis();
    let sids = app
        .store
        .revoke_user_sessions(username, access_until(app, now), now)
        .await?;
    let mut closed = app.engine.kick_user(username, Kick::Revoked).await;
    for sid in sids {
        closed += app.engine.kick(&Revoked::Session(sid), Kick::Revoked).await;
    }
    Ok(closed)
}

/// Revokes a session in the store and closes its local sockets.
async fn revoke(app: &App, what: Revoked, now: UnixMillis) -> Result<usize, SessionError> {
    if let Revoked::Session(sid) = &what {
        app.store
            .revoke_session(sid, access_until(app, now), now)
            .await?;
    }
    Ok(app.engine.kick(&what, Kick::Revoked).await)
}

/// Background task: applies revocations made through other instances (sharing the store) to this
/// instance's sockets. Local revocations already closed their sockets; seeing them again is harmless.
pub async fn follow_revocations(app: std::sync::Arc<App>) {
    let interval = app.settings.auth.revocation_poll;
    // Instances' clocks differ a little: look back further than one interval.
    let overlap = interval.as_millis() as i64 + 5_000;
    let mut since = now_millis() - overlap;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = app.shutdown.cancelled() => return,
        }
        let polled_at = now_millis();
        match app.store.revocations_since(since).await {
            Ok(revoked) => {
                for what in &revoked {
                    let closed = app.hub.kick(what, Kick::Revoked);
                    if closed > 0 {
                        tracing::info!(sockets = closed, "closed sockets revoked elsewhere");
                    }
                }
                since = polled_at - overlap;
            }
            Err(err) => tracing::debug!(%err, "revocation feed unavailable"),
        }
    }
}
