//! Python WSGI applications (the `python` feature) over real sockets.
#![cfg(feature = "python")]

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;

use common::client::{get, Conn};
use common::process::{run_to_end, socket_activated, Running};
use common::TestServer;
use skyrocket::python::PythonApp;
use skyrocket::{Config, ConfigBuilder};

fn apps_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python")
}

fn serve(name: &str) -> TestServer {
    TestServer::start(config(name))
}

/// The test defaults with the application `wsgi_apps:{name}`.
fn config(name: &str) -> ConfigBuilder {
    let app = PythonApp::load(&format!("wsgi_apps:{name}"), &[apps_dir()]).expect("loads");
    Config::builder()
        .bind("127.0.0.1:0")
        .min_threads(2)
        .handle_signals(false)
        .app(app)
}

fn post(path: &str, body: &[u8]) -> Vec<u8> {
    let mut raw = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    raw
}

#[test]
fn a_missing_module_attribute_or_callable_is_a_one_line_error() {
    let table = [
        ("no_such_module:app", "ModuleNotFoundError"),
        ("wsgi_apps:nothing_here", "AttributeError"),
        ("wsgi_apps:CLOSED", "not callable"),
    ];
    for (spec, expected) in table {
        let err = PythonApp::load(spec, &[apps_dir()]).err().expect("fails");
        let text = err.to_string();
        assert!(text.contains(expected), "{spec}: {text}");
        assert_eq!(text.lines().count(), 1, "{spec}: {text}");
    }
}

#[test]
fn hello_and_keep_alive() {
    let server = serve("hello");
    let mut conn = Conn::new(server.connect());
    for _ in 0..3 {
        let resp = conn.request(&get("/"));
        assert_eq!((resp.status, resp.text().as_str()), (200, "Hello, World!"));
        assert_eq!(resp.header("content-type"), Some("text/plain"));
    }
}

#[test]
fn the_body_is_read_from_wsgi_input_with_length_or_chunked() {
    let server = serve("echo");
    let resp = Conn::new(server.connect()).request(&post("/", b"posted body"));
    assert_eq!(resp.text(), "posted body");
    let chunked = b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
                    5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    let resp = Conn::new(server.connect()).request(chunked);
    assert_eq!(resp.text(), "hello world");
}

#[test]
fn wsgi_input_iterates_lines() {
    let server = serve("lines");
    let resp = Conn::new(server.connect()).request(&post("/", b"one\ntwo\nthree"));
    assert_eq!(resp.text(), "3 lines\none\ntwo\nthree");
}

#[test]
fn close_is_called_on_the_result() {
    let server = serve("closing");
    assert_eq!(Conn::new(server.connect()).request(&get("/")).text(), "abc");
    let count = PythonApp::load("wsgi_apps:closed_count", &[apps_dir()]).unwrap();
    let counter = TestServer::start(
        Config::builder()
            .bind("127.0.0.1:0")
            .handle_signals(false)
            .app(count),
    );
    let resp = Conn::new(counter.connect()).request(&get("/"));
    assert_eq!(resp.text(), "1");
}

#[test]
fn the_application_serves_on_across_restarts() {
    let server = serve("hello");
    let mut kept = Conn::new(server.connect());
    for _ in 0..3 {
        assert_eq!(kept.request(&get("/")).text(), "Hello, World!");
        server.handle().restart().expect("restart");
        let fresh = Conn::new(server.connect()).request(&get("/"));
        assert_eq!(fresh.text(), "Hello, World!", "new threads run Python too");
    }
}

#[test]
fn an_exception_is_a_500_and_the_worker_goes_on() {
    let server = serve("boom");
    for _ in 0..3 {
        let resp = Conn::new(server.connect()).request(&get("/"));
        assert_eq!(resp.status, 500);
    }
    assert!(server.status().threads >= 2);
}

#[test]
fn start_response_refuses_statuses_and_headers_that_cannot_be_sent() {
    let resp = Conn::new(serve("bad_headers").connect()).request(&get("/"));
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "X-Split, Bad Name, X-Nul, 1234, 100, 200, OK");
    assert_eq!(resp.header("injected"), None);
}

