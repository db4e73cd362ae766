//! A protocol-speaking client for wsgate (REST + WebSocket), shared by the scenario suite, the
//! in-process tests and the load tool. It drives the server exactly like a third-party client would.

pub mod scenarios;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Default wait for a frame the test expects.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(5);
/// How many 429 answers a setup request waits out before giving up.
const PATIENCE: usize = 20;
/// Password every generated user gets.
pub const PASSWORD: &str = "correct-horse-battery";

/// An HTTP answer: status, headers that matter, JSON body (or `Null`).
#[derive(Debug, Clone)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// `Retry-After`, when present.
    pub retry_after: Option<u64>,
    /// Parsed body; `Value::Null` when empty or not JSON.
    pub body: Value,
}

impl Reply {
    /// The `error` code of an error body.
    pub fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or("")
    }

    /// Fails unless status and error code are as expected (and the body has a message).
    pub fn expect_error(&self, status: u16, code: &str) -> Result<()> {
        if self.status != status || self.error() != code {
            bail!(
                "expected {status} {code}, got {} {}",
                self.status,
                self.body
            );
        }
        if self.body["message"].as_str().unwrap_or("").is_empty() {
            bail!("error body without a message: {}", self.body);
        }
        Ok(())
    }
}

/// A logged-in user.
#[derive(Debug, Clone)]
pub struct User {
    /// Username.
    pub name: String,
    /// Access token.
    pub token: String,
    /// The token's lifetime as the login reported it, in seconds.
    pub expires_in: u64,
    /// The refresh token of the login's session.
    pub refresh_token: String,
}

/// A client of one wsgate server.
#[derive(Clone)]
pub struct Gateway {
    base: String,
    ws_base: String,
    origin: String,
    http: reqwest::Client,
}

static UNIQUE: AtomicU64 = AtomicU64::new(0);

/// A username no other run uses: `prefix` (at most 12 characters) plus a time- and counter-based suffix.
pub fn unique_name(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = UNIQUE.fetch_add(1, Ordering::Relaxed);
    let prefix: String = prefix.chars().take(12).collect();
    format!(
        "{prefix}_{:x}{:x}{n}",
        (nanos % 0xffff_ffff) as u64,
        std::process::id() % 0xfff
    )
}

/// The outcome of an upgrade attempt.
pub enum Upgrade {
    /// 101: the socket.
    Open(Box<Socket>),
    /// Refused: status and JSON body.
    Refused(Reply),
}

impl Upgrade {
    /// The socket, or an error describing the refusal.
    pub fn open(self) -> Result<Socket> {
        match self {
            Upgrade::Open(socket) => Ok(*socket),
            Upgrade::Refused(reply) => bail!("upgrade refused: {} {}", reply.status, reply.body),
        }
    }

    /// The refusal, or an error if it opened.
    pub fn refused(self) -> Result<Reply> {
        match self {
            Upgrade::Open(_) => bail!("upgrade unexpectedly succeeded"),
            Upgrade::Refused(reply) => Ok(reply),
        }
    }
}

impl Gateway {
    /// A client for the server at `url` (`http://host:port`). Its browser origin defaults to the URL's.
    pub fn new(url: &str) -> Result<Self> {
        let base = url.trim_end_matches('/').to_string();
        let ws_base = if let Some(rest) = base.strip_prefix("http://") {
            format!("ws://{rest}")
        } else if let Some(rest) = base.strip_prefix("https://") {
            format!("wss://{rest}")
        } else {
            bail!("the URL must start with http:// or https://, got {url}");
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self {
            origin: base.clone(),
            base,
            ws_base,
            http,
        })
    }

