//! One WebSocket after its 101: PENDING until a valid `auth` frame, then a chat session, then a clean
//! close (`close`). Every data frame leaves through `writer`.
//!
//! One task owns the socket and drives everything with one `select!`: frames from the client, the
//! socket's inbox (what the hub addressed to it), revocation, token expiry, heartbeat and shutdown.
//! No second task, no channel: an idle socket costs one small future and an empty inbox.

use std::net::IpAddr;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::time::Duration;

mod close;
mod writer;

use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::{OnUpgrade, Parts};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::{sleep_until, timeout_at, Instant, Sleep};
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use crate::auth::Claims;
use crate::clock::now_millis;
use crate::metrics::Held;
use crate::protocol::{ClientFrame, CloseReason, ServerFrame, MAX_MESSAGE_CHARS};
use crate::ratelimit::{ControlBudget, MessageLimiter, MessageVerdict};
use crate::realtime::{Closing, ConnId, PublishError, SubscribeError, LOBBY};
use crate::rooms::RoomError;
use crate::state::App;
pub(crate) use writer::encode_frame;
use writer::{write_frames, WriteFailed, OPCODE_PING, OPCODE_TEXT};

/// Queued frames written per write at most: pending frames leave in few writes, but one busy
/// socket cannot starve its own reads for long.
const WRITE_BATCH: usize = 64;

/// How a socket's life ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// The peer closed or vanished: echo its close frame, if any, then close TCP.
    ByPeer,
    /// The server closes: its close frame, the peer's echo (briefly), then TCP.
    Close(CloseReason),
    /// A frame is half-written and could not be finished: not one more byte may be written, not
    /// even a close frame (the peer would read it as the rest of the unfinished frame). TCP is
    /// closed; the reason is for the log.
    Cut(CloseReason),
}

impl Ending {
    /// The close reason's name, or `peer_closed`: the `reason` label of `/metrics`.
    fn reason(self) -> &'static str {
        match self {
            Ending::ByPeer => "peer_closed",
            Ending::Close(reason) | Ending::Cut(reason) => reason.name(),
        }
    }
}

impl From<CloseReason> for Ending {
    fn from(reason: CloseReason) -> Self {
        Ending::Close(reason)
    }
}

/// Serves one socket from its 101 until it closes: `ticket_user` is the ticket's user, `peer` the
/// client; `hold` (the connection slot) is kept to the end.
///
/// What a socket's task holds is this future, for the socket's whole life, and an async fn's state
/// is as large as its largest await. So everything that happens once (the token check with its
/// store and JWT work, the join with its engine and Redis calls, the close handshake) runs boxed:
/// on the heap while it runs, gone after. What stays is the stream, the session loop, and guards.
/// The arguments of an async fn keep their slots for its whole life, even once moved, so this is
/// the socket's one async fn with arguments by value (a second level, `ws::socket_task` before,
/// kept a second copy of each), and the stream is a local, made by `accept`.
pub async fn serve<H>(
    app: Arc<App>,
    on_upgrade: OnUpgrade,
    ticket_user: String,
    conn: ConnId,
    peer: IpAddr,
    hold: H,
) {
    // Boxed: the upgrade's future (hyper's `Upgraded`, the stream being built) is larger than any
    // later step, and would set the size of this future for the socket's life.
    let Some(mut ws) = Box::pin(accept(on_upgrade, &app)).await else {
        return;
    };
    // The socket's one timer, made once and used by both phases (the `auth` deadline, then every
    // deadline of the session): each phase making its own would give this future a slot for each
    // (112 bytes), and keep the PENDING phase from sharing the session's space.
    let mut timer = pin!(sleep_until(Instant::now() + app.settings.auth.auth_timeout));
    // Not boxed, unlike the other once-only steps: with the timer outside it, the PENDING phase is
    // smaller than the session it turns into and shares that space, so a PENDING socket holds no
    // allocation for it, and the test of this future's size bounds both phases.
    let ending = {
        // Bound, then used in place: moving the session out of the result would give it a second
        // slot in this future (a match's scrutinee lives to the end of the match). Scoped, so it
        // has no slot during the close.
        let mut opened = open_session(&app, &mut ws, timer.as_mut(), ticket_user, conn, peer).await;
        match &mut opened {
            Ok(Opened {
                session, joined, ..
            }) => {
                let _authenticated = Held::new(&app.metrics.sockets_authenticated);
                let ending = session.run(&mut ws, timer.as_mut(), joined).await;
                log_ending(conn, &session.user, ending);
                ending
            }
            // `open_session` logged it, with the ticket's user.
            Err(ending) => *ending,
        }
        // Leaves the hub (the membership's `Drop`) here, before the close handshake.
    };
    app.metrics.socket_closed(ending.reason());
    Box::pin(close::close(&mut ws, ending)).await;
    drop(hold);
}

