//! The scenario suite: every behaviour of the wire contract, written once against a server URL, run by
//! `cargo test` (in-process server) and by `scripts/scenarios.sh --url URL` (any running wsgate).

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
            register_and_login_contract,
            bearer_routes_need_a_valid_token,
            health_reports_the_store,
            missing_ticket,
            malformed_ticket,
            unknown_ticket,
            ticket_and_jwt_are_not_interchangeable,
            expired_ticket,
            reused_ticket,
            forbidden_origin_then_allowed,
            cross_site_posts_are_refused,
            racing_upgrades,
            first_frame_binary,
            first_frame_not_json,
            first_frame_wrong_type,
            invalid_jwt,
            expired_jwt[ShortJwt],
            revoked_jwt,
            other_users_jwt,
            auth_timeout,
            pending_sockets_get_no_broadcast,
            chat_order_and_ids,
            presence_snapshot_and_deltas,
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
            bad_frames_after_auth,
            message_too_long,
            flood_rate_limited,
            oversized_frame,
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

async fn register_and_login_contract(ctx: Arc<Ctx>) -> Result<Outcome> {
    let gw = &ctx.gw;
    let name = crate::unique_name("reg");
    let ok = gw.register(&name, PASSWORD).await?;
    ensure!(
        ok.status == 201 && ok.body == json!({"username": name}),
        "register: {} {}",
        ok.status,
        ok.body
    );
    gw.register(&name, "another-password")
        .await?
        .expect_error(409, "username_taken")?;
    gw.register(&name.to_uppercase(), PASSWORD)
        .await?
        .expect_error(409, "username_taken")?;
    for bad in ["ab", "has space", "dash-name", &"x".repeat(33), "émile"] {
        gw.register(bad, PASSWORD)
            .await?
            .expect_error(400, "invalid_username")?;
    }
    let fresh = crate::unique_name("pw");
    for bad in ["short", &"x".repeat(73), &"é".repeat(37)] {
        gw.register(&fresh, bad)
            .await?
            .expect_error(400, "invalid_password")?;
    }
    // 72 bytes exactly is fine.
    let edge = gw.register(&fresh, &"y".repeat(72)).await?;
    ensure!(edge.status == 201, "72-byte password: {}", edge.status);
    for body in [
        &b"not json"[..],
        br#"{"username":"abc"}"#,
        br#"{"username":5,"password":"12345678"}"#,
        br#"[1,2]"#,
    ] {
        gw.request(
            reqwest::Method::POST,
            "/api/register",
            Some(body.to_vec()),
            None,
        )
        .await?
        .expect_error(400, "bad_request")?;
    }
    let huge = format!(
        r#"{{"username":"abc","password":"{}"}}"#,
        "x".repeat(17 * 1024)
    );
    gw.request(
        reqwest::Method::POST,
        "/api/register",
        Some(huge.into_bytes()),
        None,
    )
    .await?
    .expect_error(413, "payload_too_large")?;

    let login = gw.login(&name, PASSWORD).await?;
    ensure!(
        login.status == 200,
        "login: {} {}",
        login.status,
        login.body
    );
    ensure!(login.body["token_type"] == "Bearer", "{}", login.body);
    ensure!(
        login.body["expires_in"].as_u64().unwrap_or(0) > 0,
        "{}",
        login.body
    );
    ensure!(
        login.body["access_token"].as_str().is_some(),
        "{}",
        login.body
    );
    let wrong = gw.login(&name, "wrong-password").await?;
    let unknown = gw.login(&crate::unique_name("ghost"), PASSWORD).await?;
    wrong.expect_error(401, "invalid_credentials")?;
    unknown.expect_error(401, "invalid_credentials")?;
    ensure!(
        wrong.body == unknown.body,
        "unknown user and wrong password differ"
    );
    Ok(Outcome::Pass)
}

async fn bearer_routes_need_a_valid_token(ctx: Arc<Ctx>) -> Result<Outcome> {
    let gw = &ctx.gw;
    let user = gw.new_user("bearer").await?;
    for path in ["/api/ws-ticket", "/api/logout"] {
        gw.post_empty(path, None)
            .await?
            .expect_error(401, "unauthorized")?;
        gw.post_empty(path, Some("garbage"))
            .await?
            .expect_error(401, "unauthorized")?;
        gw.post_empty(path, Some(&forged_token(&user.name)))
            .await?
            .expect_error(401, "unauthorized")?;
    }
    let reply = gw.ticket_reply(&user.token).await?;
    ensure!(
        reply.status == 201,
        "ticket: {} {}",
        reply.status,
        reply.body
    );
    let ticket = reply.body["ticket"].as_str().unwrap_or("");
    ensure!(
        ticket.len() >= 43,
        "ticket too short for 256 bits: {ticket}"
    );
    ensure!(
        ticket
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'),
        "ticket not URL-safe"
    );
    ensure!(
        reply.body["expires_in"].as_u64().unwrap_or(0) > 0,
        "{}",
        reply.body
    );
    Ok(Outcome::Pass)
}

