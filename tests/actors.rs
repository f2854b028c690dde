//! Actor tests: the decisions of one actor at a time, with test actors standing in for its
//! neighbours. Stand-ins forward what they receive into channels; tests wait on those channels
//! (bounded by `WAIT`) instead of sleeping.

use std::future::Future;
use std::io::{self, Read, Write};
use std::net::{Shutdown as Half, SocketAddr, TcpListener, TcpStream};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::BytesMut;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use skyrocket::dispatcher::{
    Connection, Dispatcher, Drain, Shutdown, Tick, WorkerFactory, WorkerFree, WorkerId, WorkerLink,
};
use skyrocket::monitor::{Close, Monitor, Park};
use skyrocket::stats::{Gauge, Stats};
use skyrocket::worker::Serve;
use skyrocket::{Config, Restart, Server, Start, Status, Stop};

/// The longest a test waits for something that should happen.
const WAIT: Duration = Duration::from_secs(5);
/// Read and write timeout of every client socket.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// The Monitor's tick in these tests.
const TICK: Duration = Duration::from_millis(20);
/// A keep-alive timeout short enough to watch expire.
const SHORT_TIMEOUT: Duration = Duration::from_millis(100);
/// A keep-alive timeout that never expires during a test (well beyond `CLIENT_TIMEOUT`).
const LONG_TIMEOUT: Duration = Duration::from_secs(60);

// ----- helpers -------------------------------------------------------------------------------

/// The next item of `rx`, failing the test after `WAIT`.
async fn next<T>(rx: &mut UnboundedReceiver<T>) -> T {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("timed out waiting for a message")
        .expect("channel closed")
}

/// Everything `rx` holds right now.
fn pending<T>(rx: &mut UnboundedReceiver<T>) -> Vec<T> {
    let mut items = Vec::new();
    while let Ok(item) = rx.try_recv() {
        items.push(item);
    }
    items
}

/// A loopback listener that hands out connected pairs.
fn loopback() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0")
}

/// A connected client socket (with timeouts) and the accepted side as a `Connection`.
fn pair(listener: &TcpListener) -> (TcpStream, Connection) {
    let client = TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
    client.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    client.set_write_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    let (stream, peer) = listener.accept().expect("accept");
    let conn = Connection {
        stream,
        peer,
        local: listener.local_addr().unwrap(),
        buffered: BytesMut::new(),
    };
    (client, conn)
}

/// Reads from `client` on a blocking thread (the actors under test share this one).
async fn client_read(mut client: TcpStream) -> (io::Result<usize>, TcpStream) {
    tokio::task::spawn_blocking(move || {
        let mut buf = [0u8; 64];
        let got = client.read(&mut buf);
        (got, client)
    })
    .await
    .expect("client thread")
}

/// Whether a future is already resolved, polling it once.
async fn is_ready<F: Future + Unpin>(fut: &mut F) -> bool {
    std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *fut).poll(cx).is_ready())).await
}

/// A stand-in for any neighbour: forwards every `M` it receives into a channel.
struct Forward<M>(UnboundedSender<M>);

impl<M: Message<Result = ()> + Send + Unpin + 'static> Actor for Forward<M> {
    type Context = Context<Self>;
}

impl<M: Message<Result = ()> + Send + Unpin + 'static> Handler<M> for Forward<M> {
    type Result = ();

    fn handle(&mut self, msg: M, _ctx: &mut Self::Context) {
        let _ = self.0.send(msg);
    }
}

/// A recipient whose messages come out of the returned channel.
fn forward<M: Message<Result = ()> + Send + Unpin + 'static>(
) -> (Recipient<M>, UnboundedReceiver<M>) {
    let (tx, rx) = unbounded_channel();
    (Forward(tx).start().recipient(), rx)
}

// ----- the Dispatcher, with stand-in workers ------------------------------------------------

/// A stand-in worker: reports what it serves and when it stops; `dead` ones stop at once.
struct StandIn {
    id: WorkerId,
    dead: bool,
    served: UnboundedSender<(WorkerId, Connection)>,
    stopped: UnboundedSender<WorkerId>,
}

impl Actor for StandIn {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if self.dead {
            ctx.stop();
        }
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        let _ = self.stopped.send(self.id);
    }
}

