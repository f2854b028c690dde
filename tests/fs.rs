//! Method `fs` over real sockets: files, conditional and range requests, directories, and a
//! table of attempts to read outside the document root.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::client::{get, Conn, Resp};
use common::TestServer;
use skyrocket::Config;

/// A directory tree for one test, removed when dropped:
///
/// ```text
/// <base>/secret.txt                 outside the root
/// <base>/root/small.txt             "hello, files\n"
/// <base>/root/empty.txt             empty
/// <base>/root/big.bin               3 MiB, bytes i % 251
/// <base>/root/site/index.html
/// <base>/root/list/a b<&>.txt       "odd\n"
/// <base>/root/list/sub/
/// <base>/root/inside-link   -> small.txt
/// <base>/root/outside-link  -> ../secret.txt
/// <base>/root/outside-dir   -> <base>
/// <base>/root/fifo                  a named pipe
/// ```
struct Tree {
    /// The directory holding the root and the secret.
    base: PathBuf,
}

const SECRET: &str = "the secret outside the root\n";
const SMALL: &str = "hello, files\n";

impl Tree {
    fn new() -> Tree {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "skyrocket-fs-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let base = std::env::temp_dir().join(name);
        let root = base.join("root");
        fs::create_dir_all(root.join("site")).unwrap();
        fs::create_dir_all(root.join("list/sub")).unwrap();
        fs::write(base.join("secret.txt"), SECRET).unwrap();
        fs::write(root.join("small.txt"), SMALL).unwrap();
        fs::write(root.join("empty.txt"), "").unwrap();
        fs::write(root.join("big.bin"), big_content()).unwrap();
        fs::write(root.join("site/index.html"), "<h1>site</h1>\n").unwrap();
        fs::write(root.join("list/a b<&>.txt"), "odd\n").unwrap();
        symlink("small.txt", root.join("inside-link")).unwrap();
        symlink("../secret.txt", root.join("outside-link")).unwrap();
        symlink(&base, root.join("outside-dir")).unwrap();
        let fifo = root.join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        Tree { base }
    }

    fn root(&self) -> PathBuf {
        self.base.join("root")
    }

    fn serve(&self, display_index: bool) -> TestServer {
        serve(&self.root(), display_index)
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.base);
    }
}

fn serve(root: &Path, display_index: bool) -> TestServer {
    TestServer::start(
        Config::builder()
            .bind("127.0.0.1:0")
            .min_threads(2)
            .handle_signals(false)
            .document_root(root)
            .display_index(display_index),
    )
}

fn big_content() -> Vec<u8> {
    (0..3 * 1024 * 1024).map(|i| (i % 251) as u8).collect()
}

/// Sends `GET path` with extra header lines and reads the response.
fn get_with(server: &TestServer, path: &str, headers: &str) -> Resp {
    let raw = format!("GET {path} HTTP/1.1\r\nHost: t\r\n{headers}\r\n");
    Conn::new(server.connect()).request(raw.as_bytes())
}

fn fetch(server: &TestServer, path: &str) -> Resp {
    get_with(server, path, "")
}

#[test]
fn a_file_has_its_type_length_validators_and_ranges_advertised() {
    let tree = Tree::new();
    let server = tree.serve(false);
    let resp = fetch(&server, "/small.txt");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), SMALL);
    assert_eq!(resp.header("content-type"), Some("text/plain"));
    assert_eq!(resp.header("content-length"), Some("13"));
    assert_eq!(resp.header("accept-ranges"), Some("bytes"));
    assert!(resp.header("last-modified").is_some());
    let etag = resp.header("etag").expect("an ETag");
    assert!(
        etag.starts_with('"') && etag.ends_with('"'),
        "strong: {etag}"
    );

    let mut conn = Conn::new(server.connect());
    conn.send(b"HEAD /small.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = conn.response(true);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("13"));
    assert_eq!(head.header("etag"), Some(etag));
    assert!(head.body.is_empty());
}

