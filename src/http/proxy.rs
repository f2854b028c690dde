//! The PROXY protocol (HAProxy's, versions 1 and 2): the header a load balancer sends ahead of
//! the client's bytes to say who the client is. The `ppp` crate reads the wire format; this
//! module decides which versions are accepted and what the server learns from a header.
//!
//! As with request heads, "incomplete" (`Ok(None)`: wait for more bytes) is kept apart from
//! "invalid" (`Err`: the connection is closed, never guessed at).

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use ppp::{v1, v2, PartialResult};

/// `PP2_TYPE_SSL`: the client's connection to the proxy, when it used TLS.
const PP2_TYPE_SSL: u8 = 0x20;

/// `PP2_CLIENT_SSL`: in a `PP2_TYPE_SSL` value's first byte, the client connected over TLS.
const PP2_CLIENT_SSL: u8 = 0x01;

/// The longest v1 header, its CRLF included.
const V1_MAX_LEN: usize = 107;

/// How every v1 header begins.
const V1_PREFIX: &[u8] = b"PROXY ";

/// Which PROXY protocol versions a connection may begin with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyProtocol {
    /// The text header only (`PROXY TCP4 ...\r\n`).
    V1,
    /// The binary header only.
    V2,
    /// Either, told apart by the first byte.
    Auto,
}

impl ProxyProtocol {
    fn allows(self, version: ProxyProtocol) -> bool {
        self == ProxyProtocol::Auto || self == version
    }
}

/// What a PROXY header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    /// The header's length in bytes: the client's own bytes start after it.
    pub len: usize,
    /// The client's address and the address it connected to, when the proxy relays a TCP
    /// client; `None` for `UNKNOWN`, `LOCAL` (the proxy's own health checks) and other
    /// families, where the connection's own addresses stand.
    pub addresses: Option<(SocketAddr, SocketAddr)>,
    /// The client reached the proxy over TLS (v2's `PP2_TYPE_SSL` with `PP2_CLIENT_SSL`).
    pub tls: bool,
}

/// Why a connection's PROXY header is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyError {
    /// The connection does not begin with a header of an accepted version.
    Missing,
    /// The header is malformed; the text says how.
    Malformed(String),
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyError::Missing => f.write_str("no PROXY header of an accepted version"),
            ProxyError::Malformed(how) => write!(f, "malformed PROXY header: {how}"),
        }
    }
}

/// Reads the PROXY header at the start of `buf`: `Ok(None)` while it is incomplete.
pub fn parse_proxy_header(
    buf: &[u8],
    accepted: ProxyProtocol,
) -> Result<Option<ProxyHeader>, ProxyError> {
    let version = match buf.first() {
        None => return Ok(None),
        Some(b'P') => ProxyProtocol::V1,
        Some(b'\r') => ProxyProtocol::V2,
        Some(_) => return Err(ProxyError::Missing),
    };
    match (accepted.allows(version), version) {
        (false, _) => Err(ProxyError::Missing),
        (true, ProxyProtocol::V1) => parse_v1(buf),
        (true, _) => parse_v2(buf),
    }
}

/// A v1 header is read once its line has ended (the specification's advice: the crate's own
/// reading of a partial line can mistake it for a bad one).
fn parse_v1(buf: &[u8]) -> Result<Option<ProxyHeader>, ProxyError> {
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    let Some(end) = memchr::memmem::find(window, b"\r\n") else {
        let prefix = &window[..window.len().min(V1_PREFIX.len())];
        return match window.len() < V1_MAX_LEN && V1_PREFIX.starts_with(prefix) {
            true => Ok(None),
            false => Err(ProxyError::Malformed("no end of line in 107 bytes".into())),
        };
    };
    let header =
        v1::Header::try_from(&buf[..end + 2]).map_err(|e| ProxyError::Malformed(e.to_string()))?;
    let addresses = match header.addresses {
        v1::Addresses::Tcp4(a) => addresses(
            a.source_address,
            a.source_port,
            a.destination_address,
            a.destination_port,
        ),
        v1::Addresses::Tcp6(a) => addresses(
            a.source_address,
            a.source_port,
            a.destination_address,
            a.destination_port,
        ),
        v1::Addresses::Unknown => None,
    };
    Ok(Some(ProxyHeader {
        len: header.header.len(),
        addresses,
        tls: false,
    }))
}