#[test]
fn write_and_exc_info_before_the_body() {
    let resp = Conn::new(serve("writer").connect()).request(&get("/"));
    assert_eq!(resp.text(), "written then returned");
    let resp = Conn::new(serve("exc_info").connect()).request(&get("/"));
    assert_eq!((resp.status, resp.text().as_str()), (500, "replaced"));
}

#[test]
fn environ_strings_are_latin1_and_numbers_are_strings() {
    let server = serve("environ_keys");
    let raw = b"POST /caf%C3%A9?a=1 HTTP/1.1\r\nHost: t\r\nX-Twice: 1\r\nX-Twice: 2\r\n\
                Content-Length: 0\r\n\r\n";
    let text = Conn::new(server.connect()).request(raw).text();
    // The decoded path bytes C3 A9 became two latin-1 characters, and went back out as the
    // same two bytes: read as UTF-8 they are "é" again.
    assert!(text.contains("PATH_INFO='/café'"), "{text}");
    assert!(text.contains("QUERY_STRING='a=1'"), "{text}");
    assert!(
        text.contains(&format!("SERVER_PORT='{}'", server.addr.port())),
        "{text}"
    );
    assert!(text.contains("CONTENT_LENGTH='0'"), "{text}");
    assert!(text.contains("HTTP_X_TWICE='1,2'"), "{text}");
    assert!(text.contains("SERVER_SOFTWARE='skyrocket/"), "{text}");
    assert!(text.contains("wsgi.input_terminated=True"), "{text}");
}

#[test]
fn the_environ_follows_the_target_and_keeps_bytes_and_cookies() {
    let server = serve("faithful");
    let mut conn = Conn::new(server.connect());
    let raw = b"GET http://other.example:81/a%ff?q=1 HTTP/1.1\r\nHost: x\r\n\
                Cookie: a=1\r\nCookie: b=2\r\n\r\n";
    let text = conn.request(raw).text();
    for line in [
        "REQUEST_URI='http://other.example:81/a%ff?q=1'",
        "RAW_URI='http://other.example:81/a%ff?q=1'",
        "PATH_INFO='/a\\xff'",
        "QUERY_STRING='q=1'",
        "HTTP_HOST='other.example:81'",
        "SERVER_NAME='other.example'",
        "SERVER_PORT='81'",
        "HTTP_COOKIE='a=1; b=2'",
        "wsgi.url_scheme='http'",
        "path bytes=2f61ff",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
    }
    let text = conn.request(&get("/a%c0%af")).text();
    for line in [
        "path bytes=2f61c0af",
        "REQUEST_URI='/a%c0%af'",
        "HTTP_HOST='test'",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
    }
}

#[test]
fn the_environ_names_the_client_a_trusted_proxy_names() {
    let server = TestServer::start(config("faithful").forwarded_allow_ips("127.0.0.1"));
    let raw = b"GET / HTTP/1.1\r\nHost: backend\r\nX-Forwarded-For: 192.0.2.7\r\n\
                X-Forwarded-Proto: https\r\nX-Forwarded-Host: app.example\r\n\r\n";
    let text = Conn::new(server.connect()).request(raw).text();
    for line in [
        "REMOTE_ADDR='192.0.2.7'",
        "HTTP_HOST='app.example'",
        "wsgi.url_scheme='https'",
        "HTTPS='on'",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
    }
}

#[test]
fn header_values_go_out_without_the_whitespace_around_them() {
    use std::io::Read;
    let server = serve("faithful");
    let mut conn = Conn::new(server.connect());
    conn.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let mut received = Vec::new();
    conn.stream.read_to_end(&mut received).unwrap();
    let text = String::from_utf8_lossy(&received);
    assert!(
        text.contains("\r\nset-cookie: csrftoken=abc; Path=/\r\n"),
        "{text}"
    );
}

/// The bytes of `DATA` in wsgi_apps.py: every byte value, 400 times.
fn data() -> Vec<u8> {
    (0..400).flat_map(|_| 0..=255u8).collect()
}