#[test]
fn an_empty_file_is_answered_at_once_and_has_no_range() {
    let tree = Tree::new();
    let server = tree.serve(false);
    let mut conn = Conn::new(server.connect());
    for _ in 0..2 {
        let resp = conn.request(&get("/empty.txt"));
        assert_eq!((resp.status, resp.body.len()), (200, 0));
        assert_eq!(resp.header("content-length"), Some("0"));
    }
    let resp = get_with(&server, "/empty.txt", "Range: bytes=0-\r\n");
    assert_eq!(resp.status, 416);
    assert_eq!(resp.header("content-range"), Some("bytes */0"));
}

#[test]
fn a_large_file_arrives_whole_and_in_order() {
    let tree = Tree::new();
    let server = tree.serve(false);
    let resp = fetch(&server, "/big.bin");
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("content-type"),
        Some("application/octet-stream")
    );
    assert!(resp.body == big_content(), "the bytes of the file");

    let mut conn = Conn::new(server.connect());
    conn.send(b"HEAD /big.bin HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = conn.response(true);
    assert_eq!(head.header("content-length"), Some("3145728"));
    assert!(head.body.is_empty());
    let next = conn.request(&get("/small.txt"));
    assert_eq!(next.text(), SMALL, "the connection goes on after HEAD");
}

#[test]
fn a_slow_reader_of_a_large_file_holds_no_worker_and_gets_all_of_it() {
    let tree = Tree::new();
    let server = TestServer::start(TestServer::one_worker().document_root(tree.root()));
    let mut slow = Conn::new(server.connect_small_window());
    slow.send(&get("/big.bin"));
    server.wait_for("the file waits in the idle set", |s| {
        s.idle_connections == 1 && s.busy == 0
    });
    assert_eq!(
        fetch(&server, "/small.txt").status,
        200,
        "the only worker is free"
    );
    let resp = slow.response(false);
    assert!(resp.body == big_content(), "every byte, in order");
}

/// The `ETag` and `Last-Modified` a GET of `path` answers.
fn validators_of(server: &TestServer, path: &str) -> (String, String) {
    let first = fetch(server, path);
    let etag = first.header("etag").unwrap().to_string();
    (etag, first.header("last-modified").unwrap().to_string())
}

#[test]
fn conditional_requests_get_304_when_the_copy_is_current() {
    let tree = Tree::new();
    let server = tree.serve(false);
    let (etag, modified) = validators_of(&server, "/small.txt");
    let table = [
        (format!("If-None-Match: {etag}\r\n"), 304),
        (format!("If-None-Match: \"other\", {etag}\r\n"), 304),
        (format!("If-None-Match: W/{etag}\r\n"), 304),
        ("If-None-Match: *\r\n".to_string(), 304),
        ("If-None-Match: \"other\"\r\n".to_string(), 200),
        (format!("If-Modified-Since: {modified}\r\n"), 304),
        (
            "If-Modified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n".into(),
            200,
        ),
        ("If-Modified-Since: not a date\r\n".into(), 200),
        (
            format!("If-None-Match: \"other\"\r\nIf-Modified-Since: {modified}\r\n"),
            200,
        ),
    ];
    for (headers, status) in table {
        let resp = get_with(&server, "/small.txt", &headers);
        assert_eq!(resp.status, status, "{headers}");
        if status == 304 {
            assert!(resp.body.is_empty(), "{headers}");
            assert_eq!(resp.header("etag"), Some(etag.as_str()), "{headers}");
        }
    }
}

