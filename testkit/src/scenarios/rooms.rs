//! Contract v2: rooms over REST, subscriptions and presence per room, removal and deletion at once,
//! typing, direct messages, history paging, exact recovery, and the server API.

use super::*;

/// Spacing of sends for scenarios that send more frames than the default per-socket limit (10 a
/// second, burst 10) lets through at once.
const PACE: Duration = Duration::from_millis(110);

/// The ids of a list of frames.
fn ids(frames: &[Value]) -> Vec<String> {
    frames
        .iter()
        .map(|f| f["id"].as_str().unwrap_or("").to_owned())
        .collect()
}

fn texts(frames: &[Value]) -> Vec<String> {
    frames
        .iter()
        .map(|f| f["text"].as_str().unwrap_or("").to_owned())
        .collect()
}

/// The next `n` frames of `kind` in `room` (frames of other kinds and rooms are skipped).
async fn recv_in(
    socket: &mut crate::Socket,
    kind: &str,
    room: &str,
    n: usize,
) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    while out.len() < n {
        let frame = socket.recv_type(kind).await?;
        if frame["room"] == room {
            out.push(frame);
        }
    }
    Ok(out)
}

pub(super) async fn rooms_rest_contract(ctx: Arc<Ctx>) -> Result<Outcome> {
    let gw = &ctx.gw;
    let alice = gw.new_user("alice").await?;
    let bob = gw.new_user("bob").await?;
    let a = Some(alice.token.as_str());
    let b = Some(bob.token.as_str());
    let public = crate::unique_name("pub").replace('_', "-");
    let private = crate::unique_name("priv").replace('_', "-");

    let created = gw
        .post("/api/rooms", json!({"id": public, "kind": "public"}), a)
        .await?;
    ensure!(created.status == 201, "{} {}", created.status, created.body);
    let body = &created.body;
    ensure!(
        body["id"] == public.as_str()
            && body["kind"] == "public"
            && body["title"] == ""
            && body["owner"] == alice.name.as_str()
            && body["created_at"].as_i64().unwrap_or(0) > 0,
        "{body}"
    );
    let title: String = "é".repeat(100);
    let created = gw
        .post(
            "/api/rooms",
            json!({"id": private, "kind": "private", "title": title}),
            a,
        )
        .await?;
    ensure!(
        created.status == 201,
        "100 characters of title: {}",
        created.body
    );

    for (body, status, code) in [
        (json!({"id": "ab", "kind": "public"}), 400, "invalid_room"),
        (json!({"id": "-abc", "kind": "public"}), 400, "invalid_room"),
        (
            json!({"id": "Upper", "kind": "public"}),
            400,
            "invalid_room",
        ),
        (
            json!({"id": "okid-1", "kind": "secret"}),
            400,
            "invalid_room",
        ),
        (
            json!({"id": "okid-1", "kind": "public", "title": "x".repeat(101)}),
            400,
            "invalid_room",
        ),
        (json!({"id": 5, "kind": "public"}), 400, "bad_request"),
        (
            json!({"id": "okid-1", "kind": "public", "title": 7}),
            400,
            "bad_request",
        ),
        (json!({"kind": "public"}), 400, "bad_request"),
        (json!({"id": public, "kind": "private"}), 409, "room_exists"),
        (json!({"id": "lobby", "kind": "public"}), 409, "room_exists"),
    ] {
        gw.post("/api/rooms", body.clone(), a)
            .await?
            .expect_error(status, code)
            .map_err(|e| anyhow::anyhow!("{body}: {e}"))?;
    }
    gw.post(
        "/api/rooms",
        json!({"id": "okid-2", "kind": "public"}),
        None,
    )
    .await?
    .expect_error(401, "unauthorized")?;

    // Listing: lobby, every public room, private rooms of the caller; sorted by id.
    let listed = gw.get("/api/rooms", b).await?;
    ensure!(listed.status == 200, "{}", listed.body);
    let rooms = listed.body["rooms"].as_array().cloned().unwrap_or_default();
    let names: Vec<&str> = rooms.iter().filter_map(|r| r["id"].as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    ensure!(names == sorted, "not sorted by id: {names:?}");
    let find = |id: &str| rooms.iter().find(|r| r["id"] == id).cloned();
    let lobby = find("lobby").ok_or_else(|| anyhow::anyhow!("no lobby: {names:?}"))?;
    ensure!(
        lobby["kind"] == "public" && lobby["owner"].is_null() && lobby["member"] == false,
        "{lobby}"
    );
    ensure!(
        find(&public).is_some_and(|r| r["member"] == false),
        "bob sees the public room, not as a member"
    );
    ensure!(
        find(&private).is_none(),
        "bob must not see alice's private room"
    );
    let listed = gw.get("/api/rooms", a).await?;
    let rooms = listed.body["rooms"].as_array().cloned().unwrap_or_default();
    ensure!(
        rooms
            .iter()
            .any(|r| r["id"] == private.as_str() && r["member"] == true),
        "alice sees her private room as a member"
    );

    // One room: members for private rooms; hidden and missing look the same.
    let got = gw.get(&format!("/api/rooms/{private}"), a).await?;
    ensure!(
        got.status == 200 && got.body["members"] == json!([alice.name]),
        "{}",
        got.body
    );
    let got = gw.get(&format!("/api/rooms/{public}"), b).await?;
    ensure!(
        got.status == 200 && got.body.get("members").is_none(),
        "{}",
        got.body
    );
    let hidden = gw.get(&format!("/api/rooms/{private}"), b).await?;
    let missing = gw.get("/api/rooms/no-such-room-here", b).await?;
    hidden.expect_error(404, "unknown_room")?;
    ensure!(
        hidden.status == missing.status && hidden.body == missing.body,
        "hidden {} vs missing {}",
        hidden.body,
        missing.body
    );
    let lobby = gw.get("/api/rooms/lobby", b).await?;
    ensure!(
        lobby.status == 200 && lobby.body["id"] == "lobby",
        "{}",
        lobby.body
    );
    Ok(Outcome::Pass)
}

pub(super) async fn room_membership_contract(ctx: Arc<Ctx>) -> Result<Outcome> {
    let gw = &ctx.gw;
    let alice = gw.new_user("alice").await?;
    let bob = gw.new_user("bob").await?;
    let carol = gw.new_user("carol").await?;
    let (a, b, c) = (
        Some(alice.token.as_str()),
        Some(bob.token.as_str()),
        Some(carol.token.as_str()),
    );
    let den = gw.create_room(&alice, "den", "private").await?;
    let square = gw.create_room(&alice, "square", "public").await?;
    let members = |room: &str, who: &str| format!("/api/rooms/{room}/members/{who}");

    // Only the owner adds; idempotent; case-insensitive names resolve to the registered form.
    ensure!(gw.put_empty(&members(&den, &bob.name), a).await?.status == 204);
    ensure!(
        gw.put_empty(&members(&den, &bob.name.to_uppercase()), a)
            .await?
            .status
            == 204
    );
    let got = gw.get(&format!("/api/rooms/{den}"), b).await?;
    ensure!(
        got.body["members"] == json!([alice.name, bob.name]),
        "{}",
        got.body
    );
    gw.put_empty(&members(&den, &carol.name), b)
        .await?
        .expect_error(403, "not_room_owner")?;
    gw.put_empty(&members(&den, &bob.name), c)
        .await?
        .expect_error(404, "unknown_room")?;
    gw.put_empty(&members(&den, "nobody_like_this"), a)
        .await?
        .expect_error(404, "unknown_user")?;
    gw.put_empty(&members(&square, &bob.name), a)
        .await?
        .expect_error(400, "bad_request")?;
    gw.put_empty(&members("lobby", &bob.name), a)
        .await?
        .expect_error(400, "bad_request")?;
    gw.delete(&members(&square, &bob.name), a)
        .await?
        .expect_error(400, "bad_request")?;

    // Removal: by the owner, or the member themselves; never the owner.
    gw.delete(&members(&den, &alice.name), a)
        .await?
        .expect_error(400, "bad_request")?;
    gw.delete(&members(&den, &alice.name), b)
        .await?
        .expect_error(403, "not_room_owner")?;
    gw.delete(&members(&den, "nobody_like_this"), a)
        .await?
        .expect_error(404, "unknown_user")?;
    ensure!(
        gw.delete(&members(&den, &carol.name), a).await?.status == 204,
        "non-member"
    );
    gw.delete(&members(&den, &bob.name), c)
        .await?
        .expect_error(404, "unknown_room")?;
    ensure!(
        gw.delete(&members(&den, &bob.name), b).await?.status == 204,
        "leaving"
    );
    gw.get(&format!("/api/rooms/{den}"), b)
        .await?
        .expect_error(404, "unknown_room")?;

    // Deletion: owner only; lobby never.
    gw.delete("/api/rooms/lobby", a)
        .await?
        .expect_error(403, "not_room_owner")?;
    gw.delete(&format!("/api/rooms/{square}"), b)
        .await?
        .expect_error(403, "not_room_owner")?;
    ensure!(gw.delete(&format!("/api/rooms/{square}"), a).await?.status == 204);
    gw.get(&format!("/api/rooms/{square}"), a)
        .await?
        .expect_error(404, "unknown_room")?;
    gw.delete(&format!("/api/rooms/{square}"), a)
        .await?
        .expect_error(404, "unknown_room")?;
    Ok(Outcome::Pass)
}

pub(super) async fn rooms_reach_their_subscribers_only(ctx: Arc<Ctx>) -> Result<Outcome> {
    let gw = &ctx.gw;
    let alice = gw.new_user("alice").await?;
    let bob = gw.new_user("bob").await?;
    let carol = gw.new_user("carol").await?;
    let den = gw.create_room(&alice, "den", "private").await?;
    gw.put_empty(
        &format!("/api/rooms/{den}/members/{}", bob.name),
        Some(&alice.token),
    )
    .await?;
    let focus = [alice.name.as_str(), bob.name.as_str(), carol.name.as_str()];
    let (mut a, _) = gw.connect(&alice).await?;
    let (mut b, _) = gw.connect(&bob).await?;
    let (mut c, _) = gw.connect(&carol).await?;
    for s in [&mut a, &mut b, &mut c] {
        s.focus(&focus);
    }

    let refused = c.subscribe(&den, None).await?;
    ensure!(
        refused["type"] == "error" && refused["code"] == "unknown_room",
        "{refused}"
    );
    let missing = c.subscribe("no-such-room-here", None).await?;
    ensure!(missing["code"] == "unknown_room", "{missing}");

    let sub_a = a.subscribe(&den, None).await?;
    ensure!(
        sub_a == json!({"type": "subscribed", "room": den, "users": [alice.name]}),
        "{sub_a}"
    );
    let sub_b = b.subscribe(&den, None).await?;
    let mut both = vec![alice.name.clone(), bob.name.clone()];
    both.sort();
    ensure!(sub_b["users"] == json!(both), "sorted presence: {sub_b}");
    let joined = recv_in(&mut a, "joined", &den, 1).await?;
    ensure!(
        joined[0] == json!({"type": "joined", "room": den, "user": bob.name}),
        "{}",
        joined[0]
    );

    b.say_in(&den, "only for den").await?;
    let got_a = recv_in(&mut a, "message", &den, 1).await?;
    let got_b = recv_in(&mut b, "message", &den, 1).await?;
    ensure!(
        got_a == got_b,
        "one frame for every subscriber, the sender's own included"
    );
    let m = &got_a[0];
    ensure!(
        m["from"] == bob.name.as_str() && m["text"] == "only for den" && m["id"].is_string(),
        "{m}"
    );
    c.say_in(&den, "let me in").await?;
    let err = c.recv_type("error").await?;
    ensure!(
        err["code"] == "not_subscribed" && err["room"] == den.as_str(),
        "{err}"
    );
    c.send_json(json!({"type": "typing", "room": den})).await?;
    ensure!(c.recv_type("error").await?["code"] == "not_subscribed");
    // Carol saw nothing of den: the next frame of hers about den would be a leak.
    c.say("lobby still works").await?;
    let lobby = c.recv_type("message").await?;
    ensure!(
        lobby["room"] == "lobby" && lobby["text"] == "lobby still works",
        "{lobby}"
    );

    b.close().await?;
    let left = recv_in(&mut a, "left", &den, 1).await?;
    ensure!(
        left[0] == json!({"type": "left", "room": den, "user": bob.name}),
        "{}",
        left[0]
    );
    Ok(Outcome::Pass)
}

pub(super) async fn removal_and_deletion_take_effect_at_once(ctx: Arc<Ctx>) -> Result<Outcome> {
    let gw = &ctx.gw;
    let alice = gw.new_user("alice").await?;
    let bob = gw.new_user("bob").await?;
    let den = gw.create_room(&alice, "den", "private").await?;
    gw.put_empty(
        &format!("/api/rooms/{den}/members/{}", bob.name),
        Some(&alice.token),
    )
    .await?;
    let focus = [alice.name.as_str(), bob.name.as_str()];
    let (mut a, _) = gw.connect(&alice).await?;
    let (mut b1, _) = gw.connect(&bob).await?;
    let (mut b2, _) = gw.connect(&bob).await?;
    for s in [&mut a, &mut b1, &mut b2] {
        s.focus(&focus);
        s.subscribe(&den, None).await?;
    }
    recv_in(&mut a, "joined", &den, 1).await?;

    let removed = gw
        .delete(
            &format!("/api/rooms/{den}/members/{}", bob.name),
            Some(&alice.token),
        )
        .await?;
    ensure!(removed.status == 204, "{}", removed.body);
    for b in [&mut b1, &mut b2] {
        let gone = b.recv_type("unsubscribed").await?;
        ensure!(
            gone == json!({"type": "unsubscribed", "room": den, "reason": "removed"}),
            "{gone}"
        );
    }
    let left = recv_in(&mut a, "left", &den, 1).await?;
    ensure!(left[0]["user"] == bob.name.as_str(), "{}", left[0]);
    a.say_in(&den, "bob is gone").await?;
    recv_in(&mut a, "message", &den, 1).await?;
    b1.say_in(&den, "still here?").await?;
    ensure!(b1.recv_type("error").await?["code"] == "not_subscribed");
    // No frame of den reaches bob any more (his lobby is quiet too: nobody else talks there).
    b2.expect_silence(SHORT).await?;
    let again = b1.subscribe(&den, None).await?;
    ensure!(again["code"] == "unknown_room", "{again}");

    // A member leaving by themselves gets `removed` too.
    gw.put_empty(
        &format!("/api/rooms/{den}/members/{}", bob.name),
        Some(&alice.token),
    )
    .await?;
    b2.subscribe(&den, None).await?;
    recv_in(&mut a, "joined", &den, 1).await?;
    gw.delete(
        &format!("/api/rooms/{den}/members/{}", bob.name),
        Some(&bob.token),
    )
    .await?;
    ensure!(b2.recv_type("unsubscribed").await?["reason"] == "removed");

    // Deleting the room ends every subscription at once.
    gw.delete(&format!("/api/rooms/{den}"), Some(&alice.token))
        .await?;
    let gone = a.recv_type("unsubscribed").await?;
    ensure!(
        gone == json!({"type": "unsubscribed", "room": den, "reason": "deleted"}),
        "{gone}"
    );
    a.say_in(&den, "anyone?").await?;
    ensure!(a.recv_type("error").await?["code"] == "not_subscribed");
    Ok(Outcome::Pass)
}

pub(super) async fn subscription_rules(ctx: Arc<Ctx>) -> Result<Outcome> {
    let gw = &ctx.gw;
    let alice = gw.new_user("alice").await?;
    let (mut a, hello) = gw.connect(&alice).await?;
    ensure!(
        hello.get("recovered").is_none(),
        "no since, no recovered: {hello}"
    );
    let square = gw.create_room(&alice, "square", "public").await?;
    a.subscribe(&square, None).await?;
    let twice = a.subscribe(&square, None).await?;
    ensure!(
        twice["type"] == "subscribed",
        "subscribing twice is not an error: {twice}"
    );

    a.send_json(json!({"type": "unsubscribe", "room": "never-joined"}))
        .await?;
    let reply = a.recv_type("unsubscribed").await?;
    ensure!(
        reply == json!({"type": "unsubscribed", "room": "never-joined", "reason": "requested"}),
        "{reply}"
    );
    a.send_json(json!({"type": "unsubscribe", "room": "lobby"}))
        .await?;
    let reply = a.recv_type("unsubscribed").await?;
    ensure!(
        reply["room"] == "lobby" && reply["reason"] == "requested",
        "{reply}"
    );
    a.say("into the void").await?;
    let err = a.recv_type("error").await?;
    ensure!(
        err["code"] == "not_subscribed" && err["room"] == "lobby",
        "{err}"
    );
    a.say_in(&square, "still in square").await?;
    recv_in(&mut a, "message", &square, 1).await?;

    // The per-socket limit counts lobby: fill the socket up to it.
    let (mut full, _) = gw.connect(&alice).await?;
    for _ in 1..ctx.max_rooms {
        let room = gw.create_room(&alice, "fill", "public").await?;
        let reply = full.subscribe(&room, None).await?;
        ensure!(reply["type"] == "subscribed", "{reply}");
    }
    let over = full.subscribe(&square, None).await?;
    ensure!(over["code"] == "too_many_rooms", "{over}");
    full.send_json(json!({"type": "unsubscribe", "room": "lobby"}))
        .await?;
    full.recv_type("unsubscribed").await?;
    ensure!(full.subscribe(&square, None).await?["type"] == "subscribed");
    Ok(Outcome::Pass)
}

pub(super) async fn typing_is_relayed_and_throttled(ctx: Arc<Ctx>) -> Result<Outcome> {
    let gw = &ctx.gw;
    let alice = gw.new_user("alice").await?;
    let bob = gw.new_user("bob").await?;
    let square = gw.create_room(&alice, "square", "public").await?;
    let focus = [alice.name.as_str(), bob.name.as_str()];
    let (mut a1, _) = gw.connect(&alice).await?;
    let (mut a2, _) = gw.connect(&alice).await?;
    let (mut b, _) = gw.connect(&bob).await?;
    for s in [&mut a1, &mut a2, &mut b] {
        s.focus(&focus);
        s.subscribe(&square, None).await?;
    }
    let typing = json!({"type": "typing", "room": square});
    a1.send_json(typing.clone()).await?;
    let seen = b.recv_type("typing").await?;
    ensure!(
        seen == json!({"type": "typing", "room": square, "user": alice.name}),
        "{seen}"
    );
    // Within 2 s the same socket's typing is dropped; another socket of the same user is relayed.
    a1.send_json(typing.clone()).await?;
    a2.send_json(typing.clone()).await?;
    ensure!(b.recv_type("typing").await?["user"] == alice.name.as_str());
    // A marker message: if a1's second typing had been relayed, it would arrive before it.
    a1.say_in(&square, "marker").await?;
    loop {
        let frame = b.recv().await?;
        match frame["type"].as_str() {
            Some("message") if frame["text"] == "marker" => break,
            Some("typing") => bail!("a typing within 2 s of the last was relayed"),
            _ => {}
        }
    }
    // Never to the typist's own sockets.
    for a in [&mut a1, &mut a2] {
        loop {
            let frame = a.recv().await?;
            ensure!(frame["type"] != "typing", "own typing relayed: {frame}");
            if frame["type"] == "message" && frame["text"] == "marker" {
                break;
            }
        }
    }
    Ok(Outcome::Pass)
}

pub(super) async fn direct_messages_reach_both_users_once(ctx: Arc<Ctx>) -> Result<Outcome> {
    let gw = &ctx.gw;
    let alice = gw.new_user("alice").await?;
    let bob = gw.new_user("bob").await?;
    let carol = gw.new_user("carol").await?;
    let focus = [alice.name.as_str(), bob.name.as_str(), carol.name.as_str()];
    let (mut a1, _) = gw.connect(&alice).await?;
    let (mut a2, _) = gw.connect(&alice).await?;
    let (mut b1, _) = gw.connect(&bob).await?;
    let (mut b2, _) = gw.connect(&bob).await?;
    let (mut c, _) = gw.connect(&carol).await?;
    for s in [&mut a1, &mut a2, &mut b1, &mut b2, &mut c] {
        s.focus(&focus);
    }
    // To the registered name, whatever case the sender used.
    a1.send_json(json!({"type": "direct", "to": bob.name.to_uppercase(), "text": "psst"}))
        .await?;
    let mut seen = Vec::new();
    for s in [&mut a1, &mut a2, &mut b1, &mut b2] {
        seen.push(s.recv_type("direct").await?);
    }
    ensure!(
        seen.windows(2).all(|w| w[0] == w[1]),
        "one frame for all: {seen:?}"
    );
    let d = &seen[0];
    ensure!(
        d["from"] == alice.name.as_str()
            && d["to"] == bob.name.as_str()
            && d["text"] == "psst"
            && d["id"].is_string()
            && d.get("room").is_none(),
        "{d}"
    );
    // Exactly once: the next direct each socket gets is the following one.
    a1.send_json(json!({"type": "direct", "to": alice.name, "text": "note to self"}))
        .await?;
    for s in [&mut a1, &mut a2] {
        ensure!(s.recv_type("direct").await?["text"] == "note to self");
    }
    b1.send_json(json!({"type": "direct", "to": alice.name, "text": "reply"}))
        .await?;
    for s in [&mut b1, &mut b2] {
        ensure!(
            s.recv_type("direct").await?["text"] == "reply",
            "no duplicate of psst"
        );
    }
    c.send_json(json!({"type": "direct", "to": "nobody_like_this", "text": "hi"}))
        .await?;
    let err = c.recv_type("error").await?;
    ensure!(
        err["code"] == "unknown_user" && err["to"] == "nobody_like_this",
        "{err}"
    );
    c.expect_silence(SHORT).await?;

    // Stored: both sides read the conversation; an offline user reads it later.
    let dave = gw.new_user("dave").await?;
    a1.send_json(json!({"type": "direct", "to": dave.name, "text": "while you were out"}))
        .await?;
    // Alice's sockets also got bob's reply: wait for this very message.
    while a1.recv_type("direct").await?["text"] != "while you were out" {}
    let history = gw
        .get(
            &format!("/api/direct/{}/messages", alice.name),
            Some(&dave.token),
        )
        .await?;
    ensure!(
        texts(history.body["messages"].as_array().map_or(&[][..], |v| v)) == ["while you were out"],
        "{}",
        history.body
    );
    let history = gw
        .get(
            &format!("/api/direct/{}/messages", bob.name),
            Some(&alice.token),
        )
        .await?;
    let messages = history.body["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    ensure!(texts(&messages) == ["psst", "reply"], "{}", history.body);
    ensure!(
        messages[0] == seen[0],
        "history holds the frame as delivered"
    );
    gw.get("/api/direct/nobody_like_this/messages", Some(&alice.token))
        .await?
        .expect_error(404, "unknown_user")?;
    Ok(Outcome::Pass)
}

pub(super) async fn history_pages_back_in_order(ctx: Arc<Ctx>) -> Result<Outcome> {
    let gw = &ctx.gw;
    let alice = gw.new_user("alice").await?;
    let bob = gw.new_user("bob").await?;
    let square = gw.create_room(&alice, "square", "public").await?;
    let den = gw.create_room(&alice, "den", "private").await?;
    let (mut a, _) = gw.connect(&alice).await?;
    a.pace(PACE);
    a.subscribe(&square, None).await?;
    a.subscribe(&den, None).await?;
    for i in 0..7 {
        a.say_in(&square, &format!("m{i}")).await?;
    }
    let sent = recv_in(&mut a, "message", &square, 7).await?;
    a.say_in(&den, "secret").await?;
    let secret = recv_in(&mut a, "message", &den, 1).await?;
    a.say("in the lobby").await?;
    let lobby = a.recv_type("message").await?;
    ensure!(lobby["room"] == "lobby", "{lobby}");

    let path = format!("/api/rooms/{square}/messages");
    let page = gw.get(&format!("{path}?limit=3"), Some(&bob.token)).await?;
    ensure!(page.status == 200, "{}", page.body);
    let first = page.body["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    ensure!(
        first == sent[4..],
        "newest three, oldest first: {}",
        page.body
    );
    ensure!(page.body["has_more"] == true);
    let page = gw
        .get(
            &format!("{path}?limit=3&before={}", ids(&first)[0]),
            Some(&bob.token),
        )
        .await?;
    let second = page.body["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    ensure!(second == sent[1..4], "{}", page.body);
    ensure!(page.body["has_more"] == true);
    let page = gw
        .get(
            &format!("{path}?before={}", ids(&second)[0]),
            Some(&bob.token),
        )
        .await?;
    ensure!(
        page.body["messages"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            == sent[..1]
            && page.body["has_more"] == false,
        "{}",
        page.body
    );
    let all = gw.get(&path, Some(&bob.token)).await?;
    ensure!(
        all.body["messages"].as_array().map(Vec::len) == Some(7),
        "default limit 50"
    );

    for query in [
        "?limit=0",
        "?limit=201",
        "?limit=x",
        "?before=12345",
        "?before=abc",
    ] {
        gw.get(&format!("{path}{query}"), Some(&bob.token))
            .await?
            .expect_error(400, "bad_request")
            .map_err(|e| anyhow::anyhow!("{query}: {e}"))?;
    }
    // An id of another room is not a cursor here.
    gw.get(
        &format!("{path}?before={}", ids(&secret)[0]),
        Some(&alice.token),
    )
    .await?
    .expect_error(400, "bad_request")?;
    gw.get(&format!("/api/rooms/{den}/messages"), Some(&bob.token))
        .await?
        .expect_error(404, "unknown_room")?;
    gw.get("/api/rooms/no-such-room-here/messages", Some(&bob.token))
        .await?
        .expect_error(404, "unknown_room")?;
    gw.get(&path, None)
        .await?
        .expect_error(401, "unauthorized")?;
    // A message without a room is lobby's.
    let lobby_history = gw
        .get("/api/rooms/lobby/messages?limit=200", Some(&bob.token))
        .await?;
    ensure!(
        lobby_history.body["messages"]
            .as_array()
            .is_some_and(|m| m.contains(&lobby)),
        "lobby history lacks {lobby}"
    );
    Ok(Outcome::Pass)
}

pub(super) async fn recovery_is_exact(ctx: Arc<Ctx>) -> Result<Outcome> {
    let gw = &ctx.gw;
    let alice = gw.new_user("alice").await?;
    let bob = gw.new_user("bob").await?;
    let square = gw.create_room(&alice, "square", "public").await?;
    let other = gw.create_room(&alice, "other", "public").await?;
    let focus = [alice.name.as_str(), bob.name.as_str()];
    let (mut b, _) = gw.connect(&bob).await?;
    b.focus(&focus);
    b.pace(PACE);
    b.subscribe(&square, None).await?;
    b.subscribe(&other, None).await?;
    let (mut a, _) = gw.connect(&alice).await?;
    a.focus(&focus);
    a.subscribe(&square, None).await?;
    for i in 0..3 {
        b.say_in(&square, &format!("before{i}")).await?;
    }
    let seen = recv_in(&mut a, "message", &square, 3).await?;
    let last = ids(&seen)[2].clone();
    a.close().await?;
    for i in 0..3 {
        b.say_in(&square, &format!("away{i}")).await?;
    }
    recv_in(&mut b, "message", &square, 6).await?;
    b.say_in(&other, "elsewhere").await?;
    let other_id = ids(&recv_in(&mut b, "message", &other, 1).await?)[0].clone();

    let (mut a, _) = gw.connect(&alice).await?;
    a.focus(&focus);
    let sub = a.subscribe(&square, Some(&last)).await?;
    ensure!(sub["recovered"] == true, "{sub}");
    // A live message right after the subscription comes after the replay.
    b.say_in(&square, "live").await?;
    let got = recv_in(&mut a, "message", &square, 4).await?;
    ensure!(
        texts(&got) == ["away0", "away1", "away2", "live"],
        "{:?}",
        texts(&got)
    );
    a.expect_silence(SHORT).await?;

    // Not recoverable: unknown, malformed, another room's id.
    for since in ["1", "nonsense", other_id.as_str()] {
        let (mut s, _) = gw.connect(&alice).await?;
        s.focus(&focus);
        let sub = s.subscribe(&square, Some(since)).await?;
        ensure!(sub["recovered"] == false, "since {since}: {sub}");
        s.expect_silence(SHORT).await?;
    }

    // lobby recovers through the auth frame.
    a.say("lobby-1").await?;
    let mark = a.recv_type("message").await?;
    let mark_id = mark["id"].as_str().unwrap_or("").to_owned();
    b.say("lobby-2").await?;
    a.recv_type("message").await?;
    let (mut again, hello) = gw.connect_since(&alice, Some(&mark_id)).await?;
    again.focus(&focus);
    ensure!(hello["recovered"] == true, "{hello}");
    let replay = again.recv_type("message").await?;
    ensure!(
        replay["text"] == "lobby-2" && replay["room"] == "lobby",
        "{replay}"
    );

    // The window: `since` must itself be among the last WSGATE_RECOVERY_MESSAGES.
    let n = ctx.recovery_messages;
    if n == 0 || n > 200 {
        return Ok(Outcome::Skip(format!(
            "WSGATE_RECOVERY_MESSAGES is {n}; the window check needs 1 to 200"
        )));
    }
    let window = gw.create_room(&alice, "window", "public").await?;
    b.subscribe(&window, None).await?;
    b.say_in(&window, "since").await?;
    let since = ids(&recv_in(&mut b, "message", &window, 1).await?)[0].clone();
    for i in 0..n - 1 {
        b.say_in(&window, &format!("w{i}")).await?;
    }
    recv_in(&mut b, "message", &window, n - 1).await?;
    let (mut s, _) = gw.connect(&alice).await?;
    s.focus(&focus);
    let sub = s.subscribe(&window, Some(&since)).await?;
    ensure!(sub["recovered"] == true, "{} after since: {sub}", n - 1);
    ensure!(recv_in(&mut s, "message", &window, n - 1).await?.len() == n - 1);
    b.say_in(&window, "one more").await?;
    recv_in(&mut b, "message", &window, 1).await?;
    let (mut s, _) = gw.connect(&alice).await?;
    let sub = s.subscribe(&window, Some(&since)).await?;
    ensure!(sub["recovered"] == false, "{n} after since: {sub}");
    Ok(Outcome::Pass)
}

pub(super) async fn server_api_contract(ctx: Arc<Ctx>) -> Result<Outcome> {
    let Some(key) = ctx.api_key.clone() else {
        return Ok(Outcome::Skip(
            "the server API key is unknown (set WSGATE_SCENARIO_API_KEY to the server's WSGATE_API_KEY)".into(),
        ));
    };
    let gw = &ctx.gw;
    let key = Some(key.as_str());
    let alice = gw.new_user("alice").await?;
    let square = gw.create_room(&alice, "square", "public").await?;
    let focus = [alice.name.as_str()];
    let (mut a1, _) = gw.connect(&alice).await?;
    let (mut a2, _) = gw.connect(&alice).await?;
    for s in [&mut a1, &mut a2] {
        s.focus(&focus);
    }
    a1.subscribe(&square, None).await?;

    let publish = json!({"room": square, "data": {"kind": "order", "n": 12345678901234567890u64}});
    gw.post("/api/server/publish", publish.clone(), None)
        .await?
        .expect_error(401, "unauthorized")?;
    gw.post("/api/server/publish", publish.clone(), Some("not-the-key"))
        .await?
        .expect_error(401, "unauthorized")?;
    gw.post("/api/server/publish", publish.clone(), Some(&alice.token))
        .await?
        .expect_error(401, "unauthorized")?;
    let published = gw.post("/api/server/publish", publish.clone(), key).await?;
    ensure!(
        published.status == 200 && published.body["id"].is_string(),
        "{}",
        published.body
    );
    let event = recv_in(&mut a1, "event", &square, 1).await?.remove(0);
    ensure!(
        event["id"] == published.body["id"]
            && event["data"] == publish["data"]
            && event["ts"].as_i64().unwrap_or(0) > 0,
        "{event}"
    );
    let history = gw
        .get(&format!("/api/rooms/{square}/messages"), Some(&alice.token))
        .await?;
    ensure!(
        history.body["messages"] == json!([event]),
        "{}",
        history.body
    );
    let big = "x".repeat(16 * 1024);
    gw.post(
        "/api/server/publish",
        json!({"room": square, "data": big}),
        key,
    )
    .await?
    .expect_error(413, "payload_too_large")?;
    let fits = "x".repeat(16 * 1024 - 2);
    let ok = gw
        .post(
            "/api/server/publish",
            json!({"room": square, "data": fits}),
            key,
        )
        .await?;
    ensure!(ok.status == 200, "16 KiB of compact data fits: {}", ok.body);
    gw.post(
        "/api/server/publish",
        json!({"room": "no-such-room-here", "data": 1}),
        key,
    )
    .await?
    .expect_error(404, "unknown_room")?;
    gw.post("/api/server/publish", json!({"room": square}), key)
        .await?
        .expect_error(400, "bad_request")?;

    let sent = gw
        .post(
            "/api/server/send",
            json!({"user": alice.name, "data": [1, 2]}),
            key,
        )
        .await?;
    ensure!(sent.status == 202, "{} {}", sent.status, sent.body);
    for s in [&mut a1, &mut a2] {
        let event = loop {
            let frame = s.recv_type("event").await?;
            if frame.get("to").is_some() {
                break frame;
            }
        };
        ensure!(
            event["to"] == alice.name.as_str()
                && event["data"] == json!([1, 2])
                && event.get("id").is_none(),
            "{event}"
        );
    }
    gw.post(
        "/api/server/send",
        json!({"user": "nobody_like_this", "data": 1}),
        key,
    )
    .await?
    .expect_error(404, "unknown_user")?;

    let presence = gw
        .get(&format!("/api/server/rooms/{square}/presence"), key)
        .await?;
    ensure!(
        presence.body == json!({"users": [alice.name]}),
        "{}",
        presence.body
    );
    gw.get("/api/server/rooms/no-such-room-here/presence", key)
        .await?
        .expect_error(404, "unknown_room")?;

    // Disconnect: the client is asked to reconnect (1012), and may.
    let done = gw
        .post_empty(&format!("/api/server/users/{}/disconnect", alice.name), key)
        .await?;
    ensure!(done.status == 204, "{}", done.body);
    a2.expect_closed_with(1012, "reconnect", CLOSE_WAIT).await?;
    let (mut a3, _) = gw.connect(&alice).await?;
    // logout-all through the server API: every socket closes as revoked, tokens stop working.
    gw.post_empty("/api/server/users/nobody_like_this/logout-all", key)
        .await?
        .expect_error(404, "unknown_user")?;
    let done = gw
        .post_empty(&format!("/api/server/users/{}/logout-all", alice.name), key)
        .await?;
    ensure!(done.status == 204, "{}", done.body);
    a3.expect_closed_with(4401, "token_revoked", CLOSE_WAIT)
        .await?;
    gw.get("/api/rooms", Some(&alice.token))
        .await?
        .expect_error(401, "unauthorized")?;
    Ok(Outcome::Pass)
}