/// The WebSocket stream of a 101: the `TcpStream` itself, taken back from hyper's `Upgraded`.
/// Served through `Upgraded`, every socket kept hyper's boxed stream and its rewind buffer, and
/// every read and write went through one more dynamic call. What the client sent after its
/// upgrade request, before it saw the 101, comes back with the stream (nearly always nothing).
async fn accept(on_upgrade: OnUpgrade, app: &App) -> Option<WebSocketStream<TcpStream>> {
    let upgraded = match on_upgrade.await {
        Ok(upgraded) => upgraded,
        Err(err) => {
            tracing::debug!(%err, "upgrade did not complete");
            return None;
        }
    };
    match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(Parts { io, read_buf, .. }) => {
            // Copied out: the `Bytes` is a view of hyper's whole connection read buffer (8 KiB),
            // which would otherwise live as long as the socket.
            let early = read_buf.to_vec();
            drop(read_buf);
            let config = Some(app.ws_config);
            let stream = io.into_inner();
            Some(WebSocketStream::from_partially_read(stream, early, Role::Server, config).await)
        }
        // `startup::serve_connection` serves nothing but TCP streams, so this is a bug, named
        // rather than served through a second code path that nothing would test.
        Err(_) => {
            tracing::error!("an upgraded connection was not a TCP stream; closing it");
            None
        }
    }
}

/// The log line of a socket's end (the server's reasons at info, the peer's at debug).
fn log_ending(conn: ConnId, user: &str, ending: Ending) {
    match ending {
        Ending::Close(reason) | Ending::Cut(reason) => tracing::info!(
            conn,
            user,
            code = reason.code(),
            reason = reason.name(),
            cut = matches!(ending, Ending::Cut(_)),
            "closing socket"
        ),
        Ending::ByPeer => tracing::debug!(conn, user, "socket closed by peer"),
    }
}

/// An authenticated socket, joined to the hub, about to run its session.
struct Opened<'a> {
    session: Session<'a>,
    joined: crate::realtime::Joined,
    /// Leaves the hub when dropped.
    _membership: Membership<'a>,
}