fn parse_v2(buf: &[u8]) -> Result<Option<ProxyHeader>, ProxyError> {
    let header = match v2::Header::try_from(buf) {
        Ok(header) => header,
        Err(e) if e.is_incomplete() => return Ok(None),
        Err(e) => return Err(ProxyError::Malformed(e.to_string())),
    };
    let addresses = match (header.command, header.addresses) {
        (v2::Command::Proxy, v2::Addresses::IPv4(a)) => addresses(
            a.source_address,
            a.source_port,
            a.destination_address,
            a.destination_port,
        ),
        (v2::Command::Proxy, v2::Addresses::IPv6(a)) => addresses(
            a.source_address,
            a.source_port,
            a.destination_address,
            a.destination_port,
        ),
        _ => None,
    };
    Ok(Some(ProxyHeader {
        len: header.len(),
        addresses,
        tls: client_used_tls(&header)?,
    }))
}

/// The client's address and the one it connected to.
fn addresses(
    source: impl Into<IpAddr>,
    source_port: u16,
    destination: impl Into<IpAddr>,
    destination_port: u16,
) -> Option<(SocketAddr, SocketAddr)> {
    let source = SocketAddr::new(source.into(), source_port);
    Some((
        source,
        SocketAddr::new(destination.into(), destination_port),
    ))
}

