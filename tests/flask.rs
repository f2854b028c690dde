//! A real Flask application (tests/python/flask_app.py) answers the same through skyrocket as
//! through gunicorn: the same requests go to both, and the answers are compared.
#![cfg(feature = "python")]

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::client::{get, Conn, Resp};
use common::process::stderr_lines;
use common::TestServer;
use skyrocket::python::PythonApp;
use skyrocket::Config;

fn apps_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python")
}

/// The Python that has Flask and gunicorn: the activated virtualenv's, else the one the
/// server embeds.
fn python() -> PathBuf {
    match std::env::var_os("VIRTUAL_ENV") {
        Some(venv) => PathBuf::from(venv).join("bin/python"),
        None => PathBuf::from(env!("SKYROCKET_PYTHON")),
    }
}

/// gunicorn serving `app` from tests/python on a free port; killed on drop.
struct Gunicorn {
    /// The gunicorn master process.
    child: Child,
    /// Where it listens, from its "Listening at" line.
    addr: SocketAddr,
}

impl Gunicorn {
    fn start(app: &str) -> Gunicorn {
        let mut child = Command::new(python())
            .args(["-m", "gunicorn", "--bind", "127.0.0.1:0", "--threads", "4"])
            .arg("--chdir")
            .arg(apps_dir())
            .arg(app)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start gunicorn");
        let lines = stderr_lines(&mut child);
        let addr = loop {
            let line = (lines.recv_timeout(Duration::from_secs(20)))
                .expect("gunicorn's 'Listening at' line within 20 s");
            if let Some(rest) = line.split("Listening at: http://").nth(1) {
                let addr = rest.split_whitespace().next().unwrap();
                break addr.parse().expect("gunicorn's address");
            }
        };
        Gunicorn { child, addr }
    }
}

impl Drop for Gunicorn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn post(path: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    [head.as_bytes(), body].concat()
}

fn chunked_form() -> Vec<u8> {
    b"POST /form HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\n\
      Transfer-Encoding: chunked\r\n\r\n9\r\nname=Ada&\r\nb\r\nlang=Python\r\n0\r\n\r\n"
        .to_vec()
}

fn upload() -> Vec<u8> {
    let file: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let mut body = b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; \
                     filename=\"data.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        .to_vec();
    body.extend_from_slice(&file);
    body.extend_from_slice(b"\r\n--XyZ--\r\n");
    post("/upload", "multipart/form-data; boundary=XyZ", &body)
}

/// Every request of the comparison, with a name for messages.
fn requests() -> Vec<(&'static str, Vec<u8>)> {
    let form = "application/x-www-form-urlencoded";
    vec![
        ("index", get("/")),
        ("HEAD", b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n".to_vec()),
        ("wrong method", post("/", form, b"")),
        (
            "form",
            post("/form", form, b"name=Ada&lang=Python&lang=Rust"),
        ),
        ("chunked form", chunked_form()),
        ("upload", upload()),
        (
            "json",
            post("/json", "application/json", br#"{"numbers": [1, 2, 39]}"#),
        ),
        ("bad json", post("/json", "application/json", b"{nope")),
        ("streamed", get("/stream?n=5")),
        ("404", get("/nothing/here")),
        ("error handler", get("/refused")),
        ("unhandled", get("/crash")),
        ("abort", get("/gone")),
        ("redirect", get("/redirect")),
        (
            "cookie",
            b"GET /cookie HTTP/1.1\r\nHost: t\r\nCookie: visit=1\r\n\r\n".to_vec(),
        ),
        ("file", get("/file")),
    ]
}

/// The headers that the application decides (not the server's own, such as Date).
const COMPARED: [&str; 8] = [
    "content-type",
    "content-length",
    "location",
    "set-cookie",
    "allow",
    "etag",
    "last-modified",
    "content-disposition",
];

/// What must be the same from both servers.
#[derive(Debug, PartialEq)]
struct Answer {
    status: u16,
    /// The [`COMPARED`] headers. `Allow` is sorted: Flask builds it from a set, whose order
    /// changes from one Python process to the next.
    headers: Vec<(&'static str, Option<String>)>,
    /// Whether the body was chunked (else it had a Content-Length).
    chunked: bool,
    body: String,
}

fn answer(resp: &Resp) -> Answer {
    let headers = COMPARED
        .iter()
        .map(|&h| (h, resp.header(h).map(sorted_if_allow(h))));
    Answer {
        status: resp.status,
        headers: headers.collect(),
        chunked: resp.chunked,
        body: resp.text(),
    }
}

fn sorted_if_allow(name: &str) -> impl Fn(&str) -> String + '_ {
    move |value| {
        let mut parts: Vec<&str> = value.split(", ").collect();
        if name == "allow" {
            parts.sort_unstable();
        }
        parts.join(", ")
    }
}

fn ask(addr: SocketAddr, raw: &[u8]) -> Resp {
    let mut conn = Conn::new(common::connect(addr));
    conn.send(raw);
    conn.response(raw.starts_with(b"HEAD"))
}

#[test]
fn a_flask_application_answers_as_under_gunicorn() {
    let gunicorn = Gunicorn::start("flask_app:app");
    let app = PythonApp::load("flask_app:app", &[apps_dir()]).expect("flask_app loads");
    let server = TestServer::start(
        Config::builder()
            .bind("127.0.0.1:0")
            .min_threads(2)
            .handle_signals(false)
            .app(app),
    );
    for (name, raw) in requests() {
        let theirs = ask(gunicorn.addr, &raw);
        let ours = ask(server.addr, &raw);
        assert_eq!(answer(&ours), answer(&theirs), "{name}");
    }
}

#[test]
fn the_example_application_serves_its_pages() {
    let examples = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/python");
    let app = PythonApp::load("app:app", &[examples]).expect("examples/python/app.py loads");
    let config = Config::builder().bind("127.0.0.1:0").handle_signals(false);
    let server = TestServer::start(config.app(app));
    let json = post("/api/sum", "application/json", br#"{"numbers": [1, 2]}"#);
    let table: [(Vec<u8>, u16, &str); 5] = [
        (get("/"), 200, "<h1>Hello!</h1>"),
        (
            post("/greet", "application/x-www-form-urlencoded", b"name=Ada"),
            200,
            "Hello, Ada!",
        ),
        (json, 200, r#""sum":3"#),
        (get("/slow?seconds=0"), 200, "slept 0.0 s"),
        (get("/nowhere"), 404, r#""path":"/nowhere""#),
    ];
    for (raw, status, needle) in table {
        let resp = ask(server.addr, &raw);
        assert_eq!(resp.status, status, "{}", resp.text());
        assert!(resp.text().contains(needle), "{needle}: {}", resp.text());
    }
}