impl Handler<Serve> for StandIn {
    type Result = ();

    fn handle(&mut self, Serve(conn): Serve, _ctx: &mut Self::Context) {
        let _ = self.served.send((self.id, conn));
    }
}

/// A Dispatcher on stand-in workers, and what they report.
struct Pool {
    addr: Addr<Dispatcher>,
    stats: Arc<Stats>,
    /// Ids the factory was called with.
    created: UnboundedReceiver<WorkerId>,
    /// Connections handed to stand-ins.
    served: UnboundedReceiver<(WorkerId, Connection)>,
    /// Stand-ins that stopped (retired, or dead from the start).
    stopped: UnboundedReceiver<WorkerId>,
    /// Where client connections come from.
    listener: TcpListener,
}

impl Pool {
    /// `min..=max` workers; the workers whose id is in `dead` close their mailbox at once.
    fn start(min: usize, max: usize, dead: &'static [WorkerId]) -> Pool {
        let (created_tx, created) = unbounded_channel();
        let (served_tx, served) = unbounded_channel();
        let (stopped_tx, stopped) = unbounded_channel();
        let factory: WorkerFactory = Box::new(move |id, _free: Recipient<WorkerFree>| {
            let _ = created_tx.send(id);
            let stand_in = StandIn {
                id,
                dead: dead.contains(&id),
                served: served_tx.clone(),
                stopped: stopped_tx.clone(),
            };
            WorkerLink {
                serve: stand_in.start().recipient(),
                arbiter: None,
            }
        });
        let stats = Arc::new(Stats::default());
        let addr = Dispatcher::new(min, max, factory, stats.clone()).start();
        Pool {
            addr,
            stats,
            created,
            served,
            stopped,
            listener: loopback(),
        }
    }

    /// Sends the Dispatcher a new connection (handled when this returns); the client side.
    async fn connect(&self) -> TcpStream {
        let (client, conn) = pair(&self.listener);
        self.addr.send(conn).await.expect("dispatcher alive");
        client
    }

    /// The next connection a stand-in got: (worker, client port).
    async fn served(&mut self) -> (WorkerId, u16) {
        let (id, conn) = next(&mut self.served).await;
        (id, conn.peer.port())
    }

    async fn free(&self, id: WorkerId) {
        self.addr
            .send(WorkerFree { id })
            .await
            .expect("dispatcher alive");
    }

    async fn tick(&self) {
        self.addr.send(Tick).await.expect("dispatcher alive");
    }

    fn gauge(&self, gauge: Gauge) -> usize {
        self.stats.get(gauge)
    }
}

fn port(client: &TcpStream) -> u16 {
    client.local_addr().unwrap().port()
}

#[actix::test]
async fn dispatcher_starts_min_workers() {
    let mut pool = Pool::start(3, 0, &[]);
    // Drain answers at once when idle, so it also marks the end of start-up.
    pool.addr.send(Drain).await.unwrap();
    assert_eq!(pending(&mut pool.created), vec![0, 1, 2]);
    assert_eq!(pool.gauge(Gauge::Threads), 3);
    assert_eq!(pool.gauge(Gauge::Busy), 0);
}

#[actix::test]
async fn dispatcher_routes_a_connection_to_a_free_worker() {
    let mut pool = Pool::start(2, 0, &[]);
    let client = pool.connect().await;
    let (id, peer) = pool.served().await;
    assert!(id < 2, "served by a started worker, got {id}");
    assert_eq!(peer, port(&client));
    assert_eq!(pool.gauge(Gauge::Busy), 1);
    assert_eq!(pool.gauge(Gauge::Queued), 0);
    assert_eq!(pending(&mut pool.created).len(), 2, "no worker added");
}

#[actix::test]
async fn dispatcher_queues_when_all_busy_and_hands_over_in_arrival_order() {
    let mut pool = Pool::start(1, 1, &[]);
    let a = pool.connect().await;
    let b = pool.connect().await;
    let c = pool.connect().await;
    assert_eq!(pool.served().await, (0, port(&a)));
    assert_eq!(pool.gauge(Gauge::Queued), 2);
    assert_eq!(pool.gauge(Gauge::Busy), 1);

    pool.free(0).await;
    assert_eq!(pool.served().await, (0, port(&b)));
    assert_eq!(pool.gauge(Gauge::Queued), 1);

    pool.free(0).await;
    assert_eq!(pool.served().await, (0, port(&c)));
    assert_eq!(pool.gauge(Gauge::Queued), 0);
    assert_eq!(pool.gauge(Gauge::Busy), 1);
}

