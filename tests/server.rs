//! The Server actor through its public messages (`Start`, `Stop`, `Restart`, `Status`), with
//! real workers and real sockets on loopback.
//!
//! Tests wait on channels (bounded by `WAIT`) or poll a condition, never sleep.

mod common;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Condvar, Mutex};
use std::time::Duration;

use actix::prelude::*;
use http::StatusCode;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use common::wait::{wait_for, wait_until, WAIT};
use skyrocket::{Config, ConfigBuilder, Environ, Input, Reply};
use skyrocket::{Restart, Server, Start, Status, Stop};

/// Read and write timeout of every client socket.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// The Monitor's tick in these tests.
const TICK: Duration = Duration::from_millis(20);
/// A keep-alive timeout that never expires during a test.
const LONG_TIMEOUT: Duration = Duration::from_secs(60);

/// The next item of `rx`, failing the test after `WAIT`.
async fn next<T>(rx: &mut UnboundedReceiver<T>) -> T {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("timed out waiting for a message")
        .expect("channel closed")
}

/// Sets the client timeouts on a client socket.
fn with_timeouts(client: TcpStream) -> TcpStream {
    client.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    client.set_write_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    client
}

/// The test defaults: loopback, port 0, one worker at least, quick ticks, no signals.
fn config() -> ConfigBuilder {
    Config::builder()
        .bind("127.0.0.1:0")
        .min_threads(1)
        .handle_signals(false)
        .tick(TICK)
        .timeout(LONG_TIMEOUT)
        .read_timeout(CLIENT_TIMEOUT)
        .shutdown_timeout(WAIT)
}

fn server(builder: ConfigBuilder) -> Addr<Server> {
    Server::new(builder.build().expect("valid config")).start()
}

async fn start(server: &Addr<Server>) -> Vec<SocketAddr> {
    server
        .send(Start)
        .await
        .expect("server alive")
        .expect("server starts")
}

async fn stop(server: &Addr<Server>, graceful: bool) {
    server.send(Stop { graceful }).await.expect("server alive");
}

async fn status(server: &Addr<Server>) -> skyrocket::StatusReport {
    server.send(Status).await.expect("server alive")
}

/// Polls the server's status until `cond` holds, failing after `WAIT`.
async fn status_until(
    server: &Addr<Server>,
    what: &str,
    cond: impl Fn(&skyrocket::StatusReport) -> bool,
) -> skyrocket::StatusReport {
    wait_for(what, || status(server), cond).await
}

fn connect(addr: SocketAddr) -> TcpStream {
    with_timeouts(TcpStream::connect_timeout(&addr, CLIENT_TIMEOUT).expect("connect"))
}

/// Sends `GET /` on `client` and reads the whole response; answers the status code.
fn request(client: &mut TcpStream) -> u16 {
    request_path(client, "/")
}

/// Sends `GET path` on `client` and reads the whole response; answers the status code.
fn request_path(client: &mut TcpStream, path: &str) -> u16 {
    send_request(client, path);
    read_response(client)
}

/// Sends `GET path` on `client`.
fn send_request(client: &mut TcpStream, path: &str) {
    let raw = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    client.write_all(raw.as_bytes()).expect("send request");
}

/// Reads one whole response from `client`; answers the status code.
fn read_response(client: &mut TcpStream) -> u16 {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = client.read(&mut byte).expect("response arrives");
        assert_eq!(n, 1, "connection closed mid-response: {head:?}");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).expect("a text head");
    let status = head[9..12].parse().expect("a status code");
    let length = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().expect("a length"))
        })
        .expect("a Content-Length");
    let mut body = vec![0u8; length];
    client.read_exact(&mut body).expect("the body");
    status
}

/// `GET /` on a new connection, on a blocking thread; answers the status code.
async fn get(addr: SocketAddr) -> u16 {
    tokio::task::spawn_blocking(move || request(&mut connect(addr)))
        .await
        .expect("client thread")
}