async fn health_reports_the_store(ctx: Arc<Ctx>) -> Result<Outcome> {
    let reply = ctx
        .gw
        .request(reqwest::Method::GET, "/api/health", None, None)
        .await?;
    ensure!(
        reply.status == 200,
        "health: {} {}",
        reply.status,
        reply.body
    );
    ensure!(reply.body["status"] == "ok", "{}", reply.body);
    let store = reply.body["store"].as_str().unwrap_or("");
    ensure!(store == "memory" || store == "mongodb", "{}", reply.body);
    Ok(Outcome::Pass)
}

async fn missing_ticket(ctx: Arc<Ctx>) -> Result<Outcome> {
    let origin = ctx.gw.origin().to_string();
    for query in ["", "?ticket=", "?other=1"] {
        expect_refused(
            ctx.gw.upgrade_raw(query, Some(&origin)).await?,
            401,
            "ticket_missing",
        )
        .await?;
    }
    Ok(Outcome::Pass)
}

async fn malformed_ticket(ctx: Arc<Ctx>) -> Result<Outcome> {
    for ticket in ["abc", "%00%01", &"A".repeat(500)] {
        expect_refused(ctx.gw.upgrade(ticket).await?, 401, "ticket_invalid").await?;
    }
    Ok(Outcome::Pass)
}

async fn unknown_ticket(ctx: Arc<Ctx>) -> Result<Outcome> {
    // Same shape as a real ticket, but never minted: flip characters of a real one.
    let user = ctx.gw.new_user("unknown").await?;
    let real = ctx.gw.ticket(&user.token).await?;
    let mut forged: Vec<u8> = real.into_bytes();
    for b in forged.iter_mut().skip(2).take(10) {
        *b = if *b == b'A' { b'B' } else { b'A' };
    }
    let forged = String::from_utf8(forged)?;
    expect_refused(ctx.gw.upgrade(&forged).await?, 401, "ticket_invalid").await?;
    Ok(Outcome::Pass)
}

async fn ticket_and_jwt_are_not_interchangeable(ctx: Arc<Ctx>) -> Result<Outcome> {
    let user = ctx.gw.new_user("purpose").await?;
    let ticket = ctx.gw.ticket(&user.token).await?;
    ctx.gw
        .post_empty("/api/ws-ticket", Some(&ticket))
        .await?
        .expect_error(401, "unauthorized")?;
    expect_refused(ctx.gw.upgrade(&user.token).await?, 401, "ticket_invalid").await?;
    // The ticket is still good: refusing it as a bearer token did not consume it.
    ctx.gw.upgrade(&ticket).await?.open()?;
    Ok(Outcome::Pass)
}

async fn expired_ticket(ctx: Arc<Ctx>) -> Result<Outcome> {
    let user = ctx.gw.new_user("expired").await?;
    let reply = ctx.gw.ticket_reply(&user.token).await?;
    let ttl = Duration::from_secs(reply.body["expires_in"].as_u64().unwrap_or(30));
    if ttl > ctx.max_wait {
        return Ok(Outcome::Skip(format!(
            "ticket TTL {ttl:?} exceeds --max-wait {:?} (set WSGATE_TICKET_TTL_SECS lower)",
            ctx.max_wait
        )));
    }
    let ticket = reply.body["ticket"].as_str().unwrap_or("").to_string();
    tokio::time::sleep(ttl + Duration::from_millis(1100)).await;
    expect_refused(ctx.gw.upgrade(&ticket).await?, 401, "ticket_expired").await?;
    Ok(Outcome::Pass)
}

async fn reused_ticket(ctx: Arc<Ctx>) -> Result<Outcome> {
    let user = ctx.gw.new_user("reuse").await?;
    let ticket = ctx.gw.ticket(&user.token).await?;
    let mut socket = ctx.gw.upgrade(&ticket).await?.open()?;
    expect_refused(ctx.gw.upgrade(&ticket).await?, 401, "ticket_used").await?;
    // The first socket is unaffected by the replay.
    socket.auth(&user.token).await?;
    ensure!(
        socket.recv().await?["type"] == "auth_ok",
        "first socket broken"
    );
    Ok(Outcome::Pass)
}

async fn forbidden_origin_then_allowed(ctx: Arc<Ctx>) -> Result<Outcome> {
    let user = ctx.gw.new_user("origin").await?;
    let ticket = ctx.gw.ticket(&user.token).await?;
    let query = format!("?ticket={ticket}");
    expect_refused(
        ctx.gw
            .upgrade_raw(&query, Some("http://evil.example"))
            .await?,
        403,
        "origin_forbidden",
    )
    .await?;
    let mut socket = ctx.gw.upgrade(&ticket).await?.open()?;
    socket.auth(&user.token).await?;
    ensure!(socket.recv().await?["type"] == "auth_ok", "no auth_ok");
    Ok(Outcome::Pass)
}

