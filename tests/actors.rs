//! Actor tests: the idle set and the pool's leader/follower hand-off as units, then one actor
//! at a time with test stand-ins for its neighbours, then the Server with real workers.
//!
//! Stand-ins report into channels or shared state; tests wait on channels (bounded by `WAIT`)
//! or poll a condition with `yield_now` up to `WAIT`, never sleep. Two waits involve the clock
//! by nature: a connection must age to expire, and a wake-up that must not happen is watched
//! for `GRACE`.

use std::future::Future;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier, Condvar, Mutex};
use std::task::Poll;
use std::thread;
use std::time::{Duration, Instant};

use actix::prelude::*;
use http::StatusCode;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use skyrocket::dispatcher::{
    Connection, Dispatcher, Drain, Exhausted, Shutdown, Tick, WorkerFactory, WorkerId, WorkerLink,
};
use skyrocket::monitor::{Close, Handover, IdleSet, Monitor, Parking};
use skyrocket::pool::Pool;
use skyrocket::stats::{Gauge, Stats};
use skyrocket::worker::{Outbox, Ping, Settings};
use skyrocket::{Application, Config, ConfigBuilder, Environ, Input, Reply};
use skyrocket::{Restart, Server, Start, Status, Stop};

/// The longest a test waits for something that should happen.
const WAIT: Duration = Duration::from_secs(5);
/// Read and write timeout of every client socket.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// The Monitor's tick (and the pools' wait period) in these tests.
const TICK: Duration = Duration::from_millis(20);
/// A keep-alive timeout short enough to watch expire.
const SHORT_TIMEOUT: Duration = Duration::from_millis(100);
/// A keep-alive timeout that never expires during a test.
const LONG_TIMEOUT: Duration = Duration::from_secs(60);
/// A wait period no test outlasts: a worker waiting this long is woken only on purpose.
const FOREVER: Duration = Duration::from_secs(30);
/// How long a test watches for something that must not happen (a wake-up that would follow
/// at once); it can only make a test slower, never make it fail wrongly.
const GRACE: Duration = Duration::from_millis(100);

// ----- helpers -------------------------------------------------------------------------------

/// The next item of `rx`, failing the test after `WAIT`.
async fn next<T>(rx: &mut UnboundedReceiver<T>) -> T {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("timed out waiting for a message")
        .expect("channel closed")
}

/// Polls `cond` (yielding to the actors in between) until it holds, failing after `WAIT`.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::task::yield_now().await;
    }
}

/// Polls `cond` (yielding the thread in between) until it holds, failing after `WAIT`.
fn until_sync(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        thread::yield_now();
    }
}

/// Whether a future is already resolved, polling it once.
async fn is_ready<F: Future + Unpin>(fut: &mut F) -> bool {
    std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut *fut).poll(cx).is_ready())).await
}

/// A loopback listener that hands out connected pairs.
fn loopback() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0")
}

/// Sets the client timeouts on a client socket.
fn with_timeouts(client: TcpStream) -> TcpStream {
    client.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    client.set_write_timeout(Some(CLIENT_TIMEOUT)).unwrap();
    client
}

/// A connected client socket (with timeouts) and the accepted side as a `Connection`.
fn pair(listener: &TcpListener) -> (TcpStream, Connection) {
    let client = TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
    let client = with_timeouts(client);
    let (stream, peer) = listener.accept().expect("accept");
    let conn = Connection::accepted(stream, peer, listener.local_addr().unwrap());
    (client, conn)
}

/// The client port a connection came from, to tell connections apart.
fn port(client: &TcpStream) -> u16 {
    client.local_addr().unwrap().port()
}

/// Reads from `client` until EOF or error: `Ok(0)` is how a client sees the server close.
fn read_to_close(client: &mut TcpStream) -> io::Result<usize> {
    let mut buf = [0u8; 256];
    loop {
        match client.read(&mut buf)? {
            0 => return Ok(0),
            _ => continue,
        }
    }
}

/// Asserts that the server closed `client` (EOF, not a client timeout).
fn assert_closed(client: &mut TcpStream) {
    let got = read_to_close(client).expect("EOF, not an error or a timeout");
    assert_eq!(got, 0);
}

/// [`assert_closed`], on a blocking thread (the actors under test share this one).
async fn assert_closed_async(mut client: TcpStream) {
    tokio::task::spawn_blocking(move || assert_closed(&mut client))
        .await
        .expect("client thread");
}

/// Reads the bytes a server-side stream received, e.g. to consume a request.
fn drain_input(conn: &mut Connection, len: usize) {
    let mut buf = vec![0u8; len];
    conn.stream.read_exact(&mut buf).expect("input arrives");
}

/// Takes a connection with input from `set`, checking that its peer has not hung up.
fn take(set: &IdleSet, timeout: Duration) -> Option<Connection> {
    let (conn, hung_up) = set.take_ready(timeout)?;
    assert!(!hung_up, "the client has not closed its side");
    Some(conn)
}

/// A worker's wait for a connection, checking that its peer has not hung up.
fn next_conn(pool: &Pool) -> Option<Connection> {
    let (conn, hung_up) = pool.next_connection()?;
    assert!(!hung_up, "the client has not closed its side");
    Some(conn)
}