#[actix::test]
async fn dispatcher_grows_when_all_busy_but_never_beyond_max() {
    let mut pool = Pool::start(1, 3, &[]);
    let mut clients = Vec::new();
    for _ in 0..5 {
        clients.push(pool.connect().await);
    }
    assert_eq!(pending(&mut pool.created), vec![0, 1, 2]);
    let mut workers = Vec::new();
    for _ in 0..3 {
        workers.push(pool.served().await.0);
    }
    workers.sort_unstable();
    assert_eq!(workers, vec![0, 1, 2], "one connection per worker");
    assert_eq!(pool.gauge(Gauge::Threads), 3);
    assert_eq!(pool.gauge(Gauge::Busy), 3);
    assert_eq!(pool.gauge(Gauge::Queued), 2);
}

#[actix::test]
async fn dispatcher_without_max_grows_as_needed() {
    let mut pool = Pool::start(1, 0, &[]);
    let mut clients = Vec::new();
    for _ in 0..6 {
        clients.push(pool.connect().await);
    }
    assert_eq!(pool.gauge(Gauge::Queued), 0, "nothing waits");
    assert_eq!(pool.gauge(Gauge::Busy), 6);
    assert!(pool.gauge(Gauge::Threads) >= 6);
    let mut workers: Vec<WorkerId> = Vec::new();
    for _ in 0..6 {
        workers.push(pool.served().await.0);
    }
    workers.sort_unstable();
    workers.dedup();
    assert_eq!(workers.len(), 6, "every connection has a worker of its own");
}

#[actix::test]
async fn dispatcher_shrinks_one_free_worker_per_quiet_tick_down_to_min() {
    let mut pool = Pool::start(1, 3, &[]);
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(pool.connect().await);
    }
    let mut order = Vec::new();
    for _ in 0..3 {
        let (id, _) = pool.served().await;
        pool.free(id).await;
        order.push(id);
    }
    assert_eq!(pool.gauge(Gauge::Threads), 3);
    assert_eq!(pool.gauge(Gauge::Busy), 0);

    pool.tick().await;
    assert_eq!(pool.gauge(Gauge::Threads), 3, "not after one quiet tick");
    pool.tick().await;
    assert_eq!(pool.gauge(Gauge::Threads), 2);
    assert_eq!(
        next(&mut pool.stopped).await,
        order[0],
        "least recently freed"
    );
    pool.tick().await;
    assert_eq!(pool.gauge(Gauge::Threads), 1);
    assert_eq!(next(&mut pool.stopped).await, order[1]);
    for _ in 0..3 {
        pool.tick().await;
        assert_eq!(pool.gauge(Gauge::Threads), 1, "never below min");
    }
    assert!(pending(&mut pool.created).len() == 3, "no worker added");
}

#[actix::test]
async fn dispatcher_replaces_a_dead_worker_and_keeps_its_connection() {
    let mut pool = Pool::start(1, 1, &[0]);
    assert_eq!(next(&mut pool.stopped).await, 0);
    let client = pool.connect().await;
    assert_eq!(pool.served().await, (1, port(&client)));
    assert_eq!(pending(&mut pool.created), vec![0, 1]);
    assert_eq!(pool.gauge(Gauge::Threads), 1);
    assert_eq!(pool.gauge(Gauge::Busy), 1);
    assert_eq!(pool.gauge(Gauge::Queued), 0);
}

#[actix::test]
async fn dispatcher_tick_replaces_a_lost_worker() {
    let mut pool = Pool::start(2, 2, &[0]);
    assert_eq!(next(&mut pool.stopped).await, 0);
    assert_eq!(pending(&mut pool.created), vec![0, 1]);
    pool.tick().await;
    assert_eq!(pending(&mut pool.created), vec![2]);
    assert_eq!(pool.gauge(Gauge::Threads), 2);
}

