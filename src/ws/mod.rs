//! The WebSocket side: one socket's life after its 101 (`conn`), and the one place where module
//! errors become close codes.

pub mod conn;

use std::net::IpAddr;
use std::sync::Arc;

use hyper::upgrade::OnUpgrade;
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
    // A debug span: at debug level every event of the socket carries its context. An info span
    // would cost every idle socket about 450 bytes in production (the subscriber's slot and the
    // formatted fields, measured with heaptrack), so the socket's info events name `conn`, `peer`
    // and `user` themselves.
    let span = tracing::debug_span!("ws", conn, peer = %peer, user = tracing::field::Empty);
    let tasks = app.tasks.clone();
    tasks.spawn(conn::serve(app, on_upgrade, username, conn, peer, hold).instrument(span));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every socket's task is this future for the socket's whole life, PENDING and authenticated:
    /// it is most of a socket's memory (heaptrack, scripts/heap-profile.sh). It was 2.9 KB before
    /// the once-only steps were boxed; 1,256 bytes at the commit that added this test (rustc 1.95),
    /// with the PENDING phase boxed beside it (another 536); 1,200 bytes with that phase inside
    /// and the shutdown told through the hub.
    /// The bound leaves room for a compiler's layout, not for a new inline await: box that instead.
    #[tokio::test]
    async fn a_sockets_task_stays_small() {
        let settings =
            crate::config::Settings::from_args(["wsgate", "--addr", "127.0.0.1:0"]).unwrap();
        let app = crate::startup::Application::build(settings)
            .await
            .unwrap()
            .app();
        let mut request = http::Request::new(());
        let peer = IpAddr::from([127, 0, 0, 1]);
        let task = conn::serve(
            app,
            hyper::upgrade::on(&mut request),
            "u".into(),
            1,
            peer,
            (),
        );
        let size = std::mem::size_of_val(&task);
        assert!(size <= 1_260, "a socket's task future is {size} bytes");
    }
}
