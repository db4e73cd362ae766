//! Who the client is: the address a request counts under, behind trusted reverse proxies or not,
//! and the key per-IP limits and caps use.

use std::net::{IpAddr, SocketAddr};

/// The client of a request: the TCP peer, or the address a trusted proxy forwarded for. Inserted
/// into every request by the connection service in `startup`.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_are_keyed_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(other));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(client_key(mapped), "10.0.0.1".parse::<IpAddr>().unwrap());
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
}
