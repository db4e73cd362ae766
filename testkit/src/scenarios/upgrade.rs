//! The upgrade: every way a ticket can be refused before the 101, origin checks, racing redemptions.

use super::*;

pub(super) async fn missing_ticket(ctx: Arc<Ctx>) -> Result<Outcome> {
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

pub(super) async fn malformed_ticket(ctx: Arc<Ctx>) -> Result<Outcome> {
    for ticket in ["abc", "%00%01", &"A".repeat(500)] {
        expect_refused(ctx.gw.upgrade(ticket).await?, 401, "ticket_invalid").await?;
    }
    Ok(Outcome::Pass)
}

pub(super) async fn unknown_ticket(ctx: Arc<Ctx>) -> Result<Outcome> {
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

pub(super) async fn ticket_and_jwt_are_not_interchangeable(ctx: Arc<Ctx>) -> Result<Outcome> {
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

pub(super) async fn expired_ticket(ctx: Arc<Ctx>) -> Result<Outcome> {
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

pub(super) async fn reused_ticket(ctx: Arc<Ctx>) -> Result<Outcome> {
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

pub(super) async fn forbidden_origin_then_allowed(ctx: Arc<Ctx>) -> Result<Outcome> {
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

pub(super) async fn racing_upgrades(ctx: Arc<Ctx>) -> Result<Outcome> {
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
