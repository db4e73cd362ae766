//! Server qualities beyond the scenario suite: rate limits, check order at the upgrade, heartbeat,
//! slow consumers, shutdown, login timing parity, static files and headers, and the real binary's
//! configuration errors and signal handling.

use std::time::{Duration, Instant};

use serde_json::json;
use wsgate::auth::ticket::hash_ticket;
use wsgate::clock::now_millis;
use wsgate::store::TicketOutcome;
use wsgate_testkit::{Event, Upgrade, PASSWORD};

use crate::helpers::spawn_app;

async fn expect_429(reply: wsgate_testkit::Reply) {
    reply.expect_error(429, "rate_limited").unwrap();
    let retry = reply.retry_after.expect("429 carries Retry-After");
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
}

#[tokio::test]
async fn rest_routes_are_rate_limited_per_ip_with_retry_after() {
    let server = spawn_app(&[
        "--rate-register-per-min",
        "2",
        "--rate-login-per-min",
        "2",
        "--rate-ticket-per-min",
        "2",
    ])
    .await;
    let gw = &server.gw;
    let body = |name: &str| json!({"username": name, "password": PASSWORD});
    for name in ["rl_one", "rl_two"] {
        assert_eq!(
            gw.post("/api/register", body(name), None)
                .await
                .unwrap()
                .status,
            201
        );
    }
    expect_429(
        gw.post("/api/register", body("rl_three"), None)
            .await
            .unwrap(),
    )
    .await;

    let login = gw.post("/api/login", body("rl_one"), None).await.unwrap();
    let token = login.body["access_token"].as_str().unwrap().to_string();
    gw.post("/api/login", body("rl_one"), None).await.unwrap();
    expect_429(gw.post("/api/login", body("rl_one"), None).await.unwrap()).await;

    for _ in 0..2 {
        let reply = gw.post_empty("/api/ws-ticket", Some(&token)).await.unwrap();
        assert_eq!(reply.status, 201);
    }
    expect_429(gw.post_empty("/api/ws-ticket", Some(&token)).await.unwrap()).await;
}