/// The application of the unit-level pools: answers 200 "ok".
fn ok_app() -> Arc<dyn Application> {
    Arc::new(|_e: &Environ, _i: &mut Input<'_>| Reply::text(StatusCode::OK, "ok"))
}

/// A pool (not driven by any actor) with the given wait period.
fn new_pool(tick: Duration) -> (Arc<Pool>, Arc<Stats>) {
    let stats = Arc::new(Stats::default());
    let settings = Settings {
        app: ok_app(),
        limits: Default::default(),
        read_timeout: Duration::from_secs(5),
        max_body: u64::MAX,
        server_name: "test".into(),
        stats: stats.clone(),
        draining: Arc::new(AtomicBool::new(false)),
    };
    let idle = IdleSet::new(stats.clone()).expect("an epoll instance");
    (Arc::new(Pool::new(settings, idle, tick)), stats)
}

/// An idle set with its gauges.
fn new_set() -> (IdleSet, Arc<Stats>) {
    let stats = Arc::new(Stats::default());
    (
        IdleSet::new(stats.clone()).expect("an epoll instance"),
        stats,
    )
}

/// A stand-in for the Dispatcher's tick address: forwards every `Tick` into a channel.
struct Forward(UnboundedSender<Instant>);

impl Actor for Forward {
    type Context = Context<Self>;
}

impl Handler<Tick> for Forward {
    type Result = ();

    fn handle(&mut self, _: Tick, _ctx: &mut Self::Context) {
        let _ = self.0.send(Instant::now());
    }
}

/// A recipient of ticks whose arrival times come out of the returned channel.
fn tick_recipient() -> (Recipient<Tick>, UnboundedReceiver<Instant>) {
    let (tx, rx) = unbounded_channel();
    (Forward(tx).start().recipient(), rx)
}

// ----- the idle set --------------------------------------------------------------------------

#[test]
fn idle_set_hands_out_a_connection_only_once_it_has_input() {
    let (set, stats) = new_set();
    let listener = loopback();
    let (mut client, conn) = pair(&listener);
    set.admit(conn, true).expect("admitted");
    assert_eq!((set.len(), set.fresh()), (1, 1));
    assert_eq!(stats.get(Gauge::Queued), 1);
    assert_eq!(stats.get(Gauge::Idle), 0);

    assert!(
        take(&set, Duration::from_millis(50)).is_none(),
        "nothing to read yet"
    );
    assert_eq!(set.len(), 1, "still parked");

    client.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    let mut conn = take(&set, WAIT).expect("a connection with input");
    assert_eq!(conn.peer.port(), port(&client));
    assert!(conn.ticket.is_some(), "carries its place in the set");
    assert_eq!((set.len(), set.fresh()), (0, 0));
    assert_eq!(stats.get(Gauge::Queued), 0);
    assert_eq!(stats.get(Gauge::Idle), 0);

    // The socket works for the worker that took it.
    drain_input(&mut conn, 16);
    conn.stream.write_all(b"pong").unwrap();
    let mut got = [0u8; 4];
    client.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"pong");
}

#[test]
fn idle_set_parked_connection_comes_back_when_input_arrives() {
    let (set, stats) = new_set();
    let listener = loopback();
    let (mut client, conn) = pair(&listener);
    set.admit(conn, true).unwrap();
    client.write_all(b"one").unwrap();
    let mut conn = take(&set, WAIT).expect("first request");
    drain_input(&mut conn, 3);

    assert!(matches!(set.park(conn), Parking::Parked));
    assert_eq!((set.len(), set.fresh()), (1, 0), "parked, not fresh");
    assert_eq!(stats.get(Gauge::Idle), 1);
    assert_eq!(stats.get(Gauge::Queued), 0);
    assert!(
        take(&set, Duration::from_millis(50)).is_none(),
        "idle until the client writes"
    );

    client.write_all(b"two").unwrap();
    let mut conn = take(&set, WAIT).expect("taken again");
    assert_eq!(conn.peer.port(), port(&client));
    assert_eq!(set.len(), 0);
    assert_eq!(stats.get(Gauge::Idle), 0);
    drain_input(&mut conn, 3);
}

#[test]
fn idle_set_input_while_served_makes_park_hand_it_back() {
    let (set, stats) = new_set();
    let listener = loopback();
    let (mut client, conn) = pair(&listener);
    set.admit(conn, true).unwrap();
    client.write_all(b"one").unwrap();
    let mut conn = take(&set, WAIT).expect("first request");
    drain_input(&mut conn, 3);

    // Input arrives while a worker owns the connection; another waiter sees the event.
    client.write_all(b"two").unwrap();
    let started = Instant::now();
    assert!(
        take(&set, WAIT).is_none(),
        "an owned connection is not handed out"
    );
    assert!(
        started.elapsed() < WAIT,
        "the event was seen, not timed out"
    );

    let conn = match set.park(conn) {
        Parking::Pending(conn) => conn,
        _ => panic!("parked despite pending input"),
    };
    assert_eq!(set.len(), 0, "still owned");
    assert_eq!(stats.get(Gauge::Idle), 0);

    // Served again, then parked for real.
    let mut conn = conn;
    drain_input(&mut conn, 3);
    assert!(matches!(set.park(conn), Parking::Parked));
    assert_eq!(set.len(), 1);
    assert_eq!(stats.get(Gauge::Idle), 1);
}

#[test]
fn idle_set_expire_closes_only_connections_parked_too_long() {
    let (set, stats) = new_set();
    let listener = loopback();
    let (mut old_client, old) = pair(&listener);
    let (mut new_client, new) = pair(&listener);
    set.admit(old, false).unwrap();
    let old_parked = Instant::now();
    assert!(
        set.expire(LONG_TIMEOUT).is_empty(),
        "nothing is that old yet"
    );
    until_sync("the first connection is old enough", || {
        old_parked.elapsed() >= SHORT_TIMEOUT
    });
    set.admit(new, false).unwrap();
    assert_eq!(stats.get(Gauge::Idle), 2);

    let expired = set.expire(SHORT_TIMEOUT);
    let ports: Vec<u16> = expired.iter().map(|(c, _)| c.peer.port()).collect();
    assert_eq!(ports, vec![port(&old_client)], "only the old one expires");
    assert!(!expired[0].1, "it was not fresh");
    drop(expired);
    assert_closed(&mut old_client);
    assert_eq!(set.len(), 1);
    assert_eq!(stats.get(Gauge::Idle), 1);

    // The recent one is still watched.
    new_client.write_all(b"x").unwrap();
    let conn = take(&set, WAIT).expect("the recent one is still there");
    assert_eq!(conn.peer.port(), port(&new_client));
}

