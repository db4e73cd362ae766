//! One WebSocket after its 101: PENDING until a valid `auth` frame, then a chat session, then a clean close.
//!
//! One task owns the socket and drives everything with one `select!`: frames from the client, the
//! broadcast feed, revocation, token expiry, heartbeat and shutdown. No second task, no per-socket
//! channel beyond the shared broadcast ring: an idle socket costs one small future.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::time::{sleep_until, timeout, Instant};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use super::hub::ConnId;
use super::protocol::{ClientFrame, CloseReason, ServerFrame, MAX_MESSAGE_CHARS};
use crate::auth::Claims;
use crate::ratelimit::{MessageLimiter, MessageVerdict};
use crate::state::App;
use crate::store::now_millis;

/// Broadcast frames written per flush at most: pending frames leave in one write, but one busy
/// socket cannot starve its own reads for long.
const WRITE_BATCH: usize = 64;
/// How long a closing socket waits for each step of the close handshake.
const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// Bytes a closing socket will read and discard while lingering.
const CLOSE_DRAIN_LIMIT: usize = 1 << 20;

/// Serves one upgraded socket until it closes.
pub async fn serve<S>(app: Arc<App>, mut ws: WebSocketStream<S>, ticket_user: String, conn: ConnId)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let outcome = match await_auth(&app, &mut ws, &ticket_user).await {
        Ok(claims) => {
            tracing::Span::current().record("user", claims.sub.as_str());
            tracing::info!("socket authenticated");
            let (joined, _membership) = Membership::join(&app, conn, &claims);
            Session::new(&app, conn, claims).run(&mut ws, joined).await
        }
        Err(outcome) => outcome,
    };
    match outcome {
        Some(reason) => {
            tracing::info!(
                code = reason.code(),
                reason = reason.name(),
                "closing socket"
            );
            close(&mut ws, Some(reason)).await;
        }
        None => {
            tracing::debug!("socket closed by peer");
            close(&mut ws, None).await;
        }
    }
}

/// Holds the socket's hub membership; leaving happens in `Drop`, so every exit path announces `left`.
struct Membership<'a> {
    app: &'a App,
    conn: ConnId,
}

impl<'a> Membership<'a> {
    /// Joins the hub: what the socket gets, and the guard that leaves again.
    fn join(app: &'a App, conn: ConnId, claims: &Claims) -> (super::hub::Joined, Self) {
        let joined = app
            .hub
            .join(conn, &claims.sub, claims.jti.clone(), claims.sid.clone());
        (joined, Self { app, conn })
    }
}

impl Drop for Membership<'_> {
    fn drop(&mut self) {
        self.app.hub.leave(self.conn);
    }
}

/// Checks a socket token by the one token rule, and that it belongs to `user` (the ticket's user).
async fn check_token(app: &App, token: &str, user: &str) -> Result<Claims, CloseReason> {
    let claims = crate::sessions::accept_token(app, token).await?;
    if claims.sub != user {
        return Err(CloseReason::TicketUserMismatch);
    }
    Ok(claims)
}

/// PENDING: waits for the first data frame, which must be `{"type":"auth","token":JWT}` of the ticket's
/// user. `Err(None)` means the peer went away.
async fn await_auth<S>(
    app: &App,
    ws: &mut WebSocketStream<S>,
    ticket_user: &str,
) -> Result<Claims, Option<CloseReason>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let deadline = Instant::now() + app.settings.auth_timeout;
    loop {
        let frame = tokio::select! {
            biased;
            _ = app.shutdown.cancelled() => return Err(Some(CloseReason::ServerShutdown)),
            _ = sleep_until(deadline) => return Err(Some(CloseReason::AuthTimeout)),
            frame = ws.next() => frame,
        };
        let text = match frame {
            None | Some(Ok(Message::Close(_))) => return Err(None),
            Some(Err(err)) => return Err(read_error(err)),
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Ok(Message::Binary(_))) => return Err(Some(CloseReason::BadRequest)),
            Some(Ok(Message::Text(text))) => text,
        };
        let Ok(ClientFrame::Auth { token }) = serde_json::from_str::<ClientFrame>(&text) else {
            return Err(Some(CloseReason::BadRequest));
        };
        return check_token(app, &token, ticket_user).await.map_err(Some);
    }
}