    /// The origin sent on upgrades by default (the server's own).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends a request; `body` is sent as raw bytes with a JSON content type.
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
        bearer: Option<&str>,
    ) -> Result<Reply> {
        self.request_with_headers(method, path, body, bearer, &[])
            .await
    }

    /// Like `request`, with extra headers (a later one of the same name replaces the default
    /// content type): what a browser adds, such as `Origin`.
    pub async fn request_with_headers(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
        bearer: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Result<Reply> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            let typed = headers
                .iter()
                .any(|(name, _)| name.eq_ignore_ascii_case("content-type"));
            if !typed {
                req = req.header("content-type", "application/json");
            }
            req = req.body(body);
        }
        if let Some(token) = bearer {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("request {path}"))?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let bytes = resp.bytes().await?;
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Reply {
            status,
            retry_after,
            body,
        })
    }

    /// POSTs JSON.
    pub async fn post(&self, path: &str, body: Value, bearer: Option<&str>) -> Result<Reply> {
        self.request(
            reqwest::Method::POST,
            path,
            Some(body.to_string().into_bytes()),
            bearer,
        )
        .await
    }

    /// GETs with a bearer token.
    pub async fn get(&self, path: &str, bearer: Option<&str>) -> Result<Reply> {
        self.request(reqwest::Method::GET, path, None, bearer).await
    }

    /// PUTs with no body.
    pub async fn put_empty(&self, path: &str, bearer: Option<&str>) -> Result<Reply> {
        self.request(reqwest::Method::PUT, path, None, bearer).await
    }

    /// DELETEs.
    pub async fn delete(&self, path: &str, bearer: Option<&str>) -> Result<Reply> {
        self.request(reqwest::Method::DELETE, path, None, bearer)
            .await
    }

    /// Creates a room owned by `owner` (a unique id from `prefix`); its id.
    pub async fn create_room(&self, owner: &User, prefix: &str, kind: &str) -> Result<String> {
        let id = unique_name(prefix).to_ascii_lowercase().replace('_', "-");
        let reply = self
            .post(
                "/api/rooms",
                serde_json::json!({"id": id, "kind": kind, "title": prefix}),
                Some(&owner.token),
            )
            .await?;
        if reply.status != 201 {
            bail!("creating room {id}: {} {}", reply.status, reply.body);
        }
        Ok(id)
    }

    /// POSTs with no body (logout, ws-ticket).
    pub async fn post_empty(&self, path: &str, bearer: Option<&str>) -> Result<Reply> {
        self.request(reqwest::Method::POST, path, None, bearer)
            .await
    }

    /// Like `post`, but waits out 429 answers (as a polite client does) up to a few times.
    async fn post_patiently(
        &self,
        path: &str,
        body: Option<Value>,
        bearer: Option<&str>,
    ) -> Result<Reply> {
        let body = body.map(|b| b.to_string().into_bytes());
        for _ in 0..PATIENCE {
            let reply = self
                .request(reqwest::Method::POST, path, body.clone(), bearer)
                .await?;
            if reply.status != 429 {
                return Ok(reply);
            }
            let wait = reply.retry_after.unwrap_or(1).min(60);
            tokio::time::sleep(Duration::from_secs(wait)).await;
        }
        bail!("{path}: still rate limited after {PATIENCE} attempts")
    }

    /// Registers `name` with `password` (waiting out 429s).
    pub async fn register(&self, name: &str, password: &str) -> Result<Reply> {
        self.post_patiently(
            "/api/register",
            Some(json!({"username": name, "password": password})),
            None,
        )
        .await
    }

    /// Logs in (waiting out 429s).
    pub async fn login(&self, name: &str, password: &str) -> Result<Reply> {
        self.post_patiently(
            "/api/login",
            Some(json!({"username": name, "password": password})),
            None,
        )
        .await
    }

    /// Registers a fresh user (unique name from `prefix`) and logs it in.
    pub async fn new_user(&self, prefix: &str) -> Result<User> {
        let name = unique_name(prefix);
        let reply = self.register(&name, PASSWORD).await?;
        if reply.status != 201 {
            bail!("register {name}: {} {}", reply.status, reply.body);
        }
        self.relogin(&name).await
    }

    /// Logs an existing generated user in again (a new token).
    pub async fn relogin(&self, name: &str) -> Result<User> {
        let reply = self.login(name, PASSWORD).await?;
        let token = reply.body["access_token"]
            .as_str()
            .ok_or_else(|| anyhow!("login {name}: {} {}", reply.status, reply.body))?;
        Ok(User {
            name: name.to_string(),
            token: token.to_string(),
            expires_in: reply.body["expires_in"].as_u64().unwrap_or(0),
            refresh_token: reply.body["refresh_token"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        })
    }

    /// `POST /api/token/refresh`; the full reply (waiting out 429s).
    pub async fn refresh(&self, refresh_token: &str) -> Result<Reply> {
        self.post_patiently(
            "/api/token/refresh",
            Some(json!({"refresh_token": refresh_token})),
            None,
        )
        .await
    }

    /// Refreshes `user`'s tokens in place (rotation).
    pub async fn refresh_user(&self, user: &mut User) -> Result<()> {
        let reply = self.refresh(&user.refresh_token).await?;
        match (
            reply.status,
            reply.body["access_token"].as_str(),
            reply.body["refresh_token"].as_str(),
        ) {
            (200, Some(access), Some(refresh)) => {
                user.token = access.to_string();
                user.refresh_token = refresh.to_string();
                Ok(())
            }
            _ => bail!("refresh: {} {}", reply.status, reply.body),
        }
    }

    /// Mints a ticket; the full reply (waiting out 429s).
    pub async fn ticket_reply(&self, token: &str) -> Result<Reply> {
        self.post_patiently("/api/ws-ticket", None, Some(token))
            .await
    }

    /// Mints a ticket.
    pub async fn ticket(&self, token: &str) -> Result<String> {
        let reply = self.ticket_reply(token).await?;
        match (reply.status, reply.body["ticket"].as_str()) {
            (201, Some(ticket)) => Ok(ticket.to_string()),
            _ => bail!("ws-ticket: {} {}", reply.status, reply.body),
        }
    }

    /// Attempts `GET /ws?<query>` with the given Origin (`None`: no Origin header).
    pub async fn upgrade_raw(&self, query: &str, origin: Option<&str>) -> Result<Upgrade> {
        let mut request = format!("{}/ws{query}", self.ws_base).into_client_request()?;
        if let Some(origin) = origin {
            request
                .headers_mut()
                .insert("origin", HeaderValue::from_str(origin)?);
        }
        match tokio_tungstenite::connect_async(request).await {
            Ok((ws, _)) => Ok(Upgrade::Open(Box::new(Socket {
                ws,
                focus: None,
                pace: None,
            }))),
            Err(WsError::Http(resp)) => {
                let status = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok());
                let body = resp
                    .body()
                    .as_deref()
                    .and_then(|b| serde_json::from_slice(b).ok())
                    .unwrap_or(Value::Null);
                Ok(Upgrade::Refused(Reply {
                    status,
                    retry_after,
                    body,
                }))
            }
            Err(err) => Err(err.into()),
        }
    }

    /// Upgrades with `ticket` from the server's own origin.
    pub async fn upgrade(&self, ticket: &str) -> Result<Upgrade> {
        self.upgrade_raw(&format!("?ticket={ticket}"), Some(&self.origin.clone()))
            .await
    }

    /// Mints a ticket, upgrades, authenticates; returns the socket and its `auth_ok`.
    pub async fn connect(&self, user: &User) -> Result<(Socket, Value)> {
        self.connect_since(user, None).await
    }

    /// `connect`, recovering `lobby` from after `since`.
    pub async fn connect_since(&self, user: &User, since: Option<&str>) -> Result<(Socket, Value)> {
        let ticket = self.ticket(&user.token).await?;
        let mut socket = self.upgrade(&ticket).await?.open()?;
        socket.focus(&[&user.name]);
        let mut auth = serde_json::json!({"type": "auth", "token": user.token});
        if let Some(since) = since {
            auth["since"] = since.into();
        }
        socket.send_json(auth).await?;
        let ok = socket.recv().await?;
        if ok["type"] != "auth_ok" {
            bail!("expected auth_ok, got {ok}");
        }
        Ok((socket, ok))
    }
}

