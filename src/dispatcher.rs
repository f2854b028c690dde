//! The Dispatcher actor: admits accepted connections into the pool's idle set and keeps the
//! pool of workers between `min_threads` and `max_threads`.
//!
//! Connections wait for a worker in the idle set (the kernel's ready list keeps them in the
//! order they became readable); the Dispatcher decides how many workers wait on it: it grows
//! the pool when a worker reports that none was left waiting, retires one surplus worker per
//! quiet tick, and replaces workers whose thread died.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;

use crate::conn::Connection;
use crate::pool::Pool;
use crate::stats::{Gauge, Stats};

/// Names a worker within its pool.
pub(crate) type WorkerId = u64;

/// Workers added at once (at least) when the pool runs out of waiting workers.
const GROW_MIN: usize = 4;

/// Ticks with a waiting worker before one surplus worker is retired.
const SHRINK_AFTER_TICKS: u32 = 2;

/// How often a pending `Drain` re-checks the pool.
const DRAIN_POLL: Duration = Duration::from_millis(10);

/// An accepted connection, sent by a Listener: the message is the connection itself.
impl actix::Message for Connection {
    type Result = ();
}

/// A worker took a connection and no other worker was left waiting: if every worker is
/// serving, grow ahead of demand.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Exhausted;

/// The Monitor's periodic tick: retire surplus workers, replace lost ones.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Tick;

/// Answers once no worker is serving, no keep-alive connection is parked and no new
/// connection with a request waits.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Drain;

/// Retires every worker, closes waiting connections, and stops the Dispatcher.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Shutdown;

/// A started worker, as the Dispatcher holds it.
pub(crate) struct WorkerLink {
    /// Whether the worker still runs: false once it has stopped (retired, or its thread
    /// died), which the Dispatcher tells apart by `retire`.
    pub(crate) alive: Box<dyn Fn() -> bool>,
    /// Set to retire the worker.
    pub(crate) retire: Arc<AtomicBool>,
    /// Its thread, stopped when the worker is retired (`None` for test stand-ins).
    pub(crate) arbiter: Option<Arbiter>,
}

impl WorkerLink {
    fn retire(self, pool: &Pool) {
        self.retire.store(true, Ordering::Relaxed);
        pool.wake_all();
        if let Some(arbiter) = self.arbiter {
            arbiter.stop();
        }
    }

    fn is_lost(&self) -> bool {
        !(self.alive)() && !self.retire.load(Ordering::Relaxed)
    }
}

/// Starts a worker with the given id that asks the given recipient to grow the pool; injected
/// so that tests can stand in for workers.
pub(crate) type WorkerFactory = Box<dyn FnMut(WorkerId, Recipient<Exhausted>) -> WorkerLink>;

/// Keeps the pool's size and admits connections.
pub(crate) struct Dispatcher {
    /// The shared pool.
    pool: Arc<Pool>,
    /// Every live worker.
    workers: HashMap<WorkerId, WorkerLink>,
    /// The next worker's id.
    next_id: WorkerId,
    /// Workers kept even when idle.
    min: usize,
    /// Most workers; 0 = no limit.
    max: usize,
    /// Starts workers.
    factory: WorkerFactory,
    /// Shared gauges.
    stats: Arc<Stats>,
    /// Consecutive ticks with a waiting worker.
    quiet_ticks: u32,
    /// Waiting `Drain` requests.
    drains: Vec<oneshot::Sender<()>>,
    /// The pool's progress count at the last drain check.
    drain_progress: Option<u64>,
    /// This actor, as the workers' grow address.
    myself: Option<Recipient<Exhausted>>,
}

impl Dispatcher {
    /// A pool of `min..=max` workers (max 0 = unbounded) started by `factory`.
    pub(crate) fn new(
        pool: Arc<Pool>,
        min: usize,
        max: usize,
        factory: WorkerFactory,
        stats: Arc<Stats>,
    ) -> Self {
        Dispatcher {
            pool,
            workers: HashMap::new(),
            next_id: 0,
            min,
            max,
            factory,
            stats,
            quiet_ticks: 0,
            drains: Vec::new(),
            drain_progress: None,
            myself: None,
        }
    }

    fn spawn_workers(&mut self, count: usize) {
        let Some(myself) = self.myself.clone() else {
            return;
        };
        for _ in 0..count {
            let id = self.next_id;
            self.next_id += 1;
            self.workers.insert(id, (self.factory)(id, myself.clone()));
            self.stats.inc(Gauge::Threads);
        }
        self.note_size();
    }

