//! Several wsgate nodes on one Redis and one MongoDB, driven like clients: tickets across nodes,
//! one order per room, presence over nodes and after `kill -9` of one, revocation latency,
//! recovery through another node, a Redis restart or freeze, and nginx in front (deploy/nginx.conf).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wsgate::realtime::scripts::{BURY, LEAVE};
use wsgate_testkit::{Gateway, Socket, Upgrade, User};

use crate::helpers::{mongo_database, spawn_app_with_settings, RedisServer, TestApp};
use crate::raw::{RawSocket, Received};

/// Short enough for tests: a dead node's users are `left` within this.
const NODE_TIMEOUT_SECS: u64 = 2;

/// Every node's flags besides Redis and MongoDB.
const NODE_ARGS: &[&str] = &[
    "--rate-register-per-min",
    "0",
    "--rate-login-per-min",
    "0",
    "--rate-ticket-per-min",
    "0",
    "--rate-upgrade-per-min",
    "0",
    "--rate-messages-per-sec",
    "0",
    "--node-timeout-secs",
    "2",
    "--api-key",
    API_KEY,
];

/// The server API key of every node.
const API_KEY: &str = "cluster-api-key-cluster-api-key-0123";

/// A cluster: its Redis, its database, and in-process nodes.
struct Cluster {
    redis: RedisServer,
    mongo_uri: String,
    db: String,
    nodes: Vec<TestApp>,
}

impl Cluster {
    async fn start(nodes: usize) -> Option<Self> {
        let (redis, (mongo_uri, db)) = (RedisServer::start().await?, mongo_database()?);
        let mut cluster = Self {
            redis,
            mongo_uri,
            db,
            nodes: Vec::new(),
        };
        for _ in 0..nodes {
            let node = cluster.spawn_node(&[]).await;
            cluster.nodes.push(node);
        }
        Some(cluster)
    }

