//! Who a request is from: the connection's peer, or the client that trusted proxies name in
//! its forwarded headers.

use std::net::SocketAddr;

use crate::allow_list::AllowList;
use crate::http::{forwarded, RequestHead, FORWARDED_HEADERS};

/// The client of one request, as the application and the access log see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    /// REMOTE_ADDR and REMOTE_PORT.
    pub(crate) client: SocketAddr,
    /// `wsgi.url_scheme`.
    pub(crate) scheme: &'static str,
    /// HTTP_HOST as the client sent it to a trusted proxy (`X-Forwarded-Host`), if it was
    /// forwarded.
    pub(crate) host: Option<String>,
}

/// The origin of a request that came from `peer` (over TLS to a proxy in front if `tls`):
/// what a trusted peer's forwarded headers say; a peer not trusted loses those headers, so
/// that the application cannot be misled by them.
pub(crate) fn origin(
    head: &mut RequestHead,
    peer: SocketAddr,
    tls: bool,
    trusted: Option<&AllowList>,
) -> Origin {
    let scheme = if tls { "https" } else { "http" };
    let own = Origin {
        client: peer,
        scheme,
        host: None,
    };
    let Some(trusted) = trusted else {
        return own;
    };
    if !trusted.contains(peer.ip()) {
        head.remove_headers(&FORWARDED_HEADERS);
        return own;
    }
    let said = forwarded(head, |ip| trusted.contains(ip));
    Origin {
        client: said.client.unwrap_or(peer),
        scheme: match said.https {
            Some(true) => "https",
            Some(false) => "http",
            None => scheme,
        },
        host: said.host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{parse_head, Limits};
    use bytes::BytesMut;

    const FIELDS: &str = "X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: https\r\n\
                          X-Forwarded-Host: app.example\r\nForwarded: for=192.0.2.8\r\n";

    fn head() -> RequestHead {
        let raw = format!("GET / HTTP/1.1\r\nHost: backend\r\n{FIELDS}\r\n");
        let mut buf = BytesMut::from(raw.as_bytes());
        parse_head(&mut buf, &Limits::default()).unwrap().unwrap()
    }

    fn peer(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn without_a_trust_list_the_headers_pass_as_sent() {
        let mut head = head();
        let origin = origin(&mut head, peer("10.0.0.2:5000"), false, None);
        assert_eq!(origin.client, peer("10.0.0.2:5000"));
        assert_eq!((origin.scheme, origin.host), ("http", None));
        assert_eq!(head.headers().count(), 5);
    }

    #[test]
    fn a_trusted_peer_names_the_client() {
        let trusted: AllowList = "10.0.0.0/8".parse().unwrap();
        let mut head = head();
        let origin = origin(&mut head, peer("10.0.0.2:5000"), false, Some(&trusted));
        assert_eq!(origin.client, peer("192.0.2.8:0"));
        assert_eq!(
            origin.scheme, "http",
            "Forwarded wins, and it names no proto"
        );
        assert_eq!(head.headers().count(), 5);
    }

    #[test]
    fn a_peer_not_trusted_loses_the_headers() {
        let trusted: AllowList = "10.0.0.0/8".parse().unwrap();
        let mut head = head();
        let origin = origin(&mut head, peer("192.0.2.99:5000"), true, Some(&trusted));
        assert_eq!(origin.client, peer("192.0.2.99:5000"));
        assert_eq!((origin.scheme, origin.host), ("https", None));
        let names: Vec<_> = head.headers().map(|(name, _)| name.to_string()).collect();
        assert_eq!(names, ["Host"]);
    }
}
