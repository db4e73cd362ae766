//! Authenticated sockets: chat order and ids, presence, bad frames, limits.

use super::*;

pub(super) async fn chat_order_and_ids(ctx: Arc<Ctx>) -> Result<Outcome> {
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

pub(super) async fn presence_snapshot_and_deltas(ctx: Arc<Ctx>) -> Result<Outcome> {
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
        joined == json!({"type": "joined", "room": "lobby", "user": bob.name}),
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
    ensure!(
        left == json!({"type": "left", "room": "lobby", "user": bob.name}),
        "{left}"
    );
    Ok(Outcome::Pass)
}

pub(super) async fn bad_frames_after_auth(ctx: Arc<Ctx>) -> Result<Outcome> {
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

pub(super) async fn message_too_long(ctx: Arc<Ctx>) -> Result<Outcome> {
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

pub(super) async fn flood_rate_limited(ctx: Arc<Ctx>) -> Result<Outcome> {
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

pub(super) async fn oversized_frame(ctx: Arc<Ctx>) -> Result<Outcome> {
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