/// Sends the first request to a server whose only worker will be held in the application,
/// and holds this thread (the actors' thread) until the application has the request; answers
/// the client, reading the response on a blocking thread.
///
/// This orders the test: the only worker is known to be serving (and to have asked to grow)
/// before the other clients connect.
async fn first_request(
    server: &Addr<Server>,
    addr: SocketAddr,
    entered: &AtomicUsize,
) -> tokio::task::JoinHandle<u16> {
    let mut client = connect(addr);
    status_until(server, "the first connection waits for input", |s| {
        s.queued == 1
    })
    .await;
    send_request(&mut client, "/");
    wait_until("the first request is in the application", || {
        entered.load(Ordering::SeqCst) >= 1
    });
    tokio::task::spawn_blocking(move || read_response(&mut client))
}

#[actix::test]
async fn start_answers_the_bound_address() {
    let server = server(config());
    let addrs = start(&server).await;
    assert_eq!(addrs.len(), 1);
    assert_eq!(addrs[0].ip().to_string(), "127.0.0.1");
    assert_ne!(addrs[0].port(), 0, "a real port");
    assert_eq!(get(addrs[0]).await, 200);
    stop(&server, false).await;
}

#[actix::test]
async fn status_reports_running_with_workers() {
    let server = server(config());
    assert!(!status(&server).await.running, "not before Start");
    start(&server).await;
    let report = status(&server).await;
    assert!(report.running);
    assert!(report.threads >= 1, "threads: {}", report.threads);
    stop(&server, false).await;
}

#[actix::test]
async fn second_start_is_idempotent() {
    let server = server(config());
    let first = start(&server).await;
    let threads = status(&server).await.threads;
    let second = start(&server).await;
    assert_eq!(first, second);
    assert_eq!(status(&server).await.threads, threads, "no second pool");
    assert_eq!(get(first[0]).await, 200);
    stop(&server, false).await;
}

#[actix::test]
async fn graceful_stop_reports_not_running_and_closes_the_port() {
    let server = server(config());
    let addr = start(&server).await[0];
    assert_eq!(get(addr).await, 200);
    stop(&server, true).await;
    let report = status(&server).await;
    assert!(!report.running);
    assert_eq!(report.threads, 0);
    let refused = TcpStream::connect_timeout(&addr, CLIENT_TIMEOUT).expect_err("port closed");
    assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
}

#[actix::test]
async fn restart_keeps_accepting_and_hands_idle_connections_over() {
    let server = server(config());
    let addr = start(&server).await[0];
    let (code, mut kept) = tokio::task::spawn_blocking(move || {
        let mut client = connect(addr);
        (request(&mut client), client)
    })
    .await
    .unwrap();
    assert_eq!(code, 200);
    let before = status_until(&server, "the connection is parked", |s| {
        s.idle_connections == 1 && s.busy == 0
    })
    .await;
    assert_eq!(before.requests_total, 1);

    server
        .send(Restart)
        .await
        .expect("server alive")
        .expect("restarts");
    let after = status(&server).await;
    assert!(after.running);
    assert!(after.threads >= 1);
    assert_eq!(after.idle_connections, 1, "handed over, still parked");

    assert_eq!(get(addr).await, 200, "still accepting");
    let code = tokio::task::spawn_blocking(move || request(&mut kept))
        .await
        .unwrap();
    assert_eq!(
        code, 200,
        "the kept-alive connection is served by the new pool"
    );
    // (A response is counted just after it is written.)
    status_until(
        &server,
        "three responses are counted across the restart",
        |s| s.requests_total == 3,
    )
    .await;
    stop(&server, false).await;
}

