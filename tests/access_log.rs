//! The access log over real sockets: plain lines in a file, Common and Combined formats, the
//! Basic user, refused requests (plain HTTP on a TLS port too), and the file reopened on
//! restart (logrotate).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::client::{get, Conn};
use common::wait::wait_until;
use common::TestServer;
use skyrocket::{AccessLogDestination, AccessLogFormat, ConfigBuilder, ProxyProtocol};

/// A log file path of its own for one test, removed (with its rotated copy) when dropped.
struct LogFile(PathBuf);

impl LogFile {
    fn new() -> LogFile {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "skyrocket-access-{}-{}.log",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        LogFile(std::env::temp_dir().join(name))
    }

    fn rotated(&self) -> PathBuf {
        self.0.with_extension("log.1")
    }

    /// The test server writing its access lines, in `format`, to this file.
    fn config(&self, format: AccessLogFormat) -> ConfigBuilder {
        TestServer::config()
            .access_log(AccessLogDestination::File(self.0.clone()))
            .access_log_format(format)
    }
}

impl Drop for LogFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
        let _ = fs::remove_file(self.rotated());
    }
}

/// The lines of `path` once it has `count` of them (lines are written after the response).
fn lines(path: &Path, count: usize) -> Vec<String> {
    let read = || fs::read_to_string(path).unwrap_or_default();
    wait_until(&format!("{} has {count} lines", path.display()), || {
        read().lines().count() >= count
    });
    read().lines().map(str::to_string).collect()
}

/// A line with its time replaced by `[T]`.
fn timeless(line: &str) -> String {
    match (line.find(" ["), line.find("] ")) {
        (Some(open), Some(close)) => format!("{}[T]{}", &line[..=open], &line[close + 1..]),
        _ => line.to_string(),
    }
}

#[test]
fn lines_in_a_file_are_plain_common_log_format() {
    let log = LogFile::new();
    let server = TestServer::start(log.config(AccessLogFormat::Common));
    let resp = Conn::new(server.connect()).request(&get("/hello?x=1"));
    assert_eq!(resp.status, 200);
    let line = &lines(&log.0, 1)[0];
    assert_eq!(
        timeless(line),
        "127.0.0.1 - - [T] \"GET /hello?x=1 HTTP/1.1\" 200 13"
    );
    let stamp = &line[line.find('[').unwrap() + 1..line.find(']').unwrap()];
    assert_eq!(stamp.len(), "10/Oct/2000:13:55:36 +0000".len(), "{line}");
}

#[test]
fn lines_name_the_client_a_proxy_names() {
    let log = LogFile::new();
    let config = (log.config(AccessLogFormat::Common))
        .proxy_protocol(ProxyProtocol::V1)
        .forwarded_allow_ips("10.0.0.0/8")
        .max_body(10);
    let server = TestServer::start(config);
    let mut conn = Conn::new(server.connect());
    conn.send(b"PROXY TCP4 10.0.0.5 10.0.0.1 40000 80\r\n");
    assert_eq!(conn.request(&get("/hello")).status, 200);
    let forwarded = b"POST /echo HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 192.0.2.7\r\n\
        Content-Length: 11\r\n\r\nhello world";
    assert_eq!(conn.request(forwarded).status, 413);
    let got: Vec<String> = lines(&log.0, 2).iter().map(|l| timeless(l)).collect();
    assert_eq!(
        got,
        [
            "10.0.0.5 - - [T] \"GET /hello HTTP/1.1\" 200 13",
            "192.0.2.7 - - [T] \"POST /echo HTTP/1.1\" 413 18",
        ]
    );
}

#[test]
fn combined_lines_add_referer_and_user_agent_and_the_user_is_basics() {
    let log = LogFile::new();
    let server = TestServer::start(log.config(AccessLogFormat::Combined));
    let with_all = b"GET /hello HTTP/1.1\r\nHost: t\r\nReferer: http://r.example/p?q=\"1\"\r\n\
        User-Agent: test-agent/1.0 (x)\r\nAuthorization: Basic YWxpY2U6c2VjcmV0\r\n\r\n";
    let mut conn = Conn::new(server.connect());
    assert_eq!(conn.request(with_all).status, 200);
    assert_eq!(conn.request(&get("/nowhere")).status, 404);
    let got: Vec<String> = lines(&log.0, 2).iter().map(|l| timeless(l)).collect();
    assert_eq!(
        got,
        [
            "127.0.0.1 - alice [T] \"GET /hello HTTP/1.1\" 200 13 \
             \"http://r.example/p?q=\\\"1\\\"\" \"test-agent/1.0 (x)\"",
            "127.0.0.1 - - [T] \"GET /nowhere HTTP/1.1\" 404 10 \"-\" \"-\"",
        ]
    );
}

