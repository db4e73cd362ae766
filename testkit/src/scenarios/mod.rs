//! The scenario suite: every behaviour of the wire contract, written once against a server URL, run by
//! `cargo test` (in-process server) and by `scripts/scenarios.sh --url URL` (any running wsgate).
//!
//! The scenarios live in files by subject (`accounts`, `upgrade`, `pending`, `chat`, `sessions`,
//! `rooms`);
//! `with_scenarios!` below is the one list, in the same groups, that both runners use.

mod accounts;
mod chat;
mod pending;
mod rooms;
mod sessions;
mod upgrade;

use accounts::*;
use chat::*;
use pending::*;
use rooms::*;
use sessions::*;
use upgrade::*;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Result};
use futures_util::future::BoxFuture;
use serde_json::{json, Value};

use crate::{Event, Gateway, Upgrade, User, PASSWORD};

/// What a scenario needs from the server it runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Any configuration with the default rate limits or looser.
    Standard,
    /// Access tokens that expire within the run's `max_wait` (the in-process run uses 2 s).
    ShortJwt,
}

/// A scenario's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every check held.
    Pass,
    /// Could not run against this server's configuration (the reason says which setting).
    Skip(String),
}

/// What scenarios know about the server.
pub struct Ctx {
    /// The client.
    pub gw: Gateway,
    /// The server's auth timeout (`WSGATE_AUTH_TIMEOUT_MS`).
    pub auth_timeout: Duration,
    /// The server's JWT clock-skew leeway (`WSGATE_JWT_LEEWAY_SECS`).
    pub leeway: Duration,
    /// The longest a scenario may wait for a TTL to run out before it skips.
    pub max_wait: Duration,
    /// The server API key (`WSGATE_API_KEY`), when the run knows it.
    pub api_key: Option<String>,
    /// The server's `WSGATE_RECOVERY_MESSAGES`.
    pub recovery_messages: usize,
    /// The server's `WSGATE_MAX_ROOMS_PER_SOCKET`.
    pub max_rooms: usize,
}

type Run = fn(Arc<Ctx>) -> BoxFuture<'static, Result<Outcome>>;

/// One named scenario.
pub struct Scenario {
    /// Name, also the in-process test's name.
    pub name: &'static str,
    /// Server configuration it needs.
    pub needs: Needs,
    /// The body.
    pub run: Run,
}

macro_rules! scenarios {
    ($($name:ident $( [$needs:ident] )?),* $(,)?) => {
        /// Every scenario, in a stable order.
        pub fn all() -> Vec<Scenario> {
            vec![$(Scenario {
                name: stringify!($name),
                needs: scenarios!(@needs $($needs)?),
                run: |ctx| Box::pin($name(ctx)),
            }),*]
        }
    };
    (@needs) => { Needs::Standard };
    (@needs $needs:ident) => { Needs::$needs };
}

/// The one list of scenarios. `$callback!` receives every name, with `[Needs]` where a scenario needs
/// a special server configuration; the in-process tests (`tests/it/scenarios.rs`) generate one test per
/// name from it, so a scenario cannot be added without being tested.
#[macro_export]
macro_rules! with_scenarios {
    ($callback:ident) => {
        $callback![
            // accounts
            register_and_login_contract,
            bearer_routes_need_a_valid_token,
            health_reports_the_store,
            cross_site_posts_are_refused,
            // upgrade
            missing_ticket,
            malformed_ticket,
            unknown_ticket,
            ticket_and_jwt_are_not_interchangeable,
            expired_ticket,
            reused_ticket,
            forbidden_origin_then_allowed,
            racing_upgrades,
            // pending
            first_frame_binary,
            first_frame_not_json,
            first_frame_wrong_type,
            invalid_jwt,
            expired_jwt[ShortJwt],
            revoked_jwt,
            other_users_jwt,
            auth_timeout,
            pending_sockets_get_no_broadcast,
            // chat
            chat_order_and_ids,
            presence_snapshot_and_deltas,
            bad_frames_after_auth,
            message_too_long,
            flood_rate_limited,
            oversized_frame,
            // sessions
            refresh_same_user,
            refresh_other_user_closes,
            refresh_invalid_closes,
            socket_closed_when_token_expires[ShortJwt],
            logout_closes_live_socket,
            refresh_token_contract,
            refresh_rotation_and_reuse_detection,
            concurrent_refresh_one_wins,
            reuse_detection_closes_live_sockets,
            logout_all_closes_every_socket,
            token_expiring_then_in_band_refresh[ShortJwt],
            // rooms (contract v2)
            rooms_rest_contract,
            room_membership_contract,
            rooms_reach_their_subscribers_only,
            removal_and_deletion_take_effect_at_once,
            subscription_rules,
            typing_is_relayed_and_throttled,
            direct_messages_reach_both_users_once,
            history_pages_back_in_order,
            recovery_is_exact,
            server_api_contract,
        ];
    };
}

with_scenarios!(scenarios);

/// Runs one scenario by name.
pub async fn run(ctx: Arc<Ctx>, name: &str) -> Result<Outcome> {
    let scenario = all()
        .into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| anyhow::anyhow!("no scenario named {name}"))?;
    (scenario.run)(ctx).await
}

const SHORT: Duration = Duration::from_millis(400);
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// An alg-none token claiming to be `sub` (never acceptable).
fn forged_token(sub: &str) -> String {
    let header = base64_url(br#"{"alg":"none","typ":"JWT"}"#);
    let claims = base64_url(
        json!({"sub": sub, "iat": 0, "exp": 4_000_000_000u64, "jti": "x", "iss": "wsgate", "aud": "wsgate"})
            .to_string()
            .as_bytes(),
    );
    format!("{header}.{claims}.")
}

/// Minimal unpadded base64url, so the suite needs no extra crate.
fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

async fn pending_socket(ctx: &Ctx, user: &User) -> Result<crate::Socket> {
    let ticket = ctx.gw.ticket(&user.token).await?;
    ctx.gw.upgrade(&ticket).await?.open()
}

async fn expect_refused(upgrade: Upgrade, status: u16, code: &str) -> Result<()> {
    upgrade.refused()?.expect_error(status, code)
}

/// How long until a token issued `expires_in` seconds ago is refused, or a skip when that is too long.
fn token_lifetime(ctx: &Ctx, expires_in: u64) -> Result<Duration, Outcome> {
    let life = Duration::from_secs(expires_in) + ctx.leeway + Duration::from_millis(1100);
    if life > ctx.max_wait {
        return Err(Outcome::Skip(format!(
            "access-token TTL {expires_in}s (+{:?} leeway) exceeds --max-wait {:?} \
             (set WSGATE_JWT_TTL_SECS lower)",
            ctx.leeway, ctx.max_wait
        )));
    }
    Ok(life)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_matches_known_vectors() {
        assert_eq!(base64_url(b""), "");
        assert_eq!(base64_url(b"f"), "Zg");
        assert_eq!(base64_url(b"fo"), "Zm8");
        assert_eq!(base64_url(b"foo"), "Zm9v");
        assert_eq!(base64_url(b"foob"), "Zm9vYg");
        assert_eq!(base64_url(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn names_are_unique() {
        let names: std::collections::HashSet<_> = all().iter().map(|s| s.name).collect();
        assert_eq!(names.len(), all().len());
    }
}