#[actix::test]
async fn pool_grows_to_serve_concurrent_requests_then_shrinks() {
    const CLIENTS: usize = 4;
    // The requests wait for each other, and for the test to have seen them all in the app.
    let barrier = Arc::new(Barrier::new(CLIENTS + 1));
    let entered = Arc::new(AtomicUsize::new(0));
    let (started_tx, mut started) = unbounded_channel();
    let app = {
        let (barrier, entered) = (barrier.clone(), entered.clone());
        move |_e: &Environ, _i: &mut Input<'_>| {
            entered.fetch_add(1, Ordering::SeqCst);
            let _ = started_tx.send(());
            barrier.wait();
            Reply::text(StatusCode::OK, "together")
        }
    };
    let server = server(config().app(app).max_threads(0));
    let addr = start(&server).await[0];
    assert_eq!(status(&server).await.threads, 1);

    // The only worker takes the first request and asks for more; the others arrive meanwhile.
    let mut clients = vec![first_request(&server, addr, &entered).await];
    for _ in 1..CLIENTS {
        clients.push(tokio::task::spawn_blocking(move || {
            request(&mut connect(addr))
        }));
    }
    for _ in 0..CLIENTS {
        next(&mut started).await;
    }
    // (Threads may already be shrinking: free workers beyond min retire as the test watches.)
    let report = status(&server).await;
    assert_eq!(
        report.busy, CLIENTS,
        "four requests run at once: {report:?}"
    );
    tokio::task::spawn_blocking(move || barrier.wait())
        .await
        .unwrap();
    for client in clients {
        assert_eq!(client.await.expect("client thread"), 200);
    }

    // Quiet again: one worker retired per tick, down to min.
    status_until(&server, "the pool shrinks back to min", |s| s.threads == 1).await;
    status_until(&server, "every response is counted", |s| {
        s.requests_total == CLIENTS as u64
    })
    .await;
    stop(&server, false).await;
}

/// A gate the app waits at until the test opens it.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
}

impl Gate {
    fn wait(&self) {
        let open = self.open.lock().unwrap();
        let _open = self.opened.wait_while(open, |open| !*open).unwrap();
    }

    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }
}

/// Opens the gate when dropped, so that a failing test leaves no worker blocked.
struct OpenOnDrop(Arc<Gate>);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.open();
    }
}

#[actix::test]
async fn restart_moves_a_connection_served_meanwhile_to_the_new_pool() {
    let gate = Arc::new(Gate::default());
    let _open = OpenOnDrop(gate.clone());
    let (started_tx, mut started) = unbounded_channel();
    let app = {
        let gate = gate.clone();
        move |e: &Environ, _i: &mut Input<'_>| {
            if e.path_info() == "/slow" {
                let _ = started_tx.send(());
                gate.wait();
            }
            Reply::text(StatusCode::OK, "ok")
        }
    };
    // One worker per pool: while the old pool's worker is held, only the new pool serves.
    let server = server(config().app(app).max_threads(1));
    let addr = start(&server).await[0];
    let (code, mut probe) = tokio::task::spawn_blocking(move || {
        let mut client = connect(addr);
        (request(&mut client), client)
    })
    .await
    .unwrap();
    assert_eq!(code, 200);
    status_until(&server, "the probe is parked", |s| {
        s.idle_connections == 1 && s.busy == 0
    })
    .await;

    // A slow request holds the old pool's only worker through the restart.
    let slow = tokio::task::spawn_blocking(move || {
        let mut client = connect(addr);
        let first = request_path(&mut client, "/slow");
        let second = request(&mut client);
        (first, second)
    });
    next(&mut started).await;
    let restart = server.send(Restart); // queued now; answers once the old pool has drained

    // The idle probe can only be served by the new pool, after the old one handed it over.
    let code = tokio::task::spawn_blocking(move || request(&mut probe))
        .await
        .unwrap();
    assert_eq!(code, 200, "the probe is served by the new pool");

    gate.open();
    let (first, second) = slow.await.expect("client thread");
    assert_eq!(first, 200);
    assert_eq!(
        second, 200,
        "the connection served meanwhile moved to the new pool"
    );
    tokio::time::timeout(WAIT, restart)
        .await
        .expect("the restart completes")
        .expect("server alive")
        .expect("restarts");
    let report = status_until(&server, "four responses are counted", |s| {
        s.requests_total == 4
    })
    .await;
    assert_eq!(report.threads, 1, "the old pool is gone");
    stop(&server, false).await;
}