#[test]
fn idle_set_take_idle_takes_only_served_connections_and_take_all_takes_the_rest() {
    let (set, stats) = new_set();
    let listener = loopback();
    let (fresh_client, fresh) = pair(&listener);
    let (idle_client, idle) = pair(&listener);
    set.admit(fresh, true).unwrap();
    set.admit(idle, false).unwrap();
    assert_eq!((set.len(), set.fresh()), (2, 1));
    assert_eq!(stats.get(Gauge::Queued), 1);
    assert_eq!(stats.get(Gauge::Idle), 1);

    let taken = set.take_idle();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].peer.port(), port(&idle_client));
    assert_eq!((set.len(), set.fresh()), (1, 1));
    assert_eq!(stats.get(Gauge::Queued), 1);
    assert_eq!(stats.get(Gauge::Idle), 0);

    let rest = set.take_all();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].0.peer.port(), port(&fresh_client));
    assert!(rest[0].1, "it is fresh");
    assert!(set.is_empty());
    assert_eq!(stats.get(Gauge::Queued), 0);
}

#[test]
fn idle_set_forgotten_connection_is_not_parked_and_its_stale_events_are_ignored() {
    let (set, stats) = new_set();
    let listener = loopback();
    let (mut client, conn) = pair(&listener);
    set.admit(conn, true).unwrap();
    client.write_all(b"one").unwrap();
    let mut conn = take(&set, WAIT).unwrap();
    drain_input(&mut conn, 3);
    let ticket = conn.ticket.expect("a ticket");

    set.forget(ticket);
    // An event for the forgotten entry (its worker closes it a moment later) is ignored.
    client.write_all(b"two").unwrap();
    let started = Instant::now();
    assert!(take(&set, WAIT).is_none(), "a stale event gives nothing");
    assert!(
        started.elapsed() < WAIT,
        "the event was seen, not timed out"
    );
    drain_input(&mut conn, 3);

    // The next connection takes the freed place; a late event of the forgotten one there is
    // still not taken for it.
    let (mut next_client, next) = pair(&listener);
    set.admit(next, false).unwrap();
    client.write_all(b"three").unwrap();
    let started = Instant::now();
    assert!(
        take(&set, WAIT).is_none(),
        "a stale event does not hand out the place's new connection"
    );
    assert!(
        started.elapsed() < WAIT,
        "the event was seen, not timed out"
    );
    assert_eq!(set.len(), 1, "the new connection stays parked");
    drain_input(&mut conn, 5);

    // Parking a forgotten connection does not bring it back: it is closed.
    assert!(matches!(set.park(conn), Parking::Parked));
    assert_eq!(set.len(), 1);
    assert_eq!(stats.get(Gauge::Idle), 1);
    assert_closed(&mut client);

    next_client.write_all(b"x").unwrap();
    let next = take(&set, WAIT).expect("the new connection");
    assert_eq!(next.peer.port(), port(&next_client));
}

#[test]
fn idle_set_forget_after_close_and_a_stale_ticket_spares_the_next_connection() {
    let (set, stats) = new_set();
    let listener = loopback();
    let (mut first_client, first) = pair(&listener);
    set.admit(first, true).unwrap();
    first_client.write_all(b"x").unwrap();
    let mut first = take(&set, WAIT).unwrap();
    drain_input(&mut first, 1);
    let ticket = first.ticket.unwrap();
    drop(first); // the worker closes it...
    set.forget(ticket); // ...then forgets it
    assert_closed(&mut first_client);
    assert_eq!(set.len(), 0);
    assert!(take(&set, Duration::from_millis(20)).is_none());

    // The next connection may reuse the place; the old ticket no longer names it.
    let (mut next_client, next) = pair(&listener);
    set.admit(next, false).unwrap();
    set.forget(ticket);
    set.forget(ticket);
    assert_eq!(set.len(), 1);
    assert_eq!(stats.get(Gauge::Idle), 1);
    next_client.write_all(b"y").unwrap();
    let next = take(&set, WAIT).expect("a stale ticket removed nothing");
    assert_eq!(next.peer.port(), port(&next_client));
    assert_ne!(next.ticket, Some(ticket), "a ticket of its own");
    assert_eq!(stats.get(Gauge::Idle), 0);
}

#[test]
fn idle_set_reports_a_peer_that_closed_its_side() {
    let (set, _stats) = new_set();
    let listener = loopback();
    let (mut open_client, open) = pair(&listener);
    let (mut closing_client, closing) = pair(&listener);
    set.admit(open, true).unwrap();
    set.admit(closing, true).unwrap();

    open_client.write_all(b"GET").unwrap();
    let (conn, hung_up) = set.take_ready(WAIT).expect("input");
    assert_eq!(conn.peer.port(), port(&open_client));
    assert!(!hung_up, "still open");

    closing_client.write_all(b"GET").unwrap();
    closing_client.shutdown(std::net::Shutdown::Write).unwrap();
    // The two writes may be reported apart: wait for the report with the half-close.
    let deadline = Instant::now() + WAIT;
    let mut conn = None;
    while conn.is_none() {
        assert!(Instant::now() < deadline, "no report of the half-close");
        match set.take_ready(WAIT) {
            Some((c, true)) => conn = Some(c),
            Some((c, false)) => drop(set.park(c)),
            None => {}
        }
    }
    assert_eq!(conn.unwrap().peer.port(), port(&closing_client));
}

#[test]
fn idle_set_sealed_by_take_all_gives_parked_connections_back() {
    let (set, stats) = new_set();
    let listener = loopback();
    let (mut client, conn) = pair(&listener);
    set.admit(conn, true).unwrap();
    client.write_all(b"GET").unwrap();
    let conn = take(&set, WAIT).expect("taken");

    assert!(set.take_all().is_empty(), "nothing parked");
    let conn = match set.park(conn) {
        Parking::Sealed(conn) => conn,
        _ => panic!("parked in a set that was handed over"),
    };
    assert_eq!(conn.peer.port(), port(&client));
    assert!(set.is_empty());
    assert_eq!(stats.get(Gauge::Idle), 0);
}