/// What a read error means for the socket: oversize gets 1009, anything else is a dead connection.
fn read_error(err: WsError) -> Option<CloseReason> {
    match err {
        WsError::Capacity(_) => Some(CloseReason::MessageTooBig),
        err => {
            tracing::debug!(%err, "read failed");
            None
        }
    }
}

/// An authenticated socket's state.
struct Session<'a> {
    app: &'a App,
    conn: ConnId,
    claims: Claims,
    limiter: MessageLimiter,
    last_heard: Instant,
    write_timeout: Duration,
}

/// The deadlines of an authenticated socket.
struct Timers {
    /// Next heartbeat check and ping.
    ping_at: Instant,
    /// When to send `token_expiring`; `None` once sent for the current token.
    warn_at: Option<Instant>,
    /// When the current token stops being acceptable.
    expire_at: Instant,
}

impl Timers {
    /// The earliest pending deadline.
    fn next(&self) -> Instant {
        let soonest = self.ping_at.min(self.expire_at);
        self.warn_at.map_or(soonest, |at| soonest.min(at))
    }
}

/// Why the write side gave up.
enum WriteFailed {
    /// The peer cannot keep up: it fell too far behind the broadcast, or a write did not complete
    /// within the write timeout.
    Slow,
    /// The connection is broken.
    Broken,
}

impl WriteFailed {
    fn close_reason(self) -> Option<CloseReason> {
        match self {
            WriteFailed::Slow => Some(CloseReason::SlowConsumer),
            WriteFailed::Broken => None,
        }
    }
}

impl<'a> Session<'a> {
    fn new(app: &'a App, conn: ConnId, claims: Claims) -> Self {
        Self {
            app,
            conn,
            claims,
            limiter: MessageLimiter::new(app.settings.rate.messages_per_sec),
            last_heard: Instant::now(),
            write_timeout: app.settings.write_timeout,
        }
    }

    /// When the current token stops being acceptable (its `exp` plus the leeway).
    fn token_deadline(&self) -> Instant {
        let end_ms = (self.claims.exp + self.app.tokens.leeway().as_secs() as i64) * 1000;
        Instant::now() + Duration::from_millis(end_ms.saturating_sub(now_millis()).max(0) as u64)
    }

    /// When to warn with `token_expiring`: the configured lead time before `exp` (not before now).
    fn warning_time(&self) -> Instant {
        let warn_ms = self.claims.exp * 1000 - self.app.settings.token_expiring.as_millis() as i64;
        Instant::now() + Duration::from_millis(warn_ms.saturating_sub(now_millis()).max(0) as u64)
    }

    async fn run<S>(
        mut self,
        ws: &mut WebSocketStream<S>,
        joined: super::hub::Joined,
    ) -> Option<CloseReason>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let super::hub::Joined {
            users,
            mut feed,
            mut kicked,
        } = joined;
        // Serialized at once, so neither the presence list nor the frame stays in this future.
        let hello = ServerFrame::AuthOk {
            user: &self.claims.sub,
            expires_at: self.claims.exp,
            users,
        }
        .to_json();
        if let Err(failed) = self.write(ws, hello).await {
            return failed.close_reason();
        }
        // One timer for every deadline of the socket (next ping, token warning, token expiry): one
        // timer entry per socket instead of three, and less state in every idle socket's future.
        let beat = self.app.settings.heartbeat;
        let mut timers = Timers {
            ping_at: Instant::now() + beat,
            warn_at: Some(self.warning_time()),
            expire_at: self.token_deadline(),
        };
        let timer = tokio::time::sleep_until(timers.next());
        tokio::pin!(timer);