#[test]
fn failed_preconditions_get_412() {
    let tree = Tree::new();
    let server = tree.serve(false);
    let (etag, modified) = validators_of(&server, "/small.txt");
    let table = [
        (format!("If-Match: {etag}\r\n"), 200),
        ("If-Match: *\r\n".to_string(), 200),
        ("If-Match: \"other\"\r\n".to_string(), 412),
        (format!("If-Match: W/{etag}\r\n"), 412),
        (format!("If-Unmodified-Since: {modified}\r\n"), 200),
        (
            "If-Unmodified-Since: Thu, 01 Jan 1970 00:00:00 GMT\r\n".into(),
            412,
        ),
        (
            format!("If-Match: \"other\"\r\nIf-None-Match: {etag}\r\n"),
            412,
        ),
    ];
    for (headers, status) in table {
        let resp = get_with(&server, "/small.txt", &headers);
        assert_eq!(resp.status, status, "{headers}");
        if status == 412 {
            assert_eq!(resp.text(), "Precondition Failed\n", "{headers}");
        }
    }
    let resp = get_with(&server, "/nowhere.txt", "If-Match: *\r\n");
    assert_eq!(
        resp.status, 404,
        "no file: the precondition is not evaluated"
    );
}

#[test]
fn a_resumed_download_of_a_file_changed_meanwhile_gets_412_not_a_part_of_the_new_one() {
    let tree = Tree::new();
    let server = tree.serve(false);
    let first = get_with(&server, "/small.txt", "Range: bytes=0-4\r\n");
    assert_eq!((first.status, first.text().as_str()), (206, "hello"));
    let old_etag = first.header("etag").unwrap().to_string();
    let old_date = first.header("last-modified").unwrap().to_string();
    let path = tree.root().join("small.txt");
    fs::write(&path, "HELLO, NEW FILES\n").unwrap();
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(10);
    fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(later)
        .unwrap();
    for resume in [
        format!("Range: bytes=5-\r\nIf-Match: {old_etag}\r\n"),
        format!("Range: bytes=5-\r\nIf-Unmodified-Since: {old_date}\r\n"),
    ] {
        let resp = get_with(&server, "/small.txt", &resume);
        assert_eq!(resp.status, 412, "{resume}");
        assert_eq!(resp.header("content-range"), None, "{resume}");
    }
    let new_etag = fetch(&server, "/small.txt")
        .header("etag")
        .unwrap()
        .to_string();
    let resume = format!("Range: bytes=5-\r\nIf-Match: {new_etag}\r\n");
    let resp = get_with(&server, "/small.txt", &resume);
    assert_eq!((resp.status, resp.text().as_str()), (206, ", NEW FILES\n"));
}

#[test]
fn single_ranges_get_206_and_ranges_outside_the_file_416() {
    let tree = Tree::new();
    let server = tree.serve(false);
    let etag = fetch(&server, "/small.txt")
        .header("etag")
        .unwrap()
        .to_string();
    // (Range and If-Range lines, status, Content-Range, body)
    let table: Vec<(String, u16, Option<&str>, &str)> = vec![
        (
            "Range: bytes=0-4\r\n".into(),
            206,
            Some("bytes 0-4/13"),
            "hello",
        ),
        (
            "Range: bytes=7-\r\n".into(),
            206,
            Some("bytes 7-12/13"),
            "files\n",
        ),
        (
            "Range: bytes=-6\r\n".into(),
            206,
            Some("bytes 7-12/13"),
            "files\n",
        ),
        (
            "Range: bytes=7-100\r\n".into(),
            206,
            Some("bytes 7-12/13"),
            "files\n",
        ),
        (
            "Range: bytes=13-20\r\n".into(),
            416,
            Some("bytes */13"),
            "Range Not Satisfiable\n",
        ),
        ("Range: bytes=0-1,3-4\r\n".into(), 200, None, SMALL),
        ("Range: bytes=oops\r\n".into(), 200, None, SMALL),
        ("Range: lines=1-2\r\n".into(), 200, None, SMALL),
        (
            format!("Range: bytes=0-4\r\nIf-Range: {etag}\r\n"),
            206,
            Some("bytes 0-4/13"),
            "hello",
        ),
        (
            "Range: bytes=0-4\r\nIf-Range: \"old\"\r\n".into(),
            200,
            None,
            SMALL,
        ),
    ];
    for (headers, status, range, body) in table {
        let resp = get_with(&server, "/small.txt", &headers);
        assert_eq!(resp.status, status, "{headers}");
        assert_eq!(resp.header("content-range"), range, "{headers}");
        assert_eq!(resp.text(), body, "{headers}");
    }
}

