//! MongoDB-only behaviour: two instances sharing one database; an outage (database stopped and
//! restarted) with fail-fast 503s, live sockets unaffected, and recovery without a restart;
//! acknowledged writes that survive a crash of the database; and refused commands told apart from
//! outages.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wsgate::store::{MongoStore, Store};
use wsgate_testkit::{Gateway, Upgrade};

use crate::helpers::{chatting_pair, mongo_store, spawn_app_with_store, Secantus};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_users_tickets_and_revocations() {
    let Some(store) = mongo_store().await else {
        return;
    };
    let a = spawn_app_with_store(&[], store.clone()).await;
    let b = spawn_app_with_store(&[], store.clone() as Arc<dyn Store>).await;

    // Registered and logged in through A; the ticket, minted through A, is accepted once by B.
    let user = a.gw.new_user("shared").await.unwrap();
    let ticket = a.gw.ticket(&user.token).await.unwrap();
    let mut socket = b.gw.upgrade(&ticket).await.unwrap().open().unwrap();
    socket.auth(&user.token).await.unwrap();
    assert_eq!(socket.recv().await.unwrap()["type"], "auth_ok");
    a.gw.upgrade(&ticket)
        .await
        .unwrap()
        .refused()
        .unwrap()
        .expect_error(401, "ticket_used")
        .unwrap();

    // Twenty concurrent upgrades with one ticket, spread over both instances: exactly one 101.
    let ticket = b.gw.ticket(&user.token).await.unwrap();
    let gateways = [a.gw.clone(), b.gw.clone()];
    let attempts = (0..20).map(|i| {
        let gw: Gateway = gateways[i % 2].clone();
        let ticket = ticket.clone();
        tokio::spawn(async move { gw.upgrade(&ticket).await.unwrap() })
    });
    let mut opened = 0;
    for attempt in futures_util::future::join_all(attempts).await {
        match attempt.unwrap() {
            Upgrade::Open(_) => opened += 1,
            Upgrade::Refused(reply) => reply.expect_error(401, "ticket_used").unwrap(),
        }
    }
    assert_eq!(opened, 1);

    // A logout through B revokes the token for A too.
    let out =
        b.gw.post_empty("/api/logout", Some(&user.token))
            .await
            .unwrap();
    assert_eq!(out.status, 204);
    a.gw.post_empty("/api/ws-ticket", Some(&user.token))
        .await
        .unwrap()
        .expect_error(401, "unauthorized")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_fails_fast_keeps_sockets_chatting_and_recovers_by_itself() {
    let Some(mut db) = Secantus::start() else {
        return;
    };
    let store = MongoStore::connect(&db.uri(), "outage", Duration::from_secs(2))
        .await
        .unwrap();
    let server = spawn_app_with_store(&["--ticket-ttl-secs", "60"], Arc::new(store)).await;
    let gw = &server.gw;
    let (alice, _bob, mut a, mut b) = chatting_pair(gw).await;
    let spare_ticket = gw.ticket(&alice.token).await.unwrap();

    db.stop();

    // Every store-backed route answers 503 store_unavailable, within about the 2 s timeout.
    for what in ["ticket", "login", "register"] {
        let started = Instant::now();
        let reply = match what {
            "ticket" => gw.post_empty("/api/ws-ticket", Some(&alice.token)).await,
            "login" => gw.login(&alice.name, wsgate_testkit::PASSWORD).await,
            _ => gw.register("newcomer", wsgate_testkit::PASSWORD).await,
        };
        let took = started.elapsed();
        reply
            .unwrap()
            .expect_error(503, "store_unavailable")
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(
            took < Duration::from_millis(3500),
            "{what} took {took:?} to fail"
        );
    }
    let started = Instant::now();
    gw.upgrade(&spare_ticket)
        .await
        .unwrap()
        .refused()
        .unwrap()
        .expect_error(503, "store_unavailable")
        .unwrap();
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "upgrade took {took:?} to fail"
    );
    let health = gw
        .request(reqwest::Method::GET, "/api/health", None, None)
        .await
        .unwrap();
    health.expect_error(503, "store_unavailable").unwrap();

    // A refresh the store cannot check keeps the socket on its current token.
    a.send_json(serde_json::json!({"type": "refresh", "token": alice.token}))
        .await
        .unwrap();
    let refused = a.recv_type("error").await.unwrap();
    assert_eq!(refused["code"], "store_unavailable", "{refused}");

    // Authenticated sockets do not need the store to chat.
    a.say("during the outage").await.unwrap();
    assert_eq!(
        b.recv_type("message").await.unwrap()["text"],
        "during the outage"
    );

    db.start_again();

    // No wsgate restart: the driver reconnects and everything works again.
    await_healthy(gw).await;
    let again = gw.relogin(&alice.name).await.unwrap();
    let (mut c, hello) = gw.connect(&again).await.unwrap();
    assert_eq!(hello["type"], "auth_ok");
    c.say("after the outage").await.unwrap();
    assert_eq!(
        c.recv_type("message").await.unwrap()["text"],
        "after the outage"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_waits_out_an_outage_and_what_does_not_fit_is_counted() {
    let Some(mut db) = Secantus::start() else {
        return;
    };
    let store = MongoStore::connect(&db.uri(), "history_outage", Duration::from_secs(2))
        .await
        .unwrap();
    let server = spawn_app_with_store(&["--history-buffer", "5"], Arc::new(store)).await;
    let gw = &server.gw;
    let app = server.app.clone();
    let (alice, _bob, mut a, mut b) = chatting_pair(gw).await;
    a.say("before").await.unwrap();
    b.recv_type("message").await.unwrap();
    await_written(&app, 1).await;

    db.stop();
    // Live chat goes on; the writer holds five, the other two are counted as dropped.
    for i in 0..7 {
        a.say(&format!("during{i}")).await.unwrap();
        assert_eq!(
            b.recv_type("message").await.unwrap()["text"],
            format!("during{i}")
        );
    }
    assert_eq!(app.history().pending_count(), 5);
    assert_eq!(app.metrics().history_dropped.get(), 2);
    let metrics = reqwest::get(format!("{}/metrics", server.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("wsgate_history_dropped_total 2"),
        "{metrics}"
    );

    db.start_again();
    await_healthy(gw).await;
    // "before" and the five the buffer held.
    await_written(&app, 6).await;
    let page = gw
        .get("/api/rooms/lobby/messages", Some(&alice.token))
        .await
        .unwrap();
    let texts: Vec<&str> = page.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["text"].as_str())
        .collect();
    assert_eq!(
        texts,
        ["before", "during0", "during1", "during2", "during3", "during4"],
        "stored once each, in order, after the outage"
    );
    // Straight from the store: the writer's buffer is empty, so this is what MongoDB holds.
    let stored = app
        .store()
        .history("room:lobby", None, 100, 0)
        .await
        .unwrap();
    assert_eq!(stored.len(), 6);
}

/// Waits (bounded) until the history writer has written `n` entries to the store and its buffer
/// is empty. (An empty buffer alone is no proof: an entry is recorded after its delivery.)
async fn await_written(app: &wsgate::state::App, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.metrics().history_written.get() < n || app.history().pending_count() > 0 {
        assert!(Instant::now() < deadline, "history never written");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (bounded) until `/api/health` answers 200.
async fn await_healthy(gw: &Gateway) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let health = gw
            .request(reqwest::Method::GET, "/api/health", None, None)
            .await
            .unwrap();
        if health.status == 200 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never recovered: {}",
            health.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_a_crash_of_the_database() {
    // SIGKILL right after the acknowledgements: only a journaled write concern keeps them (the
    // emulator, like mongod, fsyncs its journal before acknowledging `j: true`).
    let Some(mut db) = Secantus::start() else {
        return;
    };
    let store = MongoStore::connect(&db.uri(), "durable", Duration::from_secs(2))
        .await
        .unwrap();
    let server = spawn_app_with_store(&[], Arc::new(store)).await;
    let gw = &server.gw;
    let alice = gw.new_user("alice").await.unwrap();
    let bob = gw.new_user("bob").await.unwrap();
    let out = gw
        .post_empty("/api/logout", Some(&bob.token))
        .await
        .unwrap();
    assert_eq!(out.status, 204);

    db.crash();
    db.start_again();
    await_healthy(gw).await;

    // The registration and alice's session (her refresh token still rotates) survived…
    gw.login(&alice.name, wsgate_testkit::PASSWORD)
        .await
        .unwrap()
        .body["access_token"]
        .as_str()
        .expect("alice can still log in");
    let rotated = gw.refresh(&alice.refresh_token).await.unwrap();
    assert_eq!(rotated.status, 200, "{}", rotated.body);
    // …and so did bob's logout.
    gw.post_empty("/api/ws-ticket", Some(&bob.token))
        .await
        .unwrap()
        .expect_error(401, "unauthorized")
        .unwrap();
    gw.refresh(&bob.refresh_token)
        .await
        .unwrap()
        .expect_error(401, "invalid_refresh_token")
        .unwrap();
}

/// Arms (or, with `mode: "off"`, disarms) a `failCommand` failpoint for wsgate's connections only
/// (they name the application `wsgate`), through a client of the test's own.
async fn fail_point(uri: &str, mode: &str, data: mongodb::bson::Document) {
    let client = mongodb::Client::with_uri_str(uri).await.unwrap();
    let mut command = mongodb::bson::doc! {"configureFailPoint": "failCommand", "mode": mode};
    let mut data = data;
    data.insert("appName", "wsgate");
    command.insert("data", data);
    client
        .database("admin")
        .run_command(command)
        .await
        .expect("configureFailPoint");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_command_is_a_500_and_an_outage_is_a_503() {
    use mongodb::bson::doc;
    let Some(db) = Secantus::start() else {
        return;
    };
    let store = MongoStore::connect(&db.uri(), "refusals", Duration::from_secs(2))
        .await
        .unwrap();
    let server = spawn_app_with_store(&[], Arc::new(store)).await;
    let gw = &server.gw;
    let alice = gw.new_user("alice").await.unwrap();
    let login = || gw.login(&alice.name, wsgate_testkit::PASSWORD);

    // BadValue (2) on the user lookup: the database refused, it is not down. ShutdownInProgress
    // (91) and a dropped connection are outages.
    for (failure, status, code) in [
        (doc! {"errorCode": 2}, 500, "internal"),
        (doc! {"errorCode": 91}, 503, "store_unavailable"),
        (doc! {"closeConnection": true}, 503, "store_unavailable"),
    ] {
        let mut data = doc! {"failCommands": ["find"]};
        data.extend(failure.clone());
        fail_point(&db.uri(), "alwaysOn", data).await;
        login()
            .await
            .unwrap()
            .expect_error(status, code)
            .unwrap_or_else(|e| panic!("{failure}: {e}"));
    }
    // Told apart in the metrics too: one refusal, the rest outages.
    let metrics = server.app.metrics().encode();
    assert!(
        metrics.contains("wsgate_store_errors_total{kind=\"rejected\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("wsgate_store_errors_total{kind=\"unavailable\"}"),
        "{metrics}"
    );
    // Disarmed: the driver finds the server again by itself (its pool was cleared by the drop).
    fail_point(&db.uri(), "off", doc! {}).await;
    await_healthy(gw).await;
    assert_eq!(login().await.unwrap().status, 200);
}

#[test]
fn startup_with_an_unreachable_database_exits_with_a_clear_error() {
    let started = Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wsgate"))
        .env(
            "WSGATE_MONGODB_URI",
            "mongodb://wsgate:hunter2secret@127.0.0.1:1",
        )
        .env("WSGATE_MONGODB_TIMEOUT_MS", "1000")
        .env("WSGATE_ADDR", "127.0.0.1:0")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("MongoDB at 127.0.0.1:1"), "{all}");
    assert!(!all.contains("hunter2secret"), "password leaked: {all}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn indexes_are_created_idempotently_with_ttls() {
    let Some(store) = mongo_store().await else {
        return;
    };
    // A second instance starting on the same database must find everything in place.
    let uri = std::env::var("WSGATE_TEST_MONGODB_URI").unwrap();
    MongoStore::connect(&uri, store.database_name(), Duration::from_secs(5))
        .await
        .expect("second connect on an initialised database");
    let client = mongodb::Client::with_uri_str(&uri).await.unwrap();
    let db = client.database(store.database_name());
    let mut seen = Vec::new();
    for name in ["users", "ws_tickets", "revoked_tokens", "rooms", "history"] {
        let names = db
            .collection::<mongodb::bson::Document>(name)
            .list_index_names()
            .await
            .unwrap();
        let mut cursor = db
            .collection::<mongodb::bson::Document>(name)
            .list_indexes()
            .await
            .unwrap();
        use futures_util::StreamExt;
        while let Some(index) = cursor.next().await {
            let index = index.unwrap();
            let options = index.options.unwrap_or_default();
            seen.push((
                name,
                options.name.unwrap_or_default(),
                options.unique.unwrap_or(false),
                options.expire_after.map(|d| d.as_secs()),
            ));
        }
        assert!(names.len() >= 2, "{name}: {names:?}");
    }
    assert!(
        seen.contains(&("users", "username_unique".into(), true, None)),
        "{seen:?}"
    );
    assert!(
        seen.contains(&("ws_tickets", "expires_at_ttl".into(), false, Some(60))),
        "{seen:?}"
    );
    assert!(
        seen.contains(&("revoked_tokens", "expires_at_ttl".into(), false, Some(0))),
        "{seen:?}"
    );
    // Rooms by member and by kind; history unique by (stream, id), collected after 30 days.
    for (collection, index, unique, ttl) in [
        ("rooms", "members", false, None),
        ("rooms", "kind_id", false, None),
        ("history", "stream_id", true, None),
        ("history", "at_ttl", false, Some(30 * 86_400)),
    ] {
        assert!(
            seen.contains(&(collection, index.into(), unique, ttl)),
            "{collection}.{index}: {seen:?}"
        );
    }
    // Another retention changes the TTL index in place.
    MongoStore::connect_with_retention(
        &uri,
        store.database_name(),
        Duration::from_secs(5),
        Duration::from_secs(86_400),
    )
    .await
    .expect("connect with another retention");
    let mut cursor = db
        .collection::<mongodb::bson::Document>("history")
        .list_indexes()
        .await
        .unwrap();
    let mut ttl = None;
    use futures_util::StreamExt;
    while let Some(index) = cursor.next().await {
        let options = index.unwrap().options.unwrap_or_default();
        if options.name.as_deref() == Some("at_ttl") {
            ttl = options.expire_after.map(|d| d.as_secs());
        }
    }
    assert_eq!(ttl, Some(86_400));
}

#[tokio::test]
async fn tickets_and_refresh_tokens_are_stored_only_as_hashes() {
    // (Refresh tokens live in their session's record: `current_hash`.)
    let Some(store) = mongo_store().await else {
        return;
    };
    let db_name = store.database_name().to_string();
    let server = spawn_app_with_store(&[], store).await;
    let user = server.gw.new_user("hashed").await.unwrap();
    let ticket = server.gw.ticket(&user.token).await.unwrap();
    let uri = std::env::var("WSGATE_TEST_MONGODB_URI").unwrap();
    let db = mongodb::Client::with_uri_str(&uri)
        .await
        .unwrap()
        .database(&db_name);
    use futures_util::TryStreamExt;
    let mut dump = String::new();
    for name in ["ws_tickets", "sessions", "users"] {
        let docs: Vec<mongodb::bson::Document> = db
            .collection(name)
            .find(mongodb::bson::doc! {})
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert!(!docs.is_empty(), "{name} is empty");
        dump.push_str(&format!("{docs:?}"));
    }
    for secret in [
        ticket.as_str(),
        &user.refresh_token,
        &user.token,
        wsgate_testkit::PASSWORD,
    ] {
        assert!(!dump.contains(secret), "a secret is stored in clear");
    }
    let expected_id: String = wsgate::auth::ticket::hash_ticket(&ticket)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(
        dump.contains(&expected_id),
        "ticket not stored by its SHA-256"
    );
}