/// A client WebSocket.
pub struct Socket {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// When set, frames about other users (`user`/`from` not listed) are skipped: a scenario run
    /// against a shared server must not trip over other clients' chat and presence.
    focus: Option<Vec<String>>,
    /// When set, sends are spaced at least this far apart (and the last send's time): scenarios
    /// that send many frames stay under the server's per-socket rate limit.
    pace: Option<(Duration, tokio::time::Instant)>,
}

/// What a socket saw while waiting.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A JSON text frame.
    Json(Value),
    /// The server closed the socket.
    Closed {
        /// Close code.
        code: u16,
        /// Close reason.
        reason: String,
    },
}

impl Socket {
    /// Only frames about these users (or about nobody in particular) are seen from now on.
    pub fn focus(&mut self, users: &[&str]) {
        self.focus = Some(users.iter().map(|u| u.to_string()).collect());
    }

    /// Sees frames about every user again.
    pub fn focus_all(&mut self) {
        self.focus = None;
    }

    fn in_focus(&self, frame: &Value) -> bool {
        let Some(focus) = &self.focus else {
            return true;
        };
        let about = frame["type"]
            .as_str()
            .filter(|t| matches!(*t, "joined" | "left" | "message" | "typing" | "direct"))
            .and_then(|_| frame["user"].as_str().or(frame["from"].as_str()));
        about.is_none_or(|user| focus.iter().any(|f| f == user))
    }

    /// Spaces this socket's sends at least `interval` apart from now on.
    pub fn pace(&mut self, interval: Duration) {
        self.pace = Some((interval, tokio::time::Instant::now() - interval));
    }

    /// Sends a text frame.
    pub async fn send_text(&mut self, text: impl Into<String>) -> Result<()> {
        if let Some((interval, last)) = &mut self.pace {
            tokio::time::sleep_until(*last + *interval).await;
            *last = tokio::time::Instant::now();
        }
        self.ws.send(Message::Text(text.into().into())).await?;
        Ok(())
    }

    /// Sends a JSON frame.
    pub async fn send_json(&mut self, value: Value) -> Result<()> {
        self.send_text(value.to_string()).await
    }

    /// Sends a binary frame.
    pub async fn send_binary(&mut self, bytes: Vec<u8>) -> Result<()> {
        self.ws.send(Message::Binary(bytes.into())).await?;
        Ok(())
    }

