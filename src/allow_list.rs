//! Lists of peer addresses trusted with something: to send a PROXY protocol header
//! (`proxy_allow_from`), or to say who the client is in forwarded headers
//! (`forwarded_allow_ips`).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

/// Addresses and networks, written `127.0.0.1,::1,10.0.0.0/8`, or `*` for every address.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct AllowList {
    /// `*` was given: every peer is trusted.
    any: bool,
    /// The networks trusted (a single address is a /32 or /128 network).
    nets: Vec<IpNet>,
}

/// An element of an address list that is neither an address, a network nor `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BadElement(pub(crate) String);

impl fmt::Display for BadElement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not an IP address, a network (CIDR) or *",
            self.0
        )
    }
}

impl AllowList {
    /// Whether `ip` is trusted; an IPv4 address written as IPv6 (`::ffff:10.0.0.1`, as a
    /// dual-stack socket reports it) counts as the IPv4 address.
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.any || self.nets.iter().any(|net| net.contains(&ip))
    }
}

impl FromStr for AllowList {
    type Err = BadElement;

    /// Reads a comma-separated list (spaces allowed); an empty text trusts nobody.
    fn from_str(text: &str) -> Result<Self, BadElement> {
        let mut list = AllowList::default();
        for element in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            match element {
                "*" => list.any = true,
                _ => list.nets.push(parse_net(element)?),
            }
        }
        Ok(list)
    }
}

fn parse_net(element: &str) -> Result<IpNet, BadElement> {
    let bad = || BadElement(element.to_string());
    match element.contains('/') {
        true => element
            .parse::<IpNet>()
            .map(|net| net.trunc())
            .map_err(|_| bad()),
        false => element
            .parse::<IpAddr>()
            .map(IpNet::from)
            .map_err(|_| bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn lists_trust_their_addresses_and_networks() {
        let list: AllowList = "127.0.0.1, ::1,10.1.0.0/16 ,2001:db8::/32".parse().unwrap();
        let table = [
            ("127.0.0.1", true),
            ("127.0.0.2", false),
            ("::1", true),
            ("10.1.200.3", true),
            ("10.2.0.1", false),
            ("::ffff:10.1.0.9", true),
            ("::ffff:127.0.0.1", true),
            ("2001:db8:1::5", true),
            ("2001:db9::5", false),
        ];
        for (addr, trusted) in table {
            assert_eq!(list.contains(ip(addr)), trusted, "{addr}");
        }
    }

    #[test]
    fn star_trusts_everyone_and_empty_nobody() {
        let star: AllowList = "*".parse().unwrap();
        let empty: AllowList = "".parse().unwrap();
        assert!(star.contains(ip("203.0.113.9")) && star.contains(ip("::2")));
        assert!(!empty.contains(ip("127.0.0.1")));
    }

    #[test]
    fn a_network_with_host_bits_is_truncated() {
        let list: AllowList = "10.1.2.3/8".parse().unwrap();
        assert!(list.contains(ip("10.200.0.1")));
    }

    #[test]
    fn bad_elements_are_named() {
        let cases = [
            "localhost",
            "10.0.0.0/33",
            "1.2.3",
            "127.0.0.1,nope",
            "::1/129",
        ];
        for text in cases {
            let err = text.parse::<AllowList>().unwrap_err();
            assert!(text.contains(&err.0), "{text}: {err}");
        }
    }
}
