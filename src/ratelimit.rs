//! Rate limits: per-IP limiters for the REST routes and upgrades, per-socket limiters for chat
//! messages and control frames.
//!
//! All are governor GCRA limiters. Keyed limiters grow one entry per client IP, so a background task
//! (see `startup`) calls `retain_recent` to forget IPs whose state has fully replenished.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::Limits;
use crate::edge::client_key;

/// A request over its per-IP limit, and when the next one will be allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("rate limited for {retry_after:?}")]
pub struct Limited {
    /// How long until the limit lets the next request through.
    pub retry_after: Duration,
}

/// One per-IP limit, or none when configured to 0.
pub struct IpLimit(Option<DefaultKeyedRateLimiter<IpAddr>>);

impl IpLimit {
    fn per_minute(n: Option<u32>) -> Self {
        Self(
            n.and_then(NonZeroU32::new)
                .map(|n| RateLimiter::keyed(Quota::per_minute(n))),
        )
    }

    /// Takes one cell for `ip`, or says how long to wait.
    pub fn check(&self, ip: IpAddr) -> Result<(), Limited> {
        let Some(limiter) = &self.0 else {
            return Ok(());
        };
        limiter
            .check_key(&client_key(ip))
            .map_err(|not_until| Limited {
                retry_after: not_until.wait_time_from(DefaultClock::default().now()),
            })
    }