/// Whether a v2 header's TLVs say the client used TLS; a malformed TLV refuses the header.
fn client_used_tls(header: &v2::Header<'_>) -> Result<bool, ProxyError> {
    let mut tls = false;
    for tlv in header.tlvs() {
        let tlv = tlv.map_err(|e| ProxyError::Malformed(e.to_string()))?;
        if tlv.kind == PP2_TYPE_SSL {
            tls |= tlv
                .value
                .first()
                .is_some_and(|flags| flags & PP2_CLIENT_SSL != 0);
        }
    }
    Ok(tls)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ppp::v2::{Builder, Command, Protocol, Type, Version};
    use ProxyProtocol::{Auto, V1, V2};

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    fn v2_header(command: Command, addrs: (&str, &str), tlv: Option<(u8, &[u8])>) -> Vec<u8> {
        let addresses = (addr(addrs.0), addr(addrs.1));
        let builder = Builder::with_addresses(Version::Two | command, Protocol::Stream, addresses);
        let builder = match tlv {
            Some((kind, value)) => builder.write_tlv(kind, value).unwrap(),
            None => builder,
        };
        builder.build().unwrap()
    }

    fn relayed(source: &str, destination: &str, len: usize, tls: bool) -> ProxyHeader {
        ProxyHeader {
            len,
            addresses: Some((addr(source), addr(destination))),
            tls,
        }
    }

    /// Complete headers of both versions, with the client's bytes after them.
    fn valid_cases() -> Vec<(Vec<u8>, ProxyHeader)> {
        let v1_tcp4 = "PROXY TCP4 192.0.2.7 10.0.0.1 56324 8000\r\n";
        let v1_tcp6 = "PROXY TCP6 2001:db8::7 2001:db8::1 4000 443\r\n";
        let v1_unknown = "PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n";
        let ipv4 = ("192.0.2.7:56324", "10.0.0.1:8000");
        let ssl: &[u8] = &[PP2_CLIENT_SSL, 0, 0, 0, 0];
        let v2_tls = v2_header(Command::Proxy, ipv4, Some((Type::SSL as u8, ssl)));
        let v2_noop = v2_header(Command::Proxy, ipv4, Some((Type::NoOp as u8, b"xx")));
        let v2_local = v2_header(Command::Local, ipv4, None);
        let v2_ipv6 = v2_header(Command::Proxy, ("[2001:db8::7]:1", "[::1]:2"), None);
        let unknown = |len| ProxyHeader {
            len,
            addresses: None,
            tls: false,
        };
        vec![
            (
                v1_tcp4.into(),
                relayed(ipv4.0, ipv4.1, v1_tcp4.len(), false),
            ),
            (
                v1_tcp6.into(),
                relayed(
                    "[2001:db8::7]:4000",
                    "[2001:db8::1]:443",
                    v1_tcp6.len(),
                    false,
                ),
            ),
            (v1_unknown.into(), unknown(v1_unknown.len())),
            (v2_tls.clone(), relayed(ipv4.0, ipv4.1, v2_tls.len(), true)),
            (
                v2_noop.clone(),
                relayed(ipv4.0, ipv4.1, v2_noop.len(), false),
            ),
            (v2_local.clone(), unknown(v2_local.len())),
            (
                v2_ipv6.clone(),
                relayed("[2001:db8::7]:1", "[::1]:2", v2_ipv6.len(), false),
            ),
        ]
    }

    #[test]
    fn complete_headers_parse_and_leave_the_client_bytes() {
        for (header, expected) in valid_cases() {
            let mut input = header.clone();
            input.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
            assert_eq!(
                parse_proxy_header(&input, Auto),
                Ok(Some(expected)),
                "{header:?}"
            );
            assert_eq!(expected.len, header.len(), "{header:?}");
        }
    }

    #[test]
    fn every_prefix_of_a_valid_header_is_incomplete() {
        for (header, _) in valid_cases() {
            for end in 0..header.len() {
                let prefix = &header[..end];
                assert_eq!(parse_proxy_header(prefix, Auto), Ok(None), "{prefix:?}");
            }
        }
    }

    #[test]
    fn only_the_accepted_version_is_read() {
        let v1 = b"PROXY TCP4 192.0.2.7 10.0.0.1 56324 8000\r\n".to_vec();
        let v2 = v2_header(Command::Proxy, ("1.2.3.4:1", "5.6.7.8:2"), None);
        assert!(matches!(parse_proxy_header(&v1, V1), Ok(Some(_))));
        assert!(matches!(parse_proxy_header(&v2, V2), Ok(Some(_))));
        assert_eq!(parse_proxy_header(&v1, V2), Err(ProxyError::Missing));
        assert_eq!(parse_proxy_header(&v2, V1), Err(ProxyError::Missing));
    }

    #[test]
    fn invalid_headers_are_refused() {
        let mut bad_version = v2_header(Command::Proxy, ("1.2.3.4:1", "5.6.7.8:2"), None);
        bad_version[12] = 0x31;
        let mut bad_tlv = v2_header(Command::Proxy, ("1.2.3.4:1", "5.6.7.8:2"), Some((1, b"h2")));
        let length_low = bad_tlv.len() - 3;
        bad_tlv[length_low] = 9;
        let cases: [&[u8]; 8] = [
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"\x16\x03\x01\x02\x00",
            b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.400 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
            b"PROXY TCP4 111.111.111.111 111.111.111.111 11111 11111 with a lot more text after it\r\n",
            &bad_version,
            &bad_tlv,
        ];
        for input in cases {
            let parsed = parse_proxy_header(input, Auto);
            assert!(parsed.is_err(), "{input:?}: {parsed:?}");
        }
    }

    #[test]
    fn an_overlong_v1_header_without_its_end_is_refused() {
        let input = [b"PROXY TCP4 ".as_slice(), &[b'1'; 120]].concat();
        assert!(matches!(
            parse_proxy_header(&input, V1),
            Err(ProxyError::Malformed(_))
        ));
    }
}
