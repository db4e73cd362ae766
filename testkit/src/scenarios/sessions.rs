//! Sessions on sockets and over REST: in-band refresh, expiry, logout, rotation and reuse detection.

use super::*;

pub(super) async fn refresh_same_user(ctx: Arc<Ctx>) -> Result<Outcome> {
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

pub(super) async fn refresh_other_user_closes(ctx: Arc<Ctx>) -> Result<Outcome> {
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

pub(super) async fn refresh_invalid_closes(ctx: Arc<Ctx>) -> Result<Outcome> {
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

pub(super) async fn socket_closed_when_token_expires(ctx: Arc<Ctx>) -> Result<Outcome> {
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

pub(super) async fn logout_closes_live_socket(ctx: Arc<Ctx>) -> Result<Outcome> {
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

pub(super) async fn refresh_token_contract(ctx: Arc<Ctx>) -> Result<Outcome> {
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

pub(super) async fn refresh_rotation_and_reuse_detection(ctx: Arc<Ctx>) -> Result<Outcome> {
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

pub(super) async fn concurrent_refresh_one_wins(ctx: Arc<Ctx>) -> Result<Outcome> {
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

pub(super) async fn reuse_detection_closes_live_sockets(ctx: Arc<Ctx>) -> Result<Outcome> {
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

pub(super) async fn logout_all_closes_every_socket(ctx: Arc<Ctx>) -> Result<Outcome> {
    let gw = &ctx.gw;
    let alice = gw.new_user("alice").await?;
    let alice2 = gw.relogin(&alice.name).await?;
    let bob = gw.new_user("bob").await?;
    let (mut b, _) = gw.connect(&bob).await?;
    b.focus(&[&alice.name, &bob.name]);
    let (mut a1, _) = gw.connect(&alice).await?;
    let (mut a2, _) = gw.connect(&alice2).await?;
    ensure!(
        b.recv().await? == json!({"type": "joined", "room": "lobby", "user": alice.name}),
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
        b.recv().await? == json!({"type": "left", "room": "lobby", "user": alice.name}),
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

pub(super) async fn token_expiring_then_in_band_refresh(ctx: Arc<Ctx>) -> Result<Outcome> {
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