#[test]
fn pool_pass_on_moves_a_connection_to_the_successor_or_closes_it() {
    let (old, _) = new_pool(TICK);
    let (next, next_stats) = new_pool(TICK);
    old.set_successor(next.clone());
    let listener = loopback();
    let (mut client, conn) = pair(&listener);
    old.pass_on(conn);
    assert_eq!(
        (next.idle.len(), next.idle.fresh()),
        (1, 0),
        "parked as idle"
    );
    assert_eq!(next_stats.get(Gauge::Idle), 1);
    client.write_all(b"GET").unwrap();
    let conn = take(&next.idle, WAIT).expect("watched by the successor");
    assert_eq!(conn.peer.port(), port(&client));

    // Without a successor (shutdown), the connection is closed.
    let (lone, lone_stats) = new_pool(TICK);
    let (mut client, conn) = pair(&listener);
    lone.pass_on(conn);
    assert!(lone.idle.is_empty());
    assert_eq!(lone_stats.get(Gauge::Idle), 0);
    assert_closed(&mut client);
}

// ----- the pool's leader and followers -------------------------------------------------------

#[test]
fn pool_leader_takes_a_ready_connection() {
    let (pool, _stats) = new_pool(FOREVER);
    let listener = loopback();
    let (mut client, conn) = pair(&listener);
    pool.idle.admit(conn, true).unwrap();
    client.write_all(b"GET").unwrap();
    let conn = next_conn(&pool).expect("the leader takes it");
    assert_eq!(conn.peer.port(), port(&client));
    assert_eq!(pool.idle.fresh(), 0);
    assert!(pool.exhausted(), "no other worker is waiting");
}

#[test]
fn pool_second_caller_follows_while_the_first_leads() {
    let (pool, _stats) = new_pool(FOREVER);
    let listener = loopback();
    let (mut client, conn) = pair(&listener);
    pool.idle.admit(conn, true).unwrap();

    let leader = {
        let pool = pool.clone();
        thread::spawn(move || next_conn(&pool).map(|c| c.peer.port()))
    };
    until_sync("the first caller leads", || !pool.exhausted());
    let follower = {
        let pool = pool.clone();
        thread::spawn(move || next_conn(&pool).is_none())
    };
    until_sync("the second caller follows", || pool.followers() == 1);

    client.write_all(b"GET").unwrap();
    let taken = leader.join().expect("leader thread");
    assert_eq!(taken, Some(port(&client)), "the leader took it");
    assert_eq!(pool.followers(), 1, "the follower was not woken by input");

    wake_until_done(&pool, &follower);
    assert!(
        follower.join().expect("follower thread"),
        "a follower gets nothing"
    );
    assert_eq!(pool.followers(), 0);
}

#[test]
fn pool_callers_give_up_after_a_tick() {
    let tick = Duration::from_millis(50);
    let (pool, _stats) = new_pool(tick);
    // Two callers at once: one leads, one follows; both come back empty-handed after a tick
    // (well within WAIT).
    let (done_tx, done) = mpsc::channel();
    for _ in 0..2 {
        let (pool, done_tx) = (pool.clone(), done_tx.clone());
        thread::spawn(move || {
            let _ = done_tx.send(next_conn(&pool).is_none());
        });
    }
    for _ in 0..2 {
        let empty = done.recv_timeout(WAIT).expect("a caller came back");
        assert!(empty, "nothing to take");
    }
    assert_eq!(pool.followers(), 0);
}

/// Wakes followers until `thread` has finished (a wake-up can come just before it waits).
fn wake_until_done<T>(pool: &Pool, thread: &thread::JoinHandle<T>) {
    until_sync("the thread finishes", || {
        pool.wake_all();
        thread.is_finished()
    });
}

#[test]
fn pool_promote_wakes_a_follower_only_when_serving_workers_are_stuck_and_none_leads() {
    let (pool, _stats) = new_pool(FOREVER);
    let listener = loopback();
    let (mut client, conn) = pair(&listener);
    pool.idle.admit(conn, true).unwrap();

    let leader = {
        let pool = pool.clone();
        thread::spawn(move || next_conn(&pool).is_some())
    };
    until_sync("the first caller leads", || !pool.exhausted());
    let (woke_tx, woke) = mpsc::channel();
    let follower = {
        let pool = pool.clone();
        thread::spawn(move || {
            let got = next_conn(&pool);
            let _ = woke_tx.send(Instant::now());
            got.is_none()
        })
    };
    until_sync("the second caller follows", || pool.followers() == 1);

    let mut seen = 0;
    pool.serving_started(); // a worker is serving (stuck in the application)
    pool.promote(&mut seen);
    pool.promote(&mut seen);
    // Stuck, but the leader's place is taken: no wake-up.

    client.write_all(b"GET").unwrap();
    assert!(leader.join().unwrap(), "the leader took the connection");
    // The place is vacant now, but a connection was just taken: progress, no wake-up.
    pool.promote(&mut seen);
    // Progress again (the stuck worker finishes), then nobody serves: no wake-up.
    pool.serving_ended();
    pool.promote(&mut seen);
    pool.promote(&mut seen);
    assert!(
        woke.recv_timeout(GRACE).is_err(),
        "the follower was woken without cause"
    );
    assert_eq!(pool.followers(), 1);

    // A worker serves, no progress since the last look, the place is vacant: promote.
    pool.serving_started();
    let promoted = Instant::now();
    pool.promote(&mut seen);
    let woke_at = woke.recv_timeout(WAIT).expect("the follower is woken");
    assert!(woke_at >= promoted);
    assert!(follower.join().unwrap(), "a woken follower returns to lead");
    assert_eq!(pool.followers(), 0);
}