/// PENDING until a valid `auth`, then the join (and `lobby`): the session to run, or how the
/// socket ends.
async fn open_session<'a, S>(
    app: &'a App,
    ws: &mut WebSocketStream<S>,
    timer: Pin<&mut Sleep>,
    ticket_user: String,
    conn: ConnId,
    peer: IpAddr,
) -> Result<Opened<'a>, Ending>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // Pings and pongs cost the server as much as data frames: one budget for the socket's life.
    let mut control = ControlBudget::new();
    let pending = Held::new(&app.metrics.sockets_pending);
    let authenticated = match await_auth(app, ws, timer, &mut control).await {
        Ok((token, since)) => match Box::pin(check_token(app, &token, &ticket_user)).await {
            Ok(claims) => Ok((claims, since)),
            Err(reason) => Err(reason.into()),
        },
        Err(ending) => Err(ending),
    };
    drop(pending);
    let (claims, since) = authenticated.inspect_err(|ending| {
        app.metrics.auth_failed(ending.reason());
        log_ending(conn, &ticket_user, *ending);
    })?;
    tracing::Span::current().record("user", claims.sub.as_str());
    tracing::info!(conn, %peer, user = %claims.sub, "socket authenticated");
    // Boxed, like the token check: inline, the join (the engine, Redis) would widen this phase
    // past the session whose space it shares.
    let joined = Box::pin(Membership::join(app, conn, &claims, since.as_deref())).await;
    // The hub tells its sockets of a shutdown once (`startup`), after the token is cancelled: a
    // socket that joined after that round sees the token here. So does a join that failed because
    // the node is stopping (in a cluster, the dispatcher fails its waiting joins when it stops).
    let refuse = |reason| {
        let ending = Ending::Close(reason);
        log_ending(conn, &claims.sub, ending);
        ending
    };
    let (joined, membership) = match joined {
        _ if app.shutdown.is_cancelled() => return Err(refuse(CloseReason::ServerShutdown)),
        Ok(joined) => joined,
        Err(_) => return Err(refuse(CloseReason::ClusterUnavailable)),
    };
    Ok(Opened {
        session: Session::new(app, conn, *claims, control),
        joined,
        _membership: membership,
    })
}

/// Holds the socket's hub membership; leaving happens in `Drop`, so every exit path announces `left`.
struct Membership<'a> {
    app: &'a App,
    conn: ConnId,
}

impl<'a> Membership<'a> {
    /// Joins the hub (and `lobby`, recovering from `since`): what the socket gets, and the guard
    /// that leaves again.
    async fn join(
        app: &'a App,
        conn: ConnId,
        claims: &Claims,
        since: Option<&str>,
    ) -> Result<(crate::realtime::Joined, Self), crate::realtime::EngineError> {
        let joined = app
            .engine
            .join(
                conn,
                &claims.sub,
                claims.jti.clone(),
                claims.sid.clone(),
                since,
            )
            .await?;
        Ok((joined, Self { app, conn }))
    }
}

impl Drop for Membership<'_> {
    fn drop(&mut self) {
        self.app.engine.leave(self.conn);
    }
}

/// Checks a socket token by the one token rule, and that it belongs to `user` (the ticket's user).
/// The claims come boxed: held across the join, inline they would widen the PENDING phase, which
/// must stay smaller than the session it shares its space with.
async fn check_token(app: &App, token: &str, user: &str) -> Result<Box<Claims>, CloseReason> {
    let claims = crate::sessions::accept_token(app, token).await?;
    if claims.sub != user {
        return Err(CloseReason::TicketUserMismatch);
    }
    Ok(Box::new(claims))
}

/// PENDING: waits for the first data frame, which must be `{"type":"auth","token":JWT}` (with an
/// optional `since` for `lobby`): its token and `since`.
async fn await_auth<S>(
    app: &App,
    ws: &mut WebSocketStream<S>,
    mut timer: Pin<&mut Sleep>,
    control: &mut ControlBudget,
) -> Result<(String, Option<String>), Ending>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // `timer` is set to the `auth` deadline. Not in the hub yet, a PENDING socket waits on the
    // shutdown token itself (this phase shares the session's space, so the wait costs nothing).
    let shutdown = app.shutdown.cancelled();
    tokio::pin!(shutdown);
    loop {
        let frame = tokio::select! {
            biased;
            _ = &mut shutdown => return Err(CloseReason::ServerShutdown.into()),
            _ = timer.as_mut() => return Err(CloseReason::AuthTimeout.into()),
            frame = ws.next() => frame,
        };
        let text = match frame {
            None | Some(Ok(Message::Close(_))) => return Err(Ending::ByPeer),
            Some(Err(err)) => return Err(read_error(err)),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) if control.spend() => continue,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                return Err(CloseReason::RateLimited.into())
            }
            Some(Ok(Message::Frame(_))) => continue,
            Some(Ok(Message::Binary(_))) => return Err(CloseReason::BadRequest.into()),
            Some(Ok(Message::Text(text))) => text,
        };
        return match ClientFrame::from_json(&text) {
            Ok(ClientFrame::Auth { token, since }) => Ok((token, since)),
            _ => Err(CloseReason::BadRequest.into()),
        };
    }
}

