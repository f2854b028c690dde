//! What proxies say about the client in a request's headers: RFC 7239 `Forwarded` (read with
//! the `rfc7239` crate), else the de facto `X-Forwarded-For`, `X-Forwarded-Proto` and
//! `X-Forwarded-Host`.
//!
//! Each proxy appends the address it received the request from, so the client is the
//! rightmost address that is not a trusted proxy's (nginx's `real_ip_recursive`): what
//! untrusted hops wrote to the left of it may be forged.

use std::net::{IpAddr, SocketAddr};

use super::head::is_host;
use super::RequestHead;

/// The headers through which proxies speak, stripped from requests of peers not trusted.
pub const FORWARDED_HEADERS: [&str; 4] = [
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
];

/// What trusted proxies say about a request; `None` where they say nothing usable.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forwarded {
    /// The client's address (port 0 when none was given).
    pub client: Option<SocketAddr>,
    /// Whether the client used HTTPS.
    pub https: Option<bool>,
    /// The `Host` the client sent, `host[:port]`.
    pub host: Option<String>,
}

/// Reads what the proxies that relayed `head` say, `trusted` telling which addresses are
/// trusted proxies'. `Forwarded` wins when it is present and well formed.
pub fn forwarded(head: &RequestHead, trusted: impl Fn(IpAddr) -> bool) -> Forwarded {
    let value = head.combined_header("forwarded");
    let text = value
        .as_deref()
        .and_then(|value| std::str::from_utf8(value).ok());
    (text.and_then(|text| rfc7239_forwarded(text, &trusted)))
        .unwrap_or_else(|| x_forwarded(head, &trusted))
}

/// The element of the client's hop in a `Forwarded` value; `None` if it is malformed.
fn rfc7239_forwarded(value: &str, trusted: &impl Fn(IpAddr) -> bool) -> Option<Forwarded> {
    let elements: Vec<_> = rfc7239::parse(value).collect::<Result<_, _>>().ok()?;
    let node_ip = |e: &rfc7239::Forwarded<'_>| e.forwarded_for.as_ref()?.ip().copied();
    let hop = client_hop(&elements, node_ip, trusted)?;
    let node = hop.forwarded_for.as_ref();
    let client = node.and_then(|n| Some(SocketAddr::new(*n.ip()?, n.port.unwrap_or(0))));
    Some(Forwarded {
        client,
        https: hop.protocol.and_then(scheme_is_https),
        host: hop.host.and_then(host_value),
    })
}

/// `X-Forwarded-For`'s client, and the nearest proxy's `X-Forwarded-Proto` and `-Host`.
fn x_forwarded(head: &RequestHead, trusted: &impl Fn(IpAddr) -> bool) -> Forwarded {
    let last = |name| {
        let value = head.combined_header(name)?;
        let text = std::str::from_utf8(&value).ok()?;
        text.rsplit(',')
            .next()
            .map(|element| element.trim().to_string())
    };
    let hops: Vec<Option<SocketAddr>> = match head.combined_header("x-forwarded-for") {
        Some(value) => (value.split(|&b| b == b',')).map(parse_node).collect(),
        None => Vec::new(),
    };
    let client = client_hop(&hops, |hop| hop.map(|addr| addr.ip()), trusted);
    Forwarded {
        client: client.copied().flatten(),
        https: last("x-forwarded-proto").and_then(|proto| scheme_is_https(&proto)),
        host: last("x-forwarded-host").and_then(|host| host_value(&host)),
    }
}

/// The hop the nearest trusted proxy heard from outside: the rightmost one whose address is
/// not trusted (or is not known), else the leftmost.
fn client_hop<'h, T>(
    hops: &'h [T],
    ip: impl Fn(&T) -> Option<IpAddr>,
    trusted: &impl Fn(IpAddr) -> bool,
) -> Option<&'h T> {
    let outside = |hop: &&T| !ip(hop).is_some_and(trusted);
    hops.iter().rev().find(outside).or(hops.first())
}

/// An `X-Forwarded-For` element: an address, perhaps with a port (`[v6]:port`, `v4:port`).
fn parse_node(element: &[u8]) -> Option<SocketAddr> {
    let text = std::str::from_utf8(element).ok()?.trim();
    match text.parse::<IpAddr>() {
        Ok(ip) => Some(SocketAddr::new(ip, 0)),
        Err(_) => text.parse().ok(),
    }
}