#[test]
fn the_standard_validator_accepts_every_kind_of_request_and_response() {
    let chunked = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
                    5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    let head = b"HEAD /hello HTTP/1.1\r\nHost: t\r\n\r\n";
    let table: [(&[u8], u16, &[u8]); 8] = [
        (&get("/hello"), 200, b"Hello, World!"),
        (head, 200, b""),
        (&post("/echo", b"with a length"), 200, b"with a length"),
        (chunked, 200, b"hello world"),
        (&get("/stream"), 200, b"one two three"),
        (&get("/write"), 200, b"written, returned"),
        (&get("/exc_info"), 500, b"replaced"),
        (&get("/file"), 200, &data()),
    ];
    let server = serve("validated_routes");
    let mut conn = Conn::new(server.connect());
    for (raw, status, body) in table {
        conn.send(raw);
        let resp = conn.response(raw.starts_with(b"HEAD"));
        let what = String::from_utf8_lossy(&raw[..raw.len().min(20)]);
        assert_eq!((resp.status, &resp.body[..]), (status, body), "{what}");
    }
}

#[test]
fn a_file_wrapper_sends_the_file_from_its_position_up_to_the_declared_length() {
    let server = serve("file_wrapped");
    let mut conn = Conn::new(server.connect());
    let data = data();
    let table: [(&str, &[u8]); 3] = [
        ("/whole?t", &data[10..]),
        ("/declared?t", &data[10..1010]),
        ("/memory", &data),
    ];
    for (path, expected) in table {
        let resp = conn.request(&get(path));
        assert_eq!(resp.status, 200, "{path}");
        assert!(resp.body == expected, "{path}: {} bytes", resp.body.len());
    }
    assert_eq!(
        conn.request(&get("/closed?t")).text(),
        "2",
        "both files closed"
    );
}

#[test]
fn a_file_shorter_than_its_declared_length_closes_the_connection_after_it() {
    let server = serve("file_wrapped");
    let received = pipelined_until_close(&server, &["/longer", "/whole"]);
    let head_end = received.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(
        received[head_end..] == data()[10..],
        "the file's rest, then the close"
    );
}

/// Sends GET requests for `paths` at once on one connection and reads until the server closes
/// it (cleanly: a reset fails the test).
fn pipelined_until_close(server: &TestServer, paths: &[&str]) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut stream = server.connect();
    let requests: Vec<Vec<u8>> = paths.iter().map(|path| get(path)).collect();
    stream.write_all(&requests.concat()).unwrap();
    let mut received = Vec::new();
    stream.read_to_end(&mut received).expect("a clean close");
    received
}

#[test]
fn a_slow_reader_of_a_wrapped_file_holds_no_worker() {
    let app = PythonApp::load("wsgi_apps:file_wrapped", &[apps_dir()]).expect("loads");
    let server = TestServer::start(TestServer::one_worker().app(app));
    let mut slow = Conn::new(server.connect_small_window());
    slow.send(&get("/big"));
    server.wait_for("the file waits in the idle set", |s| {
        s.idle_connections == 1 && s.busy == 0
    });
    let resp = Conn::new(server.connect()).request(&get("/memory"));
    assert_eq!(resp.status, 200, "the only worker is free");
    let resp = slow.response(false);
    assert_eq!(resp.body.len(), 32 << 20);
    assert!(resp.body.iter().all(|&b| b == 0));
}

#[test]
fn ten_requests_sleep_in_the_application_at_the_same_time() {
    let app = PythonApp::load("wsgi_apps:sleep_together", &[apps_dir()]).expect("loads");
    let config = Config::builder().bind("127.0.0.1:0").min_threads(10);
    let server = TestServer::start(config.handle_signals(false).app(app));
    let addr = server.addr;
    let clients: Vec<_> = (0..10)
        .map(|_| thread::spawn(move || Conn::new(common::connect(addr)).request(&get("/"))))
        .collect();
    let sleeps: Vec<(f64, f64)> = clients
        .into_iter()
        .map(|client| {
            let resp = client.join().unwrap();
            assert_eq!(resp.status, 200, "{}", resp.text());
            let text = resp.text();
            let (began, ended) = text.split_once(' ').unwrap();
            (began.parse().unwrap(), ended.parse().unwrap())
        })
        .collect();
    let last_began = sleeps.iter().map(|s| s.0).fold(f64::MIN, f64::max);
    let first_ended = sleeps.iter().map(|s| s.1).fold(f64::MAX, f64::min);
    assert!(
        last_began < first_ended,
        "all ten slept at once: {sleeps:?}"
    );
}