/// Another site's page posting a form from a visitor's browser: every state-changing route refuses
/// it (403 `origin_forbidden`) and changes nothing; the server's own origin and no origin pass.
async fn cross_site_posts_are_refused(ctx: Arc<Ctx>) -> Result<Outcome> {
    let gw = &ctx.gw;
    let post =
        |path: &'static str, body: Option<String>, bearer: Option<String>, origin: String| {
            let gw = gw.clone();
            async move {
                let mut headers = vec![("content-type", "text/plain")];
                if !origin.is_empty() {
                    headers.push(("origin", origin.as_str()));
                }
                gw.request_with_headers(
                    reqwest::Method::POST,
                    path,
                    body.map(String::into_bytes),
                    bearer.as_deref(),
                    &headers,
                )
                .await
            }
        };
    let name = crate::unique_name("xsite");
    let form = json!({"username": name, "password": PASSWORD}).to_string();
    for origin in ["http://evil.example", "null", "https://evil.example:443"] {
        post("/api/register", Some(form.clone()), None, origin.into())
            .await?
            .expect_error(403, "origin_forbidden")?;
    }
    // Nothing was created: the name is still free.
    let created = gw.register(&name, PASSWORD).await?;
    ensure!(created.status == 201, "register: {}", created.body);
    let user = gw.relogin(&name).await?;
    let evil = || "http://evil.example".to_string();
    let token = || Some(user.token.clone());
    post("/api/login", Some(form.clone()), None, evil())
        .await?
        .expect_error(403, "origin_forbidden")?;
    let refresh = json!({"refresh_token": user.refresh_token}).to_string();
    post("/api/token/refresh", Some(refresh), None, evil())
        .await?
        .expect_error(403, "origin_forbidden")?;
    for path in ["/api/ws-ticket", "/api/logout", "/api/logout-all"] {
        post(path, None, token(), evil())
            .await?
            .expect_error(403, "origin_forbidden")?;
    }
    // The refused logouts changed nothing; the server's own origin, and no origin, pass.
    let own = post("/api/ws-ticket", None, token(), gw.origin().to_string()).await?;
    ensure!(own.status == 201, "own origin: {} {}", own.status, own.body);
    let bare = post("/api/ws-ticket", None, token(), String::new()).await?;
    ensure!(
        bare.status == 201,
        "no origin: {} {}",
        bare.status,
        bare.body
    );
    Ok(Outcome::Pass)
}

async fn racing_upgrades(ctx: Arc<Ctx>) -> Result<Outcome> {
    let user = ctx.gw.new_user("race").await?;
    let ticket = ctx.gw.ticket(&user.token).await?;
    let attempts = (0..10).map(|_| {
        let gw = ctx.gw.clone();
        let ticket = ticket.clone();
        tokio::spawn(async move { gw.upgrade(&ticket).await })
    });
    let mut opened = 0;
    for attempt in futures_util::future::join_all(attempts).await {
        match attempt?? {
            Upgrade::Open(_) => opened += 1,
            Upgrade::Refused(reply) => reply.expect_error(401, "ticket_used")?,
        }
    }
    ensure!(opened == 1, "{opened} upgrades succeeded with one ticket");
    Ok(Outcome::Pass)
}

async fn first_frame_binary(ctx: Arc<Ctx>) -> Result<Outcome> {
    let user = ctx.gw.new_user("binary").await?;
    let mut socket = pending_socket(&ctx, &user).await?;
    socket.send_binary(b"{\"type\":\"auth\"}".to_vec()).await?;
    socket
        .expect_closed_with(4400, "bad_request", CLOSE_WAIT)
        .await?;
    Ok(Outcome::Pass)
}

async fn first_frame_not_json(ctx: Arc<Ctx>) -> Result<Outcome> {
    let user = ctx.gw.new_user("notjson").await?;
    let mut socket = pending_socket(&ctx, &user).await?;
    socket.send_text("hello there").await?;
    socket
        .expect_closed_with(4400, "bad_request", CLOSE_WAIT)
        .await?;
    Ok(Outcome::Pass)
}

async fn first_frame_wrong_type(ctx: Arc<Ctx>) -> Result<Outcome> {
    let user = ctx.gw.new_user("wrongtype").await?;
    for frame in [
        json!({"type": "message", "text": "hi"}),
        json!({"type": "auth", "token": 5}),
        json!({"type": "auth"}),
        json!({"token": user.token}),
    ] {
        let mut socket = pending_socket(&ctx, &user).await?;
        socket.send_json(frame.clone()).await?;
        socket
            .expect_closed_with(4400, "bad_request", CLOSE_WAIT)
            .await
            .map_err(|e| anyhow::anyhow!("{frame}: {e}"))?;
    }
    Ok(Outcome::Pass)
}