#[test]
fn pool_a_promoted_leader_that_takes_a_connection_while_more_wait_wakes_the_next_follower() {
    let (pool, _stats) = new_pool(FOREVER);
    let listener = loopback();
    let mut clients = Vec::new();
    for _ in 0..3 {
        let (client, conn) = pair(&listener);
        pool.idle.admit(conn, true).unwrap();
        clients.push(client);
    }
    let leader = {
        let pool = pool.clone();
        thread::spawn(move || next_conn(&pool).is_some())
    };
    until_sync("the first caller leads", || !pool.exhausted());
    // Two followers; each, once woken, leads and reports what it took.
    let (took_tx, took) = mpsc::channel();
    for n in 1..=2 {
        let (follower, took_tx) = (pool.clone(), took_tx.clone());
        thread::spawn(move || {
            assert!(next_conn(&follower).is_none(), "a follower gets nothing");
            let _ = took_tx.send(next_conn(&follower).map(|c| c.peer.port()));
        });
        until_sync("the caller follows", || pool.followers() == n);
    }
    clients[0].write_all(b"GET").unwrap();
    assert!(
        leader.join().unwrap(),
        "the leader took the first connection"
    );
    pool.serving_started(); // and is stuck serving it

    clients[1].write_all(b"GET").unwrap();
    clients[2].write_all(b"GET").unwrap();
    let mut seen = pool.progress();
    pool.promote(&mut seen); // one promotion
    let mut taken = [0, 1].map(|_| took.recv_timeout(WAIT).expect("a follower took one"));
    taken.sort_unstable();
    let mut expected = [port(&clients[1]), port(&clients[2])];
    expected.sort_unstable();
    assert_eq!(
        taken,
        expected.map(Some),
        "both waiting connections were taken"
    );
}

// ----- the Dispatcher, with stand-in workers -------------------------------------------------

/// A stand-in worker: alive until it stops itself (`dead` ones stop at once).
struct StandIn {
    dead: bool,
}

impl Actor for StandIn {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if self.dead {
            ctx.stop();
        }
    }
}

impl Handler<Ping> for StandIn {
    type Result = ();

    fn handle(&mut self, _: Ping, _ctx: &mut Self::Context) {}
}

/// What the factory made: one per call.
struct Made {
    id: WorkerId,
    retire: Arc<AtomicBool>,
    addr: Addr<StandIn>,
}

/// A Dispatcher on stand-in workers.
struct Harness {
    addr: Addr<Dispatcher>,
    pool: Arc<Pool>,
    stats: Arc<Stats>,
    made: Arc<Mutex<Vec<Made>>>,
    listener: TcpListener,
}

impl Harness {
    /// `min..=max` workers; those whose id is in `dead` stop at once.
    fn start(min: usize, max: usize, dead: &'static [WorkerId], tick: Duration) -> Harness {
        let (pool, stats) = new_pool(tick);
        let made = Arc::new(Mutex::new(Vec::new()));
        let record = made.clone();
        let factory: WorkerFactory = Box::new(move |id, _grow: Recipient<Exhausted>| {
            let retire = Arc::new(AtomicBool::new(false));
            let addr = StandIn {
                dead: dead.contains(&id),
            }
            .start();
            record.lock().unwrap().push(Made {
                id,
                retire: retire.clone(),
                addr: addr.clone(),
            });
            WorkerLink {
                alive: addr.recipient(),
                retire,
                arbiter: None,
            }
        });
        let addr = Dispatcher::new(pool.clone(), min, max, factory, stats.clone()).start();
        Harness {
            addr,
            pool,
            stats,
            made,
            listener: loopback(),
        }
    }

    /// Waits until the Dispatcher has started (Drain answers at once when nothing is going on).
    async fn ready(&self) {
        self.addr.send(Drain).await.expect("dispatcher alive");
    }

    /// The ids the factory was called with, in order.
    fn ids(&self) -> Vec<WorkerId> {
        self.made.lock().unwrap().iter().map(|m| m.id).collect()
    }

    /// The retire flags, by id.
    fn retired(&self) -> Vec<bool> {
        let made = self.made.lock().unwrap();
        made.iter()
            .map(|m| m.retire.load(Ordering::Relaxed))
            .collect()
    }

    /// Whether stand-in `id`'s mailbox is still open.
    fn alive(&self, id: WorkerId) -> bool {
        let made = self.made.lock().unwrap();
        made.iter().any(|m| m.id == id && m.addr.connected())
    }

    fn threads(&self) -> usize {
        self.stats.get(Gauge::Threads)
    }

    async fn send<M>(&self, msg: M)
    where
        M: Message<Result = ()> + Send + 'static,
        Dispatcher: Handler<M>,
    {
        self.addr.send(msg).await.expect("dispatcher alive");
    }

    /// Sends the Dispatcher a new connection (handled when this returns); the client side.
    async fn connect(&self) -> TcpStream {
        let (client, conn) = pair(&self.listener);
        self.send(conn).await;
        client
    }
}

#[actix::test]
async fn dispatcher_starts_min_workers() {
    let h = Harness::start(3, 0, &[], TICK);
    h.ready().await;
    assert_eq!(h.ids(), vec![0, 1, 2]);
    assert_eq!(h.threads(), 3);
    assert_eq!(h.retired(), vec![false; 3]);
    assert!((0..3).all(|id| h.alive(id)));
    assert!(!h.pool.full.load(Ordering::Relaxed), "no limit");
}

#[actix::test]
async fn dispatcher_admits_a_connection_as_fresh() {
    let h = Harness::start(1, 0, &[], TICK);
    let mut client = h.connect().await;
    assert_eq!(h.pool.idle.fresh(), 1);
    assert_eq!(h.pool.idle.len(), 1);
    assert_eq!(h.stats.get(Gauge::Queued), 1);
    assert_eq!(h.stats.get(Gauge::Idle), 0);
    assert_eq!(h.ids(), vec![0], "admitting starts no worker");

    // It waits in the pool's idle set for a worker.
    client.write_all(b"GET").unwrap();
    let conn = take(&h.pool.idle, WAIT).expect("admitted and watched");
    assert_eq!(conn.peer.port(), port(&client));
    assert_eq!(h.stats.get(Gauge::Queued), 0);
}