    /// Tells the workers whether asking to grow can help.
    fn note_size(&self) {
        let full = self.max != 0 && self.workers.len() >= self.max;
        self.pool.full.store(full, Ordering::Relaxed);
    }

    /// Adds workers ahead of demand: half the pool, the new requests waiting, or GROW_MIN.
    fn grow(&mut self) {
        let threads = self.workers.len();
        let room = match self.max {
            0 => usize::MAX,
            max => max.saturating_sub(threads),
        };
        let waiting = self.pool.idle.fresh_with_input();
        let count = (threads / 2).max(GROW_MIN).max(waiting).min(room);
        if count > 0 {
            log::debug!("growing the pool by {count} (from {threads})");
            self.spawn_workers(count);
        }
    }

    fn retire(&mut self, id: WorkerId) {
        if let Some(link) = self.workers.remove(&id) {
            link.retire(&self.pool);
            self.stats.dec(Gauge::Threads);
        }
        self.note_size();
    }

    /// Replaces workers whose thread died.
    fn replace_lost(&mut self) {
        let lost: Vec<WorkerId> = (self.workers.iter())
            .filter(|(_, link)| link.is_lost())
            .map(|(id, _)| *id)
            .collect();
        for id in lost {
            log::warn!("worker {id} was lost; replacing it");
            self.retire(id);
            self.spawn_workers(1);
        }
    }

    /// Retires one surplus worker after SHRINK_AFTER_TICKS ticks with a spare worker (two
    /// free: one could go and one would still be free).
    fn shrink(&mut self) {
        if self.pool.free() < 2 || self.workers.len() <= self.min {
            self.quiet_ticks = 0;
            return;
        }
        self.quiet_ticks += 1;
        if self.quiet_ticks >= SHRINK_AFTER_TICKS {
            if let Some(oldest) = self.workers.keys().min().copied() {
                log::debug!("retiring idle worker {oldest}");
                self.retire(oldest);
            }
        }
    }

    /// Answers `Drain` once no worker serves, no served connection is parked (neither an idle
    /// one, which the Monitor of a draining pool closes once silent, nor one still sending a
    /// response), and no new connection waits, or the ones that wait have sent nothing for a
    /// whole poll period (they carry no request in flight).
    fn check_drained(&mut self) {
        let progress = self.pool.progress();
        let quiet = self.drain_progress.replace(progress) == Some(progress);
        let nothing_waits = self.pool.idle.fresh() == 0 || quiet;
        let idle = &self.pool.idle;
        // A worker owns a connection it took before it counts itself serving: both count.
        let nobody_serves = self.pool.serving() == 0 && idle.owned() == 0;
        if nobody_serves && idle.served() == 0 && nothing_waits {
            for done in self.drains.drain(..) {
                let _ = done.send(());
            }
        }
    }
}

impl Actor for Dispatcher {
    type Context = actix::Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.myself = Some(ctx.address().recipient());
        self.spawn_workers(self.min);
    }
}

impl actix::Handler<Connection> for Dispatcher {
    type Result = ();

    fn handle(&mut self, conn: Connection, _ctx: &mut Self::Context) {
        self.stats.connection_arrived();
        let peer = conn.peer;
        if let Err(e) = self.pool.idle.admit(conn, true) {
            log::warn!("{peer}: cannot watch new connection: {e}");
        }
    }
}

impl actix::Handler<Exhausted> for Dispatcher {
    type Result = ();

    fn handle(&mut self, _: Exhausted, _ctx: &mut Self::Context) {
        self.pool.grow_requested.store(false, Ordering::Relaxed);
        if self.pool.serving() >= self.workers.len() {
            self.grow();
        }
    }
}

impl actix::Handler<Tick> for Dispatcher {
    type Result = ();

    fn handle(&mut self, _: Tick, _ctx: &mut Self::Context) {
        self.replace_lost();
        self.shrink();
    }
}

impl actix::Handler<Drain> for Dispatcher {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Drain, ctx: &mut Self::Context) -> Self::Result {
        let (done, wait) = oneshot::channel();
        self.drains.push(done);
        self.check_drained();
        if !self.drains.is_empty() {
            ctx.run_interval(DRAIN_POLL, |dispatcher, _| dispatcher.check_drained());
        }
        Box::pin(async move {
            let _ = wait.await;
        })
    }
}

impl actix::Handler<Shutdown> for Dispatcher {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
        let ids: Vec<WorkerId> = self.workers.keys().copied().collect();
        for id in ids {
            self.retire(id);
        }
        drop(self.pool.idle.take_all());
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    //! The Dispatcher with stand-in workers: actors that only live (or stop at once), made by
    //! an injected factory.

    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::sync::Mutex;
    use std::thread;

