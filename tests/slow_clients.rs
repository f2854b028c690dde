//! Slow and stalling clients: they must cost no worker while they dawdle, be cut off after
//! their time budget (in all, not per read), and never delay anyone else.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use common::client::{get, Conn, Resp};
use common::wait::wait_until;
use common::{TestServer, CLIENT_TIMEOUT};
use skyrocket::Stop;

/// The pace of a trickling client: one byte per step.
const TRICKLE_STEP: Duration = Duration::from_millis(50);

/// Sends `bytes` one at a time, one per [`TRICKLE_STEP`], until the server starts answering;
/// returns how many were sent by then (all of them: the server never answered meanwhile).
fn trickle_until_answered(stream: &mut TcpStream, bytes: &[u8]) -> usize {
    stream.set_read_timeout(Some(TRICKLE_STEP)).unwrap();
    let mut sent = 0;
    for byte in bytes {
        if stream.write_all(std::slice::from_ref(byte)).is_err() {
            break;
        }
        sent += 1;
        match stream.peek(&mut [0u8; 1]) {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            _ => break,
        }
    }
    stream.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    sent
}

/// Starts a server with at most 4 workers, has 200 clients send `started` in rounds (one
/// part per round), checks that ordinary clients are served meanwhile and that the pool
/// stayed within its 4 workers, then has every slow client send `rest` and returns their
/// responses.
fn two_hundred_slow_clients(started: &[&[u8]], rest: &[u8]) -> Vec<Resp> {
    let server = TestServer::start(
        TestServer::config()
            .min_threads(2)
            .max_threads(4)
            .read_timeout(Duration::from_secs(60)),
    );
    let mut slow: Vec<Conn> = (0..200).map(|_| Conn::new(server.connect())).collect();
    for part in started {
        for conn in &mut slow {
            conn.send(part);
        }
    }
    for _ in 0..5 {
        let resp = Conn::new(server.connect()).request(&get("/hello"));
        assert_eq!(resp.status, 200, "an ordinary client is served meanwhile");
    }
    assert!(server.status().threads <= 4);
    for conn in &mut slow {
        conn.send(rest);
    }
    slow.iter_mut().map(|conn| conn.response(false)).collect()
}

#[test]
fn two_hundred_trickling_heads_hold_no_worker_and_others_are_served() {
    let head: [&[u8]; 2] = [b"GET /hello HTTP/1.1\r\nHost: t\r\n", b"X-Slow: 1\r\n"];
    for resp in two_hundred_slow_clients(&head, b"\r\n") {
        assert_eq!(resp.status, 200, "a head completed in time is served");
    }
}

#[test]
fn two_hundred_slow_small_bodies_hold_no_worker_and_others_are_served() {
    let start: [&[u8]; 1] = [b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n\r\nabc"];
    for resp in two_hundred_slow_clients(&start, b"def") {
        assert_eq!((resp.status, resp.text().as_str()), (200, "abcdef"));
    }
}

#[test]
fn a_trickled_head_is_cut_after_read_timeout_in_all() {
    let server = TestServer::start(
        TestServer::config()
            .read_timeout(Duration::from_millis(300))
            .tick(Duration::from_millis(50)),
    );
    let mut conn = Conn::new(server.connect());
    let head = format!("GET /hello HTTP/1.1\r\nX-Long: {}\r\n\r\n", "a".repeat(200));
    let sent = trickle_until_answered(&mut conn.stream, head.as_bytes());
    assert!(sent < head.len(), "answered before the head was complete");
    let resp = conn.response(false);
    assert_eq!(resp.status, 408);
    assert!(conn.is_closed());
}

#[test]
fn a_trickled_body_is_cut_with_408_after_read_timeout_in_all() {
    let server = TestServer::start(TestServer::config().read_timeout(Duration::from_millis(300)));
    // A small body is received before the application runs; a large one by the application.
    for length in [1000, 1_000_000] {
        let mut conn = Conn::new(server.connect());
        let head = format!("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {length}\r\n\r\n");
        conn.send(head.as_bytes());
        let sent = trickle_until_answered(&mut conn.stream, &[b'x'; 200]);
        assert!(
            sent < 200,
            "{length}: answered before the body was complete"
        );
        let resp = conn.response(false);
        assert_eq!(resp.status, 408, "{length}");
        assert!(conn.is_closed(), "{length}");
    }
}

#[test]
fn a_request_queued_behind_busy_workers_is_not_timed_out_for_the_wait() {
    let server = TestServer::start(
        TestServer::config()
            .min_threads(1)
            .max_threads(1)
            .read_timeout(Duration::from_millis(100))
            .tick(Duration::from_millis(20)),
    );
    let mut busy = Conn::new(server.connect());
    busy.send(&get("/sleep?ms=600"));
    let mut queued = Conn::new(server.connect());
    queued.send(b"GET /hello HTTP/1.1\r\n");
    queued.send(b"Host: t\r\n\r\n");
    assert_eq!(queued.response(false).status, 200);
    assert_eq!(busy.response(false).status, 200);
}

/// Reads `stream` slowly (1 KiB per [`TRICKLE_STEP`]) until it ends; returns the bytes read.
fn read_slowly(mut stream: TcpStream) -> usize {
    let mut total = 0;
    let mut buf = [0u8; 1024];
    for _ in 0..400 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n,
        }
        thread::sleep(TRICKLE_STEP);
    }
    total
}

