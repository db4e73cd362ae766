//! Pending sockets: the first frame must authenticate the ticket's user in time; nothing is sent before.

use super::*;

pub(super) async fn first_frame_binary(ctx: Arc<Ctx>) -> Result<Outcome> {
    let user = ctx.gw.new_user("binary").await?;
    let mut socket = pending_socket(&ctx, &user).await?;
    socket.send_binary(b"{\"type\":\"auth\"}".to_vec()).await?;
    socket
        .expect_closed_with(4400, "bad_request", CLOSE_WAIT)
        .await?;
    Ok(Outcome::Pass)
}

pub(super) async fn first_frame_not_json(ctx: Arc<Ctx>) -> Result<Outcome> {
    let user = ctx.gw.new_user("notjson").await?;
    let mut socket = pending_socket(&ctx, &user).await?;
    socket.send_text("hello there").await?;
    socket
        .expect_closed_with(4400, "bad_request", CLOSE_WAIT)
        .await?;
    Ok(Outcome::Pass)
}

pub(super) async fn first_frame_wrong_type(ctx: Arc<Ctx>) -> Result<Outcome> {
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

pub(super) async fn invalid_jwt(ctx: Arc<Ctx>) -> Result<Outcome> {
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

pub(super) async fn expired_jwt(ctx: Arc<Ctx>) -> Result<Outcome> {
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

pub(super) async fn revoked_jwt(ctx: Arc<Ctx>) -> Result<Outcome> {
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

pub(super) async fn other_users_jwt(ctx: Arc<Ctx>) -> Result<Outcome> {
    let alice = ctx.gw.new_user("alice").await?;
    let bob = ctx.gw.new_user("bob").await?;
    let mut socket = pending_socket(&ctx, &alice).await?;
    socket.auth(&bob.token).await?;
    socket
        .expect_closed_with(4403, "ticket_user_mismatch", CLOSE_WAIT)
        .await?;
    Ok(Outcome::Pass)
}

pub(super) async fn auth_timeout(ctx: Arc<Ctx>) -> Result<Outcome> {
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

pub(super) async fn pending_sockets_get_no_broadcast(ctx: Arc<Ctx>) -> Result<Outcome> {
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