#[actix::test]
async fn dispatcher_drain_waits_until_every_worker_is_free() {
    let mut pool = Pool::start(1, 1, &[]);
    let _client = pool.connect().await;
    let (id, _) = pool.served().await;
    let mut drain = Box::pin(pool.addr.send(Drain));
    // A later message is handled after Drain; then let any answer reach us before looking.
    pool.tick().await;
    tokio::task::yield_now().await;
    assert!(
        !is_ready(&mut drain).await,
        "Drain answered with a busy worker"
    );

    pool.free(id).await;
    tokio::time::timeout(WAIT, drain)
        .await
        .expect("Drain answers once the worker is free")
        .unwrap();
}

#[actix::test]
async fn dispatcher_shutdown_stops_workers_and_closes_queued_connections() {
    let mut pool = Pool::start(1, 1, &[]);
    let _served = pool.connect().await;
    let queued = pool.connect().await;
    assert_eq!(pool.gauge(Gauge::Queued), 1);
    assert_eq!(pool.served().await.0, 0);

    pool.addr.send(Shutdown).await.unwrap();
    assert_eq!(pool.gauge(Gauge::Threads), 0);
    assert_eq!(pool.gauge(Gauge::Busy), 0);
    assert_eq!(pool.gauge(Gauge::Queued), 0);
    assert_eq!(next(&mut pool.stopped).await, 0, "the worker is retired");
    let (got, _) = client_read(queued).await;
    assert_eq!(
        got.expect("EOF, not an error"),
        0,
        "queued connection closed"
    );
    assert!(
        pool.addr.send(Drain).await.is_err(),
        "the dispatcher stopped"
    );
}

// ----- the Monitor, with stand-ins for the Dispatcher -----------------------------------------

/// A Monitor sending connections and ticks to stand-ins.
struct Watch {
    addr: Addr<Monitor>,
    stats: Arc<Stats>,
    woke: UnboundedReceiver<Connection>,
    ticks: UnboundedReceiver<Tick>,
    listener: TcpListener,
}

impl Watch {
    fn start(timeout: Duration) -> Watch {
        let (to_dispatcher, woke) = forward::<Connection>();
        let (to_ticks, ticks) = forward::<Tick>();
        let stats = Arc::new(Stats::default());
        let addr = Monitor::new(timeout, TICK, to_dispatcher, to_ticks, stats.clone()).start();
        Watch {
            addr,
            stats,
            woke,
            ticks,
            listener: loopback(),
        }
    }

    /// Parks a new connection (handled when this returns); the client side.
    async fn park(&self) -> TcpStream {
        let (client, conn) = pair(&self.listener);
        self.addr.send(Park(conn)).await.expect("monitor alive");
        client
    }

    fn idle(&self) -> usize {
        self.stats.get(Gauge::Idle)
    }
}

#[actix::test]
async fn monitor_ticks_periodically() {
    let mut watch = Watch::start(LONG_TIMEOUT);
    next(&mut watch.ticks).await;
    next(&mut watch.ticks).await;
}

#[actix::test]
async fn monitor_sends_back_a_connection_with_the_bytes_that_woke_it() {
    let mut watch = Watch::start(LONG_TIMEOUT);
    let mut client = watch.park().await;
    assert_eq!(watch.idle(), 1);

    client.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    let mut conn = next(&mut watch.woke).await;
    assert_eq!(&conn.buffered[..], b"GET / HTTP/1.1\r\n");
    assert_eq!(conn.peer, client.local_addr().unwrap());
    assert_eq!(watch.idle(), 0);

    // The socket still works, in blocking mode, for the worker that gets it.
    conn.stream.write_all(b"pong").unwrap();
    let mut got = [0u8; 4];
    client.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"pong");
}

#[actix::test]
async fn monitor_closes_an_idle_connection_after_timeout() {
    let mut watch = Watch::start(SHORT_TIMEOUT);
    let parked_at = Instant::now();
    let client = watch.park().await;
    assert_eq!(watch.idle(), 1);

    let (got, _client) = client_read(client).await;
    assert_eq!(got.expect("EOF, not a client timeout"), 0);
    assert!(
        parked_at.elapsed() >= SHORT_TIMEOUT,
        "closed before timeout"
    );
    assert_eq!(watch.idle(), 0);
    assert!(pending(&mut watch.woke).is_empty(), "not forwarded");
}

