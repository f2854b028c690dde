//! A worker retired as the pool shrinks never leaves the idle set unwatched: no request is left
//! accepted but unread. (The former leader/follower hand-off lost its leader this way: a
//! retired leader, nobody serving, followers that never took the empty place.)

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use common::client::{get, Conn, Resp};
use common::TestServer;

/// How long a client waits for an answer: a live server answers these in milliseconds.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(3);

/// The Monitor's tick: the pool shrinks by one worker per tick after two quiet ticks.
const TICK: Duration = Duration::from_millis(10);

/// A stream larger than the socket buffers hold, so that its worker waits for a client that
/// reads nothing yet.
const HELD_KIB: usize = 8192;

/// A server ticking every [`TICK`] with `min..=max` workers (max 0: no limit).
fn server(min: usize, max: usize) -> TestServer {
    TestServer::start(
        TestServer::config()
            .min_threads(min)
            .max_threads(max)
            .tick(TICK)
            .timeout(Duration::from_secs(30)),
    )
}

/// A connection to `addr` that gives up on an answer after [`ANSWER_TIMEOUT`].
fn connect(addr: SocketAddr) -> TcpStream {
    let stream = common::connect(addr);
    stream.set_read_timeout(Some(ANSWER_TIMEOUT)).unwrap();
    stream
}

/// Sends `raw` on a new connection and reads its response; `Err` says that `what` was not
/// answered.
fn ask(addr: SocketAddr, raw: &[u8], what: &str) -> Result<Resp, String> {
    let mut conn = Conn::new(connect(addr));
    conn.send(raw);
    conn.try_response(false).map_err(|e| {
        format!("{what}: no answer within {ANSWER_TIMEOUT:?} ({e}): no worker reads requests")
    })
}

/// Like [`ask`], failing the test when there is no answer.
fn answered(server: &TestServer, raw: &[u8], what: &str) -> Resp {
    ask(server.addr, raw, what).unwrap_or_else(|e| panic!("{e}"))
}

/// Clients of a burst, each answering `Err` with what went wrong.
type Burst = Vec<JoinHandle<Result<(), String>>>;

/// Starts `n` clients at once, each asking for `/sleep?ms={ms}` on its own connection.
fn start_burst(server: &TestServer, round: usize, n: usize, ms: u64) -> Burst {
    let addr = server.addr;
    (0..n)
        .map(|i| {
            thread::spawn(move || {
                let what = format!("round {round}: slow request {i} of the burst");
                let resp = ask(addr, &get(&format!("/sleep?ms={ms}")), &what)?;
                match resp.text() == format!("slept {ms} ms\n") {
                    true => Ok(()),
                    false => Err(format!("{what}: answered {:?}", resp.text())),
                }
            })
        })
        .collect()
}

/// Joins every client of a burst, then fails with the first one that was not answered.
fn join_burst(clients: Burst) {
    let results: Vec<_> = (clients.into_iter())
        .map(|client| client.join().expect("a burst client"))
        .collect();
    for result in results {
        result.unwrap_or_else(|e| panic!("{e}"));
    }
}

/// `n` requests of `ms` ms at once (the pool grows to serve them together), all answered.
fn burst(server: &TestServer, round: usize, n: usize, ms: u64) {
    join_burst(start_burst(server, round, n, ms));
}

