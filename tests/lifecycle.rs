//! The server's lifecycle and pool under load, over loopback sockets: graceful stop with a
//! request in flight, restarts under steady load, idle connections without threads, and a
//! wave of blocking requests served at once.

mod common;

use std::io::{self, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::thread;
use std::time::Duration;

use common::client::{get, Conn};
use common::wait::wait_until;
use common::TestServer;
use http::StatusCode;
use skyrocket::{Environ, Input, Reply, Stop};

#[test]
fn graceful_stop_delivers_the_request_in_flight_with_connection_close() {
    let (release, gate) = mpsc::channel::<()>();
    let gate = Mutex::new(gate);
    let app = move |_: &Environ, _: &mut Input<'_>| {
        let _ = gate.lock().unwrap().recv();
        Reply::text(StatusCode::OK, "finished")
    };
    let server = TestServer::start(TestServer::config().app(app));
    let mut conn = Conn::new(server.connect());
    conn.send(&get("/slow"));
    wait_until("the request is in the application", || {
        server.status().busy == 1
    });
    server.handle().addr().do_send(Stop { graceful: true });
    wait_until("the server stops accepting", || {
        std::net::TcpStream::connect(server.addr).is_err()
    });
    release.send(()).unwrap();
    let resp = conn.response(false);
    assert_eq!(resp.text(), "finished");
    assert_eq!(resp.header("connection"), Some("close"));
    assert!(conn.is_closed());
}

#[test]
fn restarts_under_steady_load_lose_no_request() {
    let server = TestServer::testbed();
    let addr = server.addr;
    let stop = Arc::new(AtomicUsize::new(0));
    let served = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (stop, served) = (stop.clone(), served.clone());
            thread::spawn(move || {
                let mut conn = Conn::new(common::connect(addr));
                while stop.load(Ordering::Relaxed) == 0 {
                    let resp = conn.request(&get("/hello"));
                    assert_eq!(resp.text(), "Hello, World!");
                    served.fetch_add(1, Ordering::Relaxed);
                    if resp.header("connection") == Some("close") {
                        conn = Conn::new(common::connect(addr));
                    }
                }
            })
        })
        .collect();
    for _ in 0..3 {
        let before = served.load(Ordering::Relaxed);
        wait_until("requests flow", || {
            served.load(Ordering::Relaxed) > before + 50
        });
        server.handle().restart().expect("restart");
        let after = served.load(Ordering::Relaxed);
        wait_until("requests flow after the restart", || {
            served.load(Ordering::Relaxed) > after + 50
        });
    }
    stop.store(1, Ordering::Relaxed);
    for client in clients {
        client.join().expect("no client saw a failed request");
    }
}

#[test]
fn idle_keep_alive_connections_hold_no_threads() {
    let server = TestServer::testbed();
    let mut conns: Vec<Conn> = (0..400).map(|_| Conn::new(server.connect())).collect();
    for conn in &mut conns {
        assert_eq!(conn.request(&get("/hello")).status, 200);
    }
    wait_until("every connection is parked", || {
        server.status().idle_connections == 400
    });
    let threads = server.status().threads;
    assert!(threads <= 24, "{threads} workers for 400 idle connections");
    for conn in &mut conns[..10] {
        assert_eq!(conn.request(&get("/hello")).status, 200);
    }
}

#[test]
fn a_wave_of_blocking_requests_runs_at_once_without_a_thread_limit() {
    const WAVE: usize = 32;
    let barrier = Arc::new(Barrier::new(WAVE));
    let app = move |_: &Environ, _: &mut Input<'_>| {
        barrier.wait();
        Reply::text(StatusCode::OK, "together")
    };
    let server = TestServer::start(TestServer::config().min_threads(2).app(app));
    let addr = server.addr;
    let clients: Vec<_> = (0..WAVE)
        .map(|_| thread::spawn(move || Conn::new(common::connect(addr)).request(&get("/"))))
        .collect();
    for client in clients {
        assert_eq!(client.join().expect("client").text(), "together");
    }
}