#[actix::test]
async fn dispatcher_grows_only_when_every_worker_serves_and_never_beyond_max() {
    let h = Harness::start(1, 3, &[], TICK);
    h.ready().await;
    assert!(!h.pool.full.load(Ordering::Relaxed));

    // The one worker is not serving: nothing to do, but the request is answered.
    h.pool.grow_requested.store(true, Ordering::Relaxed);
    h.send(Exhausted).await;
    assert_eq!(h.threads(), 1);
    assert!(
        !h.pool.grow_requested.load(Ordering::Relaxed),
        "request cleared"
    );

    h.pool.serving_started();
    h.send(Exhausted).await;
    assert_eq!(h.threads(), 3, "grown, up to max");
    assert_eq!(h.ids(), vec![0, 1, 2]);
    assert!(h.pool.full.load(Ordering::Relaxed), "the pool is full");

    // One of three serves: no growth.
    h.send(Exhausted).await;
    assert_eq!(h.threads(), 3);

    // All serve, but the pool is at max.
    h.pool.serving_started();
    h.pool.serving_started();
    h.send(Exhausted).await;
    assert_eq!(h.threads(), 3, "never beyond max");
    assert_eq!(h.ids().len(), 3);
}

#[actix::test]
async fn dispatcher_without_max_grows_by_four_by_the_waiting_or_by_half() {
    let h = Harness::start(1, 0, &[], TICK);
    h.ready().await;
    let serve_all = |h: &Harness| {
        while h.pool.serving() < h.threads() {
            h.pool.serving_started();
        }
    };

    serve_all(&h);
    h.send(Exhausted).await;
    assert_eq!(h.threads(), 5, "at least four more");

    // Seven new connections wait: grow by seven.
    let mut clients = Vec::new();
    for _ in 0..7 {
        clients.push(h.connect().await);
    }
    serve_all(&h);
    h.send(Exhausted).await;
    assert_eq!(h.threads(), 12, "as many as wait");

    // None waits: grow by half.
    drop(h.pool.idle.take_all());
    serve_all(&h);
    h.send(Exhausted).await;
    assert_eq!(h.threads(), 18, "half the pool");
    assert_eq!(h.ids(), (0..18).collect::<Vec<_>>());
    assert!(!h.pool.full.load(Ordering::Relaxed));
}

#[actix::test]
async fn dispatcher_tick_replaces_a_lost_worker() {
    let h = Harness::start(2, 0, &[0], TICK);
    h.ready().await;
    until("worker 0 is gone", || !h.alive(0)).await;
    assert_eq!(h.threads(), 2, "not noticed before a tick");

    h.send(Tick).await;
    assert_eq!(h.ids(), vec![0, 1, 2], "replaced");
    assert_eq!(h.threads(), 2);
    assert_eq!(h.retired(), vec![true, false, false], "the lost one let go");

    h.send(Tick).await;
    assert_eq!(h.ids().len(), 3, "replaced once");
}

#[actix::test]
async fn dispatcher_tick_does_not_replace_a_retired_worker() {
    let h = Harness::start(2, 0, &[0], TICK);
    h.ready().await;
    h.made.lock().unwrap()[0]
        .retire
        .store(true, Ordering::Relaxed);
    until("worker 0 is gone", || !h.alive(0)).await;

    h.send(Tick).await;
    h.send(Tick).await;
    assert_eq!(h.ids(), vec![0, 1], "a retiring worker is not replaced");
    assert_eq!(h.threads(), 2);
}

#[actix::test]
async fn dispatcher_tick_shrinks_one_worker_per_tick_while_followers_wait() {
    // Free "workers" wait as long as the test runs: only a retirement wakes a follower.
    let h = Harness::start(1, 0, &[], FOREVER);
    h.ready().await;
    h.pool.serving_started();
    h.send(Exhausted).await;
    h.pool.serving_ended();
    assert_eq!(h.threads(), 5);

    // No worker waits as a follower: the surplus stays.
    for _ in 0..3 {
        h.send(Tick).await;
    }
    assert_eq!(h.threads(), 5, "no shrinking without followers");

    // Two free "workers": one leads, one follows.
    let stop = Arc::new(AtomicBool::new(false));
    let loops: Vec<_> = (0..2)
        .map(|_| {
            let (pool, stop) = (h.pool.clone(), stop.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    drop(next_conn(&pool));
                }
            })
        })
        .collect();
    let pool = h.pool.clone();
    let follower_waits = move || pool.followers() == 1;

    until("a follower waits", &follower_waits).await;
    h.send(Tick).await;
    assert_eq!(h.threads(), 5, "not after one quiet tick");
    h.send(Tick).await;
    assert_eq!(h.threads(), 4, "one retired after two");
    assert_eq!(
        h.retired(),
        vec![true, false, false, false, false],
        "the oldest"
    );

    // Then one per tick, down to min. (The retirement wakes the follower, which may still be
    // on its way back when the next tick looks: such a tick counts as busy.)
    let mut ticks = 0;
    while h.threads() > 1 {
        let threads = h.threads();
        until("a follower waits", &follower_waits).await;
        h.send(Tick).await;
        assert!(h.threads() + 1 >= threads, "one at a time");
        ticks += 1;
        assert!(
            ticks < 100,
            "the pool does not shrink: {} workers",
            h.threads()
        );
    }
    for _ in 0..3 {
        until("a follower waits", &follower_waits).await;
        h.send(Tick).await;
        assert_eq!(h.threads(), 1, "never below min");
    }
    assert_eq!(h.retired(), vec![true, true, true, true, false]);
    assert_eq!(h.ids().len(), 5, "none added");

    // Let the loops go: give the leader a connection, wake the follower.
    stop.store(true, Ordering::Relaxed);
    let (mut client, conn) = pair(&h.listener);
    h.pool.idle.admit(conn, true).unwrap();
    client.write_all(b"x").unwrap();
    for handle in &loops {
        until("a free worker loop ends", || {
            h.pool.wake_all();
            handle.is_finished()
        })
        .await;
    }
}