#[test]
fn a_slow_reader_is_given_up_after_read_timeout_and_frees_its_worker() {
    let server = TestServer::start(
        TestServer::config()
            .min_threads(1)
            .max_threads(1)
            .read_timeout(Duration::from_millis(300)),
    );
    let total = 64 * 1024 * 1024;
    let mut slow = server.connect_small_window();
    slow.write_all(&get(&format!("/zeros?kib={}", total / 1024)))
        .unwrap();
    let reader = thread::spawn(move || read_slowly(slow));
    let resp = Conn::new(server.connect()).request(&get("/hello"));
    assert_eq!(resp.status, 200, "the only worker was freed");
    let read = reader.join().unwrap();
    assert!(
        read < total,
        "the slow reader was cut off ({read} bytes read)"
    );
}

#[test]
fn a_slow_reader_of_a_response_in_memory_holds_no_worker_and_gets_all_of_it() {
    let server = TestServer::start(
        TestServer::config()
            .min_threads(1)
            .max_threads(1)
            .read_timeout(Duration::from_secs(60)),
    );
    let mut slow = Conn::new(server.connect_small_window());
    slow.send(&get("/bytes?kib=8192"));
    server.wait_for("the response waits in the idle set", |s| {
        s.idle_connections == 1 && s.busy == 0
    });
    let resp = Conn::new(server.connect()).request(&get("/hello"));
    assert_eq!(resp.status, 200, "the only worker is free");
    let resp = slow.response(false);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body.len(), 8192 * 1024);
    assert!(resp.body.iter().all(|&b| b == b'b'), "in order and intact");
    assert_eq!(
        slow.request(&get("/hello")).status,
        200,
        "and the connection goes on"
    );
}

#[test]
fn a_reader_that_stalls_on_a_response_in_memory_is_reset_after_read_timeout() {
    let server = TestServer::start(
        TestServer::config()
            .read_timeout(Duration::from_millis(300))
            .tick(Duration::from_millis(50)),
    );
    let mut slow = server.connect_small_window();
    slow.write_all(&get("/bytes?kib=8192")).unwrap();
    server.wait_for("the response waits in the idle set", |s| {
        s.idle_connections == 1
    });
    server.wait_for("the stalled reader is given up", |s| {
        s.idle_connections == 0
    });
    let mut received = Vec::new();
    let ended = slow.read_to_end(&mut received);
    assert!(
        ended.is_err() || received.len() < 8192 * 1024,
        "the response was cut"
    );
}

/// A client that asked for 8 MiB held in memory and reads nothing yet; returns once the rest
/// of the response waits in the idle set.
fn reader_left_waiting(server: &TestServer) -> Conn {
    let mut slow = Conn::new(server.connect_small_window());
    slow.send(&get("/bytes?kib=8192"));
    server.wait_for("the response waits in the idle set", |s| {
        s.idle_connections == 1
    });
    slow
}

#[test]
fn a_graceful_stop_delivers_a_response_still_being_sent() {
    let server = TestServer::start(TestServer::config());
    let mut slow = reader_left_waiting(&server);
    server.handle().addr().do_send(Stop { graceful: true });
    // `Status` waits for the stop to finish; a refused connection shows it has begun.
    wait_until("the server stops accepting", || {
        TcpStream::connect(server.addr).is_err()
    });
    let resp = slow.response(false);
    assert_eq!(resp.body.len(), 8192 * 1024);
    assert!(
        slow.is_closed(),
        "closed after the response: the server stops"
    );
}

#[test]
fn a_restart_moves_a_response_still_being_sent_to_the_new_pool() {
    let server = TestServer::start(TestServer::config());
    let mut slow = reader_left_waiting(&server);
    server.handle().restart().expect("restarts");
    let resp = slow.response(false);
    assert_eq!(resp.body.len(), 8192 * 1024);
    assert_eq!(
        slow.request(&get("/hello")).status,
        200,
        "and the connection goes on"
    );
}

#[test]
fn requests_pipelined_behind_a_waiting_response_are_answered_in_order() {
    let server = TestServer::start(TestServer::config().min_threads(1).max_threads(1));
    let mut slow = Conn::new(server.connect_small_window());
    let mut pipelined = get("/bytes?kib=4096");
    pipelined.extend_from_slice(&get("/hello"));
    pipelined.extend_from_slice(&get("/bytes?kib=4096"));
    pipelined.extend_from_slice(&get("/hello"));
    slow.send(&pipelined);
    server.wait_for("the first response waits in the idle set", |s| {
        s.idle_connections == 1
    });
    for expected in [4096 * 1024, 13, 4096 * 1024, 13] {
        let resp = slow.response(false);
        assert_eq!((resp.status, resp.body.len()), (200, expected));
    }
}