    fn forget_idle(&self) {
        if let Some(limiter) = &self.0 {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

/// The per-IP limits of the HTTP side.
pub struct IpLimits {
    /// `POST /api/register`.
    pub register: IpLimit,
    /// `POST /api/login`.
    pub login: IpLimit,
    /// `POST /api/token/refresh`.
    pub refresh: IpLimit,
    /// `POST /api/ws-ticket`.
    pub ticket: IpLimit,
    /// `GET /ws`.
    pub upgrade: IpLimit,
}

impl IpLimits {
    /// Builds the limiters from the configuration.
    pub fn new(limits: &Limits) -> Self {
        Self {
            register: IpLimit::per_minute(limits.register_per_min.get()),
            login: IpLimit::per_minute(limits.login_per_min.get()),
            refresh: IpLimit::per_minute(limits.refresh_per_min.get()),
            ticket: IpLimit::per_minute(limits.ticket_per_min.get()),
            upgrade: IpLimit::per_minute(limits.upgrade_per_min.get()),
        }
    }

    /// Drops the state of IPs that have been quiet long enough to be back at a full burst.
    pub fn forget_idle(&self) {
        for limit in [
            &self.register,
            &self.login,
            &self.refresh,
            &self.ticket,
            &self.upgrade,
        ] {
            limit.forget_idle();
        }
    }
}

/// Rejections within this window count towards a flood.
const FLOOD_WINDOW: Duration = Duration::from_secs(10);
/// Rejected messages within `FLOOD_WINDOW` after which the socket is closed.
pub const FLOOD_STRIKES: u32 = 20;

/// What the per-socket limiter decided about one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageVerdict {
    /// Deliver it.
    Allowed,
    /// Refuse it with an `error` frame.
    Limited,
    /// Refused too often: close the socket (4429).
    Flood,
}

/// A socket's message limiter plus its flood detector.
pub struct MessageLimiter {
    limiter: Option<DefaultDirectRateLimiter>,
    strikes: u32,
    window_start: tokio::time::Instant,
}

impl MessageLimiter {
    /// `per_sec` messages per second, also the burst; `None` means unlimited.
    pub fn new(per_sec: Option<u32>) -> Self {
        Self {
            limiter: per_sec
                .and_then(NonZeroU32::new)
                .map(|n| RateLimiter::direct(Quota::per_second(n))),
            strikes: 0,
            window_start: tokio::time::Instant::now(),
        }
    }

    /// Decides about one incoming message.
    pub fn check(&mut self) -> MessageVerdict {
        let Some(limiter) = &self.limiter else {
            return MessageVerdict::Allowed;
        };
        if limiter.check().is_ok() {
            return MessageVerdict::Allowed;
        }
        let now = tokio::time::Instant::now();
        if now.duration_since(self.window_start) > FLOOD_WINDOW {
            self.window_start = now;
            self.strikes = 0;
        }
        self.strikes += 1;
        if self.strikes >= FLOOD_STRIKES {
            MessageVerdict::Flood
        } else {
            MessageVerdict::Limited
        }
    }
}

/// Control frames (pings and pongs) a socket may send per `CONTROL_WINDOW`. A browser sends one
/// pong per heartbeat interval (30 s by default) and never pings on its own; a client library's
/// keep-alive pings about once a second. Answering a ping costs the server a frame parse and a pong
/// write, so a flood must be cut off: one socket sending 700,000 pings/s took more than a core.
pub const CONTROL_FRAMES_PER_WINDOW: u32 = 32;
/// The window of `CONTROL_FRAMES_PER_WINDOW`.
pub const CONTROL_WINDOW: Duration = Duration::from_secs(1);

/// A socket's budget of control frames: a fixed window, small enough (16 bytes) to live in every
/// pending and authenticated socket.
#[derive(Debug)]
pub struct ControlBudget {
    window_start: tokio::time::Instant,
    spent: u32,
}

impl ControlBudget {
    /// A full budget, its window starting now.
    pub fn new() -> Self {
        Self {
            window_start: tokio::time::Instant::now(),
            spent: 0,
        }
    }

    /// Spends one control frame; `false` past the budget (the socket is to be closed).
    #[must_use]
    pub fn spend(&mut self) -> bool {
        let now = tokio::time::Instant::now();
        if now.duration_since(self.window_start) >= CONTROL_WINDOW {
            self.window_start = now;
            self.spent = 0;
        }
        self.spent = self.spent.saturating_add(1);
        self.spent <= CONTROL_FRAMES_PER_WINDOW
    }
}

impl Default for ControlBudget {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_limit_refuses_past_the_burst_with_a_retry_after() {
        let limit = IpLimit::per_minute(Some(2));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(limit.check(ip).is_ok());
        assert!(limit.check(ip).is_ok());
        match limit.check(ip) {
            Err(Limited { retry_after }) => {
                assert!(retry_after > Duration::from_secs(20), "{retry_after:?}")
            }
            other => panic!("expected rate_limited, got {other:?}"),
        }
        assert!(limit.check("10.0.0.2".parse().unwrap()).is_ok());
        assert!(IpLimit::per_minute(None).check(ip).is_ok());
    }

    #[test]
    fn ipv6_clients_are_limited_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let limit = IpLimit::per_minute(Some(1));
        assert!(limit.check(a).is_ok());
        assert!(limit.check(b).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn control_frames_have_a_budget_per_window() {
        let mut budget = ControlBudget::new();
        for _ in 0..CONTROL_FRAMES_PER_WINDOW {
            assert!(budget.spend());
        }
        assert!(!budget.spend(), "one past the budget");
        tokio::time::advance(CONTROL_WINDOW).await;
        assert!(budget.spend(), "a new window");
        // A pong every heartbeat never comes near it.
        let mut polite = ControlBudget::new();
        for _ in 0..1000 {
            tokio::time::advance(Duration::from_millis(500)).await;
            assert!(polite.spend());
        }
    }

    #[test]
    fn sustained_flood_escalates_to_close() {
        let mut limiter = MessageLimiter::new(Some(2));
        assert_eq!(limiter.check(), MessageVerdict::Allowed);
        assert_eq!(limiter.check(), MessageVerdict::Allowed);
        for _ in 1..FLOOD_STRIKES {
            assert_eq!(limiter.check(), MessageVerdict::Limited);
        }
        assert_eq!(limiter.check(), MessageVerdict::Flood);
        let mut unlimited = MessageLimiter::new(None);
        assert!((0..1000).all(|_| unlimited.check() == MessageVerdict::Allowed));
    }
}