#[test]
fn max_threads_bounds_the_requests_running_at_once() {
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (release, gate) = mpsc::channel::<()>();
    let gate = Arc::new(Mutex::new(gate));
    let app = {
        let (running, most) = (running.clone(), most.clone());
        move |_: &Environ, _: &mut Input<'_>| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            let _ = gate.lock().unwrap().recv();
            running.fetch_sub(1, Ordering::SeqCst);
            Reply::text(StatusCode::OK, "done")
        }
    };
    let config = TestServer::config().min_threads(1).max_threads(4).app(app);
    let server = TestServer::start(config);
    let addr = server.addr;
    let clients: Vec<_> = (0..8)
        .map(|_| thread::spawn(move || Conn::new(common::connect(addr)).request(&get("/"))))
        .collect();
    wait_until("four requests run", || running.load(Ordering::SeqCst) == 4);
    wait_until("the other four wait", || server.status().queued == 4);
    assert_eq!(server.status().threads, 4);
    for _ in 0..8 {
        release.send(()).unwrap();
    }
    for client in clients {
        assert_eq!(client.join().expect("client").text(), "done");
    }
    assert_eq!(most.load(Ordering::SeqCst), 4);
}

/// Checks that `cond` holds throughout `period` (the server had time to break it).
fn holds_throughout(what: &str, period: Duration, cond: impl Fn() -> bool) {
    let end = std::time::Instant::now() + period;
    while std::time::Instant::now() < end {
        assert!(cond(), "no longer true: {what}");
        thread::yield_now();
    }
}

#[test]
fn accepting_pauses_past_the_queue_bound_while_every_worker_is_busy() {
    let running = Arc::new(AtomicUsize::new(0));
    let (release, gate) = mpsc::channel::<()>();
    let gate = Arc::new(Mutex::new(gate));
    let app = {
        let running = running.clone();
        move |_: &Environ, _: &mut Input<'_>| {
            running.fetch_add(1, Ordering::SeqCst);
            let _ = gate.lock().unwrap().recv();
            Reply::text(StatusCode::OK, "done")
        }
    };
    let config = TestServer::config()
        .min_threads(1)
        .max_threads(1)
        .max_queued(2)
        .app(app);
    let server = TestServer::start(config);
    let addr = server.addr;
    let client = move || thread::spawn(move || Conn::new(common::connect(addr)).request(&get("/")));
    let mut clients = vec![client()];
    wait_until("one request runs", || running.load(Ordering::SeqCst) == 1);
    clients.extend((0..6).map(|_| client()));
    wait_until("two wait in the queue", || server.status().queued == 2);
    holds_throughout(
        "the rest wait in the backlog",
        Duration::from_millis(300),
        || server.status().connections_total == 3,
    );
    for _ in 0..7 {
        release.send(()).unwrap();
    }
    for client in clients {
        assert_eq!(client.join().expect("client").text(), "done");
    }
    assert_eq!(server.status().connections_total, 7);
}

/// What a keep-alive client saw: responses until one said `Connection: close`, or an error
/// instead of a response to a request it sent.
fn requests_until_close(addr: std::net::SocketAddr) -> Result<usize, String> {
    let mut conn = Conn::new(common::connect(addr));
    let mut answered = 0;
    loop {
        let failed = |e: io::Error| format!("request {} got no response: {e}", answered + 1);
        conn.stream.write_all(&get("/hello")).map_err(failed)?;
        let resp = conn.try_response(false).map_err(failed)?;
        answered += 1;
        assert_eq!(resp.text(), "Hello, World!");
        if resp.header("connection") == Some("close") {
            assert!(conn.is_closed(), "closed after Connection: close");
            return Ok(answered);
        }
    }
}

#[test]
fn graceful_stop_answers_every_request_sent_on_keep_alive_connections() {
    const CLIENTS: usize = 8;
    let config = TestServer::config().tick(Duration::from_millis(20));
    let server = TestServer::start(config);
    let addr = server.addr;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| thread::spawn(move || requests_until_close(addr)))
        .collect();
    wait_until("requests flow on every connection", || {
        let status = server.status();
        status.connections_total == CLIENTS as u64 && status.requests_total > 200
    });
    server.handle().addr().do_send(Stop { graceful: true });
    for client in clients {
        let answered = client.join().expect("client thread");
        assert!(answered.is_ok(), "{answered:?}");
    }
}