/// What a read error means for the socket: an oversized frame is 1009, text that is not UTF-8 1007,
/// any other breach of RFC 6455 1002 (the client has a bug; `wsgate.js` does not retry these);
/// anything else is a dead connection.
fn read_error(err: WsError) -> Ending {
    match err {
        WsError::Capacity(_) => CloseReason::MessageTooBig.into(),
        WsError::Utf8(_) => CloseReason::InvalidUtf8.into(),
        // The peer closed TCP without a close frame: nobody is left to tell.
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => Ending::ByPeer,
        WsError::Protocol(err) => {
            tracing::debug!(%err, "protocol violation");
            CloseReason::ProtocolError.into()
        }
        err => {
            tracing::debug!(%err, "read failed");
            Ending::ByPeer
        }
    }
}

/// Whether a message text is acceptable: the error code and message when not.
fn check_text(text: &str) -> Result<(), (&'static str, &'static str)> {
    let chars = text.chars().count();
    if chars == 0 {
        Err(("bad_request", "a message needs text"))
    } else if chars > MAX_MESSAGE_CHARS {
        Err(("too_long", "a message has at most 2000 characters"))
    } else {
        Ok(())
    }
}

/// The error frame for a refused room or user lookup.
fn room_refusal(err: RoomError) -> (&'static str, &'static str) {
    match err {
        RoomError::UnknownUser => ("unknown_user", "no such user"),
        RoomError::Store(err) => {
            tracing::warn!(%err, "store failed during a socket request");
            ("unavailable", "the store did not answer, retry")
        }
        _ => ("unknown_room", "no such room"),
    }
}

/// An authenticated socket's state. Of its token only the user and the expiry: the token's ids
/// live in the hub (revocation), and every idle socket carries this struct.
struct Session<'a> {
    app: &'a App,
    conn: ConnId,
    user: String,
    /// `exp` of the current token, Unix seconds.
    exp: i64,
    limiter: MessageLimiter,
    control: ControlBudget,
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

impl<'a> Session<'a> {
    fn new(app: &'a App, conn: ConnId, claims: Claims, control: ControlBudget) -> Self {
        Self {
            app,
            conn,
            user: claims.sub,
            exp: claims.exp,
            limiter: MessageLimiter::new(app.settings.limits.messages_per_sec.get()),
            control,
            last_heard: Instant::now(),
            write_timeout: app.settings.limits.write_timeout,
        }
    }

    /// When the current token stops being acceptable (its `exp` plus the leeway).
    fn token_deadline(&self) -> Instant {
        let end_ms = (self.exp + self.app.tokens.leeway().as_secs() as i64) * 1000;
        Instant::now() + Duration::from_millis(end_ms.saturating_sub(now_millis()).max(0) as u64)
    }

    /// When to warn with `token_expiring`: the configured lead time before `exp` (not before now).
    fn warning_time(&self) -> Instant {
        let warn_ms = self.exp * 1000 - self.app.settings.auth.token_expiring.as_millis() as i64;
        Instant::now() + Duration::from_millis(warn_ms.saturating_sub(now_millis()).max(0) as u64)
    }

