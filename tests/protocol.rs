//! Strict and faithful HTTP over loopback sockets against the testbed: bare LFs, absolute-form
//! targets, `Host` values, repeated cookies, raw targets, chunk sizes past `max_body`, and the
//! one casing of response header names.

mod common;

use std::io::Read;
use std::time::Duration;

use common::client::{get, Conn};
use common::TestServer;

/// The `/environ` lines of the response to `raw`, on a new connection.
fn environ_lines(server: &TestServer, raw: &[u8]) -> Vec<String> {
    let resp = Conn::new(server.connect()).request(raw);
    assert_eq!(resp.status, 200, "{}", resp.text());
    resp.text().lines().map(str::to_owned).collect()
}

/// Asserts that `lines` hold each of `expected`, whole.
fn assert_has(lines: &[String], expected: &[&str]) {
    for line in expected {
        assert!(
            lines.iter().any(|l| l == line),
            "missing {line} in {lines:#?}"
        );
    }
}

#[test]
fn a_bare_lf_in_the_head_is_refused_and_nothing_behind_it_runs() {
    let server = TestServer::testbed();
    let table: [&[u8]; 4] = [
        b"POST /echo HTTP/1.1\r\nHost: x\r\nX: a\nTransfer-Encoding: chunked\r\n\r\n\
          0\r\n\r\nGET /environ?SMUGGLED HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /environ HTTP/1.1\nHost: x\r\n\r\n",
        b"GET /environ HTTP/1.1\r\nHost: x\r\n\n",
        b"\nGET /environ HTTP/1.1\r\nHost: x\r\n\r\n",
    ];
    for raw in table {
        let mut conn = Conn::new(server.connect());
        conn.send(raw);
        let resp = conn.response(false);
        let shown = String::from_utf8_lossy(raw);
        assert_eq!(resp.status, 400, "{shown}");
        assert_eq!(resp.text(), "Bad Request: bare LF in the request head\n");
        assert!(conn.is_closed(), "nothing else is answered: {shown}");
    }
}

#[test]
fn an_absolute_form_target_decides_host_server_name_and_port() {
    let server = TestServer::testbed();
    let raw = b"GET http://other.example:81/environ/p?x=1 HTTP/1.1\r\nHost: x\r\n\r\n";
    let lines = environ_lines(&server, raw);
    assert_has(
        &lines,
        &[
            "HTTP_HOST=other.example:81",
            "SERVER_NAME=other.example",
            "SERVER_PORT=81",
            "PATH_INFO=/environ/p",
            "QUERY_STRING=x=1",
            "REQUEST_URI=http://other.example:81/environ/p?x=1",
            "wsgi.url_scheme=http",
        ],
    );
    assert!(!lines.iter().any(|l| l == "HTTP_HOST=x"), "{lines:#?}");

    let raw = b"GET https://secure.example/environ HTTP/1.1\r\nHost: x\r\n\r\n";
    let lines = environ_lines(&server, raw);
    assert_has(
        &lines,
        &[
            "HTTP_HOST=secure.example",
            "SERVER_NAME=secure.example",
            "SERVER_PORT=443",
            "wsgi.url_scheme=http",
        ],
    );

    let lines = environ_lines(&server, b"GET http://h/environ HTTP/1.0\r\n\r\n");
    assert_has(&lines, &["HTTP_HOST=h", "SERVER_NAME=h", "SERVER_PORT=80"]);
}

