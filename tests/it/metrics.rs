//! `/metrics`: a scrape after a scripted run shows exactly what the run did, and the endpoint is
//! served only where it is not public.

use std::time::{Duration, Instant};

use wsgate_testkit::PASSWORD;

use crate::helpers::{spawn_app, TestApp};
use crate::raw::{Frame, RawSocket, PING};

async fn scrape(url: &str) -> (u16, String) {
    let reply = reqwest::get(format!("{url}/metrics")).await.unwrap();
    let status = reply.status().as_u16();
    (status, reply.text().await.unwrap())
}

/// The value of the sample `series` (name plus labels, as written), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
}

/// Waits until every `(series, value)` holds. Counters are bumped right after the work they
/// count, so a client may see the work a moment before the count: ask the server again rather
/// than sleep, and fail on a count that went past its value.
async fn expect_samples(server: &TestApp, expected: &[(&str, f64)]) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, text) = scrape(&server.url).await;
        assert_eq!(status, 200);
        let wrong: Vec<String> = expected
            .iter()
            .filter(|(series, value)| sample(&text, series) != Some(*value))
            .map(|(series, value)| {
                format!("{series}: want {value}, got {:?}", sample(&text, series))
            })
            .collect();
        if wrong.is_empty() {
            return text;
        }
        assert!(Instant::now() < deadline, "{}\n{text}", wrong.join("\n"));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_counts_what_the_run_did() {
    let server = spawn_app(&[]).await;
    let gw = &server.gw;
    let alice = gw.new_user("alice").await.unwrap();
    let bob = gw.new_user("bob").await.unwrap();
    gw.login(&alice.name, "wrong-password")
        .await
        .unwrap()
        .expect_error(401, "invalid_credentials")
        .unwrap();
    let (mut a, _) = gw.connect(&alice).await.unwrap();
    a.focus(&[&alice.name, &bob.name]);
    let bob_ticket = gw.ticket(&bob.token).await.unwrap();
    let mut b = gw.upgrade(&bob_ticket).await.unwrap().open().unwrap();
    b.auth(&bob.token).await.unwrap();
    b.recv_type("auth_ok").await.unwrap();
    a.recv_type("joined").await.unwrap();
    gw.upgrade(&bob_ticket)
        .await
        .unwrap()
        .refused()
        .unwrap()
        .expect_error(401, "ticket_used")
        .unwrap();
    // A pending socket with a bad token, and one that floods pings.
    let ticket = gw.ticket(&bob.token).await.unwrap();
    let mut bad = gw.upgrade(&ticket).await.unwrap().open().unwrap();
    bad.auth("not-a-jwt").await.unwrap();
    bad.expect_closed_with(4401, "token_invalid", Duration::from_secs(5))
        .await
        .unwrap();
    let ticket = gw.ticket(&bob.token).await.unwrap();
    let mut flood = RawSocket::open(server.addr, &ticket, None).await;
    for _ in 0..40 {
        flood.send(Frame::new(PING, "p")).await;
    }
    assert_eq!(flood.expect_close(Duration::from_secs(5)).await.0, 4429);
    for text in ["one", "two", "three"] {
        a.say(text).await.unwrap();
        assert_eq!(a.recv_type("message").await.unwrap()["text"], text);
        assert_eq!(b.recv_type("message").await.unwrap()["text"], text);
    }
    let text = expect_samples(
        &server,
        &[
            ("wsgate_logins_total{outcome=\"ok\"}", 2.0),
            ("wsgate_logins_total{outcome=\"invalid_credentials\"}", 1.0),
            ("wsgate_tickets_minted_total", 4.0),
            ("wsgate_tickets_consumed_total", 4.0),
            ("wsgate_upgrades_total{outcome=\"accepted\"}", 4.0),
            ("wsgate_upgrades_total{outcome=\"ticket_used\"}", 1.0),
            ("wsgate_auth_failures_total{reason=\"token_invalid\"}", 1.0),
            ("wsgate_auth_failures_total{reason=\"rate_limited\"}", 1.0),
            ("wsgate_socket_closes_total{reason=\"token_invalid\"}", 1.0),
            ("wsgate_socket_closes_total{reason=\"rate_limited\"}", 1.0),
            ("wsgate_messages_received_total", 3.0),
            // alice: auth_ok, bob joined, 3 messages; bob: auth_ok, 3 messages.
            ("wsgate_frames_delivered_total", 9.0),
            ("wsgate_sockets{state=\"authenticated\"}", 2.0),
            ("wsgate_sockets{state=\"pending\"}", 0.0),
            ("wsgate_bcrypt_queue_depth", 0.0),
            ("wsgate_http_requests_in_flight", 1.0), // this scrape
            (
                "wsgate_store_operation_duration_seconds_count{op=\"create_user\"}",
                2.0,
            ),
            (
                "wsgate_store_operation_duration_seconds_count{op=\"insert_ticket\"}",
                4.0,
            ),
            (
                "wsgate_store_operation_duration_seconds_count{op=\"consume_ticket\"}",
                5.0,
            ),
        ],
    )
    .await;
    assert!(text.contains("wsgate_build_info{version=\""), "{text}");
    assert!(sample(&text, "wsgate_store_errors_total{kind=\"unavailable\"}").is_none());
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        assert!(line.starts_with("wsgate_"), "not under the prefix: {line}");
    }

    // Closing alice: bob is told, and the gauges follow.
    a.close().await.unwrap();
    b.recv_type("left").await.unwrap();
    expect_samples(
        &server,
        &[
            ("wsgate_sockets{state=\"authenticated\"}", 1.0),
            ("wsgate_socket_closes_total{reason=\"peer_closed\"}", 1.0),
            ("wsgate_frames_delivered_total", 10.0),
        ],
    )
    .await;
}

#[tokio::test]
async fn metrics_are_not_served_on_a_proxied_listener_but_on_their_own() {
    // Behind a proxy, the main listener is the world's: no metrics there.
    let proxied = spawn_app(&["--trusted-proxies", "127.0.0.1"]).await;
    let (status, _) = scrape(&proxied.url).await;
    assert_eq!(status, 404);

    let separate = spawn_app(&["--metrics-addr", "127.0.0.1:0"]).await;
    assert_eq!(
        scrape(&separate.url).await.0,
        404,
        "not on the main listener"
    );
    let metrics_url = format!("http://{}", separate.metrics_addr.unwrap());
    let (status, text) = scrape(&metrics_url).await;
    assert_eq!(status, 200);
    assert!(
        text.contains("wsgate_sockets{state=\"pending\"} 0"),
        "{text}"
    );
    // Nothing else is served there.
    let other = reqwest::get(format!("{metrics_url}/api/health"))
        .await
        .unwrap();
    assert_eq!(other.status().as_u16(), 404);
    let login = reqwest::Client::new()
        .post(format!("{metrics_url}/api/login"))
        .body(format!(
            r#"{{"username":"nobody","password":"{PASSWORD}"}}"#
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status().as_u16(), 404);
    // It stops with the server.
    let addr = separate.metrics_addr.unwrap();
    separate.shutdown().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
