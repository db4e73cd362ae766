//! A raw WebSocket client over plain TCP, for what a well-behaved library cannot do: send frames
//! that break RFC 6455, flood control frames, stop reading mid-stream, and check every byte the
//! server sends.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

pub const TEXT: u8 = 0x1;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;

/// One frame, for sending: the defaults are a final, masked frame with no RSV bits.
#[derive(Clone)]
pub struct Frame {
    pub opcode: u8,
    pub payload: Vec<u8>,
    pub fin: bool,
    pub rsv1: bool,
    pub masked: bool,
}

impl Frame {
    pub fn new(opcode: u8, payload: impl Into<Vec<u8>>) -> Self {
        Self {
            opcode,
            payload: payload.into(),
            fin: true,
            rsv1: false,
            masked: true,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![(u8::from(self.fin) << 7) | (u8::from(self.rsv1) << 6) | self.opcode];
        let mask_bit = if self.masked { 0x80 } else { 0 };
        let len = self.payload.len();
        if len < 126 {
            out.push(mask_bit | len as u8);
        } else if len <= 0xffff {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        if self.masked {
            let key = [0x11, 0x22, 0x33, 0x44];
            out.extend_from_slice(&key);
            out.extend(self.payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        } else {
            out.extend_from_slice(&self.payload);
        }
        out
    }
}

/// What the server sent, parsed strictly.
#[derive(Debug, Default)]
pub struct Received {
    /// Complete frames: (opcode, payload).
    pub frames: Vec<(u8, Vec<u8>)>,
    /// Bytes after the last complete frame (the stream ended inside a frame).
    pub torn_tail: Vec<u8>,
}

impl Received {
    /// Parses a byte stream of unmasked server frames.
    pub fn parse(bytes: &[u8]) -> Self {
        let mut at = 0;
        let mut frames = Vec::new();
        loop {
            let rest = &bytes[at..];
            let Some((opcode, payload, used)) = parse_frame(rest) else {
                return Self {
                    frames,
                    torn_tail: rest.to_vec(),
                };
            };
            frames.push((opcode, payload));
            at += used;
        }
    }

    /// The close frame's code and reason, when the stream has one.
    pub fn close(&self) -> Option<(u16, String)> {
        self.frames
            .iter()
            .find(|(op, _)| *op == CLOSE)
            .map(|(_, p)| close_payload(p))
    }
}

/// Code and reason of a close payload.
pub fn close_payload(payload: &[u8]) -> (u16, String) {
    if payload.len() < 2 {
        return (1005, String::new());
    }
    (
        u16::from_be_bytes([payload[0], payload[1]]),
        String::from_utf8_lossy(&payload[2..]).into_owned(),
    )
}

/// One complete server frame at the start of `bytes`: (opcode, payload, bytes used).
fn parse_frame(bytes: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    if bytes.len() < 2 {
        return None;
    }
    assert_eq!(
        bytes[0] & 0x70,
        0,
        "RSV bits set by the server: {bytes:02x?}"
    );
    assert_eq!(bytes[1] & 0x80, 0, "the server masked a frame");
    let opcode = bytes[0] & 0x0f;
    let (len, head) = match bytes[1] & 0x7f {
        126 if bytes.len() >= 4 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
        127 if bytes.len() >= 10 => (
            u64::from_be_bytes(bytes[2..10].try_into().unwrap()) as usize,
            10,
        ),
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    if bytes.len() < head + len {
        return None;
    }
    Some((opcode, bytes[head..head + len].to_vec(), head + len))
}

/// A socket past its 101.
pub struct RawSocket {
    pub stream: TcpStream,
    /// Bytes read past the handshake's head, or by `read_frame`, not yet parsed.
    pending: Vec<u8>,
}

impl RawSocket {
    /// Upgrades with `ticket`; `recv_buffer` shrinks the kernel's receive buffer first (so that
    /// a client that stops reading stalls the server's writes sooner).
    pub async fn open(addr: SocketAddr, ticket: &str, recv_buffer: Option<u32>) -> Self {
        Self::open_with(addr, ticket, recv_buffer, &[]).await
    }

    /// `open`, with `early` (frames) sent in the same write as the upgrade request, before the
    /// 101: what a client that does not wait for the answer sends.
    pub async fn open_with(
        addr: SocketAddr,
        ticket: &str,
        recv_buffer: Option<u32>,
        early: &[u8],
    ) -> Self {
        let socket = TcpSocket::new_v4().unwrap();
        if let Some(size) = recv_buffer {
            socket.set_recv_buffer_size(size).unwrap();
        }
        let mut stream = socket.connect(addr).await.unwrap();
        let request = format!(
            "GET /ws?ticket={ticket} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\n\
             Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        );
        let mut request = request.into_bytes();
        request.extend_from_slice(early);
        stream.write_all(&request).await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut byte))
                .await
                .expect("handshake answer")
                .unwrap();
            assert_eq!(n, 1, "connection closed during the handshake: {head:?}");
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        Self {
            stream,
            pending: Vec::new(),
        }
    }

    pub async fn send(&mut self, frame: Frame) {
        self.stream.write_all(&frame.encode()).await.unwrap();
    }

    /// Sends the `auth` frame and waits for `auth_ok`.
    pub async fn auth(&mut self, token: &str) {
        let auth = serde_json::json!({"type": "auth", "token": token}).to_string();
        self.send(Frame::new(TEXT, auth)).await;
        let (opcode, payload) = self.read_frame(Duration::from_secs(5)).await.unwrap();
        assert_eq!(opcode, TEXT);
        let hello: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(hello["type"], "auth_ok", "{hello}");
    }

    /// The next complete frame, or `None` at the end of the stream or after `wait`.
    pub async fn read_frame(&mut self, wait: Duration) -> Option<(u8, Vec<u8>)> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some((opcode, payload, used)) = parse_frame(&self.pending) {
                self.pending.drain(..used);
                return Some((opcode, payload));
            }
            let mut buf = [0u8; 4096];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => self.pending.extend_from_slice(&buf[..n]),
                _ => return None,
            }
        }
    }

    /// Reads frames until the server's close frame; its code and reason. Panics if the stream
    /// ends without one.
    pub async fn expect_close(&mut self, wait: Duration) -> (u16, String) {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.read_frame(left).await {
                Some((CLOSE, payload)) => return close_payload(&payload),
                Some(_) => continue,
                None => panic!("no close frame within {wait:?}"),
            }
        }
    }

    /// Everything the server sends until it closes the connection (or `wait` passes), unparsed.
    pub async fn read_to_end(mut self, wait: Duration) -> Vec<u8> {
        let mut all = std::mem::take(&mut self.pending);
        let _ = tokio::time::timeout(wait, self.stream.read_to_end(&mut all)).await;
        all
    }
}