    use super::*;
    use crate::pool::Role;
    use crate::test_support::*;

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
                    alive: Box::new(move || addr.connected()),
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
    async fn starts_min_workers() {
        let h = Harness::start(3, 0, &[], TICK);
        h.ready().await;
        assert_eq!(h.ids(), vec![0, 1, 2]);
        assert_eq!(h.threads(), 3);
        assert_eq!(h.retired(), vec![false; 3]);
        assert!((0..3).all(|id| h.alive(id)));
        assert!(!h.pool.full.load(Ordering::Relaxed), "no limit");
    }

    #[actix::test]
    async fn admits_a_connection_as_fresh() {
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
    async fn grows_only_when_every_worker_serves_and_never_beyond_max() {
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

        h.pool.pretend_serving(true);
        h.send(Exhausted).await;
        assert_eq!(h.threads(), 3, "grown, up to max");
        assert_eq!(h.ids(), vec![0, 1, 2]);
        assert!(h.pool.full.load(Ordering::Relaxed), "the pool is full");

        // One of three serves: no growth.
        h.send(Exhausted).await;
        assert_eq!(h.threads(), 3);

        // All serve, but the pool is at max.
        h.pool.pretend_serving(true);
        h.pool.pretend_serving(true);
        h.send(Exhausted).await;
        assert_eq!(h.threads(), 3, "never beyond max");
        assert_eq!(h.ids().len(), 3);
    }

    #[actix::test]
    async fn without_max_grows_by_four_by_the_new_requests_or_by_half() {
        let h = Harness::start(1, 0, &[], TICK);
        h.ready().await;
        let serve_all = |h: &Harness| {
            while h.pool.serving() < h.threads() {
                h.pool.pretend_serving(true);
            }
        };

        serve_all(&h);
        h.send(Exhausted).await;
        assert_eq!(h.threads(), 5, "at least four more");

        // Seven new requests wait, on new connections (two more are silent): grow by seven.
        let mut clients = Vec::new();
        for _ in 0..9 {
            clients.push(h.connect().await);
        }
        for client in &mut clients[..7] {
            client.write_all(b"GET").unwrap();
        }
        wait_until("the requests arrive", || {
            h.pool.idle.fresh_with_input() == 7
        });
        serve_all(&h);
        h.send(Exhausted).await;
        assert_eq!(h.threads(), 12, "as many as wait with a request");

        // None waits: grow by half.
        drop(h.pool.idle.take_all());
        serve_all(&h);
        h.send(Exhausted).await;
        assert_eq!(h.threads(), 18, "half the pool");
        assert_eq!(h.ids(), (0..18).collect::<Vec<_>>());
        assert!(!h.pool.full.load(Ordering::Relaxed));
    }

    #[actix::test]
    async fn tick_replaces_a_lost_worker() {
        let h = Harness::start(2, 0, &[0], TICK);
        h.ready().await;
        wait_until_async("worker 0 is gone", || !h.alive(0)).await;
        assert_eq!(h.threads(), 2, "not noticed before a tick");

        h.send(Tick).await;
        assert_eq!(h.ids(), vec![0, 1, 2], "replaced");
        assert_eq!(h.threads(), 2);
        assert_eq!(h.retired(), vec![true, false, false], "the lost one let go");

        h.send(Tick).await;
        assert_eq!(h.ids().len(), 3, "replaced once");
    }

    #[actix::test]
    async fn tick_does_not_replace_a_retired_worker() {
        let h = Harness::start(2, 0, &[0], TICK);
        h.ready().await;
        h.made.lock().unwrap()[0]
            .retire
            .store(true, Ordering::Relaxed);
        wait_until_async("worker 0 is gone", || !h.alive(0)).await;

        h.send(Tick).await;
        h.send(Tick).await;
        assert_eq!(h.ids(), vec![0, 1], "a retiring worker is not replaced");
        assert_eq!(h.threads(), 2);
    }

    #[actix::test]
    async fn tick_shrinks_one_worker_per_tick_while_spare_workers_wait() {
        // Free "workers" wait as long as the test runs: only a retirement wakes one.
        let h = Harness::start(1, 0, &[], FOREVER);
        h.ready().await;
        h.pool.pretend_serving(true);
        h.send(Exhausted).await;
        h.pool.pretend_serving(false);
        assert_eq!(h.threads(), 5);

        // No worker is free: the surplus stays.
        for _ in 0..3 {
            h.send(Tick).await;
        }
        assert_eq!(h.threads(), 5, "no shrinking without spare workers");

        // Two free "workers": one waits on the idle set, one watches it (a spare).
        let stop = Arc::new(AtomicBool::new(false));
        let loops: Vec<_> = (0..2)
            .map(|_| {
                let (pool, stop) = (h.pool.clone(), stop.clone());
                thread::spawn(move || {
                    let mut role = Role::Free;
                    while !stop.load(Ordering::Relaxed) {
                        if pool.next_connection(&mut role).is_some() {
                            pool.served(&mut role);
                        }
                    }
                    pool.leave(&mut role);
                })
            })
            .collect();
        let pool = h.pool.clone();
        let two_free = move || pool.free() == 2;

        wait_until_async("two workers are free", &two_free).await;
        h.send(Tick).await;
        assert_eq!(h.threads(), 5, "not after one quiet tick");
        h.send(Tick).await;
        assert_eq!(h.threads(), 4, "one retired after two");
        assert_eq!(
            h.retired(),
            vec![true, false, false, false, false],
            "the oldest"
        );

        // Then one per tick, down to min. (The retirement wakes the watcher, which may still be
        // on its way back when the next tick looks: such a tick counts as busy.)
        let mut ticks = 0;
        while h.threads() > 1 {
            let threads = h.threads();
            wait_until_async("two workers are free", &two_free).await;
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
            wait_until_async("two workers are free", &two_free).await;
            h.send(Tick).await;
            assert_eq!(h.threads(), 1, "never below min");
        }
        assert_eq!(h.retired(), vec![true, true, true, true, false]);
        assert_eq!(h.ids().len(), 5, "none added");

        // Let the loops go: give the waiting one a connection, wake the watcher.
        stop.store(true, Ordering::Relaxed);
        let (mut client, conn) = pair(&h.listener);
        h.pool.idle.admit(conn, true).unwrap();
        client.write_all(b"x").unwrap();
        for handle in &loops {
            wait_until_async("a free worker loop ends", || {
                h.pool.wake_all();
                handle.is_finished()
            })
            .await;
        }
    }

    #[actix::test]
    async fn drain_waits_until_nothing_is_served() {
        let h = Harness::start(1, 1, &[], TICK);
        h.ready().await;
        h.pool.pretend_serving(true);
        let mut drain = Box::pin(h.addr.send(Drain));
        // A later message is handled after Drain; then let any answer reach us before looking.
        h.send(Tick).await;
        tokio::task::yield_now().await;
        assert!(!is_ready(&mut drain).await, "Drain answered while serving");

        h.pool.pretend_serving(false);
        tokio::time::timeout(WAIT, drain)
            .await
            .expect("Drain answers once nothing is served")
            .unwrap();
    }

    #[actix::test]
    async fn drain_does_not_wait_for_a_silent_new_connection() {
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
    async fn drain_waits_until_no_keep_alive_connection_is_parked() {
        let h = Harness::start(1, 1, &[], TICK);
        h.ready().await;
        let (_client, conn) = pair(&h.listener);
        h.pool.idle.admit(conn, false).unwrap();
        let mut drain = Box::pin(h.addr.send(Drain));
        h.send(Tick).await;
        tokio::task::yield_now().await;
        assert!(
            !is_ready(&mut drain).await,
            "Drain answered while a keep-alive connection is parked"
        );

        // The Monitor of a draining pool closes it once silent.
        assert_eq!(h.pool.idle.take_silent(Duration::ZERO).len(), 1);
        tokio::time::timeout(WAIT, drain)
            .await
            .expect("Drain answers once no keep-alive connection is parked")
            .unwrap();
    }

    #[actix::test]
    async fn drain_waits_for_a_connection_taken_before_its_worker_counts_itself_serving() {
        let h = Harness::start(1, 1, &[], TICK);
        h.ready().await;
        let (mut client, conn) = pair(&h.listener);
        h.pool.idle.admit(conn, false).unwrap();
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let (taken, _) = h.pool.idle.take_ready(WAIT).expect("the request is ready");
        let mut drain = Box::pin(h.addr.send(Drain));
        h.send(Tick).await;
        tokio::task::yield_now().await;
        assert!(
            !is_ready(&mut drain).await,
            "Drain answered while a worker owns a connection"
        );

        h.pool.idle.forget_any(taken.ticket);
        tokio::time::timeout(WAIT, drain)
            .await
            .expect("Drain answers once the connection is given up")
            .unwrap();
    }

    #[actix::test]
    async fn shutdown_retires_workers_closes_parked_connections_and_stops() {
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
        wait_until_async("the dispatcher stops", || !h.addr.connected()).await;
    }
}
