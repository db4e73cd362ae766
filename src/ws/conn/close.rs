//! The close handshake (RFC 6455 section 7): echo the peer's close, or send ours and wait briefly for
//! its echo, reading (not leaving unread) what arrives meanwhile; then the server closes TCP first.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::Ending;

/// How long a closing socket waits for each step of the close handshake.
pub(crate) const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// Bytes a closing socket will read and discard while lingering.
const CLOSE_DRAIN_LIMIT: usize = 1 << 20;
/// Frames a closing socket will read while waiting for the close echo: a peer that floods instead
/// of answering gets no more of the server's time than one that never answers.
const CLOSE_FRAME_LIMIT: usize = 64;

/// Ends the close handshake and the connection (RFC 6455 section 7.1.1: the server closes TCP first).
///
/// Peer-initiated: echo its close frame and close at once. Server-initiated: send our close frame,
/// wait (briefly) for the peer's echo, then close. While waiting, input is read, not left unread:
/// closing a TCP socket with unread input makes the kernel answer with RST, which can destroy our
/// close frame before the peer reads it (the 1009 case: the rest of the oversized frame is still
/// unread). Cut: nothing more is written, not even tungstenite's queue.
pub(crate) async fn close<S>(ws: &mut WebSocketStream<S>, ending: Ending)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match ending {
        // tungstenite has queued the echo of the peer's close; `close` would try to start a second
        // handshake and fail without sending it.
        Ending::ByPeer => {
            let _ = timeout(CLOSE_LINGER, ws.flush()).await;
        }
        Ending::Close(reason) => {
            let _ = timeout(CLOSE_LINGER, ws.close(Some(reason.frame()))).await;
            let _ = timeout(CLOSE_LINGER, await_close_echo(ws)).await;
        }
        Ending::Cut(_) => {}
    }
    let _ = timeout(CLOSE_LINGER, ws.get_mut().shutdown()).await;
}

/// Reads until the peer echoes our close frame or goes away. Input that no longer parses as
/// frames (what follows an oversized frame) is read and discarded, up to a limit.
async fn await_close_echo<S>(ws: &mut WebSocketStream<S>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    for _ in 0..CLOSE_FRAME_LIMIT {
        match ws.next().await {
            Some(Ok(Message::Close(_))) => return,
            Some(Ok(_)) => continue,
            // `None` also when the stream ended on a read error (an oversized frame, a protocol
            // violation): tokio-tungstenite then reads no more, but the connection still holds the
            // rest of the offending input, which must be drained below, not left to cause a RST.
            // At a real end of input the raw read returns 0 at once.
            None | Some(Err(_)) => break,
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