#[actix::test]
async fn monitor_drops_a_connection_the_client_closed() {
    let mut watch = Watch::start(LONG_TIMEOUT);
    let client = watch.park().await;
    // Closing only the client's sending side lets it see the server close in turn.
    client.shutdown(Half::Write).unwrap();

    let (got, _client) = client_read(client).await;
    assert_eq!(got.expect("EOF, not a client timeout"), 0);
    assert_eq!(watch.idle(), 0);
    assert!(pending(&mut watch.woke).is_empty(), "not forwarded");
}

#[actix::test]
async fn monitor_close_closes_parked_connections_and_stops() {
    let mut watch = Watch::start(LONG_TIMEOUT);
    let first = watch.park().await;
    let second = watch.park().await;
    assert_eq!(watch.idle(), 2);

    watch.addr.send(Close).await.unwrap();
    assert_eq!(watch.idle(), 0);
    assert_eq!(client_read(first).await.0.expect("EOF"), 0);
    assert_eq!(client_read(second).await.0.expect("EOF"), 0);
    assert!(!watch.addr.connected(), "the monitor stopped");
    assert!(pending(&mut watch.woke).is_empty(), "nothing forwarded");
}

// ----- the Server, for real ------------------------------------------------------------------

fn server() -> Addr<Server> {
    let config = Config::builder()
        .bind("127.0.0.1:0")
        .min_threads(1)
        .handle_signals(false)
        .tick(TICK)
        .timeout(LONG_TIMEOUT)
        .read_timeout(CLIENT_TIMEOUT)
        .shutdown_timeout(WAIT)
        .build()
        .expect("valid config");
    Server::new(config).start()
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

/// `GET /` on a fresh connection, on a blocking thread; answers the response's status line.
async fn get(addr: SocketAddr) -> String {
    tokio::task::spawn_blocking(move || {
        let mut client = TcpStream::connect_timeout(&addr, CLIENT_TIMEOUT).expect("connect");
        client.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        client.set_write_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n") {
            let n = client.read(&mut byte).expect("response arrives");
            assert_eq!(n, 1, "connection closed before a status line");
            head.push(byte[0]);
        }
        String::from_utf8_lossy(&head).trim_end().to_string()
    })
    .await
    .expect("client thread")
}

#[actix::test]
async fn server_start_answers_the_bound_address() {
    let server = server();
    let addrs = start(&server).await;
    assert_eq!(addrs.len(), 1);
    assert_eq!(addrs[0].ip().to_string(), "127.0.0.1");
    assert_ne!(addrs[0].port(), 0, "a real port");
    stop(&server, false).await;
}

#[actix::test]
async fn server_status_reports_running_with_workers() {
    let server = server();
    start(&server).await;
    let status = server.send(Status).await.unwrap();
    assert!(status.running);
    assert!(status.threads >= 1, "threads: {}", status.threads);
    stop(&server, false).await;
}

#[actix::test]
async fn server_second_start_is_idempotent() {
    let server = server();
    let first = start(&server).await;
    let second = start(&server).await;
    assert_eq!(first, second);
    assert_eq!(get(first[0]).await, "HTTP/1.1 200 OK");
    stop(&server, false).await;
}

#[actix::test]
async fn server_graceful_stop_reports_not_running_and_closes_the_port() {
    let server = server();
    let addr = start(&server).await[0];
    stop(&server, true).await;
    let status = server.send(Status).await.unwrap();
    assert!(!status.running);
    assert_eq!(status.threads, 0);
    let refused = TcpStream::connect_timeout(&addr, CLIENT_TIMEOUT).expect_err("port closed");
    assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
}

#[actix::test]
async fn server_restart_keeps_the_address_accepting() {
    let server = server();
    let addr = start(&server).await[0];
    server
        .send(Restart)
        .await
        .expect("server alive")
        .expect("restarts");
    assert_eq!(get(addr).await, "HTTP/1.1 200 OK");
    assert!(server.send(Status).await.unwrap().running);
    stop(&server, false).await;
}