#[actix::test]
async fn dispatcher_drain_waits_until_nothing_is_served() {
    let h = Harness::start(1, 1, &[], TICK);
    h.ready().await;
    h.pool.serving_started();
    let mut drain = Box::pin(h.addr.send(Drain));
    // A later message is handled after Drain; then let any answer reach us before looking.
    h.send(Tick).await;
    tokio::task::yield_now().await;
    assert!(!is_ready(&mut drain).await, "Drain answered while serving");

    h.pool.serving_ended();
    tokio::time::timeout(WAIT, drain)
        .await
        .expect("Drain answers once nothing is served")
        .unwrap();
}

#[actix::test]
async fn dispatcher_drain_does_not_wait_for_a_silent_new_connection() {
    let h = Harness::start(1, 1, &[], TICK);
    let _client = h.connect().await;
    let mut drain = Box::pin(h.addr.send(Drain));
    h.send(Tick).await;
    tokio::task::yield_now().await;
    assert!(
        !is_ready(&mut drain).await,
        "Drain answered at once while a new connection waits"
    );

    // Nothing taken or served for a poll period: the waiting one carries no request.
    tokio::time::timeout(WAIT, drain)
        .await
        .expect("Drain answers once the new connection stays silent")
        .unwrap();
    assert_eq!(h.pool.idle.fresh(), 1, "Drain closes nothing");
}

#[actix::test]
async fn dispatcher_shutdown_retires_workers_closes_parked_connections_and_stops() {
    let h = Harness::start(2, 0, &[], TICK);
    let fresh = h.connect().await;
    let (idle, conn) = pair(&h.listener);
    h.pool.idle.admit(conn, false).unwrap();
    assert_eq!(h.stats.get(Gauge::Queued), 1);
    assert_eq!(h.stats.get(Gauge::Idle), 1);

    h.send(Shutdown).await;
    assert_eq!(h.retired(), vec![true, true]);
    assert_eq!(h.threads(), 0);
    assert!(h.pool.idle.is_empty());
    assert_eq!(h.stats.get(Gauge::Queued), 0);
    assert_eq!(h.stats.get(Gauge::Idle), 0);
    assert_closed_async(fresh).await;
    assert_closed_async(idle).await;
    until("the dispatcher stops", || !h.addr.connected()).await;
}

// ----- the Monitor, with a stand-in for the Dispatcher's ticks --------------------------------

/// A Monitor of a fresh pool, ticking into a channel.
struct Watch {
    addr: Addr<Monitor>,
    pool: Arc<Pool>,
    stats: Arc<Stats>,
    ticks: UnboundedReceiver<Instant>,
    listener: TcpListener,
}

impl Watch {
    fn start(timeout: Duration) -> Watch {
        let (pool, stats) = new_pool(TICK);
        let (to, ticks) = tick_recipient();
        let addr = Monitor::new(pool.clone(), timeout, TICK, to).start();
        Watch {
            addr,
            pool,
            stats,
            ticks,
            listener: loopback(),
        }
    }

    /// Parks a new connection, fresh or idle; the client side.
    fn park(&self, fresh: bool) -> TcpStream {
        let (client, conn) = pair(&self.listener);
        self.pool.idle.admit(conn, fresh).unwrap();
        client
    }
}

impl Watch {
    /// Parks a connection that was served before, after `shape` set what it carries.
    fn park_with(&self, client: &TcpListener, shape: impl FnOnce(&mut Connection)) -> TcpStream {
        let (client, mut conn) = pair(client);
        conn.stream.set_nonblocking(true).unwrap();
        conn.nonblocking = true;
        shape(&mut conn);
        self.pool.idle.admit(conn, false).unwrap();
        client
    }
}

#[actix::test]
async fn monitor_answers_408_to_a_partial_request_past_its_deadline() {
    let watch = Watch::start(LONG_TIMEOUT);
    let mut client = watch.park_with(&watch.listener, |conn| {
        conn.request_deadline = Some(Instant::now());
    });
    let answer = tokio::task::spawn_blocking(move || {
        let mut answer = String::new();
        let _ = client.read_to_string(&mut answer);
        answer
    });
    let answer = answer.await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer:?}");
    assert!(watch.pool.idle.is_empty());
}

#[actix::test]
async fn monitor_leaves_a_late_partial_request_whose_input_waits_to_a_worker() {
    let mut watch = Watch::start(LONG_TIMEOUT);
    let mut client = watch.park_with(&watch.listener, |conn| {
        conn.request_deadline = Some(Instant::now());
    });
    client.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    let before = next(&mut watch.ticks).await;
    while next(&mut watch.ticks).await < before + 2 * TICK {}
    assert_eq!(
        watch.pool.idle.len(),
        1,
        "not expired: a worker will judge it"
    );
}

/// A client whose server side cannot send more: its receive window and the server's send
/// buffer are full.
fn fill_until_blocked(conn: &mut Connection) {
    let chunk = vec![0u8; 64 * 1024];
    while conn.stream.write(&chunk).is_ok() {}
}

#[actix::test]
async fn monitor_resets_a_response_left_unread_past_its_deadline() {
    let watch = Watch::start(LONG_TIMEOUT);
    let mut client = watch.park_with(&watch.listener, |conn| {
        fill_until_blocked(conn);
        conn.outbox = Some(Box::new(Outbox::new(true, Duration::ZERO)));
    });
    until("the unread response is given up", || {
        watch.pool.idle.is_empty()
    })
    .await;
    let ended = tokio::task::spawn_blocking(move || {
        let mut sink = Vec::new();
        client.read_to_end(&mut sink)
    });
    let ended = ended.await.unwrap();
    assert_eq!(ended.unwrap_err().kind(), io::ErrorKind::ConnectionReset);
}