#[test]
fn a_range_of_a_large_file_is_exact() {
    let tree = Tree::new();
    let server = tree.serve(false);
    let resp = get_with(&server, "/big.bin", "Range: bytes=1000000-2999999\r\n");
    assert_eq!(resp.status, 206);
    assert!(resp.body == big_content()[1_000_000..3_000_000]);
}

#[test]
fn other_methods_get_405_with_allow() {
    let tree = Tree::new();
    let server = tree.serve(false);
    for method in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"] {
        let raw = format!("{method} /small.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
        let resp = Conn::new(server.connect()).request(raw.as_bytes());
        assert_eq!(resp.status, 405, "{method}");
        assert_eq!(resp.header("allow"), Some("GET, HEAD"), "{method}");
    }
}

#[test]
fn directories_redirect_to_slash_then_serve_index_html() {
    let tree = Tree::new();
    let server = tree.serve(false);
    let resp = fetch(&server, "/site?x=1");
    assert_eq!(resp.status, 301);
    assert_eq!(resp.header("location"), Some("/site/?x=1"));
    let resp = fetch(&server, "//site");
    assert_eq!(
        resp.header("location"),
        Some("/site/"),
        "never a //host redirect"
    );
    let resp = fetch(&server, "/site/");
    assert_eq!(
        (resp.status, resp.text().as_str()),
        (200, "<h1>site</h1>\n")
    );
    assert_eq!(resp.header("content-type"), Some("text/html"));
    assert_eq!(fetch(&server, "/list/").status, 403, "listing is off");
    assert_eq!(fetch(&server, "/small.txt/").status, 404);
}

#[test]
fn a_listing_escapes_names_and_its_links_work() {
    let tree = Tree::new();
    let server = tree.serve(true);
    let resp = fetch(&server, "/list/");
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let html = resp.text();
    assert!(html.contains(">a b&lt;&amp;&gt;.txt</a>"), "{html}");
    assert!(html.contains("href=\"a%20b%3C%26%3E.txt\""), "{html}");
    assert!(html.contains("href=\"sub/\""), "{html}");
    assert!(!html.contains("a b<&>"), "no raw name: {html}");
    let file = fetch(&server, "/list/a%20b%3C%26%3E.txt");
    assert_eq!((file.status, file.text().as_str()), (200, "odd\n"));
}

#[test]
fn a_listing_shows_sizes_for_people_and_no_parent_at_the_root() {
    let tree = Tree::new();
    let server = tree.serve(true);
    let root = fetch(&server, "/").text();
    assert!(
        !root.contains("href=\"../\""),
        "no parent at the root: {root}"
    );
    assert!(root.contains("title=\"3145728 bytes\">3.0M</td>"), "{root}");
    assert!(root.contains("title=\"13 bytes\">13</td>"), "{root}");
    assert!(root.contains("text-align: right"), "{root}");
    assert!(!fetch(&server, "//").text().contains("href=\"../\""));
    let sub = fetch(&server, "/list/").text();
    assert!(sub.contains("<a href=\"../\">../</a>"), "{sub}");
}

#[test]
fn a_link_inside_the_root_is_followed() {
    let tree = Tree::new();
    let server = tree.serve(false);
    let resp = fetch(&server, "/inside-link");
    assert_eq!((resp.status, resp.text().as_str()), (200, SMALL));
}

#[test]
fn a_named_pipe_is_not_served_and_holds_no_worker() {
    let tree = Tree::new();
    let server = tree.serve(false);
    assert_eq!(fetch(&server, "/fifo").status, 404);
    assert_eq!(fetch(&server, "/small.txt").status, 200);
}