        loop {
            tokio::select! {
                biased;
                _ = self.app.shutdown.cancelled() => return Some(CloseReason::ServerShutdown),
                reason = &mut kicked => return Some(reason.unwrap_or(CloseReason::ServerShutdown)),
                _ = &mut timer => {
                    let now = Instant::now();
                    if now >= timers.expire_at {
                        return Some(CloseReason::TokenExpired);
                    }
                    if timers.warn_at.is_some_and(|at| now >= at) {
                        // One warning per token; a refresh re-arms it.
                        timers.warn_at = None;
                        let expires_in = (self.claims.exp - crate::auth::jwt::unix_now()).max(0);
                        let frame = ServerFrame::TokenExpiring { expires_in };
                        if let Err(failed) = self.write(ws, frame.to_json()).await {
                            return failed.close_reason();
                        }
                    }
                    if now >= timers.ping_at {
                        if self.last_heard.elapsed() >= beat * 2 {
                            return Some(CloseReason::HeartbeatTimeout);
                        }
                        timers.ping_at = now + beat;
                        let mut ping = Vec::with_capacity(2);
                        encode_frame(&mut ping, OPCODE_PING, &[]);
                        if let Err(failed) = self.write_raw(ws, ping).await {
                            return failed.close_reason();
                        }
                    }
                    timer.as_mut().reset(timers.next());
                }
                frame = feed.recv() => match frame {
                    Ok(frame) => {
                        // Boxed (here and for frames below): the futures of these rare-per-socket
                        // paths would otherwise be part of every idle socket's resident state.
                        if let Err(failed) = Box::pin(self.write_batch(ws, frame, &mut feed)).await {
                            return failed.close_reason();
                        }
                    }
                    Err(RecvError::Lagged(_)) => return Some(CloseReason::SlowConsumer),
                    Err(RecvError::Closed) => return Some(CloseReason::ServerShutdown),
                },
                frame = ws.next() => {
                    self.last_heard = Instant::now();
                    let text = match frame {
                        None | Some(Ok(Message::Close(_))) => return None,
                        Some(Err(err)) => return read_error(err),
                        Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                        Some(Ok(Message::Binary(_))) => None,
                        Some(Ok(Message::Text(text))) => Some(text),
                    };
                    match Box::pin(self.handle_frame(ws, text)).await {
                        Ok(Some(new_deadline)) => {
                            timers.expire_at = new_deadline;
                            timers.warn_at = Some(self.warning_time());
                            timer.as_mut().reset(timers.next());
                        }
                        Ok(None) => {}
                        Err(reason) => return reason,
                    }
                }
            }
        }
    }

    /// Handles one data frame (`None` for binary). `Ok(Some(deadline))` after a refresh;
    /// `Err(reason)` ends the session.
    async fn handle_frame<S>(
        &mut self,
        ws: &mut WebSocketStream<S>,
        text: Option<Utf8Bytes>,
    ) -> Result<Option<Instant>, Option<CloseReason>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        match self.limiter.check() {
            MessageVerdict::Allowed => {}
            MessageVerdict::Limited => {
                return self
                    .reply_error(ws, "rate_limited", "too many messages, slow down")
                    .await
            }
            MessageVerdict::Flood => return Err(Some(CloseReason::RateLimited)),
        }
        let frame = text.and_then(|t| serde_json::from_str::<ClientFrame>(&t).ok());
        match frame {
            None => {
                self.reply_error(
                    ws,
                    "bad_request",
                    "frames must be JSON text: message or refresh",
                )
                .await
            }
            Some(ClientFrame::Auth { .. }) => {
                self.reply_error(ws, "bad_request", "this socket is already authenticated")
                    .await
            }
            Some(ClientFrame::Message { text }) => {
                let chars = text.chars().count();
                if chars == 0 {
                    self.reply_error(ws, "bad_request", "a message needs text")
                        .await
                } else if chars > MAX_MESSAGE_CHARS {
                    self.reply_error(ws, "too_long", "a message has at most 2000 characters")
                        .await
                } else {
                    self.app.hub.publish(&self.claims.sub, &text);
                    Ok(None)
                }
            }
            Some(ClientFrame::Refresh { token }) => {
                let claims = check_token(self.app, &token, &self.claims.sub)
                    .await
                    .map_err(Some)?;
                self.app
                    .hub
                    .set_token(self.conn, claims.jti.clone(), claims.sid.clone());
                self.claims = claims;
                let reply = ServerFrame::Refreshed {
                    expires_at: self.claims.exp,
                };
                self.write(ws, reply.to_json())
                    .await
                    .map_err(WriteFailed::close_reason)?;
                tracing::debug!("token refreshed in band");
                Ok(Some(self.token_deadline()))
            }
        }
    }

    async fn reply_error<S>(
        &self,
        ws: &mut WebSocketStream<S>,
        code: &str,
        message: &str,
    ) -> Result<Option<Instant>, Option<CloseReason>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let frame = ServerFrame::Error { code, message };
        self.write(ws, frame.to_json())
            .await
            .map(|()| None)
            .map_err(WriteFailed::close_reason)
    }

    /// Sends one text frame.
    async fn write<S>(&self, ws: &mut WebSocketStream<S>, json: String) -> Result<(), WriteFailed>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut out = Vec::with_capacity(json.len() + 10);
        encode_frame(&mut out, OPCODE_TEXT, json.as_bytes());
        drop(json);
        self.write_raw(ws, out).await
    }

    /// Writes `first` and whatever else is already pending in the feed, in one write.
    async fn write_batch<S>(
        &self,
        ws: &mut WebSocketStream<S>,
        first: Utf8Bytes,
        feed: &mut tokio::sync::broadcast::Receiver<Utf8Bytes>,
    ) -> Result<(), WriteFailed>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut out = Vec::with_capacity(first.len() + 10);
        encode_frame(&mut out, OPCODE_TEXT, first.as_bytes());
        drop(first);
        for _ in 1..WRITE_BATCH {
            match feed.try_recv() {
                Ok(frame) => encode_frame(&mut out, OPCODE_TEXT, frame.as_bytes()),
                Err(TryRecvError::Lagged(_)) => return Err(WriteFailed::Slow),
                Err(TryRecvError::Empty | TryRecvError::Closed) => break,
            }
        }
        self.write_raw(ws, out).await
    }

    /// Writes encoded frames straight to the connection, giving up after the write timeout (a peer
    /// that does not read). tungstenite's own queue (pongs, close replies) is flushed first, so whole
    /// frames never interleave. The buffer lives only for this write: tungstenite's write buffer
    /// keeps its largest size forever, which made every socket keep its `auth_ok` (and with it the
    /// whole presence list) resident.
    async fn write_raw<S>(
        &self,
        ws: &mut WebSocketStream<S>,
        out: Vec<u8>,
    ) -> Result<(), WriteFailed>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let write = async {
            ws.flush().await.map_err(std::io::Error::other)?;
            let io = ws.get_mut();
            io.write_all(&out).await?;
            io.flush().await
        };
        match timeout(self.write_timeout, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(WriteFailed::Broken),
            Err(_) => Err(WriteFailed::Slow),
        }
    }
}

