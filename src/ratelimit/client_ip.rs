//! Whose request is it (SPEC 12): the TCP peer's address, or, only when
//! `trust_proxy_headers` is on and the peer is one of `trusted_proxy_cidrs`, the address a
//! proxy wrote in `X-Forwarded-For` (else `X-Real-IP`). Pure: the middleware hands in the
//! peer and the header values.
//!
//! `X-Forwarded-For` is read from the right, the end our own proxies wrote: each trusted
//! proxy in the chain is skipped, and the first address that is not one is the client. Olla
//! takes the leftmost entry, which the client itself writes: behind a proxy that appends
//! (nginx's `$proxy_add_x_forwarded_for`), a client could name a new address per request and
//! never meet its limit. A value that is not an address ends the walk, so garbage is never
//! a key of the limiter's table.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

/// Which peers' forwarding headers are believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    enabled: bool,
    cidrs: Vec<IpNet>,
}

impl TrustedProxies {
    pub fn new(enabled: bool, cidrs: Vec<IpNet>) -> Self {
        TrustedProxies { enabled, cidrs }
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.cidrs.iter().any(|net| net.contains(&ip))
    }

    /// The client's address. `forwarded_for` holds every `X-Forwarded-For` line in the
    /// order received; `real_ip` the first `X-Real-IP`.
    pub fn client(&self, peer: IpAddr, forwarded_for: &[&str], real_ip: Option<&str>) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.enabled || !self.trusts(peer) {
            return peer;
        }
        let hops: Vec<&str> = forwarded_for
            .iter()
            .flat_map(|line| line.split(','))
            .map(str::trim)
            .filter(|hop| !hop.is_empty())
            .collect();
        if hops.is_empty() {
            return real_ip.and_then(parse).unwrap_or(peer);
        }
        // Right to left: the last hop believed so far (first the peer itself).
        let mut client = peer;
        for hop in hops.iter().rev() {
            let Some(ip) = parse(hop) else { break };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        client
    }
}

/// An address as proxies write it: `1.2.3.4`, `2001:db8::1`, or with a port
/// (`1.2.3.4:5678`, `[2001:db8::1]:5678`); IPv4-mapped IPv6 is read as IPv4.
fn parse(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    text.parse::<IpAddr>()
        .or_else(|_| text.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn proxies(enabled: bool, cidrs: &[&str]) -> TrustedProxies {
        TrustedProxies::new(enabled, cidrs.iter().map(|c| c.parse().unwrap()).collect())
    }

    const LOCAL: &[&str] = &["127.0.0.0/8", "10.0.0.0/8", "::1/128"];

    #[test]
    fn headers_are_ignored_unless_trust_is_on() {
        let p = proxies(false, LOCAL);
        assert_eq!(
            p.client(ip("127.0.0.1"), &["203.0.113.7"], Some("203.0.113.8")),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn headers_are_ignored_from_a_peer_outside_the_trusted_networks() {
        let p = proxies(true, &["10.0.0.0/8"]);
        assert_eq!(
            p.client(ip("127.0.0.1"), &["203.0.113.7"], Some("203.0.113.8")),
            ip("127.0.0.1")
        );
        assert_eq!(
            p.client(ip("198.51.100.1"), &["203.0.113.7"], None),
            ip("198.51.100.1")
        );
    }

    #[test]
    fn a_trusted_peer_names_the_client() {
        let p = proxies(true, LOCAL);
        assert_eq!(
            p.client(ip("127.0.0.1"), &["203.0.113.7"], None),
            ip("203.0.113.7")
        );
        assert_eq!(
            p.client(ip("::1"), &["2001:db8::7"], None),
            ip("2001:db8::7")
        );
        // X-Real-IP when there is no X-Forwarded-For.
        assert_eq!(
            p.client(ip("127.0.0.1"), &[], Some(" 203.0.113.8 ")),
            ip("203.0.113.8")
        );
        assert_eq!(
            p.client(ip("10.1.2.3"), &["[2001:db8::9]:4433"], None),
            ip("2001:db8::9")
        );
    }

    #[test]
    fn the_client_is_the_first_untrusted_hop_from_the_right() {
        let p = proxies(true, LOCAL);
        // The client wrote 6.6.6.6 itself; our proxy appended what it saw.
        assert_eq!(
            p.client(ip("127.0.0.1"), &["6.6.6.6, 203.0.113.7"], None),
            ip("203.0.113.7")
        );
        // Two of our proxies in the chain, across two header lines.
        assert_eq!(
            p.client(ip("127.0.0.1"), &["6.6.6.6, 203.0.113.7", "10.0.0.5"], None),
            ip("203.0.113.7")
        );
        // Every hop trusted (a LAN client through a LAN proxy): the leftmost is the client.
        assert_eq!(
            p.client(ip("127.0.0.1"), &["10.9.9.9, 10.0.0.5"], None),
            ip("10.9.9.9")
        );
    }

    #[test]
    fn garbage_is_never_a_client() {
        let p = proxies(true, LOCAL);
        assert_eq!(
            p.client(ip("127.0.0.1"), &["not-an-ip"], Some("203.0.113.8")),
            ip("127.0.0.1")
        );
        assert_eq!(
            p.client(ip("127.0.0.1"), &["203.0.113.7, unknown, 10.0.0.5"], None),
            ip("10.0.0.5"),
            "the walk stops at the first hop it cannot read"
        );
        assert_eq!(
            p.client(ip("127.0.0.1"), &[" , "], Some("nope")),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn ipv4_mapped_addresses_are_ipv4() {
        let p = proxies(true, &["127.0.0.0/8"]);
        assert_eq!(
            p.client(ip("::ffff:127.0.0.1"), &["::ffff:203.0.113.7"], None),
            ip("203.0.113.7")
        );
        assert_eq!(
            proxies(false, &[]).client(ip("::ffff:198.51.100.1"), &[], None),
            ip("198.51.100.1")
        );
    }
}
