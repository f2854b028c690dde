//! HTTP/1.1 over loopback sockets against the testbed: framing, keep-alive, errors.

mod common;

use std::io::Read;

use common::client::{get, Conn};
use common::wait::wait_until;
use common::TestServer;

#[test]
fn hello_has_body_length_date_and_server() {
    let server = TestServer::testbed();
    let mut conn = Conn::new(server.connect());
    let resp = conn.request(&get("/hello"));
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "Hello, World!");
    assert_eq!(resp.header("content-length"), Some("13"));
    assert_eq!(resp.header("content-type"), Some("text/plain"));
    let date = resp.header("date").expect("Date header");
    assert!(httpdate::parse_http_date(date).is_ok(), "{date}");
    assert_eq!(resp.header("server"), Some("skyrocket"));
}

#[test]
fn unknown_path_is_404() {
    let server = TestServer::testbed();
    let resp = Conn::new(server.connect()).request(&get("/nope"));
    assert_eq!(resp.status, 404);
}

#[test]
fn keep_alive_serves_many_requests_on_one_connection() {
    let server = TestServer::testbed();
    let mut conn = Conn::new(server.connect());
    for _ in 0..20 {
        let resp = conn.request(&get("/hello"));
        assert_eq!((resp.status, resp.text().as_str()), (200, "Hello, World!"));
        assert_eq!(resp.header("connection"), None);
    }
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let server = TestServer::testbed();
    let mut conn = Conn::new(server.connect());
    let mut batch = Vec::new();
    batch.extend(get("/environ/1"));
    batch.extend(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello");
    batch.extend(get("/environ/3"));
    conn.send(&batch);
    assert!(conn.response(false).text().contains("PATH_INFO=/environ/1"));
    assert_eq!(conn.response(false).text(), "hello");
    assert!(conn.response(false).text().contains("PATH_INFO=/environ/3"));
}

#[test]
fn connection_close_is_honoured_and_announced() {
    let server = TestServer::testbed();
    let mut conn = Conn::new(server.connect());
    let resp = conn.request(b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(resp.header("connection"), Some("close"));
    assert!(conn.is_closed());
}

#[test]
fn http10_closes_unless_keep_alive_is_asked() {
    let server = TestServer::testbed();
    let mut conn = Conn::new(server.connect());
    let resp = conn.request(b"GET /hello HTTP/1.0\r\n\r\n");
    assert_eq!(resp.status, 200);
    assert!(conn.is_closed());

    let mut conn = Conn::new(server.connect());
    let ka = b"GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    for _ in 0..3 {
        let resp = conn.request(ka);
        assert_eq!(resp.header("connection"), Some("keep-alive"));
        assert_eq!(resp.text(), "Hello, World!");
    }
}

#[test]
fn head_has_length_but_no_body() {
    let server = TestServer::testbed();
    let mut conn = Conn::new(server.connect());
    conn.send(b"HEAD /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    let resp = conn.response(true);
    assert_eq!(resp.header("content-length"), Some("13"));
    // The next response must start right away: no body bytes were sent.
    assert_eq!(conn.request(&get("/hello")).text(), "Hello, World!");
}

#[test]
fn head_of_the_testbeds_streams_has_the_get_headers_and_no_body() {
    let server = TestServer::testbed();
    let mut conn = Conn::new(server.connect());
    for path in ["/stream?n=3", "/zeros?kib=128"] {
        let got = conn.request(&get(path));
        assert_eq!(got.status, 200, "{path}");
        conn.send(format!("HEAD {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        let head = conn.response(true);
        assert_eq!(head.status, 200, "{path}");
        let names = |r: &common::client::Resp| -> Vec<String> {
            (r.headers.iter())
                .map(|(n, v)| format!("{n}: {v}"))
                .filter(|h| !h.starts_with("date:"))
                .collect()
        };
        assert_eq!(names(&head), names(&got), "{path}");
    }
    let after = conn.request(&get("/hello"));
    assert_eq!(
        after.text(),
        "Hello, World!",
        "no body followed the HEAD responses"
    );
}

#[test]
fn content_length_body_is_streamed_to_the_application() {
    let server = TestServer::testbed();
    let mut conn = Conn::new(server.connect());
    let body = vec![b'x'; 3 * 1024 * 1024];
    let mut raw = format!(
        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend(&body);
    let resp = conn.request(&raw);
    assert_eq!(resp.body.len(), body.len());
    assert!(resp.body == body);
}

#[test]
fn chunked_body_with_extensions_and_trailers() {
    let server = TestServer::testbed();
    let mut conn = Conn::new(server.connect());
    let raw = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
                5;name=value\r\nhello\r\n1;x=\"q\"\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: yes\r\n\r\n";
    assert_eq!(conn.request(raw).text(), "hello world");
    assert_eq!(conn.request(&get("/hello")).status, 200);
}

#[test]
fn unread_body_is_discarded_before_the_next_request() {
    let server = TestServer::testbed();
    let mut conn = Conn::new(server.connect());
    // The testbed answers 404 to POST /nope without reading the body.
    let raw = b"POST /nope HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nignored!!!!";
    assert_eq!(conn.request(raw).status, 404);
    let chunked = b"POST /nope HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
                    3\r\nabc\r\n0\r\n\r\n";
    assert_eq!(conn.request(chunked).status, 404);
    assert_eq!(conn.request(&get("/environ")).status, 200);
}

#[test]
fn expect_100_continue_is_sent_before_the_body_is_read() {
    let server = TestServer::testbed();
    let mut conn = Conn::new(server.connect());
    conn.send(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n",
    );
    let interim = conn.response(false);
    assert_eq!(interim.status, 100);
    conn.send(b"ping");
    assert_eq!(conn.response(false).text(), "ping");
}

#[test]
fn expect_100_continue_without_reading_the_body_closes() {
    let server = TestServer::testbed();
    let mut conn = Conn::new(server.connect());
    conn.send(
        b"POST /nope HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n",
    );
    let resp = conn.response(false);
    assert_eq!(resp.status, 404);
    assert_eq!(resp.header("connection"), Some("close"));
}

#[test]
fn streams_are_chunked_for_http11_and_close_delimited_for_http10() {
    let server = TestServer::testbed();
    let mut conn = Conn::new(server.connect());
    let resp = conn.request(&get("/stream?n=4"));
    assert!(resp.chunked);
    assert_eq!(resp.text(), "chunk 0\nchunk 1\nchunk 2\nchunk 3\n");
    assert_eq!(conn.request(&get("/hello")).status, 200);

    let mut conn = Conn::new(server.connect());
    let resp = conn.request(b"GET /stream?n=2 HTTP/1.0\r\n\r\n");
    assert!(!resp.chunked);
    assert_eq!(resp.header("content-length"), None);
    assert_eq!(resp.text(), "chunk 0\nchunk 1\n");
}

#[test]
fn panicking_handler_gets_500_and_the_server_goes_on() {
    let server = TestServer::testbed();
    for _ in 0..3 {
        let mut conn = Conn::new(server.connect());
        assert_eq!(conn.request(&get("/panic")).status, 500);
        assert!(conn.is_closed());
    }
    let resp = Conn::new(server.connect()).request(&get("/hello"));
    assert_eq!(resp.status, 200);
    assert!(server.status().threads >= 2);
}

#[test]
fn environ_has_cgi_and_wsgi_variables() {
    let server = TestServer::testbed();
    let mut conn = Conn::new(server.connect());
    let raw = b"GET /environ/a%20b%2Fc?x=1&y=%20 HTTP/1.1\r\nHost: example:80\r\n\
                User-Agent: t/1\r\nContent-Type: text/x\r\n\r\n";
    let text = conn.request(raw).text();
    let port = server.addr.port();
    let local_port = conn.stream.local_addr().unwrap().port();
    for line in [
        "REQUEST_METHOD=GET".to_string(),
        "SCRIPT_NAME=".into(),
        "PATH_INFO=/environ/a b/c".into(),
        "QUERY_STRING=x=1&y=%20".into(),
        "CONTENT_TYPE=text/x".into(),
        "SERVER_NAME=127.0.0.1".into(),
        format!("SERVER_PORT={port}"),
        "SERVER_PROTOCOL=HTTP/1.1".into(),
        "REMOTE_ADDR=127.0.0.1".into(),
        format!("REMOTE_PORT={local_port}"),
        "wsgi.url_scheme=http".into(),
        "HTTP_HOST=example:80".into(),
        "HTTP_USER_AGENT=t/1".into(),
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
    }
}

#[test]
fn absolute_form_target_is_served_by_its_path() {
    let server = TestServer::testbed();
    let mut conn = Conn::new(server.connect());
    let resp =
        conn.request(b"GET http://example.com/environ/x?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n");
    let text = resp.text();
    assert!(text.contains("PATH_INFO=/environ/x\n"), "{text}");
    assert!(text.contains("QUERY_STRING=q=1\n"), "{text}");
}

/// Each invalid request gets its status, a short body, `Connection: close`, and a close.
#[test]
fn invalid_requests_get_a_status_and_a_close() {
    let server = TestServer::start(TestServer::config().max_head(4096));
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(5000));
    let big_head = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "b".repeat(5000)
    );
    let table: Vec<(&str, Vec<u8>, u16)> = vec![
        ("garbage request line", b"HELLO\r\n\r\n".to_vec(), 400),
        ("space in target", b"GET /a b HTTP/1.1\r\nHost: t\r\n\r\n".to_vec(), 400),
        ("header without colon", b"GET / HTTP/1.1\r\nHost: t\r\nNoColon\r\n\r\n".to_vec(), 400),
        ("space before colon", b"GET / HTTP/1.1\r\nHost : t\r\n\r\n".to_vec(), 400),
        ("obs-fold", b"GET / HTTP/1.1\r\nHost: t\r\nX: a\r\n b\r\n\r\n".to_vec(), 400),
        ("HTTP/1.1 without Host", b"GET / HTTP/1.1\r\n\r\n".to_vec(), 400),
        ("two Hosts", b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".to_vec(), 400),
        (
            "CL with TE",
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_vec(),
            400,
        ),
        (
            "differing CL",
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n".to_vec(),
            400,
        ),
        ("negative CL", b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n".to_vec(), 400),
        ("CL with plus", b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: +1\r\n\r\n".to_vec(), 400),
        (
            "bad chunk size",
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),
            400,
        ),
        (
            "chunk not ended by CRLF",
            b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n"
                .to_vec(),
            400,
        ),
        (
            "unknown coding",
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n".to_vec(),
            501,
        ),
        ("CONNECT", b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n".to_vec(), 501),
        ("HTTP/2.0", b"GET / HTTP/2.0\r\nHost: t\r\n\r\n".to_vec(), 505),
        ("HTTP/1.2", b"GET / HTTP/1.2\r\nHost: t\r\n\r\n".to_vec(), 505),
        ("long target", long_target.into_bytes(), 414),
        ("large head", big_head.into_bytes(), 431),
    ];
    for (name, raw, status) in table {
        let mut conn = Conn::new(server.connect());
        conn.send(&raw);
        let resp = conn
            .try_response(false)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(resp.status, status, "{name}");
        assert_eq!(resp.header("connection"), Some("close"), "{name}");
        assert!(!resp.body.is_empty(), "{name}: short body expected");
        assert!(conn.is_closed(), "{name}: connection should close");
    }
    let resp = Conn::new(server.connect()).request(&get("/hello"));
    assert_eq!(resp.status, 200, "the server still serves others");
}

#[test]
fn slow_head_gets_408_after_read_timeout() {
    let read_timeout = std::time::Duration::from_millis(200);
    let server = TestServer::start(TestServer::config().read_timeout(read_timeout));
    let mut conn = Conn::new(server.connect());
    conn.send(b"GET /hello HTTP/1.1\r\nHo");
    let resp = conn.response(false);
    assert_eq!(resp.status, 408);
    assert!(conn.is_closed());
}

#[test]
fn stalled_body_gets_408() {
    let read_timeout = std::time::Duration::from_millis(200);
    let server = TestServer::start(TestServer::config().read_timeout(read_timeout));
    let mut conn = Conn::new(server.connect());
    conn.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc");
    let resp = conn.response(false);
    assert_eq!(resp.status, 408);
    assert!(conn.is_closed());
}

#[test]
fn idle_keep_alive_connection_is_closed_after_timeout() {
    let timeout = std::time::Duration::from_millis(200);
    let server = TestServer::start(TestServer::config().timeout(timeout));
    let mut conn = Conn::new(server.connect());
    assert_eq!(conn.request(&get("/hello")).status, 200);
    let mut rest = Vec::new();
    let read = conn.stream.read_to_end(&mut rest);
    assert!(matches!(read, Ok(0)), "expected a close, got {read:?}");
}

#[test]
fn idle_connection_is_parked_and_served_again() {
    let server = TestServer::testbed();
    let mut conn = Conn::new(server.connect());
    assert_eq!(conn.request(&get("/hello")).status, 200);
    wait_until("the connection is parked", || {
        server.status().idle_connections == 1
    });
    assert_eq!(conn.request(&get("/hello")).status, 200);
    wait_until("both responses are counted", || {
        server.status().requests_total == 2
    });
}

#[test]
fn half_closed_client_gets_its_answer_and_a_close() {
    let server = TestServer::testbed();
    let mut conn = Conn::new(server.connect());
    conn.send(&get("/hello"));
    conn.stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(conn.response(false).text(), "Hello, World!");
    assert!(
        conn.is_closed(),
        "the server closes once the client's requests are answered"
    );
}

#[test]
fn pipelined_burst_larger_than_one_read_is_all_answered() {
    let server = TestServer::testbed();
    let mut conn = Conn::new(server.connect());
    let padding = "p".repeat(500);
    let one = format!("GET /hello HTTP/1.1\r\nHost: t\r\nX-Pad: {padding}\r\n\r\n");
    conn.send(one.repeat(60).as_bytes());
    for i in 0..60 {
        assert_eq!(conn.response(false).text(), "Hello, World!", "response {i}");
    }
}

#[test]
fn requests_pipelined_after_connection_close_do_not_destroy_the_response() {
    let server = TestServer::testbed();
    let mut conn = Conn::new(server.connect());
    let mut batch = b"GET /environ HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".to_vec();
    batch.extend(get("/hello").repeat(50));
    conn.send(&batch);
    let resp = conn.response(false);
    assert!(resp.text().contains("PATH_INFO=/environ"));
    assert!(conn.is_closed());
}

#[test]
fn header_count_limit_is_configurable() {
    let server = TestServer::start(TestServer::config().max_headers(4));
    let mut conn = Conn::new(server.connect());
    let ok = b"GET /hello HTTP/1.1\r\nHost: t\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    assert_eq!(conn.request(ok).status, 200);
    let many = b"GET /hello HTTP/1.1\r\nHost: t\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
    assert_eq!(conn.request(many).status, 431);
}

#[test]
fn body_over_max_body_gets_413_without_running_the_app() {
    let server = TestServer::start(TestServer::config().max_body(10));
    let mut conn = Conn::new(server.connect());
    let resp = conn.request(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\n");
    assert_eq!(resp.status, 413);
    assert!(conn.is_closed());
    let mut conn = Conn::new(server.connect());
    let resp =
        conn.request(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n0123456789");
    assert_eq!((resp.status, resp.text().as_str()), (200, "0123456789"));
}

#[test]
fn chunked_body_over_max_body_gets_413() {
    let server = TestServer::start(TestServer::config().max_body(10));
    let mut conn = Conn::new(server.connect());
    conn.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    let resp = conn.request(b"6\r\n012345\r\n6\r\n678901\r\n0\r\n\r\n");
    assert_eq!(resp.status, 413);
    assert!(conn.is_closed());
}

#[test]
fn a_response_stream_that_panics_when_dropped_costs_the_connection_not_the_worker() {
    // One worker and no tick within the test: a lost worker would not be replaced in time.
    let config = TestServer::config()
        .min_threads(1)
        .max_threads(1)
        .tick(std::time::Duration::from_secs(60));
    let server = TestServer::start(config);
    for _ in 0..3 {
        let mut conn = Conn::new(server.connect());
        conn.send(&get("/drop-panic"));
        let _sent_before_the_panic = conn.try_response(false);
        assert!(conn.is_closed(), "the connection is not reused");
    }
    let resp = Conn::new(server.connect()).request(&get("/hello"));
    assert_eq!(resp.status, 200, "the only worker goes on");
}