#[test]
fn invalid_host_values_get_400_and_valid_ones_are_served() {
    let server = TestServer::testbed();
    let invalid = [
        "a:xyz", "a:-1", "a:80x", "a:1:2", "[::1", "::1", "[::1]x", ":80", "u@h", "a:65536",
    ];
    for host in invalid {
        let mut conn = Conn::new(server.connect());
        let resp =
            conn.request(format!("GET /environ HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes());
        assert_eq!(resp.status, 400, "Host: {host}");
        assert_eq!(
            resp.text(),
            "Bad Request: invalid Host header\n",
            "Host: {host}"
        );
        assert!(conn.is_closed(), "Host: {host}");
        let absolute = format!("GET http://{host}/environ HTTP/1.1\r\nHost: x\r\n\r\n");
        let resp = Conn::new(server.connect()).request(absolute.as_bytes());
        assert_eq!(resp.status, 400, "http://{host}/environ");
    }
    let mut conn = Conn::new(server.connect());
    for host in [
        "a",
        "a:80",
        "a:",
        "[::1]",
        "[::1]:80",
        "a-b.c_d~e%41",
        "!$&'()*+,;=",
    ] {
        let resp =
            conn.request(format!("GET /environ HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes());
        assert_eq!(resp.status, 200, "Host: {host}");
        let line = format!("HTTP_HOST={host}");
        assert!(resp.text().lines().any(|l| l == line), "Host: {host}");
    }
    let missing = Conn::new(server.connect()).request(b"GET /environ HTTP/1.1\r\n\r\n");
    assert_eq!(missing.status, 400, "HTTP/1.1 without Host");
    let twice = b"GET /environ HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n";
    assert_eq!(Conn::new(server.connect()).request(twice).status, 400);
}

#[test]
fn repeated_cookies_are_joined_with_semicolons() {
    let server = TestServer::testbed();
    let raw = b"GET /environ HTTP/1.1\r\nHost: t\r\nCookie: a=1\r\nX-A: 1\r\n\
                cookie: b=2\r\nx-a: 2\r\n\r\n";
    let lines = environ_lines(&server, raw);
    assert_has(&lines, &["HTTP_COOKIE=a=1; b=2", "HTTP_X_A=1,2"]);
}

#[test]
fn the_raw_target_is_request_uri_and_raw_uri() {
    let server = TestServer::testbed();
    let lines = environ_lines(&server, &get("/environ/a%ff%2F?q=%41"));
    assert_has(
        &lines,
        &[
            "REQUEST_URI=/environ/a%ff%2F?q=%41",
            "RAW_URI=/environ/a%ff%2F?q=%41",
            "QUERY_STRING=q=%41",
        ],
    );
}

#[test]
fn a_chunk_size_past_max_body_gets_413_at_once() {
    // A read timeout longer than the client's: waiting for the chunk's bytes would fail the
    // test instead of answering 408.
    let config = TestServer::config()
        .max_body(10)
        .read_timeout(Duration::from_secs(60));
    let server = TestServer::start(config);
    for sizes in ["b\r\n", "fffffffff\r\n", "5\r\n01234\r\n6\r\n"] {
        let mut conn = Conn::new(server.connect());
        conn.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
        let resp = conn.request(sizes.as_bytes());
        assert_eq!(resp.status, 413, "{sizes:?}");
        assert!(conn.is_closed(), "{sizes:?}");
    }
    let mut conn = Conn::new(server.connect());
    let raw = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: , chunked\r\n\r\n\
                5\r\n01234\r\n5\r\n56789\r\n0\r\n\r\n";
    assert_eq!(conn.request(raw).text(), "0123456789", "up to max_body");
}

/// The head of the response to `raw` exactly as sent (the request asks for a close).
fn raw_head(server: &TestServer, raw: &[u8]) -> String {
    let mut conn = Conn::new(server.connect());
    conn.send(raw);
    let mut received = Vec::new();
    conn.stream
        .read_to_end(&mut received)
        .expect("the response, then a close");
    let text = String::from_utf8_lossy(&received).into_owned();
    let (head, _) = text.split_once("\r\n\r\n").expect("a whole head");
    head.to_owned()
}

#[test]
fn response_header_names_are_all_lower_case() {
    let server = TestServer::testbed();
    let requests: [&[u8]; 3] = [
        b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        b"GET /stream?n=2 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a:xyz\r\n\r\n",
    ];
    for raw in requests {
        let head = raw_head(&server, raw);
        let mut lines = head.lines();
        assert!(lines.next().is_some_and(|l| l.starts_with("HTTP/1.1 ")));
        let names: Vec<&str> = lines
            .filter_map(|l| l.split_once(": "))
            .map(|(n, _)| n)
            .collect();
        assert!(names.len() >= 3, "{head}");
        for name in names {
            assert_eq!(name, name.to_ascii_lowercase(), "{head}");
        }
    }
}