const OPCODE_TEXT: u8 = 0x1;
const OPCODE_PING: u8 = 0x9;

/// Appends one unmasked, final server frame (RFC 6455 section 5.2).
fn encode_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
}

/// Ends the close handshake and the connection (RFC 6455 section 7.1.1: the server closes TCP first).
///
/// Peer-initiated (`None`): echo its close frame and close at once. Server-initiated: send our close
/// frame, wait (briefly) for the peer's echo, then close. While waiting, input is read, not left
/// unread: closing a TCP socket with unread input makes the kernel answer with RST, which can destroy
/// our close frame before the peer reads it (the 1009 case: the rest of the oversized frame is still
/// unread).
async fn close<S>(ws: &mut WebSocketStream<S>, reason: Option<CloseReason>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match reason {
        // tungstenite has queued the echo of the peer's close; `close` would try to start a second
        // handshake and fail without sending it.
        None => {
            let _ = timeout(CLOSE_LINGER, ws.flush()).await;
        }
        Some(reason) => {
            let _ = timeout(CLOSE_LINGER, ws.close(Some(reason.frame()))).await;
            let _ = timeout(CLOSE_LINGER, await_close_echo(ws)).await;
        }
    }
    let _ = timeout(CLOSE_LINGER, ws.get_mut().shutdown()).await;
}

/// Reads until the peer echoes our close frame or goes away. Input that no longer parses as
/// frames (what follows an oversized frame) is read and discarded, up to a limit.
async fn await_close_echo<S>(ws: &mut WebSocketStream<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        match ws.next().await {
            None | Some(Ok(Message::Close(_))) => return,
            Some(Ok(_)) => continue,
            Some(Err(_)) => break,
        }
    }
    // On the heap: a buffer declared here would be part of every socket's future for its whole
    // life, not just while closing.
    let mut buf = vec![0u8; 4096];
    let mut total = 0;
    while total < CLOSE_DRAIN_LIMIT {
        match ws.get_mut().read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n,
        }
    }
}
