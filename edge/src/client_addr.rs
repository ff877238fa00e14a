//! Phase 1, the client address: who the viewer is, for geo, token address binding, viewer
//! counting and logs.
//!
//! Default: the socket peer. Only when the peer is one of `[access] trusted_proxies` (a load
//! balancer or CDN in front of the edge) does the edge read the forwarding headers: the
//! `Forwarded` header's `for=` values (RFC 7239 §5.2) if there is one, else
//! `X-Forwarded-For`. It walks the chain from the right (the hop nearest the edge) past every
//! trusted proxy and takes the first address that is not one; if every hop is trusted, the
//! leftmost. A value it cannot read (`unknown`, an obfuscated name) stops the walk at the
//! proxy that wrote it. Headers from any other peer are ignored: a viewer cannot pick their
//! own country by sending `X-Forwarded-For`.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;
use ipnet::IpNet;

/// Most forwarding hops read (a longer chain is cut from the left).
const MAX_HOPS: usize = 32;

/// An IPv4 address reached over IPv6 (`::ffff:a.b.c.d`) as the IPv4 address.
pub(crate) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// One `for=` value or `X-Forwarded-For` entry: `192.0.2.1`, `"[2001:db8::1]:4711"`,
/// `192.0.2.1:80`; `None` for `unknown`, obfuscated names and junk.
fn hop_address(v: &str) -> Option<IpAddr> {
    let v = v.trim().trim_matches('"');
    if let Some(rest) = v.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok().map(canonical);
    }
    v.parse::<IpAddr>()
        .ok()
        .or_else(|| v.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .map(canonical)
}

/// The forwarding chain, left (the original client) to right (the hop nearest the edge);
/// `None` entries could not be read.
fn chain(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let forwarded: Vec<&str> = headers
        .get_all(http::header::FORWARDED)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let mut hops = Vec::new();
    if !forwarded.is_empty() {
        for element in forwarded.iter().flat_map(|v| v.split(',')) {
            let for_value = element.split(';').find_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                k.trim().eq_ignore_ascii_case("for").then_some(v)
            });
            hops.push(for_value.and_then(hop_address));
        }
    } else {
        for v in headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
        {
            hops.extend(v.split(',').map(hop_address));
        }
    }
    let excess = hops.len().saturating_sub(MAX_HOPS);
    hops.drain(..excess);
    hops
}

/// The viewer's address: `peer`, or what trusted proxies say (module docs).
pub(crate) fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = canonical(peer);
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if trusted.is_empty() || !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    for hop in chain(headers).into_iter().rev() {
        match hop {
            Some(ip) => {
                client = ip;
                if !is_trusted(&ip) {
                    break;
                }
            }
            None => break,
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn nets(s: &[&str]) -> Vec<IpNet> {
        s.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn only_trusted_peers_forward() {
        let trusted = nets(&["10.0.0.0/8", "2001:db8:ff::/48"]);
        // (peer, headers, expected)
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case<'_>] = &[
            // No headers: the peer.
            ("10.0.0.1", &[], "10.0.0.1"),
            ("203.0.113.5", &[], "203.0.113.5"),
            // An untrusted peer's headers are ignored.
            (
                "203.0.113.5",
                &[("x-forwarded-for", "81.2.69.142")],
                "203.0.113.5",
            ),
            // A trusted peer: the rightmost untrusted hop.
            (
                "10.0.0.1",
                &[("x-forwarded-for", "81.2.69.142")],
                "81.2.69.142",
            ),
            (
                "10.0.0.1",
                &[("x-forwarded-for", "1.1.1.1, 81.2.69.142, 10.9.9.9")],
                "81.2.69.142",
            ),
            // Several header lines are one list.
            (
                "10.0.0.1",
                &[
                    ("x-forwarded-for", "1.1.1.1"),
                    ("x-forwarded-for", "10.2.2.2"),
                ],
                "1.1.1.1",
            ),
            // All trusted: the leftmost.
            (
                "10.0.0.1",
                &[("x-forwarded-for", "10.1.1.1, 10.2.2.2")],
                "10.1.1.1",
            ),
            // Junk stops at the proxy that wrote it.
            (
                "10.0.0.1",
                &[("x-forwarded-for", "1.1.1.1, junk")],
                "10.0.0.1",
            ),
            // Forwarded wins over X-Forwarded-For; IPv6 in brackets with a port.
            (
                "10.0.0.1",
                &[
                    ("forwarded", "for=\"[2001:218::1]:4711\";proto=https"),
                    ("x-forwarded-for", "81.2.69.142"),
                ],
                "2001:218::1",
            ),
            (
                "10.0.0.1",
                &[("forwarded", "for=89.160.20.112, for=10.3.3.3;by=10.0.0.1")],
                "89.160.20.112",
            ),
            ("10.0.0.1", &[("forwarded", "for=unknown")], "10.0.0.1"),
            (
                "10.0.0.1",
                &[("forwarded", "FOR=192.0.2.1:80")],
                "192.0.2.1",
            ),
            // An IPv6 trusted peer; an IPv4-mapped peer counts as IPv4.
            (
                "2001:db8:ff::1",
                &[("x-forwarded-for", "2a02:cf40::1")],
                "2a02:cf40::1",
            ),
            (
                "::ffff:10.0.0.1",
                &[("x-forwarded-for", "81.2.69.142")],
                "81.2.69.142",
            ),
        ];
        for (peer, hs, want) in cases {
            let mut headers = HeaderMap::new();
            for (k, v) in *hs {
                headers.append(*k, HeaderValue::from_str(v).unwrap());
            }
            let got = client_ip(peer.parse().unwrap(), &headers, &trusted);
            assert_eq!(got, want.parse::<IpAddr>().unwrap(), "{peer} {hs:?}");
        }
        // No trusted proxies: never the headers.
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static("81.2.69.142"));
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(client_ip(peer, &headers, &[]), peer);
    }
}
