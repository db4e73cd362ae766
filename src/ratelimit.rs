//! Rate limits: per-IP limiters for the REST routes and upgrades, per-socket limiters for chat messages.
//!
//! All are governor GCRA limiters. Keyed limiters grow one entry per client IP, so a background task
//! (see `startup`) calls `retain_recent` to forget IPs whose state has fully replenished.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::RateLimits;
use crate::error::ApiError;

/// The key a client is limited under: its IPv4 address, or its IPv6 /64 (one subscriber's allocation:
/// keying on whole IPv6 addresses would give every host 2^64 fresh budgets). IPv4-mapped IPv6
/// addresses count as the IPv4 address.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mut segments = v6.segments();
            segments[4..].fill(0);
            IpAddr::V6(segments.into())
        }
        v4 => v4,
    }
}

/// Reverse proxies whose `X-Forwarded-For` is believed (`WSGATE_TRUSTED_PROXIES`): behind a TLS
/// proxy every TCP peer is the proxy, and per-IP limits would lump all clients together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl TrustedProxies {
    /// Parses `IP` or `IP/PREFIX` entries.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        let mut nets = Vec::new();
        for entry in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
            let (ip, prefix) = match entry.split_once('/') {
                Some((ip, prefix)) => (ip, Some(prefix)),
                None => (entry, None),
            };
            let ip: IpAddr = ip
                .parse()
                .map_err(|_| format!("`{entry}` is not an IP address or IP/prefix"))?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let prefix = match prefix {
                None => max,
                Some(p) => p
                    .parse::<u8>()
                    .ok()
                    .filter(|p| *p <= max)
                    .ok_or_else(|| format!("`{entry}` has an invalid prefix length"))?,
            };
            nets.push((ip, prefix));
        }
        Ok(Self(nets))
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ip` is one of the trusted proxies.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|(net, prefix)| match (net, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(*prefix)).unwrap_or(0);
                u32::from(*net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(*prefix)).unwrap_or(0);
                u128::from(*net) & mask == u128::from(ip) & mask
            }
            _ => false,
        })
    }

    /// The client behind a request from `peer`: when `peer` is a trusted proxy, the right-most
    /// `X-Forwarded-For` entry that is not a trusted proxy; `peer` otherwise (anyone can write the
    /// header). `lines` are the header's field lines in the order received: a client may send its own
    /// line before the one its proxy appends, so every line counts, combined into one comma list in
    /// order (RFC 9110 section 5.3) and read from the right. An entry that is not an address stops
    /// the walk at the last trusted hop.
    pub fn client<'a, L>(&self, peer: IpAddr, lines: L) -> IpAddr
    where
        L: IntoIterator<Item = &'a str>,
        L::IntoIter: DoubleEndedIterator,
    {
        if !self.contains(peer) {
            return peer;
        }
        let mut client = peer;
        for hop in lines.into_iter().rev().flat_map(|line| line.rsplit(',')) {
            match hop.trim().parse::<IpAddr>() {
                Ok(ip) if self.contains(ip) => client = ip,
                Ok(ip) => return ip,
                Err(_) => return client,
            }
        }
        client
    }
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
    pub fn check(&self, ip: IpAddr) -> Result<(), ApiError> {
        let Some(limiter) = &self.0 else {
            return Ok(());
        };
        limiter
            .check_key(&client_key(ip))
            .map_err(|not_until| ApiError::RateLimited {
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
    pub fn new(rate: &RateLimits) -> Self {
        Self {
            register: IpLimit::per_minute(rate.register_per_min),
            login: IpLimit::per_minute(rate.login_per_min),
            refresh: IpLimit::per_minute(rate.refresh_per_min),
            ticket: IpLimit::per_minute(rate.ticket_per_min),
            upgrade: IpLimit::per_minute(rate.upgrade_per_min),
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
            Err(ApiError::RateLimited { retry_after }) => {
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
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(other));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(client_key(mapped), "10.0.0.1".parse::<IpAddr>().unwrap());
        let limit = IpLimit::per_minute(Some(1));
        assert!(limit.check(a).is_ok());
        assert!(limit.check(b).is_err());
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxies = TrustedProxies::parse(&["10.0.0.0/8".into(), "2001:db8::1".into()]).unwrap();
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        let stranger: IpAddr = "192.0.2.7".parse().unwrap();
        let xff = ["198.51.100.1, 203.0.113.9, 10.9.9.9"];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // The right-most hop that is not a proxy: what the (trusted) proxy chain saw.
        assert_eq!(proxies.client(proxy, xff), ip("203.0.113.9"));
        assert_eq!(proxies.client(stranger, xff), stranger);
        assert_eq!(proxies.client(proxy, []), proxy);
        assert_eq!(proxies.client(proxy, ["garbage"]), proxy);
        assert_eq!(
            proxies.client(proxy, ["198.51.100.1, , 10.0.0.9"]),
            ip("10.0.0.9")
        );
        // A client's own line, sent before the line its proxy appends, names nobody.
        assert_eq!(
            proxies.client(proxy, ["198.51.100.66", "203.0.113.9"]),
            ip("203.0.113.9")
        );
        assert_eq!(
            proxies.client(
                proxy,
                ["198.51.100.66", "203.0.113.9, 10.1.1.1", "10.2.2.2"]
            ),
            ip("203.0.113.9")
        );
        assert!(proxies.contains("2001:db8::1".parse().unwrap()));
        assert!(!proxies.contains("2001:db8::2".parse().unwrap()));
        assert!(TrustedProxies::parse(&["nope".into()]).is_err());
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(TrustedProxies::parse(&[]).unwrap().is_empty());
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