#[test]
fn refused_requests_are_logged_with_what_is_known_of_them() {
    let log = LogFile::new();
    let config = log
        .config(AccessLogFormat::Common)
        .max_body(100)
        .max_headers(3)
        .read_timeout(Duration::from_millis(300))
        .tick(Duration::from_millis(20));
    let server = TestServer::start(config);
    let mut oversized_chunk = b"POST /echo?c HTTP/1.1\r\nHost: t\r\n\
        Transfer-Encoding: chunked\r\n\r\n80\r\n"
        .to_vec();
    oversized_chunk.extend_from_slice(&[b'x'; 128]);
    // (request, status, request line as logged)
    let table: [(&[u8], u16, &str); 8] = [
        (b"\x16\x03\x01\x00\x05hello\r\n\r\n", 400, "-"),
        (
            b"GET /v HTTP/2.0\r\nHost: t\r\n\r\n",
            505,
            "GET /v HTTP/2.0",
        ),
        (
            b"GET /h HTTP/1.1\r\nBad header\r\n\r\n",
            400,
            "GET /h HTTP/1.1",
        ),
        (
            b"GET /many HTTP/1.1\r\nHost: t\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n",
            431,
            "GET /many HTTP/1.1",
        ),
        (
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 101\r\n\r\n",
            413,
            "POST /echo HTTP/1.1",
        ),
        (&oversized_chunk, 413, "POST /echo?c HTTP/1.1"),
        (
            b"GET /slow HTTP/1.1\r\nHost: t\r\n",
            408,
            "GET /slow HTTP/1.1",
        ),
        (
            b"POST /echo?b HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc",
            408,
            "POST /echo?b HTTP/1.1",
        ),
    ];
    let mut expected = Vec::new();
    for (raw, status, line) in table {
        let mut conn = Conn::new(server.connect());
        conn.send(raw);
        let resp = conn.response(false);
        assert_eq!(resp.status, status, "{line}");
        let len = resp.body.len();
        expected.push(format!("127.0.0.1 - - [T] \"{line}\" {status} {len}"));
        // The lines of connections served in turn come in turn.
        assert_eq!(
            lines(&log.0, expected.len()).len(),
            expected.len(),
            "{line}"
        );
    }
    let got: Vec<String> = lines(&log.0, table.len())
        .iter()
        .map(|l| timeless(l))
        .collect();
    assert_eq!(got, expected);
}

#[test]
fn plain_http_on_a_tls_port_is_logged() {
    let log = LogFile::new();
    let dir = common::certs::scratch_dir("access-tls");
    let files = common::certs::self_signed(&dir);
    let config = (skyrocket::Config::builder())
        .tls_bind("127.0.0.1:0", &files.cert, &files.key)
        .app(common::testbed::testbed)
        .handle_signals(false)
        .access_log(AccessLogDestination::File(log.0.clone()));
    let server = TestServer::start(config);
    let resp = Conn::new(server.connect()).request(&get("/hello?x"));
    assert_eq!(resp.status, 400);
    let len = resp.body.len();
    assert_eq!(
        timeless(&lines(&log.0, 1)[0]),
        format!("127.0.0.1 - - [T] \"GET /hello?x HTTP/1.1\" 400 {len}")
    );
}

#[test]
fn the_file_is_reopened_on_restart_so_a_rotated_log_is_let_go() {
    let log = LogFile::new();
    let server = TestServer::start(log.config(AccessLogFormat::Common));
    assert_eq!(
        Conn::new(server.connect()).request(&get("/hello?1")).status,
        200
    );
    lines(&log.0, 1);
    fs::rename(&log.0, log.rotated()).unwrap();
    assert_eq!(
        Conn::new(server.connect()).request(&get("/hello?2")).status,
        200
    );
    let rotated = lines(&log.rotated(), 2);
    assert!(
        rotated[1].contains("/hello?2"),
        "the old file until the restart"
    );

    server.handle().restart().expect("restarts");
    assert_eq!(
        Conn::new(server.connect()).request(&get("/hello?3")).status,
        200
    );
    let fresh = lines(&log.0, 1);
    assert_eq!(fresh.len(), 1);
    assert!(
        fresh[0].contains("\"GET /hello?3 HTTP/1.1\" 200 13"),
        "{fresh:?}"
    );
    assert_eq!(
        lines(&log.rotated(), 2).len(),
        2,
        "nothing more in the rotated file"
    );
}
