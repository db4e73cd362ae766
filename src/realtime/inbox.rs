//! One socket's inbox: frames the hub addressed to it, bounded, waiting for its writer; and the
//! hub's request to close it (a kick: revocation, reconnect; or the server's shutdown).
//!
//! Why not channels: a tokio `mpsc` allocates a block of slots per channel up front, and a
//! `oneshot` for the kick is one more allocation, both carried by every idle socket; this inbox is
//! one small allocation with an empty `Vec` (no buffer) until frames arrive, and the socket takes
//! the whole batch at once (leaving an empty, unallocated queue behind). The bound is the
//! slow-consumer rule: a push over capacity marks the inbox overflowed, drops what it held, and
//! wakes the socket, which closes 1013. Nothing is ever buffered without limit.

use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use tokio_tungstenite::tungstenite::Utf8Bytes;

/// A socket's queue of serialized frames.
#[derive(Default)]
pub struct Inbox {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    frames: Vec<Utf8Bytes>,
    /// Frames of `frames` that were a replay: they do not count toward the bound.
    replayed: u32,
    overflowed: bool,
    kick: Option<Kick>,
    /// The server is stopping. Apart from `kick`: a kick can come from another node, a shutdown
    /// only from this one.
    shutdown: bool,
    waker: Option<Waker>,
}

/// Why the hub wants a socket closed; `ws` turns it into a close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kick {
    /// Its token or session was revoked (logout, logout-all, refresh-token reuse, session cap).
    Revoked,
    /// The application's backend asked the client to reconnect.
    Reconnect,
}

/// Why the socket must stop taking frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closing {
    /// It fell more than its capacity behind: it is closed as a slow consumer.
    Overflowed,
    /// The hub kicked it.
    Kicked(Kick),
    /// The server is stopping.
    Shutdown,
}

/// The socket fell more than its capacity behind.
pub const OVERFLOWED: Closing = Closing::Overflowed;

impl Inbox {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a frame unless `capacity` frames are already waiting; then the inbox is overflowed
    /// for good (and its frames dropped: the socket is going to close). Returns whether it queued.
    pub fn push(&self, frame: Utf8Bytes, capacity: usize) -> bool {
        self.push_with(frame, Some(capacity))
    }

    /// Queues a frame whatever the queue holds, and without counting it toward the bound: for the
    /// replay of a recovery (and its `subscribed`), which the recovery window bounds instead.
    pub fn push_unbounded(&self, frame: Utf8Bytes) {
        self.push_with(frame, None);
    }

    fn push_with(&self, frame: Utf8Bytes, capacity: Option<usize>) -> bool {
        let (queued, waker) = {
            let mut state = self.state();
            if state.overflowed {
                return false;
            }
            let live = state.frames.len() - state.replayed as usize;
            let queued = capacity.is_none_or(|cap| live < cap);
            if queued {
                state.frames.push(frame);
                if capacity.is_none() {
                    state.replayed += 1;
                }
            } else {
                state.overflowed = true;
                state.frames = Vec::new();
                state.replayed = 0;
            }
            (queued, state.waker.take())
        };
        // Woken outside the lock: the socket's task may run on another worker at once.
        if let Some(waker) = waker {
            waker.wake();
        }
        queued
    }

