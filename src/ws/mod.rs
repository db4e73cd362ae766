//! The WebSocket side: one socket's life after its 101 (`conn`), and the one place where module
//! errors become close codes.

pub mod conn;

use std::net::IpAddr;
use std::sync::Arc;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;
use tracing::Instrument;

use crate::protocol::CloseReason;
use crate::realtime::Kick;
use crate::state::App;

/// Serves the socket a 101 is handing over, as a task of the server: for `username` (the ticket's
/// user), from `peer`. `hold` (the connection slot) lives as long as the socket.
pub fn spawn<H: Send + 'static>(
    app: Arc<App>,
    on_upgrade: OnUpgrade,
    username: String,
    peer: IpAddr,
    hold: H,
) {
    let conn = app.hub.next_conn_id();
    let span = tracing::info_span!("ws", conn, peer = %peer, user = tracing::field::Empty);
    let tasks = app.tasks.clone();
    tasks.spawn(
        async move {
            let _hold = hold;
            match on_upgrade.await {
                Ok(upgraded) => {
                    let ws = WebSocketStream::from_raw_socket(
                        TokioIo::new(upgraded),
                        Role::Server,
                        Some(app.ws_config),
                    )
                    .await;
                    conn::serve(app, ws, username, conn).await;
                }
                Err(err) => tracing::debug!(%err, "upgrade did not complete"),
            }
        }
        .instrument(span),
    );
}

impl From<crate::sessions::TokenRefused> for CloseReason {
    fn from(refused: crate::sessions::TokenRefused) -> Self {
        use crate::auth::TokenError;
        use crate::sessions::TokenRefused;
        use crate::store::StoreError;
        match refused {
            TokenRefused::Token(TokenError::Invalid) | TokenRefused::NoAccount => {
                CloseReason::TokenInvalid
            }
            TokenRefused::Token(TokenError::Expired) => CloseReason::TokenExpired,
            TokenRefused::Revoked => CloseReason::TokenRevoked,
            TokenRefused::Store(StoreError::Unavailable(reason)) => {
                tracing::warn!(%reason, "store unavailable while checking a socket token");
                CloseReason::StoreUnavailable
            }
            TokenRefused::Store(err) => {
                tracing::error!(%err, "store failed while checking a socket token");
                CloseReason::Internal
            }
        }
    }
}

impl From<Kick> for CloseReason {
    fn from(kick: Kick) -> Self {
        match kick {
            Kick::Revoked => CloseReason::TokenRevoked,
            Kick::Reconnect => CloseReason::Reconnect,
        }
    }
}