async fn invalid_jwt(ctx: Arc<Ctx>) -> Result<Outcome> {
    let user = ctx.gw.new_user("badjwt").await?;
    let mut tampered = user.token.clone();
    tampered.pop();
    tampered.push(if user.token.ends_with('A') { 'B' } else { 'A' });
    for token in ["not-a-jwt".to_string(), forged_token(&user.name), tampered] {
        let mut socket = pending_socket(&ctx, &user).await?;
        socket.auth(&token).await?;
        socket
            .expect_closed_with(4401, "token_invalid", CLOSE_WAIT)
            .await?;
    }
    Ok(Outcome::Pass)
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

async fn expired_jwt(ctx: Arc<Ctx>) -> Result<Outcome> {
    let user = ctx.gw.new_user("expjwt").await?;
    let life = match token_lifetime(&ctx, user.expires_in) {
        Ok(life) => life,
        Err(skip) => return Ok(skip),
    };
    tokio::time::sleep(life).await;
    // A ticket needs a live token: log in again for it, then authenticate with the dead one.
    let fresh = ctx.gw.relogin(&user.name).await?;
    let mut socket = pending_socket(&ctx, &fresh).await?;
    socket.auth(&user.token).await?;
    socket
        .expect_closed_with(4401, "token_expired", CLOSE_WAIT)
        .await?;
    ctx.gw
        .post_empty("/api/ws-ticket", Some(&user.token))
        .await?
        .expect_error(401, "unauthorized")?;
    Ok(Outcome::Pass)
}

async fn revoked_jwt(ctx: Arc<Ctx>) -> Result<Outcome> {
    let user = ctx.gw.new_user("revoked").await?;
    let ticket = ctx.gw.ticket(&user.token).await?;
    let out = ctx.gw.post_empty("/api/logout", Some(&user.token)).await?;
    ensure!(out.status == 204, "logout: {} {}", out.status, out.body);
    let mut socket = ctx.gw.upgrade(&ticket).await?.open()?;
    socket.auth(&user.token).await?;
    socket
        .expect_closed_with(4401, "token_revoked", CLOSE_WAIT)
        .await?;
    ctx.gw
        .post_empty("/api/ws-ticket", Some(&user.token))
        .await?
        .expect_error(401, "unauthorized")?;
    ctx.gw
        .post_empty("/api/logout", Some(&user.token))
        .await?
        .expect_error(401, "unauthorized")?;
    Ok(Outcome::Pass)
}

async fn other_users_jwt(ctx: Arc<Ctx>) -> Result<Outcome> {
    let alice = ctx.gw.new_user("alice").await?;
    let bob = ctx.gw.new_user("bob").await?;
    let mut socket = pending_socket(&ctx, &alice).await?;
    socket.auth(&bob.token).await?;
    socket
        .expect_closed_with(4403, "ticket_user_mismatch", CLOSE_WAIT)
        .await?;
    Ok(Outcome::Pass)
}

async fn auth_timeout(ctx: Arc<Ctx>) -> Result<Outcome> {
    if ctx.auth_timeout > ctx.max_wait {
        return Ok(Outcome::Skip(format!(
            "auth timeout {:?} exceeds --max-wait {:?}",
            ctx.auth_timeout, ctx.max_wait
        )));
    }
    let user = ctx.gw.new_user("timeout").await?;
    let mut socket = pending_socket(&ctx, &user).await?;
    let started = tokio::time::Instant::now();
    socket
        .expect_closed_with(4408, "auth_timeout", ctx.auth_timeout + CLOSE_WAIT)
        .await?;
    let took = started.elapsed();
    ensure!(
        took + Duration::from_millis(200) >= ctx.auth_timeout,
        "closed after {took:?}, before the auth timeout {:?}",
        ctx.auth_timeout
    );
    Ok(Outcome::Pass)
}

async fn pending_sockets_get_no_broadcast(ctx: Arc<Ctx>) -> Result<Outcome> {
    let alice = ctx.gw.new_user("alice").await?;
    let carol = ctx.gw.new_user("carol").await?;
    let (mut a, _) = ctx.gw.connect(&alice).await?;
    let mut pending = pending_socket(&ctx, &carol).await?;
    let bob = ctx.gw.new_user("bob").await?;
    let (mut b, _) = ctx.gw.connect(&bob).await?;
    let everyone = [alice.name.as_str(), bob.name.as_str(), carol.name.as_str()];
    for socket in [&mut a, &mut b, &mut pending] {
        socket.focus(&everyone);
    }
    a.recv_type("joined").await?;
    a.say("for the authenticated only").await?;
    for socket in [&mut a, &mut b] {
        let msg = socket.recv_type("message").await?;
        ensure!(msg["text"] == "for the authenticated only", "{msg}");
    }
    pending.expect_silence(SHORT).await?;
    // Once authenticated, its first frame is auth_ok: nothing was queued for it while pending.
    pending.auth(&carol.token).await?;
    let first = pending.recv().await?;
    ensure!(
        first["type"] == "auth_ok",
        "pending socket got {first} first"
    );
    Ok(Outcome::Pass)
}

async fn chat_order_and_ids(ctx: Arc<Ctx>) -> Result<Outcome> {
    let alice = ctx.gw.new_user("alice").await?;
    let bob = ctx.gw.new_user("bob").await?;
    let (mut a, _) = ctx.gw.connect(&alice).await?;
    let (mut b, _) = ctx.gw.connect(&bob).await?;
    a.focus(&[&alice.name, &bob.name]);
    b.focus(&[&alice.name, &bob.name]);
    a.recv_type("joined").await?;
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    for i in 0..5 {
        a.say(&format!("a{i}")).await?;
        b.say(&format!("b{i}")).await?;
    }
    let mut seen: Vec<Vec<Value>> = Vec::new();
    for socket in [&mut a, &mut b] {
        let mut msgs = Vec::new();
        while msgs.len() < 10 {
            msgs.push(socket.recv_type("message").await?);
        }
        seen.push(msgs);
    }
    ensure!(seen[0] == seen[1], "sockets saw different orders");
    let ids: std::collections::HashSet<_> = seen[0].iter().map(|m| m["id"].to_string()).collect();
    ensure!(ids.len() == 10, "message ids are not unique");
    for m in &seen[0] {
        ensure!(m["id"].is_string(), "id must be a string: {m}");
        let ts = m["ts"].as_i64().unwrap_or(0);
        ensure!(ts >= before - 5_000, "ts {ts} is not unix millis");
        let from = m["from"].as_str().unwrap_or("");
        let text = m["text"].as_str().unwrap_or("");
        ensure!(
            (from == alice.name && text.starts_with('a'))
                || (from == bob.name && text.starts_with('b')),
            "bad sender attribution: {m}"
        );
    }
    // Each sender's own messages keep their order.
    let a_texts: Vec<_> = seen[0]
        .iter()
        .filter(|m| m["from"] == alice.name.as_str())
        .map(|m| m["text"].as_str().unwrap_or("").to_string())
        .collect();
    ensure!(a_texts == ["a0", "a1", "a2", "a3", "a4"], "{a_texts:?}");
    Ok(Outcome::Pass)
}

async fn presence_snapshot_and_deltas(ctx: Arc<Ctx>) -> Result<Outcome> {
    let alice = ctx.gw.new_user("alice").await?;
    let bob = ctx.gw.new_user("bob").await?;
    let (mut a, hello_a) = ctx.gw.connect(&alice).await?;
    a.focus(&[&alice.name, &bob.name]);
    ensure!(hello_a["user"] == alice.name.as_str(), "{hello_a}");
    ensure!(hello_a["expires_at"].as_i64().unwrap_or(0) > 0, "{hello_a}");
    let users_a = hello_a["users"].as_array().cloned().unwrap_or_default();
    ensure!(
        users_a.contains(&json!(alice.name)),
        "own user missing: {hello_a}"
    );
    let (mut b1, hello_b) = ctx.gw.connect(&bob).await?;
    let users: Vec<String> = hello_b["users"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
    let mut sorted = users.clone();
    sorted.sort();
    sorted.dedup();
    ensure!(users == sorted, "users not sorted and unique: {users:?}");
    ensure!(
        users.contains(&alice.name) && users.contains(&bob.name),
        "{users:?}"
    );
    let joined = a.recv().await?;
    ensure!(
        joined == json!({"type": "joined", "user": bob.name}),
        "{joined}"
    );
    // Bob's second socket announces nothing, and leaving with it announces nothing.
    let (b2, _) = ctx.gw.connect(&ctx.gw.relogin(&bob.name).await?).await?;
    a.expect_silence(SHORT).await?;
    b2.close().await?;
    a.expect_silence(SHORT).await?;
    b1.say("still here").await?;
    ensure!(
        a.recv().await?["type"] == "message",
        "expected bob's message"
    );
    b1.close().await?;
    let left = a.recv().await?;
    ensure!(left == json!({"type": "left", "user": bob.name}), "{left}");
    Ok(Outcome::Pass)
}

async fn refresh_same_user(ctx: Arc<Ctx>) -> Result<Outcome> {
    let alice = ctx.gw.new_user("alice").await?;
    let (mut socket, hello) = ctx.gw.connect(&alice).await?;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let fresh = ctx.gw.relogin(&alice.name).await?;
    socket
        .send_json(json!({"type": "refresh", "token": fresh.token}))
        .await?;
    let reply = socket.recv().await?;
    ensure!(reply["type"] == "refreshed", "{reply}");
    let new_exp = reply["expires_at"].as_i64().unwrap_or(0);
    ensure!(
        new_exp > hello["expires_at"].as_i64().unwrap_or(i64::MAX),
        "expires_at did not move: {reply} vs {hello}"
    );
    socket.say("after refresh").await?;
    ensure!(
        socket.recv_type("message").await?["text"] == "after refresh",
        "no echo"
    );
    Ok(Outcome::Pass)
}

async fn refresh_other_user_closes(ctx: Arc<Ctx>) -> Result<Outcome> {
    let alice = ctx.gw.new_user("alice").await?;
    let bob = ctx.gw.new_user("bob").await?;
    let (mut socket, _) = ctx.gw.connect(&alice).await?;
    socket
        .send_json(json!({"type": "refresh", "token": bob.token}))
        .await?;
    socket
        .expect_closed_with(4403, "ticket_user_mismatch", CLOSE_WAIT)
        .await?;
    Ok(Outcome::Pass)
}

async fn refresh_invalid_closes(ctx: Arc<Ctx>) -> Result<Outcome> {
    let alice = ctx.gw.new_user("alice").await?;
    let (mut socket, _) = ctx.gw.connect(&alice).await?;
    socket
        .send_json(json!({"type": "refresh", "token": forged_token(&alice.name)}))
        .await?;
    socket
        .expect_closed_with(4401, "token_invalid", CLOSE_WAIT)
        .await?;
    Ok(Outcome::Pass)
}

async fn socket_closed_when_token_expires(ctx: Arc<Ctx>) -> Result<Outcome> {
    let alice = ctx.gw.new_user("alice").await?;
    let life = match token_lifetime(&ctx, alice.expires_in) {
        Ok(life) => life,
        Err(skip) => return Ok(skip),
    };
    let started = tokio::time::Instant::now();
    let (mut socket, _) = ctx.gw.connect(&alice).await?;
    socket.say("alive while the token is").await?;
    socket.recv_type("message").await?;
    socket
        .expect_closed_with(4401, "token_expired", life + CLOSE_WAIT)
        .await?;
    ensure!(
        started.elapsed() + Duration::from_millis(1200) >= Duration::from_secs(alice.expires_in),
        "closed after {:?}, before the token expired",
        started.elapsed()
    );
    Ok(Outcome::Pass)
}

async fn logout_closes_live_socket(ctx: Arc<Ctx>) -> Result<Outcome> {
    let alice = ctx.gw.new_user("alice").await?;
    let (mut socket, _) = ctx.gw.connect(&alice).await?;
    // A socket on a refreshed token of the same session is part of what logout ends.
    let mut same_session = alice.clone();
    ctx.gw.refresh_user(&mut same_session).await?;
    let (mut sibling, _) = ctx.gw.connect(&same_session).await?;
    // A second session of the same user, with another token, must survive.
    let other = ctx.gw.relogin(&alice.name).await?;
    let (mut survivor, _) = ctx.gw.connect(&other).await?;
    let out = ctx.gw.post_empty("/api/logout", Some(&alice.token)).await?;
    ensure!(out.status == 204, "logout: {} {}", out.status, out.body);
    socket
        .expect_closed_with(4401, "token_revoked", CLOSE_WAIT)
        .await?;
    sibling
        .expect_closed_with(4401, "token_revoked", CLOSE_WAIT)
        .await?;
    ctx.gw
        .refresh(&same_session.refresh_token)
        .await?
        .expect_error(401, "invalid_refresh_token")?;
    survivor.say("still online").await?;
    ensure!(
        survivor.recv_type("message").await?["text"] == "still online",
        "survivor broken"
    );
    Ok(Outcome::Pass)
}

async fn refresh_token_contract(ctx: Arc<Ctx>) -> Result<Outcome> {
    let gw = &ctx.gw;
    let user = gw.new_user("rtc").await?;
    let login = gw.login(&user.name, PASSWORD).await?;
    let refresh = login.body["refresh_token"].as_str().unwrap_or("");
    ensure!(
        refresh.len() >= 43,
        "refresh token too short for 256 bits: {}",
        login.body
    );
    ensure!(
        login.body["refresh_expires_in"].as_u64().unwrap_or(0)
            > login.body["expires_in"].as_u64().unwrap_or(0),
        "{}",
        login.body
    );
    let rotated = gw.refresh(refresh).await?;
    ensure!(
        rotated.status == 200,
        "refresh: {} {}",
        rotated.status,
        rotated.body
    );
    for field in ["access_token", "refresh_token"] {
        ensure!(
            rotated.body[field].as_str().is_some(),
            "{field}: {}",
            rotated.body
        );
    }
    ensure!(rotated.body["token_type"] == "Bearer", "{}", rotated.body);
    ensure!(
        rotated.body["refresh_token"] != login.body["refresh_token"],
        "not rotated"
    );
    gw.refresh("no-such-token")
        .await?
        .expect_error(401, "invalid_refresh_token")?;
    // An access token is not a refresh token, and a refresh token is not a bearer token.
    gw.refresh(&user.token)
        .await?
        .expect_error(401, "invalid_refresh_token")?;
    let new_refresh = rotated.body["refresh_token"].as_str().unwrap_or("");
    gw.post_empty("/api/ws-ticket", Some(new_refresh))
        .await?
        .expect_error(401, "unauthorized")?;
    for body in [&br#"{}"#[..], br#"{"refresh_token":5}"#, b"nope"] {
        gw.request(
            reqwest::Method::POST,
            "/api/token/refresh",
            Some(body.to_vec()),
            None,
        )
        .await?
        .expect_error(400, "bad_request")?;
    }
    Ok(Outcome::Pass)
}

async fn refresh_rotation_and_reuse_detection(ctx: Arc<Ctx>) -> Result<Outcome> {
    let gw = &ctx.gw;
    let mut user = gw.new_user("rotate").await?;
    let first_refresh = user.refresh_token.clone();
    gw.refresh_user(&mut user).await?;
    gw.refresh_user(&mut user).await?;
    // The newest pair works.
    gw.ticket(&user.token).await?;
    // Replaying the first (spent) refresh token is theft: the whole session dies.
    gw.refresh(&first_refresh)
        .await?
        .expect_error(401, "refresh_token_reused")?;
    gw.refresh(&user.refresh_token)
        .await?
        .expect_error(401, "invalid_refresh_token")?;
    gw.post_empty("/api/ws-ticket", Some(&user.token))
        .await?
        .expect_error(401, "unauthorized")?;
    // Other sessions of the user are untouched.
    let other = gw.relogin(&user.name).await?;
    gw.ticket(&other.token).await?;
    Ok(Outcome::Pass)
}

async fn concurrent_refresh_one_wins(ctx: Arc<Ctx>) -> Result<Outcome> {
    let user = ctx.gw.new_user("racer").await?;
    let attempts = (0..2).map(|_| {
        let gw = ctx.gw.clone();
        let token = user.refresh_token.clone();
        tokio::spawn(async move { gw.refresh(&token).await })
    });
    let mut codes: Vec<String> = Vec::new();
    for attempt in futures_util::future::join_all(attempts).await {
        let reply = attempt??;
        codes.push(if reply.status == 200 {
            "ok".into()
        } else {
            reply.error().to_string()
        });
    }
    codes.sort();
    ensure!(
        codes == ["ok", "refresh_token_reused"],
        "two refreshes with one token gave {codes:?}"
    );
    Ok(Outcome::Pass)
}

async fn reuse_detection_closes_live_sockets(ctx: Arc<Ctx>) -> Result<Outcome> {
    let gw = &ctx.gw;
    let mut victim = gw.new_user("victim").await?;
    let stolen = victim.refresh_token.clone();
    gw.refresh_user(&mut victim).await?;
    let (mut socket, _) = gw.connect(&victim).await?;
    let other_session = gw.relogin(&victim.name).await?;
    let (mut survivor, _) = gw.connect(&other_session).await?;
    gw.refresh(&stolen)
        .await?
        .expect_error(401, "refresh_token_reused")?;
    socket
        .expect_closed_with(4401, "token_revoked", CLOSE_WAIT)
        .await?;
    survivor.say("unaffected").await?;
    ensure!(
        survivor.recv_type("message").await?["text"] == "unaffected",
        "survivor broken"
    );
    Ok(Outcome::Pass)
}

async fn logout_all_closes_every_socket(ctx: Arc<Ctx>) -> Result<Outcome> {
    let gw = &ctx.gw;
    let alice = gw.new_user("alice").await?;
    let alice2 = gw.relogin(&alice.name).await?;
    let bob = gw.new_user("bob").await?;
    let (mut b, _) = gw.connect(&bob).await?;
    b.focus(&[&alice.name, &bob.name]);
    let (mut a1, _) = gw.connect(&alice).await?;
    let (mut a2, _) = gw.connect(&alice2).await?;
    ensure!(
        b.recv().await? == json!({"type": "joined", "user": alice.name}),
        "no joined"
    );
    let out = gw.post_empty("/api/logout-all", Some(&alice.token)).await?;
    ensure!(out.status == 204, "logout-all: {} {}", out.status, out.body);
    for socket in [&mut a1, &mut a2] {
        socket
            .expect_closed_with(4401, "token_revoked", CLOSE_WAIT)
            .await?;
    }
    ensure!(
        b.recv().await? == json!({"type": "left", "user": alice.name}),
        "no left"
    );
    for refresh in [&alice.refresh_token, &alice2.refresh_token] {
        gw.refresh(refresh)
            .await?
            .expect_error(401, "invalid_refresh_token")?;
    }
    gw.post_empty("/api/ws-ticket", Some(&alice2.token))
        .await?
        .expect_error(401, "unauthorized")?;
    gw.post_empty("/api/logout-all", None)
        .await?
        .expect_error(401, "unauthorized")?;
    // A new login after logout-all works.
    gw.ticket(&gw.relogin(&alice.name).await?.token).await?;
    Ok(Outcome::Pass)
}

async fn token_expiring_then_in_band_refresh(ctx: Arc<Ctx>) -> Result<Outcome> {
    let gw = &ctx.gw;
    let mut alice = gw.new_user("alice").await?;
    let ttl = Duration::from_secs(alice.expires_in);
    let span = ttl * 2 + Duration::from_secs(1);
    if span + ctx.leeway > ctx.max_wait {
        return Ok(Outcome::Skip(format!(
            "two access-token lifetimes ({:?}) exceed --max-wait {:?}",
            span, ctx.max_wait
        )));
    }
    let (mut socket, hello) = gw.connect(&alice).await?;
    let first_exp = hello["expires_at"].as_i64().unwrap_or(0);
    let started = tokio::time::Instant::now();
    let mut refreshes = 0;
    // Keep the socket alive over more than two lifetimes of the first token, refreshing in band
    // whenever the server warns.
    while started.elapsed() < span + ctx.leeway {
        let warning = socket.recv_type("token_expiring").await?;
        let expires_in = warning["expires_in"].as_i64().unwrap_or(-1);
        ensure!(
            (0..=alice.expires_in as i64).contains(&expires_in),
            "token_expiring with expires_in {expires_in}"
        );
        gw.refresh_user(&mut alice).await?;
        socket
            .send_json(json!({"type": "refresh", "token": alice.token}))
            .await?;
        let reply = socket.recv_type("refreshed").await?;
        ensure!(
            reply["expires_at"].as_i64().unwrap_or(0) >= first_exp,
            "{reply}"
        );
        refreshes += 1;
    }
    ensure!(refreshes >= 2, "only {refreshes} refreshes");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    ensure!(now > first_exp, "the first token has not even expired yet");
    socket.say("still online").await?;
    ensure!(
        socket.recv_type("message").await?["text"] == "still online",
        "socket did not survive"
    );
    Ok(Outcome::Pass)
}

async fn bad_frames_after_auth(ctx: Arc<Ctx>) -> Result<Outcome> {
    let alice = ctx.gw.new_user("alice").await?;
    let (mut socket, _) = ctx.gw.connect(&alice).await?;
    socket.send_binary(vec![1, 2, 3]).await?;
    socket.send_text("not json").await?;
    socket.send_json(json!({"type": "dance"})).await?;
    socket.send_json(json!({"type": "message"})).await?;
    socket
        .send_json(json!({"type": "message", "text": ""}))
        .await?;
    for _ in 0..5 {
        let err = socket.recv().await?;
        ensure!(
            err["type"] == "error" && err["code"] == "bad_request",
            "{err}"
        );
        ensure!(err["message"].as_str().is_some(), "{err}");
    }
    socket.say("ok after errors").await?;
    ensure!(
        socket.recv_type("message").await?["text"] == "ok after errors",
        "socket unusable after errors"
    );
    Ok(Outcome::Pass)
}

async fn message_too_long(ctx: Arc<Ctx>) -> Result<Outcome> {
    let alice = ctx.gw.new_user("alice").await?;
    let (mut socket, _) = ctx.gw.connect(&alice).await?;
    // 2001 characters of 2 bytes each: counted in characters, not bytes.
    socket.say(&"é".repeat(2001)).await?;
    let err = socket.recv().await?;
    ensure!(err["type"] == "error" && err["code"] == "too_long", "{err}");
    let longest = "é".repeat(2000);
    socket.say(&longest).await?;
    let msg = socket.recv_type("message").await?;
    ensure!(msg["text"] == longest.as_str(), "2000 characters must pass");
    Ok(Outcome::Pass)
}

async fn flood_rate_limited(ctx: Arc<Ctx>) -> Result<Outcome> {
    let alice = ctx.gw.new_user("flood").await?;
    let (mut socket, _) = ctx.gw.connect(&alice).await?;
    let mut limited = 0;
    for i in 0..300 {
        if socket.say(&format!("spam {i}")).await.is_err() {
            break;
        }
    }
    loop {
        match socket.next_event(CLOSE_WAIT).await? {
            Some(Event::Json(v)) if v["type"] == "error" => {
                ensure!(v["code"] == "rate_limited", "{v}");
                limited += 1;
            }
            Some(Event::Json(_)) => {}
            Some(Event::Closed { code, reason }) => {
                ensure!(
                    (code, reason.as_str()) == (4429, "rate_limited"),
                    "closed {code} {reason}"
                );
                break;
            }
            None => bail!("flood was never closed (limit disabled on this server?)"),
        }
    }
    ensure!(limited > 0, "no rate_limited error before the close");
    Ok(Outcome::Pass)
}

async fn oversized_frame(ctx: Arc<Ctx>) -> Result<Outcome> {
    let alice = ctx.gw.new_user("alice").await?;
    let bob = ctx.gw.new_user("bob").await?;
    let (mut big, _) = ctx.gw.connect(&alice).await?;
    let (mut other, _) = ctx.gw.connect(&bob).await?;
    other.focus(&[&bob.name]);
    let text = "x".repeat(70 * 1024);
    big.say(&text).await?;
    big.expect_closed_with(1009, "message_too_big", CLOSE_WAIT)
        .await?;
    other.say("server still serving").await?;
    ensure!(
        other.recv_type("message").await?["text"] == "server still serving",
        "other socket broken"
    );
    let (mut again, _) = ctx.gw.connect(&ctx.gw.relogin(&alice.name).await?).await?;
    again.say("me too").await?;
    ensure!(
        again.recv_type("message").await?["text"] == "me too",
        "reconnect broken"
    );
    Ok(Outcome::Pass)
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