#[actix::test]
async fn max_threads_bounds_concurrent_requests() {
    let gate = Arc::new(Gate::default());
    let _open = OpenOnDrop(gate.clone());
    let running = Arc::new(AtomicUsize::new(0));
    let entered = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (started_tx, mut started) = unbounded_channel();
    let app = {
        let (gate, running) = (gate.clone(), running.clone());
        let (entered, most) = (entered.clone(), most.clone());
        move |_e: &Environ, _i: &mut Input<'_>| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            entered.fetch_add(1, Ordering::SeqCst);
            let _ = started_tx.send(());
            gate.wait();
            running.fetch_sub(1, Ordering::SeqCst);
            Reply::text(StatusCode::OK, "done")
        }
    };
    let server = server(config().app(app).max_threads(2));
    let addr = start(&server).await[0];

    // The only worker takes the first request and asks for more; the others arrive meanwhile.
    let mut clients = vec![first_request(&server, addr, &entered).await];
    for _ in 1..3 {
        clients.push(tokio::task::spawn_blocking(move || {
            request(&mut connect(addr))
        }));
    }
    next(&mut started).await;
    next(&mut started).await;
    let report = status_until(&server, "two serve and one waits", |s| {
        s.busy == 2 && s.queued == 1
    })
    .await;
    assert_eq!(report.threads, 2, "never beyond max_threads");
    assert_eq!(running.load(Ordering::SeqCst), 2);
    assert!(started.try_recv().is_err(), "the third has not started");

    gate.open();
    for client in clients {
        assert_eq!(client.await.expect("client thread"), 200);
    }
    assert_eq!(most.load(Ordering::SeqCst), 2, "at most two at once");
    assert_eq!(entered.load(Ordering::SeqCst), 3);
    assert_eq!(status(&server).await.threads, 2);
    stop(&server, false).await;
}

/// Awaits `request` on its own task and records `name` in `order` once it is answered.
fn record<M>(
    order: &Arc<Mutex<Vec<&'static str>>>,
    name: &'static str,
    request: Request<Server, M>,
) -> tokio::task::JoinHandle<()>
where
    M: actix::Message + Send + 'static,
    M::Result: Send,
    Server: actix::Handler<M>,
{
    let order = order.clone();
    actix::spawn(async move {
        request.await.expect("server alive");
        order.lock().unwrap().push(name);
    })
}

#[actix::test]
async fn control_messages_are_handled_one_at_a_time_in_order() {
    let gate = Arc::new(Gate::default());
    let _open = OpenOnDrop(gate.clone());
    let (started_tx, mut started) = unbounded_channel();
    let app = {
        let gate = gate.clone();
        move |_: &Environ, _: &mut Input<'_>| {
            let _ = started_tx.send(());
            gate.wait();
            Reply::text(StatusCode::OK, "ok")
        }
    };
    let server = server(config().app(app));
    let addr = start(&server).await[0];
    let in_flight = tokio::task::spawn_blocking(move || request(&mut connect(addr)));
    next(&mut started).await;

    // The restart waits for the request in flight; what comes after it waits for the restart.
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = [
        record(&order, "restart", server.send(Restart)),
        record(&order, "stop", server.send(Stop { graceful: true })),
        record(&order, "status", server.send(Status)),
    ];
    let early = tokio::time::timeout(Duration::from_millis(200), &mut tasks[1]).await;
    assert!(early.is_err(), "Stop was handled during the restart");
    assert!(order.lock().unwrap().is_empty());
    gate.open();
    for task in tasks {
        task.await.expect("task");
    }
    assert_eq!(*order.lock().unwrap(), ["restart", "stop", "status"]);
    assert_eq!(
        in_flight.await.unwrap(),
        200,
        "the request in flight was delivered"
    );
    assert!(!status(&server).await.running);
}