    async fn run<S>(
        &mut self,
        ws: &mut WebSocketStream<S>,
        mut timer: Pin<&mut Sleep>,
        joined: &mut crate::realtime::Joined,
    ) -> Ending
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let users = std::mem::take(&mut joined.users);
        let recovered = joined.recovered;
        let inbox = &joined.inbox;
        // Serialized at once, so neither the presence list nor the frame stays in this future.
        let hello = ServerFrame::AuthOk {
            user: &self.user,
            expires_at: self.exp,
            users,
            recovered,
        }
        .to_json();
        // Boxed, like every write of this loop: a write's future (its timers and buffers) would
        // otherwise be part of every idle socket's resident state.
        if let Err(failed) = Box::pin(self.write(ws, hello)).await {
            return failed.into();
        }
        // One timer for every deadline of the socket (next ping, token warning, token expiry): one
        // timer entry per socket instead of three, and less state in every idle socket's future.
        let beat = self.app.settings.limits.heartbeat;
        let mut timers = Timers {
            ping_at: Instant::now() + beat,
            warn_at: Some(self.warning_time()),
            expire_at: self.token_deadline(),
        };
        timer.as_mut().reset(timers.next());

        loop {
            tokio::select! {
                biased;
                _ = timer.as_mut() => {
                    let now = Instant::now();
                    if now >= timers.expire_at {
                        return CloseReason::TokenExpired.into();
                    }
                    if timers.warn_at.is_some_and(|at| now >= at) {
                        // One warning per token; a refresh re-arms it.
                        timers.warn_at = None;
                        let expires_in = (self.exp - crate::clock::unix_now()).max(0);
                        let frame = ServerFrame::TokenExpiring { expires_in };
                        if let Err(failed) = Box::pin(self.write(ws, frame.to_json())).await {
                            return failed.into();
                        }
                    }
                    if now >= timers.ping_at {
                        if self.last_heard.elapsed() >= beat * 2 {
                            return CloseReason::HeartbeatTimeout.into();
                        }
                        timers.ping_at = now + beat;
                        let mut ping = Vec::with_capacity(2);
                        encode_frame(&mut ping, OPCODE_PING, &[]);
                        if let Err(failed) = Box::pin(self.write_raw(ws, ping)).await {
                            return failed.into();
                        }
                    }
                    timer.as_mut().reset(timers.next());
                }
                _ = inbox.ready() => match inbox.take() {
                    Ok(frames) => {
                        // Boxed (here and for frames below): the futures of these rare-per-socket
                        // paths would otherwise be part of every idle socket's resident state.
                        if let Err(failed) = Box::pin(self.write_queued(ws, frames)).await {
                            return failed.into();
                        }
                    }
                    Err(Closing::Overflowed) => return CloseReason::SlowConsumer.into(),
                    Err(Closing::Kicked(kick)) => return CloseReason::from(kick).into(),
                    Err(Closing::Shutdown) => return CloseReason::ServerShutdown.into(),
                },
                frame = ws.next() => {
                    self.last_heard = Instant::now();
                    let text = match frame {
                        None | Some(Ok(Message::Close(_))) => return Ending::ByPeer,
                        Some(Err(err)) => return read_error(err),
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) if self.control.spend() => continue,
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                            return CloseReason::RateLimited.into()
                        }
                        Some(Ok(Message::Frame(_))) => continue,
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
                        Err(ending) => return ending,
                    }
                }
            }
        }
    }

    /// Handles one data frame (`None` for binary). `Ok(Some(deadline))` after a refresh;
    /// `Err(ending)` ends the session.
    async fn handle_frame<S>(
        &mut self,
        ws: &mut WebSocketStream<S>,
        text: Option<Utf8Bytes>,
    ) -> Result<Option<Instant>, Ending>
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
            MessageVerdict::Flood => return Err(CloseReason::RateLimited.into()),
        }
        let frame = text.and_then(|t| ClientFrame::from_json(&t).ok());
        let Some(frame) = frame else {
            return self
                .reply_error(
                    ws,
                    "bad_request",
                    "frames must be JSON text: message, subscribe, unsubscribe, typing, direct or refresh",
                )
                .await;
        };
        match frame {
            ClientFrame::Auth { .. } => {
                self.reply_error(ws, "bad_request", "this socket is already authenticated")
                    .await
            }
            ClientFrame::Message { room, text } => {
                let room = room.as_deref().unwrap_or(LOBBY);
                if let Err((code, message)) = check_text(&text) {
                    return self.refuse(ws, code, message, Some(room), None).await;
                }
                match self.app.engine.publish(self.conn, room, &text).await {
                    Ok(published) => {
                        self.app.metrics.messages_received.inc();
                        self.app.history.record(published.entry);
                        Ok(None)
                    }
                    Err(PublishError::NotSubscribed) => self.not_subscribed(ws, room).await,
                    Err(PublishError::Unavailable) => self.unavailable(ws, Some(room), None).await,
                }
            }
            ClientFrame::Subscribe { room, since } => {
                self.subscribe(ws, &room, since.as_deref()).await
            }
            ClientFrame::Unsubscribe { room } => {
                self.app.engine.unsubscribe(self.conn, &room);
                Ok(None)
            }
            ClientFrame::Typing { room } => {
                match self
                    .app
                    .engine
                    .typing(self.conn, &room, Instant::now())
                    .await
                {
                    Ok(()) => Ok(None),
                    Err(PublishError::NotSubscribed) => self.not_subscribed(ws, &room).await,
                    Err(PublishError::Unavailable) => self.unavailable(ws, Some(&room), None).await,
                }
            }
            ClientFrame::Direct { to, text } => {
                if let Err((code, message)) = check_text(&text) {
                    return self.refuse(ws, code, message, None, Some(&to)).await;
                }
                // A user online here is known without the store (live chat goes on in an outage).
                let to_user = if self.app.hub.is_online(&to) {
                    to.clone()
                } else {
                    match crate::rooms::resolve_user(self.app, &to).await {
                        Ok(user) => user,
                        Err(err) => {
                            let (code, message) = room_refusal(err);
                            return self.refuse(ws, code, message, None, Some(&to)).await;
                        }
                    }
                };
                let published = match self.app.engine.direct(&self.user, &to_user, &text).await {
                    Ok(published) => published,
                    Err(_) => return self.unavailable(ws, None, Some(&to)).await,
                };
                self.app.metrics.messages_received.inc();
                self.app.history.record(published.entry);
                Ok(None)
            }
            ClientFrame::Refresh { token } => self.refresh(ws, &token).await,
        }
    }

    /// `subscribe`: the access check (the store), then the hub. A removal or deletion between the
    /// two makes the hub refuse (`Stale`), and the check runs again.
    async fn subscribe<S>(
        &mut self,
        ws: &mut WebSocketStream<S>,
        room: &str,
        since: Option<&str>,
    ) -> Result<Option<Instant>, Ending>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        for _ in 0..3 {
            let epoch = self.app.hub.acl_epoch();
            if let Err(err) = crate::rooms::may_subscribe(self.app, &self.user, room).await {
                let (code, message) = room_refusal(err);
                return self.refuse(ws, code, message, Some(room), None).await;
            }
            match self
                .app
                .engine
                .subscribe(self.conn, room, since, epoch)
                .await
            {
                Ok(()) | Err(SubscribeError::Gone) => return Ok(None),
                Err(SubscribeError::TooManyRooms) => {
                    let message = "this socket is subscribed to as many rooms as it may be";
                    return self
                        .refuse(ws, "too_many_rooms", message, Some(room), None)
                        .await;
                }
                Err(SubscribeError::Stale) => continue,
                Err(SubscribeError::Unavailable) => {
                    return self.unavailable(ws, Some(room), None).await
                }
            }
        }
        let message = "the room's members are changing, retry";
        self.refuse(ws, "unavailable", message, Some(room), None)
            .await
    }

    /// `refresh`: swaps the socket's token for a fresher one of the same user.
    async fn refresh<S>(
        &mut self,
        ws: &mut WebSocketStream<S>,
        token: &str,
    ) -> Result<Option<Instant>, Ending>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let claims = match check_token(self.app, token, &self.user).await {
            Ok(claims) => claims,
            // The store could not check the new token; the current one is still good,
            // so the socket stays, and the client may try again.
            Err(CloseReason::StoreUnavailable | CloseReason::Internal) => {
                return self
                    .reply_error(ws, "store_unavailable", "could not check the token, retry")
                    .await
            }
            Err(reason) => return Err(reason.into()),
        };
        self.app.hub.set_token(self.conn, claims.jti, claims.sid);
        self.exp = claims.exp;
        let reply = ServerFrame::Refreshed {
            expires_at: self.exp,
        };
        self.write(ws, reply.to_json()).await?;
        tracing::debug!("token refreshed in band");
        Ok(Some(self.token_deadline()))
    }

    /// The cluster could not be reached: nothing was published.
    async fn unavailable<S>(
        &self,
        ws: &mut WebSocketStream<S>,
        room: Option<&str>,
        to: Option<&str>,
    ) -> Result<Option<Instant>, Ending>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let message = "the cluster is unavailable; nothing was sent, retry";
        self.refuse(ws, "unavailable", message, room, to).await
    }

    async fn not_subscribed<S>(
        &self,
        ws: &mut WebSocketStream<S>,
        room: &str,
    ) -> Result<Option<Instant>, Ending>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let message = "this socket is not subscribed to the room";
        self.refuse(ws, "not_subscribed", message, Some(room), None)
            .await
    }

    /// An error frame naming the room or user of the refused request.
    async fn refuse<S>(
        &self,
        ws: &mut WebSocketStream<S>,
        code: &str,
        message: &str,
        room: Option<&str>,
        to: Option<&str>,
    ) -> Result<Option<Instant>, Ending>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let frame = ServerFrame::Error {
            code,
            message,
            room,
            to,
        };
        self.write(ws, frame.to_json()).await?;
        Ok(None)
    }

    async fn reply_error<S>(
        &self,
        ws: &mut WebSocketStream<S>,
        code: &str,
        message: &str,
    ) -> Result<Option<Instant>, Ending>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        self.refuse(ws, code, message, None, None).await
    }

    /// Sends one text frame.
    async fn write<S>(&self, ws: &mut WebSocketStream<S>, json: String) -> Result<(), WriteFailed>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut out = Vec::with_capacity(json.len() + 10);
        encode_frame(&mut out, OPCODE_TEXT, json.as_bytes());
        drop(json);
        self.write_raw(ws, out).await?;
        self.app.metrics.frames_delivered.inc();
        Ok(())
    }

    /// Writes the frames the inbox held, up to `WRITE_BATCH` per write.
    async fn write_queued<S>(
        &self,
        ws: &mut WebSocketStream<S>,
        mut frames: Vec<Utf8Bytes>,
    ) -> Result<(), WriteFailed>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        while !frames.is_empty() {
            let batch = frames.len().min(WRITE_BATCH);
            let size: usize = frames.iter().take(batch).map(|f| f.len() + 10).sum();
            let mut out = Vec::with_capacity(size);
            for frame in frames.drain(..batch) {
                encode_frame(&mut out, OPCODE_TEXT, frame.as_bytes());
            }
            self.write_raw(ws, out).await?;
            // One atomic add per write, however many frames it carried.
            self.app.metrics.frames_delivered.inc_by(batch as u64);
        }
        Ok(())
    }

    /// Writes encoded frames straight to the connection, giving up after the write timeout (a peer
    /// that does not read). tungstenite's own queue (pongs, close replies) is flushed first, so whole
    /// frames never interleave; tungstenite keeps whatever of its queue it could not write and
    /// finishes it before anything else it writes. The buffer lives only for this write:
    /// tungstenite's write buffer keeps its largest size forever, which made every socket keep its
    /// `auth_ok` (and with it the whole presence list) resident.
    async fn write_raw<S>(
        &self,
        ws: &mut WebSocketStream<S>,
        out: Vec<u8>,
    ) -> Result<(), WriteFailed>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let deadline = Instant::now() + self.write_timeout;
        match timeout_at(deadline, ws.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(WriteFailed::Broken),
            Err(_) => return Err(WriteFailed::Slow),
        }
        write_frames(ws.get_mut(), &out, deadline).await
    }
}