/// A POST whose body is echoed.
fn post(server: &TestServer, round: usize) {
    let body = format!("round {round}");
    let raw = format!(
        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let what = format!("round {round}: POST /echo");
    let resp = answered(server, raw.as_bytes(), &what);
    assert_eq!(resp.text(), body, "{what}");
}

/// A stream of `n` chunks, read in full.
fn stream(server: &TestServer, round: usize, n: usize) {
    let what = format!("round {round}: /stream?n={n}");
    let resp = answered(server, &get(&format!("/stream?n={n}")), &what);
    let body: String = (0..n).map(|i| format!("chunk {i}\n")).collect();
    assert_eq!(resp.text(), body, "{what}");
}

/// Waits for the pool to shrink back to `min` workers: the last retirement has just been
/// decided.
fn shrunk(server: &TestServer, round: usize, min: usize) {
    server.wait_for(&format!("round {round}: the pool shrinks to {min}"), |s| {
        s.threads == min
    });
}

/// Two requests in turn once the pool has shrunk: some worker still takes requests (a
/// retired worker may take the first on its way out, but not the second).
fn probe(server: &TestServer, round: usize) {
    for i in 0..2 {
        let what = format!("round {round}: /hello {i} after the pool shrank");
        let resp = answered(server, &get("/hello"), &what);
        assert_eq!(resp.status, 200, "{what}");
    }
}

/// Asks for a stream of [`HELD_KIB`] KiB (to be closed after it) and reads nothing but its
/// first byte: its worker waits to send the rest.
fn hold_stream(server: &TestServer, round: usize) -> TcpStream {
    let mut stream = connect(server.addr);
    let raw = format!("GET /zeros?kib={HELD_KIB} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    stream.write_all(raw.as_bytes()).unwrap();
    let started = stream.peek(&mut [0u8; 1]);
    assert!(
        matches!(started, Ok(1)),
        "round {round}: the held stream: no answer within {ANSWER_TIMEOUT:?} ({started:?})"
    );
    stream
}

/// Reads all of a [`hold_stream`] at once, in large reads (its worker is free within a few
/// milliseconds), and checks that it is complete.
fn read_held(mut stream: TcpStream, round: usize) {
    let mut received = Vec::new();
    let read = stream.read_to_end(&mut received);
    let what = format!(
        "round {round}: the held stream ({} bytes read)",
        received.len()
    );
    assert!(
        read.is_ok(),
        "{what}: not sent within {ANSWER_TIMEOUT:?} ({read:?})"
    );
    assert!(received.starts_with(b"HTTP/1.1 200 "), "{what}");
    assert!(received.ends_with(b"\r\n0\r\n\r\n"), "{what}: not ended");
    assert!(received.len() > HELD_KIB * 1024, "{what}: cut short");
}

/// At most two workers: the older one finishes its slow request first and waits on the idle
/// set while the newer one is free too, so each round's single retirement (the oldest worker)
/// retires the one waiting.
#[test]
fn a_worker_retired_by_the_last_shrink_is_replaced_on_the_idle_set() {
    let server = server(1, 2);
    for round in 0..50 {
        burst(&server, round, 2, 30);
        post(&server, round);
        stream(&server, round, 10);
        shrunk(&server, round, 1);
        probe(&server, round);
    }
}

/// The reported workload: bursts of ten slow requests, a POST and a stream, each round ended by
/// the pool shrinking back to one worker.
#[test]
fn rounds_of_ten_slow_requests_a_post_and_a_stream_keep_the_idle_set_watched() {
    let server = server(1, 0);
    for round in 0..40 {
        burst(&server, round, 10, 30);
        post(&server, round);
        stream(&server, round, 10);
        shrunk(&server, round, 1);
        probe(&server, round);
    }
}

/// Each round: two slow requests, then a stream taken by the third (newest) worker; the first
/// worker to finish its slow request waits on the idle set, the pool shrinks back to 2 while
/// the stream waits for its reader, and the stream ends just after the last retirement.
#[test]
fn a_worker_retired_while_a_stream_is_sent_is_replaced_on_the_idle_set() {
    let server = server(2, 3);
    for round in 0..40 {
        let before = server.status().requests_total;
        let slow = start_burst(&server, round, 2, 100);
        server.wait_for(&format!("round {round}: both slow requests run"), |s| {
            s.busy == 2 || s.requests_total > before
        });
        let held = hold_stream(&server, round);
        join_burst(slow);
        post(&server, round);
        shrunk(&server, round, 2);
        read_held(held, round);
        probe(&server, round);
    }
}
