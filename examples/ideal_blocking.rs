//! A yardstick for the sleep rows of `../shared/bench/workloads.sh`, not a server to use: one
//! thread per connection, blocked in `read` between requests, so that a request never waits
//! for a thread and nothing is scheduled but the kernel's own wake-ups. What it reaches on
//! `/sleep?ms=N` is what blocking handlers can reach on the machine at hand; a pool can only
//! come close to it.
//!
//! It answers every request with `Hello, World!` after sleeping `N` ms for `/sleep?ms=N`; it
//! keeps no limits and checks nothing (it trusts its one client, the benchmark).
//!
//! ```text
//! cargo build --release --example ideal_blocking
//! SUBJECT_NAME=ideal SUBJECT_HELLO=/ WORKLOADS="sleep1 sleep10 sleep10w" \
//!   SUBJECT_CMD="$PWD/target/release/examples/ideal_blocking 127.0.0.1:{port}" \
//!   ../shared/bench/workloads.sh
//! ```

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

const RESPONSE: &[u8] =
    b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, World!";

/// How long the request with this head asks to sleep.
fn sleep_of(head: &[u8]) -> Duration {
    let target = head.split(|&b| b == b' ').nth(1).unwrap_or_default();
    let ms = target
        .strip_prefix(b"/sleep?ms=")
        .and_then(|ms| std::str::from_utf8(ms).ok())
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(0);
    Duration::from_millis(ms)
}

/// Serves one connection's requests until it closes.
fn serve(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf = vec![0u8; 8192];
    let mut have = 0;
    while let Ok(n @ 1..) = stream.read(&mut buf[have..]) {
        have += n;
        while let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
            std::thread::sleep(sleep_of(&buf[..end]));
            if stream.write_all(RESPONSE).is_err() {
                return;
            }
            buf.copy_within(end + 4..have, 0);
            have -= end + 4;
        }
        if have == buf.len() {
            return;
        }
    }
}

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let listener = TcpListener::bind(&addr).expect("cannot bind");
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || serve(stream));
    }
}