#[test]
fn a_generator_is_streamed_chunked_with_start_response_called_inside() {
    let server = serve("streamed");
    let mut conn = Conn::new(server.connect());
    for _ in 0..2 {
        let resp = conn.request(&get("/"));
        assert_eq!((resp.status, resp.text().as_str()), (200, "one two three"));
        assert!(resp.chunked, "no Content-Length declared: chunked");
    }
}

#[test]
fn a_body_failing_midway_cuts_the_connection_and_close_is_still_called() {
    let server = serve("broken");
    let mut conn = Conn::new(server.connect());
    conn.send(&get("/"));
    assert!(conn.try_response(false).is_err(), "the body is cut short");
    let resp = Conn::new(server.connect()).request(&get("/closed"));
    assert_eq!(resp.text(), "1", "close() was called");
}

#[test]
fn a_body_shorter_than_its_content_length_closes_the_connection_after_it() {
    let server = serve("short");
    for _ in 0..2 {
        let received = pipelined_until_close(&server, &["/", "/"]);
        let text = String::from_utf8_lossy(&received);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(
            text.ends_with("\r\n\r\n12345"),
            "5 bytes, then the close: {text}"
        );
        assert_eq!(
            text.matches("HTTP/1.1").count(),
            1,
            "no second response: {text}"
        );
    }
}

#[test]
fn a_declared_length_is_what_is_sent_and_what_a_head_tells() {
    let server = serve("declared");
    let mut conn = Conn::new(server.connect());
    let head = |path: &str| format!("HEAD {path} HTTP/1.1\r\nHost: t\r\n\r\n").into_bytes();
    // (request, status, Content-Length header, body); all on one kept-alive connection.
    let table: [(Vec<u8>, Option<&str>, &[u8]); 6] = [
        (get("/list"), Some("3"), b"abc"),
        (get("/generator"), Some("3"), b"abc"),
        (head("/head"), Some("1234"), b""),
        (get("/head"), Some("1234"), &[b'x'; 1234]),
        (head("/bare"), None, b""),
        (get("/bare"), Some("4"), b"bare"),
    ];
    for (raw, length, body) in table {
        conn.send(&raw);
        let resp = conn.response(raw.starts_with(b"HEAD"));
        let what = String::from_utf8_lossy(&raw[..16]);
        assert_eq!(resp.status, 200, "{what}");
        assert_eq!(resp.header("content-length"), length, "{what}");
        assert_eq!(resp.body, body, "{what}");
    }
}

#[test]
fn other_requests_run_while_an_application_waits_for_its_body() {
    use std::io::Write;
    let server = serve("upload_or_probe");
    let mut upload = server.connect();
    let head = "POST /upload HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n";
    upload.write_all(head.as_bytes()).unwrap();
    upload.write_all(&[b'x'; 20_000]).unwrap();
    // The upload's application now waits in wsgi.input.read(): the GIL must be free meanwhile.
    let mut seen = String::new();
    for _ in 0..1000 {
        seen = Conn::new(server.connect()).request(&get("/probe")).text();
        if seen == "reading" {
            break;
        }
    }
    assert_eq!(
        seen, "reading",
        "a request was served while the upload was being read"
    );
    upload.write_all(&[b'x'; 80_000]).unwrap();
    let resp = Conn::new(upload).response(false);
    assert_eq!(resp.text(), "100000");
}

/// A module found only in the virtualenv made by [`virtualenv`]: it answers `sys.prefix`.
const VENV_APP: &str = "import sys

def app(environ, start_response):
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [sys.prefix.encode()]
";

