//! The testbed application: the routes tests and benchmarks rely on.

use std::io::Read;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::StatusCode;
use skyrocket::{Body, Environ, Input, Reply};

/// The largest body `/echo` sends back.
const ECHO_LIMIT: usize = 64 * 1024 * 1024;

/// Routes a request to its handler.
pub fn testbed(env: &Environ, input: &mut Input<'_>) -> Reply {
    let path = env.path_info();
    match (env.method(), path.as_ref()) {
        ("GET" | "HEAD", "/hello") => hello(),
        ("POST", "/echo") => echo(input),
        ("GET", "/sleep") => sleep(env),
        ("GET", "/spin") => spin(env),
        ("GET" | "HEAD", "/stream") => stream(env),
        ("GET" | "HEAD", "/zeros") => zeros(env),
        ("GET", "/bytes") => bytes(env),
        ("GET", "/drop-panic") => Reply::stream(StatusCode::OK, DropPanic(1)),
        ("GET", "/panic") => panic!("the testbed's /panic route"),
        ("GET" | "HEAD", p) if p.starts_with("/environ") => environ(env),
        _ => Reply::text(StatusCode::NOT_FOUND, "Not Found\n"),
    }
}

fn hello() -> Reply {
    Reply::new(StatusCode::OK)
        .header(CONTENT_TYPE, HeaderValue::from_static("text/plain"))
        .body(Body::Bytes(Bytes::from_static(b"Hello, World!")))
}

fn echo(input: &mut Input<'_>) -> Reply {
    let mut body = Vec::new();
    match input.take(ECHO_LIMIT as u64).read_to_end(&mut body) {
        Ok(_) => Reply::text(StatusCode::OK, body),
        Err(e) => Reply::text(StatusCode::BAD_REQUEST, format!("{e}\n")),
    }
}

fn query_number(env: &Environ, key: &str) -> Option<u64> {
    env.query_string()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
}

fn sleep(env: &Environ) -> Reply {
    let ms = query_number(env, "ms").unwrap_or(0).min(60_000);
    std::thread::sleep(Duration::from_millis(ms));
    Reply::text(StatusCode::OK, format!("slept {ms} ms\n"))
}

/// Burns `us` µs of CPU (at most 10 s), as the benchmark peers' CPU-bound handler does.
fn spin(env: &Environ) -> Reply {
    let us = query_number(env, "us").unwrap_or(0).min(10_000_000);
    let start = Instant::now();
    let mut x = 0u64;
    while start.elapsed() < Duration::from_micros(us) {
        x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
    }
    Reply::text(StatusCode::OK, format!("{x}\n"))
}

fn stream(env: &Environ) -> Reply {
    let n = query_number(env, "n").unwrap_or(3).min(100_000);
    let chunks = (0..n).map(|i| Ok(Bytes::from(format!("chunk {i}\n"))));
    Reply::stream(StatusCode::OK, chunks)
}

/// `kib` KiB of zeros (default 1024), streamed in 64 KiB chunks: a large response.
fn zeros(env: &Environ) -> Reply {
    let kib = query_number(env, "kib").unwrap_or(1024);
    let chunk = Bytes::from(vec![0u8; 64 * 1024]);
    let chunks = (0..kib.div_ceil(64)).map(move |_| Ok(chunk.clone()));
    Reply::stream(StatusCode::OK, chunks)
}

/// `kib` KiB (default 1024, at most 64 MiB) held in memory: a large response of bytes.
fn bytes(env: &Environ) -> Reply {
    let kib = query_number(env, "kib").unwrap_or(1024).min(64 * 1024);
    let body = Bytes::from(vec![b'b'; kib as usize * 1024]);
    Reply::new(StatusCode::OK).body(Body::Bytes(body))
}

/// A stream of one chunk whose clean-up panics (as an application's may).
struct DropPanic(u8);

impl Iterator for DropPanic {
    type Item = std::io::Result<Bytes>;

    fn next(&mut self) -> Option<Self::Item> {
        self.0.checked_sub(1).map(|left| {
            self.0 = left;
            Ok(Bytes::from_static(b"chunk\n"))
        })
    }
}

impl Drop for DropPanic {
    fn drop(&mut self) {
        panic!("the testbed's /drop-panic stream");
    }
}

fn environ(env: &Environ) -> Reply {
    let lines: String = env
        .vars()
        .into_iter()
        .map(|(k, v)| format!("{k}={v}\n"))
        .collect();
    Reply::text(StatusCode::OK, lines)
}