    /// Asks the socket to close (the first kick wins); whether this was the first.
    pub fn kick(&self, kick: Kick) -> bool {
        let waker = {
            let mut state = self.state();
            if state.kick.is_some() {
                return false;
            }
            state.kick = Some(kick);
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        true
    }

    /// Whether the socket was asked to close (by a kick; a shutdown does not count: no
    /// subscription outlives it anyway).
    pub fn is_kicked(&self) -> bool {
        self.state().kick.is_some()
    }

    /// Asks the socket to close because the server is stopping.
    pub fn shut_down(&self) {
        let waker = {
            let mut state = self.state();
            state.shutdown = true;
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Ready when frames wait, the inbox overflowed, or the socket was kicked or shut down.
    pub fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.state();
        if state.overflowed || state.kick.is_some() || state.shutdown || !state.frames.is_empty() {
            return Poll::Ready(());
        }
        match &state.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => state.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Waits until `poll_ready` is ready.
    pub async fn ready(&self) {
        std::future::poll_fn(|cx| self.poll_ready(cx)).await
    }

    /// Everything queued, oldest first, leaving the queue empty and unallocated; or why the
    /// socket must close instead (a kick goes before any frame still queued).
    pub fn take(&self) -> Result<Vec<Utf8Bytes>, Closing> {
        let mut state = self.state();
        if let Some(kick) = state.kick {
            return Err(Closing::Kicked(kick));
        }
        if state.overflowed {
            return Err(Closing::Overflowed);
        }
        if state.shutdown {
            return Err(Closing::Shutdown);
        }
        state.replayed = 0;
        Ok(std::mem::take(&mut state.frames))
    }

    /// Frames waiting right now.
    pub fn len(&self) -> usize {
        self.state().frames.len()
    }

    /// Whether no frame waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_come_out_in_order_and_the_bound_holds() {
        let inbox = Inbox::default();
        assert!(inbox.push("a".into(), 2));
        assert!(inbox.push("b".into(), 2));
        let taken = inbox.take().unwrap();
        assert_eq!(
            taken.iter().map(|f| f.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert!(inbox.is_empty());
        assert!(inbox.push("c".into(), 2));
        assert!(inbox.push("d".into(), 2));
        assert!(
            !inbox.push("e".into(), 2),
            "third frame over a bound of two"
        );
        assert_eq!(inbox.take(), Err(OVERFLOWED));
        assert!(!inbox.push("f".into(), 2), "overflowed for good");
    }

    #[test]
    fn replay_may_exceed_the_bound() {
        let inbox = Inbox::default();
        for i in 0..10 {
            inbox.push_unbounded(i.to_string().into());
        }
        assert_eq!(inbox.len(), 10);
        // The replay does not count: four live frames still fit behind it.
        for _ in 0..4 {
            assert!(inbox.push("x".into(), 4));
        }
        assert!(!inbox.push("x".into(), 4));
    }

    #[test]
    fn a_kick_goes_first_and_once() {
        let inbox = Inbox::default();
        inbox.push("a".into(), 8);
        assert!(inbox.kick(Kick::Reconnect));
        assert!(!inbox.kick(Kick::Revoked), "the first kick wins");
        assert_eq!(inbox.take(), Err(Closing::Kicked(Kick::Reconnect)));
    }

    /// A task waiting on `inbox` as a socket does (already waiting when this returns), and what
    /// it takes once woken.
    async fn waiting_socket(
        inbox: &std::sync::Arc<Inbox>,
    ) -> tokio::task::JoinHandle<Result<Vec<Utf8Bytes>, Closing>> {
        let inbox = inbox.clone();
        let waiter = tokio::spawn(async move {
            inbox.ready().await;
            inbox.take()
        });
        tokio::task::yield_now().await;
        waiter
    }

    #[tokio::test]
    async fn a_shutdown_wakes_the_socket_and_a_kick_before_it_stands() {
        let inbox = std::sync::Arc::new(Inbox::default());
        let waiter = waiting_socket(&inbox).await;
        inbox.shut_down();
        assert_eq!(waiter.await.unwrap(), Err(Closing::Shutdown));
        let kicked = Inbox::default();
        kicked.kick(Kick::Revoked);
        kicked.shut_down();
        assert_eq!(kicked.take(), Err(Closing::Kicked(Kick::Revoked)));
    }

    #[tokio::test]
    async fn a_push_wakes_the_waiting_socket() {
        let inbox = std::sync::Arc::new(Inbox::default());
        let waiter = waiting_socket(&inbox).await;
        inbox.push("x".into(), 8);
        assert_eq!(waiter.await.unwrap().unwrap().len(), 1);
    }
}