async fn login_status(url: &str, forwarded_for: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{url}/api/login"))
        .header("x-forwarded-for", forwarded_for)
        .body(r#"{"username":"nobody","password":"whatever1"}"#)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn forwarded_for_names_the_client_only_behind_a_trusted_proxy() {
    let trusted = spawn_app(&[
        "--rate-login-per-min",
        "1",
        "--trusted-proxies",
        "127.0.0.1",
    ])
    .await;
    assert_eq!(login_status(&trusted.url, "203.0.113.1").await, 401);
    assert_eq!(login_status(&trusted.url, "203.0.113.1").await, 429);
    assert_eq!(
        login_status(&trusted.url, "203.0.113.2").await,
        401,
        "another client"
    );

    // Without trust, the header is anyone's to write and changes nothing.
    let direct = spawn_app(&["--rate-login-per-min", "1"]).await;
    assert_eq!(login_status(&direct.url, "203.0.113.1").await, 401);
    assert_eq!(login_status(&direct.url, "203.0.113.2").await, 429);
}

#[tokio::test]
async fn a_forwarded_for_line_of_the_clients_own_cannot_dodge_the_limits() {
    // The proxy appends its own line; the client wrote one before it, different on every request.
    let server = spawn_app(&[
        "--rate-login-per-min",
        "1",
        "--trusted-proxies",
        "127.0.0.1",
    ])
    .await;
    let mut statuses = Vec::new();
    for n in 1..=3 {
        let status = reqwest::Client::new()
            .post(format!("{}/api/login", server.url))
            .header("x-forwarded-for", format!("198.51.100.{n}"))
            .header("x-forwarded-for", "203.0.113.7")
            .body(r#"{"username":"nobody","password":"whatever1"}"#)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        statuses.push(status);
    }
    assert_eq!(statuses, [401, 429, 429], "one client, one budget");
}

#[tokio::test]
async fn upgrade_checks_origin_then_rate_limit_then_ticket() {
    let server = spawn_app(&["--rate-upgrade-per-min", "1"]).await;
    let gw = &server.gw;
    let user = gw.new_user("order").await.unwrap();
    let ticket = gw.ticket(&user.token).await.unwrap();
    let origin = gw.origin().to_string();

    // Uses the one allowed attempt on a bad ticket.
    let refused = gw.upgrade_raw("?ticket=nope", Some(&origin)).await.unwrap();
    refused
        .refused()
        .unwrap()
        .expect_error(401, "ticket_invalid")
        .unwrap();
    // Origin is checked before the (exhausted) rate limit...
    let forbidden = gw
        .upgrade_raw(&format!("?ticket={ticket}"), Some("https://evil.example"))
        .await
        .unwrap();
    forbidden
        .refused()
        .unwrap()
        .expect_error(403, "origin_forbidden")
        .unwrap();
    // ...and the rate limit before the ticket: neither refusal consumed it.
    let limited = gw.upgrade(&ticket).await.unwrap().refused().unwrap();
    expect_429(limited).await;
    assert!(matches!(
        server
            .app
            .store()
            .consume_ticket(&hash_ticket(&ticket), now_millis())
            .await
            .unwrap(),
        TicketOutcome::Accepted { .. }
    ));
}

#[tokio::test]
async fn a_plain_get_on_ws_is_refused_without_burning_the_ticket() {
    let server = spawn_app(&[]).await;
    let user = server.gw.new_user("plain").await.unwrap();
    let ticket = server.gw.ticket(&user.token).await.unwrap();
    let reply = server
        .gw
        .request(
            reqwest::Method::GET,
            &format!("/ws?ticket={ticket}"),
            None,
            None,
        )
        .await
        .unwrap();
    reply.expect_error(426, "upgrade_required").unwrap();
    server.gw.upgrade(&ticket).await.unwrap().open().unwrap();
}

#[tokio::test]
async fn silent_peers_are_closed_after_two_heartbeats_and_live_ones_stay() {
    let server = spawn_app(&["--heartbeat-secs", "1"]).await;
    let gw = &server.gw;
    let user = gw.new_user("beat").await.unwrap();
    let (mut silent, _) = gw.connect(&user).await.unwrap();
    let (mut alive, _) = gw
        .connect(&gw.relogin(&user.name).await.unwrap())
        .await
        .unwrap();

    // `alive` keeps reading, so its client library answers pings with pongs.
    let reader = tokio::spawn(async move {
        let quiet = alive.next_event(Duration::from_millis(3500)).await.unwrap();
        (alive, quiet)
    });
    // `silent` reads nothing (so never pongs) for well over two intervals.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let (code, reason) = silent.expect_close(Duration::from_secs(3)).await.unwrap();
    assert_eq!((code, reason.as_str()), (4408, "heartbeat_timeout"));

    let (mut alive, quiet) = reader.await.unwrap();
    assert_eq!(quiet, None, "the live socket saw {quiet:?}");
    alive.say("still here").await.unwrap();
    assert_eq!(
        alive.recv_type("message").await.unwrap()["text"],
        "still here"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_stops_reading_is_cut_off_and_others_carry_on() {
    let server = spawn_app(&[
        "--write-timeout-ms",
        "500",
        "--outbound-queue",
        "16",
        "--rate-messages-per-sec",
        "0",
    ])
    .await;
    let gw = &server.gw;
    let (mut slow, _) = gw
        .connect(&gw.new_user("slow").await.unwrap())
        .await
        .unwrap();
    let sender = gw.new_user("fast").await.unwrap();
    let (mut fast, _) = gw.connect(&sender).await.unwrap();
    assert_eq!(server.app.hub().socket_count(), 2);

    // Enough data to fill the slow socket's kernel buffers many times over; the sender reads its
    // own echoes, so it is never slow itself.
    let text = "x".repeat(2000);
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.app.hub().socket_count() == 2 {
        assert!(Instant::now() < deadline, "slow socket never cut off");
        fast.say(&text).await.unwrap();
        fast.recv_type("message").await.unwrap();
    }
    assert_eq!(server.app.hub().socket_count(), 1);
    // The slow client finally reads: a bounded backlog, then the end (a 1013 close if the frame
    // made it into the buffer, or the connection's end).
    let mut frames = 0usize;
    loop {
        match slow.next_event(Duration::from_secs(5)).await {
            Ok(Some(Event::Json(_))) => frames += 1,
            Ok(Some(Event::Closed { code, reason })) => {
                assert_eq!((code, reason.as_str()), (1013, "slow_consumer"));
                break;
            }
            Ok(None) => panic!("slow socket still open after {frames} frames"),
            Err(_) => break,
        }
    }
    fast.say("after").await.unwrap();
    assert_eq!(fast.recv_type("message").await.unwrap()["text"], "after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_every_socket_with_1001_and_stops_quickly() {
    let server = spawn_app(&["--auth-timeout-ms", "30000"]).await;
    let gw = server.gw.clone();
    let addr = server.addr;
    let user = gw.new_user("bye").await.unwrap();
    let (mut authed, _) = gw.connect(&user).await.unwrap();
    let ticket = gw.ticket(&user.token).await.unwrap();
    let mut pending = gw.upgrade(&ticket).await.unwrap().open().unwrap();

    let stopping = tokio::spawn(server.shutdown());
    for socket in [&mut authed, &mut pending] {
        let (code, reason) = socket.expect_close(Duration::from_secs(5)).await.unwrap();
        assert_eq!((code, reason.as_str()), (1001, "server_shutdown"));
    }
    let took = stopping.await.unwrap();
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn unknown_user_and_wrong_password_cost_the_same() {
    let server = spawn_app(&["--bcrypt-cost", "8", "--rate-login-per-min", "0"]).await;
    let gw = &server.gw;
    let user = gw.new_user("timing").await.unwrap();
    let mut wrong = Vec::new();
    let mut unknown = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        gw.login(&user.name, "wrong-password").await.unwrap();
        wrong.push(t.elapsed());
        let t = Instant::now();
        gw.login("nobody_at_all", "wrong-password").await.unwrap();
        unknown.push(t.elapsed());
    }
    wrong.sort();
    unknown.sort();
    let (w, u) = (wrong[2].as_secs_f64(), unknown[2].as_secs_f64());
    // Without the dummy hash an unknown user answers in well under a millisecond, 1/100 of a
    // bcrypt verification at cost 8.
    assert!(
        u > w * 0.5 && u < w * 2.0,
        "median wrong-password {w:.4}s vs unknown-user {u:.4}s"
    );
}

#[tokio::test]
async fn client_is_served_with_security_headers_and_api_is_not_cached() {
    let server = spawn_app(&[]).await;
    let http = reqwest::Client::new();
    let page = http.get(format!("{}/", server.url)).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let headers = page.headers().clone();
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert!(page.text().await.unwrap().contains("<html"));

    let health = http
        .get(format!("{}/api/health", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.headers()["cache-control"], "no-store");
    let missing = http
        .get(format!("{}/api/nothing-here", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let body: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(body["error"], "not_found");
    let wrong_method = http
        .get(format!("{}/api/login", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status(), 405);
}

#[tokio::test]
async fn chunked_bodies_over_the_limit_are_refused() {
    let server = spawn_app(&[]).await;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..20).map(|_| Ok(vec![b' '; 1024])).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let reply = reqwest::Client::new()
        .post(format!("{}/api/login", server.url))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 413);
    let body: serde_json::Value = reply.json().await.unwrap();
    assert_eq!(body["error"], "payload_too_large");
}

#[tokio::test]
async fn a_second_upgrade_attempt_in_parallel_to_auth_does_not_disturb_it() {
    // Regression guard for the hub: an upgrade that is refused must leave no member behind.
    let server = spawn_app(&[]).await;
    let gw = &server.gw;
    let user = gw.new_user("member").await.unwrap();
    let ticket = gw.ticket(&user.token).await.unwrap();
    let mut socket = gw.upgrade(&ticket).await.unwrap().open().unwrap();
    assert!(matches!(
        gw.upgrade(&ticket).await.unwrap(),
        Upgrade::Refused(_)
    ));
    socket.auth(&user.token).await.unwrap();
    assert_eq!(socket.recv().await.unwrap()["type"], "auth_ok");
    assert_eq!(server.app.hub().socket_count(), 1);
    socket.close().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    while server.app.hub().socket_count() != 0 {
        assert!(Instant::now() < deadline, "closed socket still in the hub");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends raw bytes on a fresh connection and returns what the server answers before it closes
/// (or within `wait`).
async fn raw_exchange(addr: std::net::SocketAddr, bytes: &[u8], wait: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(wait, stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn a_body_that_never_arrives_times_out_with_408() {
    let server = spawn_app(&["--request-timeout-ms", "500"]).await;
    let started = Instant::now();
    let answer = raw_exchange(
        server.addr,
        b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{",
        Duration::from_secs(5),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn shutdown_answers_a_body_that_never_arrives_at_once() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = spawn_app(&["--request-timeout-ms", "30000"]).await;
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        .await
        .unwrap();
    // Ready when the request is in its handler, waiting for the body.
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.app.metrics().http_in_flight.get() < 1 {
        assert!(
            Instant::now() < deadline,
            "the request never reached its handler"
        );
        tokio::task::yield_now().await;
    }
    let took = server.shutdown().await;
    assert!(took < Duration::from_secs(1), "shutdown waited {took:?}");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("shutting_down"), "{answer}");
}

#[tokio::test]
async fn headers_that_never_finish_are_cut_off() {
    let server = spawn_app(&["--request-timeout-ms", "500"]).await;
    let started = Instant::now();
    raw_exchange(
        server.addr,
        b"GET /api/health HTTP/1.1\r\nHost:",
        Duration::from_secs(5),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "connection held open"
    );
}

#[tokio::test]
async fn one_client_cannot_hold_more_than_its_share_of_connections() {
    use tokio::io::AsyncReadExt;
    let server = spawn_app(&["--max-connections-per-ip", "2"]).await;
    let first = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let _second = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    // Give the accept loop a moment to count both.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut buf = [0u8; 1];
    let closed = tokio::time::timeout(Duration::from_secs(2), third.read(&mut buf))
        .await
        .expect("the third connection is closed at once");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
    drop(first);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let health = server
        .gw
        .request(reqwest::Method::GET, "/api/health", None, None)
        .await
        .unwrap();
    assert_eq!(health.status, 200, "a freed share is reusable");
}

#[tokio::test]
async fn a_token_does_not_outlive_its_account_on_any_path() {
    // Same secret, new embedded store: as after a restart, where someone re-registers the name.
    let before = spawn_app(&[]).await;
    let old = before.gw.new_user("reborn").await.unwrap();
    let after = spawn_app(&[]).await;
    after
        .gw
        .post_empty("/api/ws-ticket", Some(&old.token))
        .await
        .unwrap()
        .expect_error(401, "unauthorized")
        .unwrap();
    // Tokens carry whole seconds: re-register in a later second than the old token's `iat`.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let reply = after
        .gw
        .register(&old.name, wsgate_testkit::PASSWORD)
        .await
        .unwrap();
    assert_eq!(reply.status, 201);
    for path in ["/api/ws-ticket", "/api/logout-all"] {
        after
            .gw
            .post_empty(path, Some(&old.token))
            .await
            .unwrap()
            .expect_error(401, "unauthorized")
            .unwrap();
    }
    // The socket's first frame and its in-band refresh follow the same rule (before, both took it:
    // the name matched the ticket's user and nothing had revoked it).
    let fresh = after.gw.relogin(&old.name).await.unwrap();
    let ticket = after.gw.ticket(&fresh.token).await.unwrap();
    let mut pending = after.gw.upgrade(&ticket).await.unwrap().open().unwrap();
    pending.auth(&old.token).await.unwrap();
    pending
        .expect_closed_with(4401, "token_invalid", Duration::from_secs(5))
        .await
        .unwrap();
    let (mut authed, _) = after.gw.connect(&fresh).await.unwrap();
    authed
        .send_json(json!({"type": "refresh", "token": old.token}))
        .await
        .unwrap();
    authed
        .expect_closed_with(4401, "token_invalid", Duration::from_secs(5))
        .await
        .unwrap();
}

mod binary {
    //! The real `wsgate` executable: configuration errors and SIGTERM.

    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    fn wsgate() -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wsgate"));
        for (key, _) in std::env::vars() {
            if key.starts_with("WSGATE_") {
                cmd.env_remove(key);
            }
        }
        cmd
    }

    #[test]
    fn a_bad_variable_is_a_startup_error_naming_it() {
        for (var, value) in [
            ("WSGATE_JWT_TTL_SECS", "soon"),
            ("WSGATE_JWT_SECRET", "too-short"),
            ("WSGATE_ADDR", "not-an-address"),
            ("WSGATE_BCRYPT_COST", "99"),
        ] {
            let out = wsgate().env(var, value).output().unwrap();
            assert_eq!(out.status.code(), Some(2), "{var}");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(stderr.contains(var), "{var}: {stderr}");
        }
    }

    /// Starts the binary on a free port with its log on a pipe; the child and its log lines.
    fn spawn_logging(
        extra: &[&str],
    ) -> (
        std::process::Child,
        std::io::Lines<BufReader<std::process::ChildStdout>>,
    ) {
        let mut child = wsgate()
            .args(["--addr", "127.0.0.1:0", "--bcrypt-cost", "4"])
            .args(extra)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        (child, BufReader::new(stdout).lines())
    }

    #[test]
    fn json_log_format_writes_one_json_object_per_line() {
        let (mut child, mut lines) = spawn_logging(&["--log-format", "json"]);
        let mut seen_listening = false;
        for _ in 0..3 {
            let line = lines.next().expect("a log line").unwrap();
            let event: serde_json::Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            assert!(event["level"].is_string(), "{line}");
            if event["message"] == "wsgate listening" {
                assert!(event["addr"].as_str().unwrap().starts_with("127.0.0.1:"));
                seen_listening = true;
                break;
            }
        }
        assert!(seen_listening);
        let _ = child.kill();
        let _ = child.wait();
    }

    #[test]
    fn sigterm_stops_the_server_cleanly() {
        // The address comes from the server (`--addr-file`), not from its log.
        let file = std::env::temp_dir().join(wsgate_testkit::unique_name("addr"));
        let (mut child, _lines) = spawn_logging(&["--addr-file", file.to_str().unwrap()]);
        let started = Instant::now();
        let addr = loop {
            if let Ok(text) = std::fs::read_to_string(&file) {
                break text.trim().to_string();
            }
            assert!(child.try_wait().unwrap().is_none(), "server exited early");
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no address file"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let _ = std::fs::remove_file(&file);
        let health = std::net::TcpStream::connect(&addr);
        assert!(health.is_ok(), "server not listening on {addr}");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "exit status {status}");
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(8),
                "still running after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[tokio::test]
async fn the_server_api_is_404_until_a_key_is_set_and_then_needs_it() {
    let off = spawn_app(&[]).await;
    let key = "server-api-key-server-api-key-0123456789";
    for (method, path) in [
        (reqwest::Method::POST, "/api/server/publish"),
        (reqwest::Method::POST, "/api/server/send"),
        (reqwest::Method::POST, "/api/server/users/alice/logout-all"),
        (reqwest::Method::POST, "/api/server/users/alice/disconnect"),
        (reqwest::Method::GET, "/api/server/rooms/lobby/presence"),
        (reqwest::Method::GET, "/api/server/anything"),
    ] {
        // Off: not found, whatever key is presented (none is checked).
        for bearer in [None, Some(key)] {
            off.gw
                .request(method.clone(), path, Some(b"{}".to_vec()), bearer)
                .await
                .unwrap()
                .expect_error(404, "not_found")
                .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        }
    }
    let on = spawn_app(&["--api-key", key]).await;
    on.gw
        .get("/api/server/rooms/lobby/presence", Some("wrong-key"))
        .await
        .unwrap()
        .expect_error(401, "unauthorized")
        .unwrap();
    let presence = on
        .gw
        .get("/api/server/rooms/lobby/presence", Some(key))
        .await
        .unwrap();
    assert_eq!(presence.status, 200, "{}", presence.body);
    // A body over 64 KiB is refused before it is parsed.
    let huge = serde_json::json!({"room": "lobby", "data": "x".repeat(70 * 1024)});
    on.gw
        .post("/api/server/publish", huge, Some(key))
        .await
        .unwrap()
        .expect_error(413, "payload_too_large")
        .unwrap();
    // A key shorter than 32 bytes is a configuration error.
    let err = wsgate::Settings::from_args(["wsgate", "--api-key", "short"]).unwrap_err();
    assert!(err.to_string().contains("WSGATE_API_KEY"), "{err}");
}
