//! What a hostile or broken client tries: frames that break RFC 6455, control-frame floods, and a
//! reader that stalls in the middle of a frame, a client that does not wait for the 101. Each test
//! failed before its fix, except the last, which guards the stream taken back from hyper.

use std::time::{Duration, Instant};

use wsgate_testkit::User;

use crate::helpers::{chatting_pair, spawn_app, TestApp};
use crate::raw::{Frame, RawSocket, Received, CLOSE, PING, TEXT};

/// A socket upgraded with a fresh ticket of `user`; authenticated when `auth`.
async fn raw_socket(server: &TestApp, user: &User, auth: bool, recv: Option<u32>) -> RawSocket {
    let ticket = server.gw.ticket(&user.token).await.unwrap();
    let mut socket = RawSocket::open(server.addr, &ticket, recv).await;
    if auth {
        socket.auth(&user.token).await;
    }
    socket
}

fn close_with(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    payload
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_violations_are_closed_with_1002_and_bad_text_with_1007() {
    let server = spawn_app(&[]).await;
    let user = server.gw.new_user("breaker").await.unwrap();
    let violations: Vec<(&str, Frame, u16, &str)> = vec![
        (
            "text that is not UTF-8",
            Frame::new(TEXT, vec![0x7b, 0xff, 0xfe]),
            1007,
            "invalid_utf8",
        ),
        (
            "RSV1 without an extension",
            Frame {
                rsv1: true,
                ..Frame::new(TEXT, "{}")
            },
            1002,
            "protocol_error",
        ),
        (
            "an unmasked client frame",
            Frame {
                masked: false,
                ..Frame::new(TEXT, "{}")
            },
            1002,
            "protocol_error",
        ),
        (
            "reserved data opcode",
            Frame::new(0x3, "x"),
            1002,
            "protocol_error",
        ),
        (
            "reserved control opcode",
            Frame::new(0xb, "x"),
            1002,
            "protocol_error",
        ),
        (
            "a ping over 125 bytes",
            Frame::new(PING, vec![b'p'; 126]),
            1002,
            "protocol_error",
        ),
        (
            "a fragmented ping",
            Frame {
                fin: false,
                ..Frame::new(PING, "p")
            },
            1002,
            "protocol_error",
        ),
        (
            "a continuation with nothing to continue",
            Frame::new(0x0, "x"),
            1002,
            "protocol_error",
        ),
        (
            "a one-byte close payload",
            Frame::new(CLOSE, vec![0x03]),
            1002,
            "protocol_error",
        ),
        (
            "a close code no one may send",
            Frame::new(CLOSE, close_with(999, "")),
            1002,
            "",
        ),
        (
            "a close reason that is not UTF-8",
            Frame::new(CLOSE, [&1000u16.to_be_bytes()[..], &[0xff, 0xfe]].concat()),
            1007,
            "invalid_utf8",
        ),
    ];
    for authenticated in [false, true] {
        for (what, frame, code, reason) in &violations {
            let mut socket = raw_socket(&server, &user, authenticated, None).await;
            socket.send(frame.clone()).await;
            let (got, why) = socket.expect_close(Duration::from_secs(5)).await;
            assert_eq!(got, *code, "{what} (authenticated: {authenticated}): {why}");
            if !reason.is_empty() {
                assert_eq!(why, *reason, "{what}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_flood_is_closed_within_a_second_and_chat_goes_on() {
    let server = spawn_app(&["--auth-timeout-ms", "10000"]).await;
    let gw = &server.gw;
    let (_alice, _bob, mut a, mut b) = chatting_pair(gw).await;
    let flooder = gw.new_user("flooder").await.unwrap();
    // 10,000 pings in one burst, from a pending socket and from an authenticated one.
    let flood: Vec<u8> = (0..10_000)
        .flat_map(|_| Frame::new(PING, "ping").encode())
        .collect();
    for authenticated in [false, true] {
        let mut socket = raw_socket(&server, &flooder, authenticated, None).await;
        let started = Instant::now();
        // The server stops reading once it has closed: the rest of the burst may not be taken.
        let _ = tokio::io::AsyncWriteExt::write_all(&mut socket.stream, &flood).await;
        let (code, reason) = socket.expect_close(Duration::from_secs(5)).await;
        assert_eq!(
            (code, reason.as_str()),
            (4429, "rate_limited"),
            "authenticated: {authenticated}"
        );
        let took = started.elapsed();
        assert!(took < Duration::from_secs(1), "closed after {took:?}");
        a.say("still here").await.unwrap();
        assert_eq!(b.recv_type("message").await.unwrap()["text"], "still here");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_write_never_puts_a_frame_after_a_partial_one() {
    let server = spawn_app(&["--write-timeout-ms", "300", "--rate-messages-per-sec", "0"]).await;
    let gw = &server.gw;
    let slow = gw.new_user("slow").await.unwrap();
    // A small receive buffer, and then no reading at all: the server's writes stall mid-batch.
    let reader = raw_socket(&server, &slow, true, Some(4096)).await;
    let sender = gw.new_user("fast").await.unwrap();
    let (mut fast, _) = gw.connect(&sender).await.unwrap();
    let text = "x".repeat(2000);
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.app.hub().socket_count() == 2 {
        assert!(
            Instant::now() < deadline,
            "the stalled socket was never cut off"
        );
        fast.say(&text).await.unwrap();
        fast.recv_type("message").await.unwrap();
    }
    // The reader resumes and takes everything the server sent, to the end of the connection.
    let bytes = reader.read_to_end(Duration::from_secs(10)).await;
    let received = Received::parse(&bytes);
    let ops: Vec<u8> = received.frames.iter().map(|(op, _)| *op).collect();
    // Whole frames only: text (and perhaps a ping), then at most one close frame, last.
    if let Some(at) = ops.iter().position(|op| *op == CLOSE) {
        assert_eq!(at, ops.len() - 1, "frames after the close frame: {ops:?}");
        assert!(received.torn_tail.is_empty(), "bytes after the close frame");
        assert_eq!(received.close().unwrap(), (1013, "slow_consumer".into()));
    }
    assert!(
        ops.iter().all(|op| [TEXT, PING, CLOSE].contains(op)),
        "garbage frames: {ops:?}"
    );
    // Cut inside a frame: then nothing may have followed the partial frame, above all no close
    // frame (the client would read it as the rest of the frame's payload).
    let needle = b"slow_consumer";
    assert!(
        !received
            .torn_tail
            .windows(needle.len())
            .any(|w| w == needle),
        "a close frame was written inside an unfinished frame"
    );
    fast.say("after").await.unwrap();
    assert_eq!(fast.recv_type("message").await.unwrap()["text"], "after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_is_closed_1009_and_the_connection_ends_cleanly() {
    use tokio::io::AsyncWriteExt;
    let server = spawn_app(&[]).await;
    let user = server.gw.new_user("big").await.unwrap();
    let mut socket = raw_socket(&server, &user, true, None).await;
    // A text frame announcing 200,000 bytes (the limit is 64 KiB), and most of them: the server
    // refuses it from the header, so the rest arrives after its verdict.
    let mut header = vec![0x81, 0x80 | 127];
    header.extend_from_slice(&200_000u64.to_be_bytes());
    header.extend_from_slice(&[0x11, 0x22, 0x33, 0x44]);
    socket.stream.write_all(&header).await.unwrap();
    socket.stream.write_all(&vec![b'x'; 150_000]).await.unwrap();
    let (code, reason) = socket.expect_close(Duration::from_secs(5)).await;
    assert_eq!((code, reason.as_str()), (1009, "message_too_big"));
    // Then the server closes its side. (What it had not read is drained first, so that the kernel
    // does not answer the unread input with a reset; on the loopback the close frame and the end
    // arrive first either way, so this does not tell the two apart.)
    let mut rest = Vec::new();
    let end = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::AsyncReadExt::read_to_end(&mut socket.stream, &mut rest),
    )
    .await
    .expect("the server closes the connection");
    assert!(
        end.is_ok(),
        "the connection ended with {end:?}, not a clean close"
    );
}

/// A client that sends its first frames with the upgrade request, not waiting for the 101: the
/// HTTP layer reads them with the request, and the socket must start from them (the server takes
/// the TCP stream back from hyper, with what hyper had read past the request).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_sent_before_the_101_are_the_start_of_the_stream() {
    let server = spawn_app(&[]).await;
    let user = server.gw.new_user("eager").await.unwrap();
    let ticket = server.gw.ticket(&user.token).await.unwrap();
    let auth = serde_json::json!({"type": "auth", "token": user.token}).to_string();
    let message = serde_json::json!({"type": "message", "text": "before the 101"}).to_string();
    let mut early = Frame::new(TEXT, auth).encode();
    early.extend(Frame::new(TEXT, message).encode());
    let mut socket = RawSocket::open_with(server.addr, &ticket, None, &early).await;
    let mut types = Vec::new();
    while let Some((opcode, payload)) = socket.read_frame(Duration::from_secs(5)).await {
        assert_eq!(opcode, TEXT);
        let frame: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        types.push(frame["type"].as_str().unwrap().to_owned());
        if frame["type"] == "message" {
            assert_eq!(frame["text"], "before the 101", "{frame}");
            assert_eq!(frame["from"], user.name.as_str(), "{frame}");
            break;
        }
    }
    assert_eq!(types, ["auth_ok", "message"]);
}