    fn args<'a>(&'a self, url: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = NODE_ARGS.to_vec();
        args.extend([
            "--redis-url",
            url,
            "--mongodb-uri",
            &self.mongo_uri,
            "--mongodb-db",
            &self.db,
        ]);
        args.extend_from_slice(extra);
        args
    }

    async fn spawn_node(&self, extra: &[&str]) -> TestApp {
        let url = self.redis.url();
        spawn_app_with_settings(&self.args(&url, extra)).await
    }

    fn gw(&self, node: usize) -> &Gateway {
        &self.nodes[node].gw
    }

    /// The binary as a node of this cluster, in its own process (for `kill -9`); its address.
    fn spawn_process(&self) -> (NodeProcess, String) {
        let file = std::env::temp_dir().join(wsgate_testkit::unique_name("node-addr"));
        let url = self.redis.url();
        let mut args = vec!["--addr", "127.0.0.1:0", "--bcrypt-cost", "4"];
        args.extend(["--jwt-secret", crate::helpers::SECRET]);
        args.extend(self.args(&url, &[]));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wsgate"));
        for (key, _) in std::env::vars() {
            if key.starts_with("WSGATE_") {
                cmd.env_remove(key);
            }
        }
        let node = NodeProcess(
            cmd.args(&args)
                .arg("--addr-file")
                .arg(&file)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("wsgate starts"),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(addr) = std::fs::read_to_string(&file) {
                if addr.ends_with('\n') {
                    let _ = std::fs::remove_file(&file);
                    return (node, format!("http://{}", addr.trim()));
                }
            }
            // Dropping `node` on the way out kills it.
            assert!(Instant::now() < deadline, "the node did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A node in its own process: SIGKILLed and reaped when dropped, so a failing test leaves none.
struct NodeProcess(Child);

impl NodeProcess {
    /// `kill -9`, and waits for it to be gone.
    fn kill_9(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill_9();
    }
}

/// An authenticated socket that sees frames about every user (the testkit's default focus is its
/// own user; each cluster here has its own Redis, so no other test's users are around).
async fn open(gw: &Gateway, user: &User) -> Socket {
    let (mut socket, _) = gw.connect(user).await.unwrap();
    socket.focus_all();
    socket
}

/// `open`, subscribed to `room`.
async fn in_room(gw: &Gateway, user: &User, room: &str) -> Socket {
    let mut socket = open(gw, user).await;
    socket.subscribe(room, None).await.unwrap();
    socket
}

/// The next frame of one of `types`, skipping others (presence of other users, etc.).
async fn next_of(socket: &mut Socket, types: &[&str]) -> Value {
    loop {
        let frame = socket.recv().await.expect("a frame");
        if types.iter().any(|t| frame["type"] == *t) {
            return frame;
        }
    }
}

/// The next frame of `kind` about `room`.
async fn next_in(socket: &mut Socket, kind: &str, room: &str) -> Value {
    loop {
        let frame = next_of(socket, &[kind]).await;
        if frame["room"] == room {
            return frame;
        }
    }
}

/// Alice with a socket on node 0 and Bob with one on node 1, each seeing frames about both.
async fn alice_and_bob(cluster: &Cluster) -> (User, User, Socket, Socket) {
    let alice = cluster.gw(0).new_user("alice").await.unwrap();
    let bob = cluster.gw(1).new_user("bob").await.unwrap();
    let mut a = open(cluster.gw(0), &alice).await;
    let mut b = open(cluster.gw(1), &bob).await;
    a.focus(&[&alice.name, &bob.name]);
    b.focus(&[&alice.name, &bob.name]);
    (alice, bob, a, b)
}

async fn texts(socket: &mut Socket, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    while out.len() < n {
        let frame = next_of(socket, &["message"]).await;
        out.push(frame["text"].as_str().unwrap().to_owned());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_minted_on_one_node_redeems_on_another_exactly_once() {
    let Some(cluster) = Cluster::start(3).await else {
        return;
    };
    let user = cluster.gw(0).new_user("tix").await.unwrap();
    let ticket = cluster.gw(0).ticket(&user.token).await.unwrap();
    cluster
        .gw(2)
        .upgrade(&ticket)
        .await
        .unwrap()
        .open()
        .unwrap();
    let again = cluster
        .gw(1)
        .upgrade(&ticket)
        .await
        .unwrap()
        .refused()
        .unwrap();
    again.expect_error(401, "ticket_used").unwrap();

    // 20 upgrades with one ticket, spread over the three nodes, at once: one 101.
    let ticket = cluster.gw(0).ticket(&user.token).await.unwrap();
    let attempts = (0..20).map(|i| {
        let gw = cluster.gw(i % 3).clone();
        let ticket = ticket.clone();
        tokio::spawn(async move { gw.upgrade(&ticket).await.unwrap() })
    });
    let mut opened = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Upgrade::Open(_) => opened += 1,
            Upgrade::Refused(reply) => assert_eq!(reply.status, 401, "{}", reply.body),
        }
    }
    assert_eq!(opened, 1, "one ticket, one socket, across nodes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_delivers_a_rooms_messages_in_one_order() {
    let Some(cluster) = Cluster::start(3).await else {
        return;
    };
    let owner = cluster.gw(0).new_user("order").await.unwrap();
    let room = cluster
        .gw(0)
        .create_room(&owner, "order", "public")
        .await
        .unwrap();
    let mut sockets = Vec::new();
    let mut names = Vec::new();
    for node in 0..3 {
        let user = cluster.gw(node).new_user("order").await.unwrap();
        let socket = in_room(cluster.gw(node), &user, &room).await;
        names.push(user.name.clone());
        sockets.push(socket);
    }
    // Two senders on different nodes, interleaving as fast as they can.
    const EACH: usize = 40;
    let mut senders = Vec::new();
    for node in [0, 1] {
        let user = cluster.gw(node).new_user("send").await.unwrap();
        let socket = in_room(cluster.gw(node), &user, &room).await;
        senders.push(socket);
    }
    let mut b = senders.pop().unwrap();
    let mut a = senders.pop().unwrap();
    let (room_a, room_b) = (room.clone(), room.clone());
    let send_a = tokio::spawn(async move {
        for i in 0..EACH {
            a.say_in(&room_a, &format!("a{i}")).await.unwrap();
        }
        a
    });
    let send_b = tokio::spawn(async move {
        for i in 0..EACH {
            b.say_in(&room_b, &format!("b{i}")).await.unwrap();
        }
        b
    });
    let (_a, _b) = (send_a.await.unwrap(), send_b.await.unwrap());
    let mut seen = Vec::new();
    let mut ids = Vec::new();
    for socket in &mut sockets {
        let mut order = Vec::new();
        let mut id_order = Vec::new();
        while order.len() < 2 * EACH {
            let frame = next_of(socket, &["message"]).await;
            order.push(frame["text"].as_str().unwrap().to_owned());
            id_order.push(frame["id"].as_str().unwrap().parse::<u64>().unwrap());
        }
        assert!(
            id_order.windows(2).all(|w| w[0] < w[1]),
            "ids follow the order"
        );
        seen.push(order);
        ids.push(id_order);
    }
    assert_eq!(seen[0], seen[1], "nodes 0 and 1 deliver in one order");
    assert_eq!(seen[0], seen[2], "nodes 0 and 2 deliver in one order");
    assert_eq!(ids[0], ids[2], "and with the same ids");
    for sender in ["a", "b"] {
        let own: Vec<&String> = seen[0].iter().filter(|t| t.starts_with(sender)).collect();
        let expected: Vec<String> = (0..EACH).map(|i| format!("{sender}{i}")).collect();
        assert_eq!(
            own,
            expected.iter().collect::<Vec<_>>(),
            "each sender's order kept"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_spans_nodes_and_a_killed_node_is_left_within_the_timeout() {
    let Some(cluster) = Cluster::start(2).await else {
        return;
    };
    let owner = cluster.gw(0).new_user("pres").await.unwrap();
    let room = cluster
        .gw(0)
        .create_room(&owner, "pres", "public")
        .await
        .unwrap();
    let alice = cluster.gw(0).new_user("alice").await.unwrap();
    let carol = cluster.gw(1).new_user("carol").await.unwrap();
    let mut a = in_room(cluster.gw(0), &alice, &room).await;
    let mut c = open(cluster.gw(1), &carol).await;
    let subscribed = c.subscribe(&room, None).await.unwrap();
    let mut both = vec![alice.name.clone(), carol.name.clone()];
    both.sort();
    assert_eq!(subscribed["users"], json!(both), "presence over both nodes");
    let joined = next_in(&mut a, "joined", &room).await;
    assert_eq!(joined["user"], carol.name.as_str(), "joined crosses nodes");
    assert_eq!(joined["room"], room.as_str());

    // Node B in its own process: bob subscribes there, then B is killed with SIGKILL.
    let (mut node_b, url_b) = cluster.spawn_process();
    let gw_b = Gateway::new(&url_b).unwrap();
    let bob = gw_b.new_user("bob").await.unwrap();
    let _b = in_room(&gw_b, &bob, &room).await;
    for socket in [&mut a, &mut c] {
        let joined = next_in(socket, "joined", &room).await;
        assert_eq!(joined["user"], bob.name.as_str());
    }
    let presence = cluster
        .gw(0)
        .get(&format!("/api/rooms/{room}"), Some(&owner.token))
        .await
        .unwrap();
    assert_eq!(presence.status, 200);
    node_b.kill_9();
    let killed = Instant::now();
    for socket in [&mut a, &mut c] {
        let left = tokio::time::timeout(
            Duration::from_secs(NODE_TIMEOUT_SECS + 2),
            next_in(socket, "left", &room),
        )
        .await
        .expect("left within the node timeout");
        assert_eq!(left["user"], bob.name.as_str());
    }
    let took = killed.elapsed();
    assert!(
        took <= Duration::from_secs(NODE_TIMEOUT_SECS) + Duration::from_millis(500),
        "left {took:?} after kill -9 (timeout {NODE_TIMEOUT_SECS} s)"
    );
    // The other nodes keep serving.
    a.say_in(&room, "still here").await.unwrap();
    assert_eq!(texts(&mut c, 1).await, ["still here"]);

    // B restarted rejoins by itself: bob is back, and chat crosses to and from it.
    let (mut node_b, url_b) = cluster.spawn_process();
    let gw_b = Gateway::new(&url_b).unwrap();
    let mut b = in_room(&gw_b, &bob, &room).await;
    assert_eq!(
        next_in(&mut a, "joined", &room).await["user"],
        bob.name.as_str()
    );
    a.say_in(&room, "welcome back").await.unwrap();
    assert_eq!(texts(&mut b, 1).await, ["welcome back"]);
    b.say_in(&room, "thanks").await.unwrap();
    assert_eq!(texts(&mut c, 2).await, ["welcome back", "thanks"]);
    node_b.kill_9();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_on_one_node_closes_a_socket_on_another_within_100_ms() {
    let Some(cluster) = Cluster::start(3).await else {
        return;
    };
    let mut took = Vec::new();
    for _ in 0..100 {
        let user = cluster.gw(0).new_user("rev").await.unwrap();
        let mut socket = open(cluster.gw(2), &user).await;
        let started = Instant::now();
        let reply = cluster
            .gw(0)
            .post_empty("/api/logout", Some(&user.token))
            .await
            .unwrap();
        assert_eq!(reply.status, 204, "{}", reply.body);
        let (code, reason) = socket.expect_close(Duration::from_secs(3)).await.unwrap();
        took.push(started.elapsed());
        assert_eq!((code, reason.as_str()), (4401, "token_revoked"));
    }
    took.sort();
    let (p50, p99) = (took[49], took[98]);
    eprintln!(
        "revocation across nodes over 100 tries: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        took[99].as_secs_f64() * 1e3
    );
    assert!(p99 < Duration::from_millis(100), "p99 {p99:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reconnecting_through_another_node_recovers_exactly() {
    let Some(cluster) = Cluster::start(3).await else {
        return;
    };
    let owner = cluster.gw(0).new_user("rec").await.unwrap();
    let room = cluster
        .gw(0)
        .create_room(&owner, "rec", "public")
        .await
        .unwrap();
    let reader = cluster.gw(0).new_user("reader").await.unwrap();
    let writer = cluster.gw(1).new_user("writer").await.unwrap();
    let mut w = in_room(cluster.gw(1), &writer, &room).await;
    let mut r = in_room(cluster.gw(0), &reader, &room).await;
    w.say_in(&room, "one").await.unwrap();
    let first = next_of(&mut r, &["message"]).await;
    let since = first["id"].as_str().unwrap().to_owned();
    r.close().await.unwrap();
    for text in ["two", "three", "four"] {
        w.say_in(&room, text).await.unwrap();
    }
    // Through node 2, which never had the reader.
    let mut r = open(cluster.gw(2), &reader).await;
    let subscribed = r.subscribe(&room, Some(&since)).await.unwrap();
    assert_eq!(subscribed["recovered"], true, "{subscribed}");
    w.say_in(&room, "five").await.unwrap();
    assert_eq!(texts(&mut r, 4).await, ["two", "three", "four", "five"]);
    r.expect_silence(Duration::from_millis(200)).await.unwrap();
    // An id of no message of the room is not recoverable.
    let mut r2 = open(cluster.gw(1), &reader).await;
    let subscribed = r2.subscribe(&room, Some("12345")).await.unwrap();
    assert_eq!(subscribed["recovered"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_keeps_sockets_refuses_publishing_and_heals_by_itself() {
    let Some(mut cluster) = Cluster::start(2).await else {
        return;
    };
    let (alice, bob, mut a, mut b) = alice_and_bob(&cluster).await;
    a.say("before").await.unwrap();
    let before = next_of(&mut b, &["message"]).await;
    let since = before["id"].as_str().unwrap().to_owned();

    cluster.redis.stop();
    // Health names Redis; the sockets stay; a message is refused, never dropped silently.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let health = cluster.gw(0).get("/api/health", None).await.unwrap();
        if health.status == 503 {
            assert_eq!(health.body["error"], "unavailable", "{}", health.body);
            assert!(
                health.body["message"].as_str().unwrap().contains("redis"),
                "{}",
                health.body
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "health never reported Redis down"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.say("during").await.unwrap();
    let refused = next_of(&mut a, &["error"]).await;
    assert_eq!(refused["code"], "unavailable", "{refused}");

    cluster.redis.restart().await;
    // Each node repairs by itself: its sockets are asked to reconnect (1012) and recover.
    for socket in [&mut a, &mut b] {
        let (code, reason) = socket.expect_close(Duration::from_secs(10)).await.unwrap();
        assert_eq!((code, reason.as_str()), (1012, "reconnect"));
    }
    // Healthy once the repair ends: the kick goes out before the old generation is buried (a
    // Redis round trip), so the 1012 can arrive while health still says 503.
    for node in 0..2 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let health = cluster.gw(node).get("/api/health", None).await.unwrap();
            if health.status == 200 {
                assert_eq!(health.body["redis"], "ok", "{}", health.body);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {node} never healthy again: {}",
                health.body
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Redis lost everything (no persistence): the window is gone, so `recovered` is false.
    let (mut b, ok) = cluster
        .gw(1)
        .connect_since(&bob, Some(&since))
        .await
        .unwrap();
    assert_eq!(ok["recovered"], false, "{ok}");
    let mut a = open(cluster.gw(0), &alice).await;
    a.focus(&[&alice.name, &bob.name]);
    b.focus(&[&alice.name, &bob.name]);
    a.say("after").await.unwrap();
    assert_eq!(texts(&mut b, 1).await, ["after"]);
}

/// This node's `/metrics` text.
async fn scrape(node: &TestApp) -> String {
    reqwest::get(format!("{}/metrics", node.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// `a` says `text`, and it is the next message on `a` and on `b`, with no `left` before it.
async fn chat_crosses(a: &mut Socket, b: &mut Socket, text: &str) {
    a.say(text).await.unwrap();
    for socket in [a, b] {
        let frame = next_of(socket, &["message", "left"]).await;
        assert_eq!(frame["text"], text, "{frame}");
    }
}

/// This node counted no gap in its cluster stream; its `/metrics` text.
async fn no_gap_counted(node: &TestApp) -> String {
    let text = scrape(node).await;
    assert!(
        !text.contains("wsgate_cluster_stream_gaps_total"),
        "a gap was counted:\n{text}"
    );
    text
}

/// The registered nodes and their heartbeat deadlines (Redis ms).
async fn registered(redis: &RedisServer) -> Vec<(String, u64)> {
    let flat = redis
        .strings(&["ZRANGE", "wsgate:nodes", "0", "-1", "WITHSCORES"])
        .await;
    flat.chunks(2)
        .map(|pair| (pair[0].clone(), pair[1].parse::<f64>().unwrap() as u64))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_redis_longer_than_the_node_timeout_buries_nobody() {
    let Some(cluster) = Cluster::start(2).await else {
        return;
    };
    let (_, _, mut a, mut b) = alice_and_bob(&cluster).await;
    let nodes: Vec<String> = registered(&cluster.redis)
        .await
        .into_iter()
        .map(|(node, _)| node)
        .collect();
    assert_eq!(nodes.len(), 2, "{nodes:?}");

    // As a suspended host: nobody beats for longer than the node timeout, then everybody does
    // at once. Each node's last deadline is long past when the first of them beats again.
    cluster
        .redis
        .freeze(Duration::from_millis(NODE_TIMEOUT_SECS * 1000 + 1000))
        .await;
    let time = cluster.redis.strings(&["TIME"]).await;
    let resumed_ms =
        time[0].parse::<u64>().unwrap() * 1000 + time[1].parse::<u64>().unwrap() / 1000;
    // Every node has beaten again at least an interval after the freeze: past its first beat,
    // which is when it would have buried the other one. A node buried then never renews under
    // its id again. (`Cluster::timing`: interval timeout / 5, dead after timeout - 2 intervals.)
    let interval = NODE_TIMEOUT_SECS * 1000 / 5;
    let dead_after = NODE_TIMEOUT_SECS * 1000 - 2 * interval;
    let renewed_past = resumed_ms + interval + dead_after;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = registered(&cluster.redis).await;
        if nodes
            .iter()
            .all(|n| now.iter().any(|(m, until)| m == n && *until > renewed_past))
        {
            assert_eq!(
                now.len(),
                2,
                "a node came back as a new generation: {now:?}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a node was buried or never beat again: before {nodes:?}, now {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Nobody left, nobody was asked to reconnect, and chat crosses the nodes as before.
    chat_crosses(&mut a, &mut b, "after the freeze").await;
    for node in &cluster.nodes {
        let text = no_gap_counted(node).await;
        assert!(
            text.contains("wsgate_cluster_nodes_buried_total 0"),
            "{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_closed_while_redis_is_frozen_is_taken_off_presence_exactly_once() {
    let Some(cluster) = Cluster::start(2).await else {
        return;
    };
    let (alice, bob, mut a, mut b) = alice_and_bob(&cluster).await;
    let carol = cluster.gw(1).new_user("carol").await.unwrap();
    // Carol has two sockets on node 1: one closing must not take her off the presence.
    let c1 = open(cluster.gw(1), &carol).await;
    let c2 = open(cluster.gw(1), &carol).await;
    let everyone = [alice.name.as_str(), bob.name.as_str(), carol.name.as_str()];
    a.focus(&everyone);
    b.focus(&everyone);
    let count = |presence: &[String], user: &str| {
        presence
            .chunks(2)
            .find(|p| p[0] == user)
            .map(|p| p[1].clone())
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while count(
        &cluster.redis.strings(&["HGETALL", "wsgate:pu:lobby"]).await,
        &carol.name,
    ) != Some("2".into())
    {
        assert!(
            Instant::now() < deadline,
            "carol's two sockets never in the presence"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Frozen while node 1 handles the close, and for longer than a request's timeout (2 s)
    // after it: the node's first attempt to take that socket off the presence fails, and it
    // cannot know whether Redis will still run it. (It does, when Redis runs again; the retry
    // after it must change nothing.)
    cluster.redis.suspend();
    c1.close().await.unwrap();
    let authenticated = "wsgate_sockets{state=\"authenticated\"} ";
    let deadline = Instant::now() + Duration::from_secs(10);
    while !scrape(&cluster.nodes[1])
        .await
        .lines()
        .any(|line| line.strip_prefix(authenticated) == Some("2"))
    {
        assert!(Instant::now() < deadline, "node 1 never saw the close");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    cluster.redis.resume();

    // Once, and exactly once: carol is still there with one socket; nobody left, nobody was
    // asked to reconnect, and chat crosses the nodes as before.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let presence = cluster.redis.strings(&["HGETALL", "wsgate:pu:lobby"]).await;
        match count(&presence, &carol.name).as_deref() {
            Some("1") => break,
            Some("2") => {}
            other => panic!("carol's count went to {other:?}: {presence:?}"),
        }
        assert!(
            Instant::now() < deadline,
            "the close never reached the presence"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    chat_crosses(&mut a, &mut b, "after the freeze").await;
    // The retries are over by now (four attempts within about ten seconds of the close at most,
    // and Redis answers again): the count stayed at one.
    let presence = cluster.redis.strings(&["HGETALL", "wsgate:pu:lobby"]).await;
    assert_eq!(
        count(&presence, &carol.name).as_deref(),
        Some("1"),
        "{presence:?}"
    );
    // Her last socket's close is the one that makes her `left`, everywhere.
    c2.close().await.unwrap();
    for socket in [&mut a, &mut b] {
        let frame = next_of(socket, &["left", "message"]).await;
        assert_eq!(frame["type"], "left", "{frame}");
        assert_eq!(frame["user"], carol.name.as_str(), "{frame}");
    }
    no_gap_counted(&cluster.nodes[1]).await;
}

/// How many sockets of `user` the cluster counts in `lobby` ("" for none).
async fn lobby_count(redis: &RedisServer, user: &str) -> String {
    let count = redis.strings(&["HGET", "wsgate:pu:lobby", user]).await;
    count.into_iter().next().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_leaves_after_a_repair_takes_nobody_else_off_the_presence() {
    let Some(mut cluster) = Cluster::start(0).await else {
        return;
    };
    // A write to a socket that reads nothing waits (longer than this test) until the test reads:
    // the test decides when that socket leaves, after the repair below.
    let node = cluster.spawn_node(&["--write-timeout-ms", "120000"]).await;
    cluster.nodes.push(node);
    let node = &cluster.nodes[0];
    let gw = cluster.gw(0);
    let carol = gw.new_user("carol").await.unwrap();
    // Carol's first socket, counted under the node's first generation, stops reading.
    let ticket = gw.ticket(&carol.token).await.unwrap();
    let mut stalled = RawSocket::open(node.addr, &ticket, Some(4096)).await;
    stalled.auth(&carol.token).await;
    // Events to lobby until the node's write to it must have stalled: more than the kernel can
    // hold for it on both sides.
    let wmem_max: usize = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .unwrap()
        .split_whitespace()
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    let data = "x".repeat(16_000);
    for _ in 0..wmem_max / data.len() + 64 {
        let published = gw
            .post(
                "/api/server/publish",
                json!({"room": "lobby", "data": data}),
                Some(API_KEY),
            )
            .await
            .unwrap();
        assert_eq!(published.status, 200, "{}", published.body);
    }
    // The node loses its stream (as on a network cut) and repairs: a new generation, the old one
    // buried with carol's count, every socket asked to reconnect. The stalled one cannot hear it.
    let first = registered(&cluster.redis).await[0].0.clone();
    cluster
        .redis
        .command(&["CLIENT", "KILL", "TYPE", "pubsub"])
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while registered(&cluster.redis)
        .await
        .iter()
        .any(|(n, _)| *n == first)
    {
        assert!(Instant::now() < deadline, "the node never repaired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Carol's second socket, and a watcher, under the new generation.
    let mut again = open(gw, &carol).await;
    let watcher = gw.new_user("watcher").await.unwrap();
    let mut w = open(gw, &watcher).await;
    assert_eq!(lobby_count(&cluster.redis, &carol.name).await, "1");
    assert_eq!(
        node.app.hub().socket_count(),
        3,
        "the stalled socket was to leave after this"
    );
    // It reads at last: the node's write ends, the socket finds the repair's kick and leaves.
    // What it was counted under is buried already, so her second socket stays counted, and
    // nobody hears that she left.
    let received = Received::parse(&stalled.read_to_end(Duration::from_secs(30)).await);
    assert_eq!(received.close(), Some((1012, "reconnect".into())));
    assert_eq!(node.app.hub().socket_count(), 2);
    chat_crosses(&mut again, &mut w, "still here").await;
    assert_eq!(lobby_count(&cluster.redis, &carol.name).await, "1");
    // Her last socket's close is the one that makes her `left`.
    again.close().await.unwrap();
    let frame = next_of(&mut w, &["left", "message"]).await;
    assert_eq!(frame["user"], carol.name.as_str(), "{frame}");
    assert_eq!(frame["type"], "left", "{frame}");
    // The one gap was the cut; the stalled socket's leave was none.
    let text = scrape(node).await;
    let gaps: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("wsgate_cluster_stream_gaps_total{"))
        .collect();
    assert_eq!(
        gaps,
        ["wsgate_cluster_stream_gaps_total{reason=\"disconnected\"} 1"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_presence_update_run_twice_under_its_operation_id_applies_once() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    // Carol has two sockets in lobby on node n1; one of them closes, and the node's first attempt
    // to say so timed out after Redis had run it: the retry carries the same operation id.
    carol_on_n1(&redis, "2").await;
    let leave = |op: &'static str| {
        let redis = &redis;
        async move {
            let keys = ["wsgate:np:n1", "wsgate:bus", "wsgate:nodes", op];
            eval(redis, LEAVE, &keys, &["n1", "carol", "60000", "lobby"]).await
        }
    };
    assert_eq!(leave("wsgate:op:p:1").await, ["1"]);
    assert_eq!(leave("wsgate:op:p:1").await, ["1"]);
    let count = |key: &'static str, field: &'static str| {
        let redis = &redis;
        async move { redis.strings(&["HGET", key, field]).await }
    };
    assert_eq!(count("wsgate:pu:lobby", "carol").await, ["1"]);
    assert_eq!(count("wsgate:np:n1", "lobby\x1fcarol").await, ["1"]);
    // Another operation (her other socket) is applied: she is gone.
    assert_eq!(leave("wsgate:op:p:2").await, ["1"]);
    assert_eq!(count("wsgate:pu:lobby", "carol").await, [""]);
    assert_eq!(count("wsgate:np:n1", "lobby\x1fcarol").await, [""]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_reported_dead_that_renewed_meanwhile_is_not_buried() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    // n1 was reported dead by a heartbeat, then its own heartbeat (queued behind a pause) renewed
    // it before the burial ran: the burial leaves it, and its presence.
    carol_on_n1(&redis, "1").await;
    let keys = ["wsgate:nodes", "wsgate:bus"];
    assert_eq!(eval(&redis, BURY, &keys, &["n1", "1"]).await, ["-1"]);
    let score = redis.strings(&["ZSCORE", "wsgate:nodes", "n1"]).await;
    assert_eq!(score, ["99999999999999"]);
    let count = redis.strings(&["HGET", "wsgate:pu:lobby", "carol"]).await;
    assert_eq!(count, ["1"]);
    // Once its deadline has passed, it is buried, once, with its share of the presence.
    redis.command(&["ZADD", "wsgate:nodes", "1", "n1"]).await;
    assert_eq!(eval(&redis, BURY, &keys, &["n1", "1"]).await, ["1"]);
    assert_eq!(eval(&redis, BURY, &keys, &["n1", "1"]).await, ["-1"]);
    let count = redis.strings(&["HGET", "wsgate:pu:lobby", "carol"]).await;
    assert_eq!(count, [""]);
}

/// Node n1, registered far into the future, with `sockets` of carol's sockets in lobby.
async fn carol_on_n1(redis: &RedisServer, sockets: &str) {
    redis
        .command(&["ZADD", "wsgate:nodes", "99999999999999", "n1"])
        .await;
    redis
        .command(&["HSET", "wsgate:np:n1", "lobby\x1fcarol", sockets])
        .await;
    redis
        .command(&["HSET", "wsgate:pu:lobby", "carol", sockets])
        .await;
}

/// Runs one of the cluster's scripts with these keys and arguments (`EVAL`); its reply.
async fn eval(redis: &RedisServer, script: &str, keys: &[&str], args: &[&str]) -> Vec<String> {
    let count = keys.len().to_string();
    let mut words = vec!["EVAL", script, &count];
    words.extend_from_slice(keys);
    words.extend_from_slice(args);
    redis.strings(&words).await
}

/// nginx from deploy/nginx.conf (copied as it is) in front of three nodes.
struct Nginx {
    child: Child,
    _dir: std::path::PathBuf,
}

impl Nginx {
    fn start(port: u16, upstreams: &[std::net::SocketAddr]) -> Option<Self> {
        let Ok(bin) = std::env::var("WSGATE_TEST_NGINX") else {
            if std::env::var("WSGATE_REQUIRE_REDIS").is_ok_and(|v| v == "1") {
                panic!("WSGATE_TEST_NGINX is not set but the cluster tests are required");
            }
            eprintln!("SKIPPED: WSGATE_TEST_NGINX is not set (scripts/test.sh sets it)");
            return None;
        };
        let dir = std::env::temp_dir().join(wsgate_testkit::unique_name("nginx"));
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        let conf = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/nginx.conf");
        std::fs::copy(conf, dir.join("nginx.conf")).unwrap();
        std::fs::write(
            dir.join("wsgate-listen.conf"),
            format!("listen 127.0.0.1:{port};\n"),
        )
        .unwrap();
        let servers: String = upstreams.iter().map(|a| format!("server {a};\n")).collect();
        std::fs::write(dir.join("wsgate-upstreams.conf"), servers).unwrap();
        let child = Command::new(bin)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts");
        Some(Self { child, _dir: dir })
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_nginx_round_robin_sockets_land_on_every_node_and_chat_crosses() {
    let Some(mut cluster) = Cluster::start(0).await else {
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let origin = format!("http://127.0.0.1:{port}");
    for _ in 0..3 {
        let node = cluster
            .spawn_node(&[
                "--trusted-proxies",
                "127.0.0.1",
                "--allowed-origins",
                &origin,
            ])
            .await;
        cluster.nodes.push(node);
    }
    let addrs: Vec<_> = cluster.nodes.iter().map(|n| n.addr).collect();
    let Some(_nginx) = Nginx::start(port, &addrs) else {
        return;
    };
    let gw = Gateway::new(&origin).unwrap();
    // Ready when nginx answers (never a fixed sleep).
    let deadline = Instant::now() + Duration::from_secs(10);
    while gw.get("/api/health", None).await.map_or(0, |r| r.status) != 200 {
        assert!(Instant::now() < deadline, "nginx did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let users: Vec<_> = futures_util::future::join_all((0..6).map(|_| gw.new_user("lb")))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let mut sockets = Vec::new();
    for user in &users {
        let mut socket = open(&gw, user).await;
        socket.focus(&users.iter().map(|u| u.name.as_str()).collect::<Vec<_>>());
        sockets.push(socket);
    }
    let per_node: Vec<usize> = cluster
        .nodes
        .iter()
        .map(|n| n.app.hub().socket_count())
        .collect();
    assert!(
        per_node.iter().all(|&n| n > 0),
        "round robin spreads sockets over every node: {per_node:?}"
    );
    sockets[0].say("through nginx").await.unwrap();
    for socket in &mut sockets[1..] {
        assert_eq!(texts(socket, 1).await, ["through nginx"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removals_deletions_direct_messages_typing_and_the_server_api_cross_nodes() {
    let Some(cluster) = Cluster::start(3).await else {
        return;
    };
    let owner = cluster.gw(0).new_user("owner").await.unwrap();
    let member = cluster.gw(1).new_user("member").await.unwrap();
    let room = cluster
        .gw(0)
        .create_room(&owner, "den", "private")
        .await
        .unwrap();
    let add = format!("/api/rooms/{room}/members/{}", member.name);
    let added = cluster
        .gw(0)
        .put_empty(&add, Some(&owner.token))
        .await
        .unwrap();
    assert_eq!(added.status, 204, "{}", added.body);
    let mut o = in_room(cluster.gw(0), &owner, &room).await;
    let mut m = in_room(cluster.gw(2), &member, &room).await;
    assert_eq!(
        next_in(&mut o, "joined", &room).await["user"],
        member.name.as_str()
    );

    // Typing on node 2 reaches the owner on node 0; a direct message reaches both users once.
    m.send_json(json!({"type": "typing", "room": room}))
        .await
        .unwrap();
    assert_eq!(
        next_in(&mut o, "typing", &room).await["user"],
        member.name.as_str()
    );
    m.send_json(json!({"type": "direct", "to": owner.name, "text": "psst"}))
        .await
        .unwrap();
    for socket in [&mut o, &mut m] {
        let dm = next_of(socket, &["direct"]).await;
        assert_eq!(
            (dm["from"].as_str(), dm["text"].as_str()),
            (Some(member.name.as_str()), Some("psst"))
        );
    }

    // The server API on node 1: an event to the room, an event to a user, presence over nodes.
    let key = Some(API_KEY);
    let published = cluster
        .gw(1)
        .post(
            "/api/server/publish",
            json!({"room": room, "data": {"n": 1}}),
            key,
        )
        .await
        .unwrap();
    assert_eq!(published.status, 200, "{}", published.body);
    for socket in [&mut o, &mut m] {
        let event = next_in(socket, "event", &room).await;
        assert_eq!(event["id"], published.body["id"]);
    }
    let sent = cluster
        .gw(1)
        .post(
            "/api/server/send",
            json!({"user": owner.name, "data": "hi"}),
            key,
        )
        .await
        .unwrap();
    assert_eq!(sent.status, 202, "{}", sent.body);
    assert_eq!(next_of(&mut o, &["event"]).await["data"], "hi");
    let presence = cluster
        .gw(1)
        .get(&format!("/api/server/rooms/{room}/presence"), key)
        .await
        .unwrap();
    let mut both = vec![owner.name.clone(), member.name.clone()];
    both.sort();
    assert_eq!(presence.body["users"], json!(both), "{}", presence.body);

    // Removal on node 0 unsubscribes the member's socket on node 2 at once; the owner sees `left`.
    let removed = cluster
        .gw(0)
        .delete(&add, Some(&owner.token))
        .await
        .unwrap();
    assert_eq!(removed.status, 204, "{}", removed.body);
    let gone = next_in(&mut m, "unsubscribed", &room).await;
    assert_eq!(gone["reason"], "removed");
    assert_eq!(
        next_in(&mut o, "left", &room).await["user"],
        member.name.as_str()
    );
    o.say_in(&room, "members only").await.unwrap();
    assert_eq!(texts(&mut o, 1).await, ["members only"]);
    m.expect_silence(Duration::from_millis(300)).await.unwrap();

    // Deletion on node 0 ends a subscription on node 1.
    let mut o1 = in_room(cluster.gw(1), &owner, &room).await;
    let deleted = cluster
        .gw(0)
        .delete(&format!("/api/rooms/{room}"), Some(&owner.token))
        .await
        .unwrap();
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    assert_eq!(
        next_in(&mut o1, "unsubscribed", &room).await["reason"],
        "deleted"
    );

    // The server API's logout-all on node 1 closes the member's socket on node 2.
    let closed = cluster
        .gw(1)
        .post_empty(
            &format!("/api/server/users/{}/logout-all", member.name),
            key,
        )
        .await
        .unwrap();
    assert_eq!(closed.status, 204, "{}", closed.body);
    let (code, reason) = m.expect_close(Duration::from_secs(3)).await.unwrap();
    assert_eq!((code, reason.as_str()), (4401, "token_revoked"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_redis_repairs_and_its_clients_recover_exactly() {
    let Some(cluster) = Cluster::start(2).await else {
        return;
    };
    let owner = cluster.gw(0).new_user("cut").await.unwrap();
    let room = cluster
        .gw(0)
        .create_room(&owner, "cut", "public")
        .await
        .unwrap();
    let reader = cluster.gw(1).new_user("reader").await.unwrap();
    let mut w = in_room(cluster.gw(0), &owner, &room).await;
    let mut r = in_room(cluster.gw(1), &reader, &room).await;
    w.say_in(&room, "one").await.unwrap();
    let since = next_in(&mut r, "message", &room).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Redis drops every subscriber connection (as a network cut would); its data stays.
    cluster
        .redis
        .command(&["CLIENT", "KILL", "TYPE", "pubsub"])
        .await;
    for socket in [&mut w, &mut r] {
        let (code, reason) = socket.expect_close(Duration::from_secs(10)).await.unwrap();
        assert_eq!((code, reason.as_str()), (1012, "reconnect"));
    }
    // Counted where an operator sees it, by its cause.
    for node in &cluster.nodes {
        let text = scrape(node).await;
        assert!(
            text.contains("wsgate_cluster_stream_gaps_total{reason=\"disconnected\"}"),
            "{text}"
        );
    }
    let mut w = in_room(cluster.gw(0), &owner, &room).await;
    w.say_in(&room, "two").await.unwrap();
    // The window survived: the reader recovers exactly, through the other node this time.
    let mut r = open(cluster.gw(0), &reader).await;
    let subscribed = r.subscribe(&room, Some(&since)).await.unwrap();
    assert_eq!(subscribed["recovered"], true, "{subscribed}");
    assert_eq!(texts(&mut r, 1).await, ["two"]);
    r.expect_silence(Duration::from_millis(200)).await.unwrap();
}
