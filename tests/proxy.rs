//! Behind a proxy, over real sockets: the PROXY protocol (v1 and v2; valid, truncated,
//! missing, from a disallowed peer) and forwarded headers (trusted, not trusted, ignored).

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::client::Conn;
use common::TestServer;
use ppp::v2::{Builder, Command, Protocol, Type, Version};
use skyrocket::{ConfigBuilder, ProxyProtocol};

/// The environ the testbed's `/environ` shows, as a map.
fn environ_of(conn: &mut Conn) -> HashMap<String, String> {
    environ_with(conn, "")
}

/// The environ of a request with these extra header fields.
fn environ_with(conn: &mut Conn, fields: &str) -> HashMap<String, String> {
    let raw = format!("GET /environ HTTP/1.1\r\nHost: backend:8000\r\n{fields}\r\n");
    let resp = conn.request(raw.as_bytes());
    assert_eq!(resp.status, 200);
    let text = resp.text();
    let pairs = text.lines().filter_map(|line| line.split_once('='));
    pairs.map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn proxied(version: ProxyProtocol) -> ConfigBuilder {
    TestServer::config().proxy_protocol(version)
}

/// A v2 header relaying `client` (to `destination`), with an SSL TLV if `tls`.
fn v2_header(client: &str, destination: &str, tls: bool) -> Vec<u8> {
    let addresses: (SocketAddr, SocketAddr) =
        (client.parse().unwrap(), destination.parse().unwrap());
    let builder =
        Builder::with_addresses(Version::Two | Command::Proxy, Protocol::Stream, addresses);
    match tls {
        true => builder.write_tlv(Type::SSL, &[0x01, 0, 0, 0, 0]).unwrap(),
        false => builder,
    }
    .build()
    .unwrap()
}

#[test]
fn a_v1_header_gives_the_client_address_for_every_request_of_the_connection() {
    let server = TestServer::start(proxied(ProxyProtocol::V1));
    let mut conn = Conn::new(server.connect());
    conn.send(b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n");
    for _ in 0..2 {
        let env = environ_of(&mut conn);
        assert_eq!(env["REMOTE_ADDR"], "192.0.2.7");
        assert_eq!(env["REMOTE_PORT"], "56324");
        assert_eq!(env["SERVER_PORT"], "443");
        assert_eq!(env["wsgi.url_scheme"], "http");
    }
}

#[test]
fn a_v2_header_gives_the_client_address_and_tls() {
    let server = TestServer::start(proxied(ProxyProtocol::Auto));
    let mut conn = Conn::new(server.connect());
    conn.send(&v2_header("[2001:db8::7]:4000", "[2001:db8::1]:443", true));
    let env = environ_of(&mut conn);
    assert_eq!(env["REMOTE_ADDR"], "2001:db8::7");
    assert_eq!(env["REMOTE_PORT"], "4000");
    assert_eq!(env["wsgi.url_scheme"], "https");
    assert_eq!(env["HTTPS"], "on");
}

#[test]
fn a_header_sent_in_pieces_is_waited_for() {
    let server = TestServer::start(proxied(ProxyProtocol::Auto));
    for header in [
        b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n".to_vec(),
        v2_header("192.0.2.7:56324", "198.51.100.1:443", false),
    ] {
        let mut conn = Conn::new(server.connect());
        let (first, rest) = header.split_at(header.len() / 2);
        conn.send(first);
        server.wait_for("the first half parked", |s| s.idle_connections >= 1);
        conn.send(rest);
        assert_eq!(environ_of(&mut conn)["REMOTE_ADDR"], "192.0.2.7");
    }
}

#[test]
fn a_truncated_header_is_closed_unanswered_after_read_timeout() {
    let server = TestServer::start(
        proxied(ProxyProtocol::V1)
            .read_timeout(Duration::from_millis(300))
            .tick(Duration::from_millis(50)),
    );
    let mut conn = Conn::new(server.connect());
    conn.send(b"PROXY TCP4 192.0.2.7 198.51");
    assert!(conn.is_closed());
}

#[test]
fn a_missing_or_malformed_header_is_closed_unanswered() {
    let server = TestServer::start(proxied(ProxyProtocol::V2));
    let cases: [&[u8]; 3] = [
        b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n",
        b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\nGET /hello HTTP/1.1\r\n\r\n",
        b"\r\n\r\n\0\r\nQUIT\n\x31\x11\0\x0c",
    ];
    for raw in cases {
        let mut conn = Conn::new(server.connect());
        conn.send(raw);
        assert!(conn.is_closed(), "{raw:?}");
    }
    let mut conn = Conn::new(server.connect());
    conn.send(&v2_header("192.0.2.7:1", "198.51.100.1:2", false));
    assert_eq!(environ_of(&mut conn)["REMOTE_ADDR"], "192.0.2.7");
}

#[test]
fn only_allowed_peers_may_connect_with_the_proxy_protocol() {
    let config = proxied(ProxyProtocol::V1).proxy_allow_from("127.0.0.2, 10.0.0.0/8");
    let server = TestServer::start(config);
    let mut refused = Conn::new(server.connect_from("127.0.0.1"));
    refused.send(b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n");
    assert!(refused.is_closed());
    let mut allowed = Conn::new(server.connect_from("127.0.0.2"));
    allowed.send(b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n");
    assert_eq!(environ_of(&mut allowed)["REMOTE_ADDR"], "192.0.2.7");
}

#[test]
fn without_the_proxy_protocol_a_header_is_a_bad_request() {
    let server = TestServer::testbed();
    let mut conn = Conn::new(server.connect());
    let resp = conn.request(b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n\r\n");
    assert_eq!(resp.status, 400);
}

const FORWARDED_FIELDS: &str = "X-Forwarded-For: 6.6.6.6, 192.0.2.7\r\n\
                                X-Forwarded-Proto: https\r\nX-Forwarded-Host: app.example\r\n";

#[test]
fn a_trusted_peers_forwarded_headers_name_the_client() {
    let server = TestServer::start(TestServer::config().forwarded_allow_ips("127.0.0.1"));
    let env = environ_with(&mut Conn::new(server.connect()), FORWARDED_FIELDS);
    assert_eq!(env["REMOTE_ADDR"], "192.0.2.7");
    assert_eq!(env["wsgi.url_scheme"], "https");
    assert_eq!(env["HTTPS"], "on");
    assert_eq!(env["HTTP_HOST"], "app.example");
    let rfc7239 = "Forwarded: for=\"[2001:db8::7]:4000\";proto=https\r\n";
    let env = environ_with(&mut Conn::new(server.connect()), rfc7239);
    assert_eq!(
        (&env["REMOTE_ADDR"][..], &env["REMOTE_PORT"][..]),
        ("2001:db8::7", "4000")
    );
}

#[test]
fn an_untrusted_peers_forwarded_headers_are_stripped() {
    let server = TestServer::start(TestServer::config().forwarded_allow_ips("127.0.0.2"));
    let fields = format!("{FORWARDED_FIELDS}Forwarded: for=192.0.2.8\r\n");
    let env = environ_with(&mut Conn::new(server.connect_from("127.0.0.1")), &fields);
    assert_eq!(env["REMOTE_ADDR"], "127.0.0.1");
    assert_eq!(env["wsgi.url_scheme"], "http");
    assert_eq!(env["HTTP_HOST"], "backend:8000");
    let forwarded = [
        "HTTP_X_FORWARDED_FOR",
        "HTTP_X_FORWARDED_PROTO",
        "HTTP_X_FORWARDED_HOST",
    ];
    for key in forwarded.iter().chain(&["HTTP_FORWARDED", "HTTPS"]) {
        assert!(!env.contains_key(*key), "{key}");
    }
    let env = environ_with(&mut Conn::new(server.connect_from("127.0.0.2")), &fields);
    assert_eq!(env["REMOTE_ADDR"], "192.0.2.8");
}

#[test]
fn without_a_trust_list_forwarded_headers_pass_as_sent() {
    let server = TestServer::testbed();
    let env = environ_with(&mut Conn::new(server.connect()), FORWARDED_FIELDS);
    assert_eq!(env["REMOTE_ADDR"], "127.0.0.1");
    assert_eq!(env["HTTP_X_FORWARDED_FOR"], "6.6.6.6, 192.0.2.7");
    assert_eq!(env["wsgi.url_scheme"], "http");
}

#[test]
fn forwarded_headers_are_trusted_from_the_peer_a_proxy_header_names() {
    let config = proxied(ProxyProtocol::V1).forwarded_allow_ips("10.0.0.0/8");
    let server = TestServer::start(config);
    let mut conn = Conn::new(server.connect());
    conn.send(b"PROXY TCP4 10.0.0.5 10.0.0.1 40000 80\r\n");
    assert_eq!(
        environ_with(&mut conn, FORWARDED_FIELDS)["REMOTE_ADDR"],
        "192.0.2.7"
    );
}