/// Attempts to read outside the root, each with a twin aimed at a name that exists nowhere:
/// both must get the same answer (no oracle), and none may carry the secret.
const TRAVERSALS: [(&str, &str); 16] = [
    ("/../secret.txt", "/../nowhere.txt"),
    ("/%2e%2e/secret.txt", "/%2e%2e/nowhere.txt"),
    ("/%2E%2E/secret.txt", "/%2E%2E/nowhere.txt"),
    ("/.%2e/secret.txt", "/.%2e/nowhere.txt"),
    ("/%2e%2e%2fsecret.txt", "/%2e%2e%2fnowhere.txt"),
    ("/list/..%2f..%2fsecret.txt", "/list/..%2f..%2fnowhere.txt"),
    ("/list/../../secret.txt", "/list/../../nowhere.txt"),
    ("/%5c..%5csecret.txt", "/%5c..%5cnowhere.txt"),
    ("/..%5csecret.txt", "/..%5cnowhere.txt"),
    ("/small.txt%00.html", "/nowhere.txt%00.html"),
    ("/outside-link", "/nowhere-link"),
    ("/outside-dir/secret.txt", "/outside-dir/nowhere.txt"),
    (
        "/outside-dir/root/small.txt",
        "/outside-dir/root/nowhere.txt",
    ),
    ("//../secret.txt", "//../nowhere.txt"),
    ("http://t/../secret.txt", "http://t/../nowhere.txt"),
    ("/./secret.txt", "/./nowhere.txt"),
];

#[test]
fn no_request_reads_outside_the_root_nor_tells_what_exists_there() {
    let tree = Tree::new();
    let server = tree.serve(true);
    for (attempt, twin) in TRAVERSALS {
        let resp = fetch(&server, attempt);
        let other = fetch(&server, twin);
        assert!(
            matches!(resp.status, 400 | 403 | 404),
            "{attempt}: {}",
            resp.status
        );
        assert_eq!(resp.status, other.status, "{attempt} vs {twin}");
        assert_eq!(resp.body, other.body, "{attempt} vs {twin}");
        assert!(!resp.text().contains("secret"), "{attempt}");
    }
    for raw in [
        &b"GET /..\\secret.txt HTTP/1.1\r\nHost: t\r\n\r\n"[..],
        &b"GET /\\..\\secret.txt HTTP/1.1\r\nHost: t\r\n\r\n"[..],
    ] {
        let resp = Conn::new(server.connect()).request(raw);
        assert!(matches!(resp.status, 400 | 403 | 404), "{raw:?}");
        assert!(!resp.text().contains("secret"), "{raw:?}");
    }
    let resp = Conn::new(server.connect()).request(&get("/small.txt"));
    assert_eq!(resp.status, 200, "the server still serves");
}

/// This process's resident memory, in KiB (the test server runs in it).
fn rss_kib() -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_1_gib_file_is_streamed_without_raising_memory() {
    use std::io::Read;
    let tree = Tree::new();
    let huge = fs::File::create(tree.root().join("huge.bin")).unwrap();
    huge.set_len(1 << 30).unwrap(); // sparse: costs no disk
    let server = tree.serve(false);
    let before = rss_kib();
    let mut conn = server.connect();
    conn.write_all(&get("/huge.bin")).unwrap();
    let mut buf = vec![0u8; 256 * 1024];
    let (mut total, mut most) = (0u64, before);
    loop {
        match conn.read(&mut buf).unwrap() {
            0 => break,
            n => total += n as u64,
        }
        if total % (64 << 20) < buf.len() as u64 {
            most = most.max(rss_kib());
        }
        if total >= (1 << 30) {
            break;
        }
    }
    assert!(
        total >= 1 << 30,
        "the whole file arrived ({total} bytes with the head)"
    );
    let grown = most.saturating_sub(before);
    assert!(
        grown < 32 * 1024,
        "memory grew by {grown} KiB while serving 1 GiB"
    );
}