#[actix::test]
async fn monitor_ticks_periodically() {
    let mut watch = Watch::start(LONG_TIMEOUT);
    let started = Instant::now();
    for _ in 0..3 {
        next(&mut watch.ticks).await;
    }
    assert!(started.elapsed() >= 2 * TICK, "ticks are spaced out");
}

#[actix::test]
async fn monitor_closes_a_connection_idle_longer_than_timeout() {
    let watch = Watch::start(SHORT_TIMEOUT);
    let parked_at = Instant::now();
    let client = watch.park(false);
    assert_eq!(watch.stats.get(Gauge::Idle), 1);

    assert_closed_async(client).await;
    assert!(
        parked_at.elapsed() >= SHORT_TIMEOUT,
        "closed before the timeout"
    );
    assert_eq!(watch.stats.get(Gauge::Idle), 0);
    assert!(watch.pool.idle.is_empty());
}

#[actix::test]
async fn monitor_promotes_a_follower_while_the_serving_workers_are_stuck() {
    // Free workers wait as long as the test runs unless someone wakes them.
    let (pool, _stats) = new_pool(FOREVER);
    let listener = loopback();
    let (mut client, conn) = pair(&listener);
    pool.idle.admit(conn, true).unwrap();
    let leader = {
        let pool = pool.clone();
        thread::spawn(move || next_conn(&pool).is_some())
    };
    until("the first caller leads", || !pool.exhausted()).await;
    let follower = {
        let pool = pool.clone();
        thread::spawn(move || next_conn(&pool).is_none())
    };
    until("the second caller follows", || pool.followers() == 1).await;
    client.write_all(b"GET").unwrap();
    until("the leader took the connection", || leader.is_finished()).await;
    assert!(leader.join().unwrap());
    pool.serving_started(); // and is stuck in the application

    let (to, _ticks) = tick_recipient();
    let _monitor = Monitor::new(pool.clone(), LONG_TIMEOUT, TICK, to).start();
    until("the Monitor wakes the follower", || follower.is_finished()).await;
    assert!(follower.join().unwrap());
    assert_eq!(pool.followers(), 0);
}

#[actix::test]
async fn monitor_close_closes_idle_connections_keeps_fresh_ones_and_stops() {
    let watch = Watch::start(LONG_TIMEOUT);
    let mut fresh = watch.park(true);
    let idle = watch.park(false);
    let idle2 = watch.park(false);
    assert_eq!(watch.stats.get(Gauge::Idle), 2);

    watch.addr.send(Close).await.unwrap();
    assert_closed_async(idle).await;
    assert_closed_async(idle2).await;
    assert_eq!(watch.stats.get(Gauge::Idle), 0);
    assert_eq!(watch.stats.get(Gauge::Queued), 1);
    assert_eq!((watch.pool.idle.len(), watch.pool.idle.fresh()), (1, 1));
    until("the monitor stops", || !watch.addr.connected()).await;

    // The fresh one is still open and watched, for the draining workers.
    fresh.write_all(b"GET").unwrap();
    let conn = take(&watch.pool.idle, WAIT).expect("still there");
    assert_eq!(conn.peer.port(), port(&fresh));
}

#[actix::test]
async fn monitor_handover_returns_every_parked_connection_with_its_freshness_and_stops() {
    let watch = Watch::start(LONG_TIMEOUT);
    let mut fresh = watch.park(true);
    let mut idle = watch.park(false);

    let mut handed = watch.addr.send(Handover).await.unwrap();
    handed.sort_by_key(|(c, _)| c.peer.port() != port(&fresh));
    let got: Vec<(u16, bool)> = handed.iter().map(|(c, f)| (c.peer.port(), *f)).collect();
    assert_eq!(got, vec![(port(&fresh), true), (port(&idle), false)]);
    assert!(watch.pool.idle.is_empty());
    assert_eq!(watch.stats.get(Gauge::Queued), 0);
    assert_eq!(watch.stats.get(Gauge::Idle), 0);
    until("the monitor stops", || !watch.addr.connected()).await;

    // The connections are open and usable.
    for ((conn, _), client) in handed.iter_mut().zip([&mut fresh, &mut idle]) {
        conn.stream.write_all(b"hi").unwrap();
        let mut got = [0u8; 2];
        client.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hi");
    }
}

// ----- the Server, with real workers ---------------------------------------------------------

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
    let deadline = Instant::now() + WAIT;
    loop {
        let report = status(server).await;
        if cond(&report) {
            return report;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting until {what}: {report:?}"
        );
        tokio::task::yield_now().await;
    }
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
    until_sync("the first request is in the application", || {
        entered.load(Ordering::SeqCst) >= 1
    });
    tokio::task::spawn_blocking(move || read_response(&mut client))
}

#[actix::test]
async fn server_start_answers_the_bound_address() {
    let server = server(config());
    let addrs = start(&server).await;
    assert_eq!(addrs.len(), 1);
    assert_eq!(addrs[0].ip().to_string(), "127.0.0.1");
    assert_ne!(addrs[0].port(), 0, "a real port");
    assert_eq!(get(addrs[0]).await, 200);
    stop(&server, false).await;
}

#[actix::test]
async fn server_status_reports_running_with_workers() {
    let server = server(config());
    assert!(!status(&server).await.running, "not before Start");
    start(&server).await;
    let report = status(&server).await;
    assert!(report.running);
    assert!(report.threads >= 1, "threads: {}", report.threads);
    stop(&server, false).await;
}

#[actix::test]
async fn server_second_start_is_idempotent() {
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
async fn server_graceful_stop_reports_not_running_and_closes_the_port() {
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
async fn server_restart_keeps_accepting_and_hands_idle_connections_over() {
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
async fn server_pool_grows_to_serve_concurrent_requests_then_shrinks() {
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
async fn server_restart_moves_a_connection_served_meanwhile_to_the_new_pool() {
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
async fn server_max_threads_bounds_concurrent_requests() {
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
async fn server_control_messages_are_handled_one_at_a_time_in_order() {
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
