//! `wsgate-floor`: the floor the benchmarks compare wsgate with. It answers the same requests and
//! frames as wsgate does for `wsgate-bench` (login, ticket, upgrade, `auth`, `subscribe`, `message`)
//! with the same libraries (hyper, tokio-tungstenite, tokio), and does nothing else: no store, no
//! password or token check, no JSON parsing, no history, no presence, no limits.
//!
//! So a figure of `wsgate-bench` against this binary is what the same exchanges cost on this
//! machine with the libraries used plainly and no application logic: the kernel, the runtime, HTTP
//! and WebSocket framing. wsgate's figure beside it shows what wsgate's own work adds (or saves:
//! wsgate writes its frames itself). It is a benchmark reference only: it accepts anyone, and must
//! never face a network (it binds the loopback only).
//!
//! Started like wsgate by `scripts/lib/wsgate.sh`: `WSGATE_ADDR` (a 127.0.0.0/8 address, port 0 for
//! any) and `WSGATE_ADDR_FILE` (where the bound address is written); every other setting is ignored.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONNECTION, CONTENT_TYPE, UPGRADE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

/// Frames queued for one socket; a socket that falls this far behind loses frames.
const QUEUE: usize = 1024;
/// Rooms one socket may be in (the tool uses at most a few dozen); beyond it, an error frame.
const MAX_ROOMS_PER_SOCKET: usize = 1000;
/// Largest HTTP request body read (the tool's are a few hundred bytes).
const MAX_BODY: usize = 64 * 1024;

/// One room's subscribers: each socket's queue, by socket id.
type Members = HashMap<u64, mpsc::Sender<Utf8Bytes>>;

/// The rooms by id, and the counters of sockets and tickets.
#[derive(Default)]
struct Rooms {
    by_id: Mutex<HashMap<Box<str>, Members>>,
    next_socket: AtomicU64,
    next_ticket: AtomicU64,
}

impl Rooms {
    fn join(&self, room: &str, socket: u64, tx: &mpsc::Sender<Utf8Bytes>) {
        let mut rooms = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        rooms
            .entry(room.into())
            .or_default()
            .insert(socket, tx.clone());
    }

    fn leave(&self, room: &str, socket: u64) {
        let mut rooms = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(members) = rooms.get_mut(room) {
            members.remove(&socket);
            if members.is_empty() {
                rooms.remove(room);
            }
        }
    }

    /// The frame, as received, to every subscriber of `room`, the sender's socket included. A
    /// full queue loses the frame: the tool counts it as missing.
    fn publish(&self, room: &str, frame: &Utf8Bytes) {
        let rooms = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        let Some(members) = rooms.get(room) else {
            return;
        };
        for tx in members.values() {
            let _ = tx.try_send(frame.clone());
        }
    }
}

/// The string value of `"key":"…"` in `frame`, when it has no escapes (the tool's never do).
fn field<'a>(frame: &'a str, key: &str) -> Option<&'a str> {
    let pattern = format!("\"{key}\":\"");
    let start = frame.find(&pattern)? + pattern.len();
    let len = frame[start..].find('"')?;
    Some(&frame[start..start + len])
}

fn reply(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

async fn handle(
    mut req: Request<Incoming>,
    rooms: Arc<Rooms>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    if req.method() == Method::GET && path == "/ws" {
        return Ok(upgrade(&mut req, rooms));
    }
    // Read the body, as a real handler would, so the connection stays reusable.
    let body = match http_body_util::Limited::new(req.body_mut(), MAX_BODY)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            return Ok(reply(
                StatusCode::PAYLOAD_TOO_LARGE,
                r#"{"error":"payload_too_large"}"#.into(),
            ))
        }
    };
    let method = req.method().clone();
    Ok(match (method, path.as_str()) {
        (Method::GET, "/api/health") => reply(StatusCode::OK, r#"{"status":"ok"}"#.into()),
        (Method::POST, "/api/register") => reply(StatusCode::CREATED, "{}".into()),
        (Method::POST, "/api/login") => {
            let name = field(std::str::from_utf8(&body).unwrap_or(""), "username").unwrap_or("");
            reply(
                StatusCode::OK,
                format!(
                    r#"{{"access_token":"floor.{name}","refresh_token":"floor","expires_in":3600}}"#
                ),
            )
        }
        (Method::POST, "/api/ws-ticket") => {
            let n = rooms.next_ticket.fetch_add(1, Ordering::Relaxed);
            reply(
                StatusCode::CREATED,
                format!(r#"{{"ticket":"t{n:016x}","expires_in":30}}"#),
            )
        }
        (Method::POST, "/api/rooms") => reply(StatusCode::CREATED, "{}".into()),
        _ => reply(StatusCode::NOT_FOUND, r#"{"error":"not_found"}"#.into()),
    })
}

/// Answers the upgrade with 101 and serves the socket once hyper hands the connection over.
fn upgrade(req: &mut Request<Incoming>, rooms: Arc<Rooms>) -> Response<Full<Bytes>> {
    let Some(key) = req.headers().get("sec-websocket-key") else {
        return reply(StatusCode::BAD_REQUEST, r#"{"error":"bad_request"}"#.into());
    };
    let accept = derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let config = WebSocketConfig::default().read_buffer_size(4096);
        let ws = match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => {
                WebSocketStream::from_partially_read(
                    parts.io.into_inner(),
                    parts.read_buf.to_vec(),
                    Role::Server,
                    Some(config),
                )
                .await
            }
            Err(_) => return,
        };
        serve(ws, rooms).await;
    });
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(accept) = HeaderValue::from_str(&accept) {
        headers.insert("sec-websocket-accept", accept);
    }
    response
}