    /// Sends `{"type":"auth","token":…}`.
    pub async fn auth(&mut self, token: &str) -> Result<()> {
        self.send_json(json!({"type": "auth", "token": token}))
            .await
    }

    /// Sends a chat message to a room.
    pub async fn say_in(&mut self, room: &str, text: &str) -> Result<()> {
        self.send_json(json!({"type": "message", "room": room, "text": text}))
            .await
    }

    /// Subscribes (recovering from `since` when given) and returns the `subscribed` frame, or
    /// the error frame that refused it.
    pub async fn subscribe(&mut self, room: &str, since: Option<&str>) -> Result<Value> {
        let mut frame = json!({"type": "subscribe", "room": room});
        if let Some(since) = since {
            frame["since"] = since.into();
        }
        self.send_json(frame).await?;
        loop {
            let reply = self.recv().await?;
            let kind = reply["type"].as_str().unwrap_or("");
            if (kind == "subscribed" || kind == "error") && reply["room"] == room {
                return Ok(reply);
            }
        }
    }

    /// Sends a chat message.
    pub async fn say(&mut self, text: &str) -> Result<()> {
        self.send_json(json!({"type": "message", "text": text}))
            .await
    }

    /// The next event within `wait`; `None` on timeout. Control frames are skipped (pings answered).
    pub async fn next_event(&mut self, wait: Duration) -> Result<Option<Event>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let frame = match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return Ok(None),
                Ok(frame) => frame,
            };
            match frame {
                None => bail!("connection ended without a close frame"),
                Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => {
                    bail!("connection ended without a close frame")
                }
                Some(Err(err)) => bail!("read error: {err}"),
                Some(Ok(Message::Text(text))) => {
                    let frame: Value = serde_json::from_str(&text)?;
                    if self.in_focus(&frame) {
                        return Ok(Some(Event::Json(frame)));
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = frame
                        .map(|f| (u16::from(f.code), f.reason.to_string()))
                        .unwrap_or((1005, String::new()));
                    return Ok(Some(Event::Closed { code, reason }));
                }
                Some(Ok(Message::Binary(_))) => bail!("unexpected binary frame"),
                Some(Ok(_)) => continue,
            }
        }
    }

    /// The next JSON frame within `RECV_TIMEOUT`; a close or a timeout is an error.
    pub async fn recv(&mut self) -> Result<Value> {
        match self.next_event(RECV_TIMEOUT).await? {
            Some(Event::Json(v)) => Ok(v),
            Some(Event::Closed { code, reason }) => bail!("socket closed: {code} {reason}"),
            None => bail!("no frame within {RECV_TIMEOUT:?}"),
        }
    }

    /// The next frame of the given type, skipping others (presence from other tests' users).
    pub async fn recv_type(&mut self, kind: &str) -> Result<Value> {
        loop {
            let frame = self.recv().await?;
            if frame["type"] == kind {
                return Ok(frame);
            }
        }
    }

    /// Waits for the server's close frame within `wait`, skipping other frames; returns code and reason.
    pub async fn expect_close(&mut self, wait: Duration) -> Result<(u16, String)> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_event(left).await? {
                Some(Event::Closed { code, reason }) => return Ok((code, reason)),
                Some(Event::Json(_)) => continue,
                None => bail!("no close within {wait:?}"),
            }
        }
    }

    /// Fails unless the server closes with exactly `code` and `reason` within `wait`.
    pub async fn expect_closed_with(
        &mut self,
        code: u16,
        reason: &str,
        wait: Duration,
    ) -> Result<()> {
        let (got_code, got_reason) = self.expect_close(wait).await?;
        if (got_code, got_reason.as_str()) != (code, reason) {
            bail!("expected close {code} {reason}, got {got_code} {got_reason}");
        }
        Ok(())
    }

    /// Fails if any data frame or close arrives within `wait`.
    pub async fn expect_silence(&mut self, wait: Duration) -> Result<()> {
        match self.next_event(wait).await? {
            None => Ok(()),
            Some(event) => bail!("expected silence, got {event:?}"),
        }
    }

    /// Closes politely and checks the server echoes the close frame (RFC 6455 section 5.5.1) within
    /// a second, as browsers expect.
    pub async fn close(mut self) -> Result<()> {
        self.ws.close(None).await?;
        let reply = tokio::time::timeout(Duration::from_secs(1), async {
            loop {
                match self.ws.next().await {
                    Some(Ok(Message::Close(_))) => return Ok(()),
                    Some(Ok(_)) => continue,
                    Some(Err(WsError::ConnectionClosed)) => return Ok(()),
                    Some(Err(err)) => bail!("no close reply: {err}"),
                    None => bail!("connection ended without a close reply"),
                }
            }
        })
        .await;
        match reply {
            Ok(result) => result,
            Err(_) => bail!("the server did not answer the close within 1 s"),
        }
    }
}