/// Whether a forwarded protocol is `https` (`http` is not); `None` for anything else.
fn scheme_is_https(proto: &str) -> Option<bool> {
    match proto.trim_matches('"').to_ascii_lowercase().as_str() {
        "https" => Some(true),
        "http" => Some(false),
        _ => None,
    }
}

/// A forwarded host, if it is a valid `host[:port]`.
fn host_value(host: &str) -> Option<String> {
    let host = host.trim_matches('"');
    (!host.is_empty() && is_host(host.as_bytes())).then(|| host.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{parse_head, Limits};
    use bytes::BytesMut;

    fn head(fields: &str) -> RequestHead {
        let raw = format!("GET / HTTP/1.1\r\nHost: backend\r\n{fields}\r\n");
        let mut buf = BytesMut::from(raw.as_bytes());
        parse_head(&mut buf, &Limits::default()).unwrap().unwrap()
    }

    /// 10.0.0.0/8 are the trusted proxies.
    fn read(fields: &str) -> Forwarded {
        forwarded(
            &head(fields),
            |ip| matches!(ip, IpAddr::V4(v4) if v4.octets()[0] == 10),
        )
    }

    fn said(client: Option<&str>, https: Option<bool>, host: Option<&str>) -> Forwarded {
        Forwarded {
            client: client.map(|text| text.parse().unwrap()),
            https,
            host: host.map(str::to_string),
        }
    }

    #[test]
    fn the_client_is_the_rightmost_untrusted_hop() {
        let cases = [
            (
                "X-Forwarded-For: 192.0.2.7\r\n",
                said(Some("192.0.2.7:0"), None, None),
            ),
            (
                "X-Forwarded-For: 6.6.6.6, 192.0.2.7, 10.0.0.2\r\n",
                said(Some("192.0.2.7:0"), None, None),
            ),
            (
                "X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-For: 192.0.2.7,10.1.1.1\r\n",
                said(Some("192.0.2.7:0"), None, None),
            ),
            (
                "X-Forwarded-For: 10.0.0.3, 10.0.0.2\r\n",
                said(Some("10.0.0.3:0"), None, None),
            ),
            (
                "X-Forwarded-For: [2001:db8::7]:4000\r\n",
                said(Some("[2001:db8::7]:4000"), None, None),
            ),
            (
                "X-Forwarded-For: 192.0.2.7, junk, 10.0.0.2\r\n",
                said(None, None, None),
            ),
            ("", said(None, None, None)),
        ];
        for (fields, expected) in cases {
            assert_eq!(read(fields), expected, "{fields:?}");
        }
    }

    #[test]
    fn proto_and_host_are_the_nearest_proxys() {
        let cases = [
            (
                "X-Forwarded-Proto: http, https\r\nX-Forwarded-Host: app.example:8443\r\n",
                said(None, Some(true), Some("app.example:8443")),
            ),
            ("X-Forwarded-Proto: HTTP\r\n", said(None, Some(false), None)),
            ("X-Forwarded-Proto: gopher\r\n", said(None, None, None)),
            ("X-Forwarded-Host: a b\r\n", said(None, None, None)),
        ];
        for (fields, expected) in cases {
            assert_eq!(read(fields), expected, "{fields:?}");
        }
    }

    #[test]
    fn rfc7239_wins_and_gives_its_hops_proto_and_host() {
        let cases = [
            (
                "Forwarded: for=192.0.2.7;proto=https;host=app.example\r\n\
                 X-Forwarded-For: 6.6.6.6\r\n",
                said(Some("192.0.2.7:0"), Some(true), Some("app.example")),
            ),
            (
                "Forwarded: for=6.6.6.6;proto=http, for=\"[2001:db8::7]:4000\";proto=https\r\n\
                 Forwarded: for=10.0.0.2;host=inner\r\n",
                said(Some("[2001:db8::7]:4000"), Some(true), None),
            ),
            ("Forwarded: for=unknown\r\n", said(None, None, None)),
            (
                "Forwarded: for=nonsense\r\nX-Forwarded-For: 192.0.2.7\r\n",
                said(Some("192.0.2.7:0"), None, None),
            ),
        ];
        for (fields, expected) in cases {
            assert_eq!(read(fields), expected, "{fields:?}");
        }
    }
}