/// One socket: its first frame is taken as `auth` (the socket joins `lobby`), then `subscribe`,
/// `unsubscribe` and `message` by their `type`; queued frames are written together.
async fn serve(mut ws: WebSocketStream<TcpStream>, rooms: Arc<Rooms>) {
    let id = rooms.next_socket.fetch_add(1, Ordering::Relaxed);
    let (tx, mut rx) = mpsc::channel::<Utf8Bytes>(QUEUE);
    let mut joined: Vec<Box<str>> = Vec::new();
    let mut authed = false;
    loop {
        tokio::select! {
            frame = ws.next() => {
                let text = match frame {
                    Some(Ok(Message::Text(text))) => text,
                    // tungstenite queued the close reply: send it, as wsgate does.
                    Some(Ok(Message::Close(_))) => {
                        let _ = ws.flush().await;
                        break;
                    }
                    None | Some(Err(_)) => break,
                    Some(Ok(_)) => continue,
                };
                // By the `type` field, wherever it is: the tool's `json!` frames put keys in
                // whatever order serde_json's features give.
                let kind = field(&text, "type").unwrap_or("");
                let answer = if !authed {
                    authed = true;
                    rooms.join("lobby", id, &tx);
                    joined.push("lobby".into());
                    Some(r#"{"type":"auth_ok","user":"floor","users":[]}"#.to_string())
                } else if kind == "message" {
                    rooms.publish(field(&text, "room").unwrap_or("lobby"), &text);
                    None
                } else if kind == "subscribe" {
                    let room = field(&text, "room").unwrap_or("");
                    if joined.iter().any(|r| &**r == room) {
                        Some(format!(r#"{{"type":"subscribed","room":"{room}","users":[]}}"#))
                    } else if joined.len() >= MAX_ROOMS_PER_SOCKET {
                        Some(r#"{"type":"error","code":"too_many_rooms"}"#.to_string())
                    } else {
                        rooms.join(room, id, &tx);
                        joined.push(room.into());
                        Some(format!(r#"{{"type":"subscribed","room":"{room}","users":[]}}"#))
                    }
                } else if kind == "unsubscribe" {
                    let room = field(&text, "room").unwrap_or("");
                    rooms.leave(room, id);
                    joined.retain(|r| &**r != room);
                    Some(format!(r#"{{"type":"unsubscribed","room":"{room}","reason":"requested"}}"#))
                } else {
                    None
                };
                if let Some(answer) = answer {
                    if ws.send(Message::text(answer)).await.is_err() {
                        break;
                    }
                }
            }
            Some(frame) = rx.recv() => {
                // Everything queued goes out in one write.
                let mut ok = ws.feed(Message::Text(frame)).await.is_ok();
                while ok {
                    match rx.try_recv() {
                        Ok(frame) => ok = ws.feed(Message::Text(frame)).await.is_ok(),
                        Err(_) => break,
                    }
                }
                if !ok || ws.flush().await.is_err() {
                    break;
                }
            }
        }
    }
    for room in &joined {
        rooms.leave(room, id);
    }
}

fn main() -> std::process::ExitCode {
    let addr: SocketAddr = match std::env::var("WSGATE_ADDR")
        .unwrap_or_else(|_| "127.0.0.1:0".into())
        .parse()
    {
        Ok(addr) => addr,
        Err(err) => {
            eprintln!("wsgate-floor: WSGATE_ADDR: {err}");
            return std::process::ExitCode::from(2);
        }
    };
    if !addr.ip().is_loopback() {
        eprintln!("wsgate-floor: accepts anyone, so it binds only the loopback, not {addr}");
        return std::process::ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("wsgate-floor: runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(addr)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("wsgate-floor: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(addr: SocketAddr) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    if let Ok(file) = std::env::var("WSGATE_ADDR_FILE") {
        std::fs::write(file, format!("{bound}\n"))?;
    }
    eprintln!("wsgate-floor: listening on {bound}");
    let rooms = Arc::new(Rooms::default());
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of descriptors and the like: the tool's open then fails and is counted there.
            Err(_) => {
                tokio::task::yield_now().await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let rooms = rooms.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(req, rooms.clone()));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}