/// A new virtualenv, made with the Python the server embeds, holding the module `venv_only`.
fn virtualenv(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("skyrocket-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let made = Command::new(env!("SKYROCKET_PYTHON"))
        .args(["-m", "venv", "--without-pip"])
        .arg(&dir)
        .status()
        .expect("run python -m venv");
    assert!(made.success(), "python -m venv");
    let lib = fs::read_dir(dir.join("lib"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    fs::write(lib.path().join("site-packages/venv_only.py"), VENV_APP).unwrap();
    dir
}

fn served_text(server: &Running) -> String {
    let resp = Conn::new(common::connect(server.addrs[0])).request(&get("/"));
    assert_eq!(resp.status, 200);
    resp.text()
}

/// The arguments that run `venv_only:app`, importable only from the test virtualenvs.
const VENV_ONLY_APP: [&str; 5] = [
    "--app",
    "venv_only:app",
    "--bind",
    "127.0.0.1:0",
    "--no-signals",
];

#[test]
fn the_binary_imports_from_the_virtualenv_given_or_activated() {
    let venv = virtualenv("venv");
    let dir = venv.to_str().unwrap();
    let args = VENV_ONLY_APP;
    let elsewhere = run_to_end(&args);
    let stderr = String::from_utf8_lossy(&elsewhere.stderr);
    assert!(!elsewhere.status.success());
    assert!(stderr.contains("No module named 'venv_only'"), "{stderr}");
    let given = Running::start(&[&["--virtualenv", dir][..], &args].concat());
    assert_eq!(served_text(&given), dir);
    let activated = Running::start_with(&args, "info", &[("VIRTUAL_ENV", dir)]);
    assert_eq!(served_text(&activated), dir);
    let _ = fs::remove_dir_all(&venv);
}

/// The start-up line that says which Python runs the application.
fn python_line(server: &Running) -> &str {
    let found = server.startup.iter().find(|l| l.contains("Python 3."));
    found.unwrap_or_else(|| panic!("no Python line in {:?}", server.startup))
}

#[test]
fn the_binary_logs_which_python_and_virtualenv_run_the_application() {
    let venv = virtualenv("venv-log");
    let dir = venv.to_str().unwrap();
    let args = VENV_ONLY_APP;
    let given = Running::start(&[&["--virtualenv", dir][..], &args].concat());
    let line = python_line(&given);
    let version = Command::new(env!("SKYROCKET_PYTHON"))
        .args(["-c", "import sys; print(sys.version.split()[0])"])
        .output()
        .expect("run python");
    let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
    assert!(line.contains(&format!("Python {version} (")), "{line}");
    assert!(
        line.contains(&format!("executable {dir}/bin/python;")),
        "{line}"
    );
    assert!(line.contains(&format!("; virtualenv {dir};")), "{line}");
    let activated = Running::start_with(&args, "info", &[("VIRTUAL_ENV", dir)]);
    assert!(python_line(&activated).ends_with(&format!("; virtualenv {dir}; $VIRTUAL_ENV {dir}")));
    let _ = fs::remove_dir_all(&venv);
}

#[test]
fn a_directory_that_is_not_a_virtualenv_is_a_one_line_error() {
    let out = run_to_end(&["--virtualenv", "/", "--app", "wsgi_apps:hello"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("/ is not a usable virtualenv"), "{stderr}");
}

#[test]
fn the_applications_exit_functions_run_when_the_binary_stops() {
    let marker = std::env::temp_dir().join(format!("skyrocket-exit-{}", std::process::id()));
    let _ = fs::remove_file(&marker);
    let apps = apps_dir();
    let mut server = Running::start(&[
        "--app",
        "exiting:app",
        "--pythonpath",
        apps.to_str().unwrap(),
        "--bind",
        "127.0.0.1:0",
    ]);
    let query = marker.to_str().unwrap().replace('/', "%2F");
    let resp = Conn::new(common::connect(server.addrs[0])).request(&get(&format!("/?{query}")));
    assert_eq!(resp.text(), "registered");
    server.signal("TERM");
    assert!(server.wait_exit().success());
    let written = fs::read_to_string(&marker).expect("the exit function wrote its file");
    assert_eq!(written, "exit functions ran");
    let _ = fs::remove_file(Path::new(&marker));
}

#[test]
fn subprocesses_inherit_neither_the_systemd_variables_nor_the_passed_socket() {
    let passed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let apps = apps_dir();
    // Signals stay on: their watcher holds the Server, whose configuration holds fd 3.
    let args = [
        "--app",
        "wsgi_apps:systemd_env",
        "--pythonpath",
        apps.to_str().unwrap(),
    ];
    let mut command = socket_activated(std::os::fd::AsRawFd::as_raw_fd(&passed), "web", &args);
    command.env("NOTIFY_SOCKET", "@skyrocket-test-unheard");
    let server = Running::from_command(command);
    assert_eq!(server.addrs, [passed.local_addr().unwrap()]);
    assert_eq!(served_text(&server), "");
}
