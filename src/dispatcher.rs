//! The Dispatcher actor: admits accepted connections into the pool's idle set and keeps the
//! pool of workers between `min_threads` and `max_threads`.
//!
//! Connections wait for a worker in the idle set (the kernel's ready list keeps them in the
//! order they became readable); the Dispatcher decides how many workers wait on it: it grows
//! the pool when a worker reports that none was left waiting, retires one surplus worker per
//! quiet tick, and replaces workers whose thread died.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::BytesMut;
use tokio::sync::oneshot;

use crate::http::RequestHead;
use crate::monitor::Ticket;
use crate::pool::Pool;
use crate::stats::{Gauge, Stats};
use crate::worker::{Outbox, Ping};

/// Names a worker within its pool.
pub type WorkerId = u64;

/// Workers added at once (at least) when the pool runs out of waiting workers.
const GROW_MIN: usize = 4;

/// Ticks with a waiting worker before one surplus worker is retired.
const SHRINK_AFTER_TICKS: u32 = 2;

/// How often a pending `Drain` re-checks the pool.
const DRAIN_POLL: Duration = Duration::from_millis(10);

/// An accepted connection on its way to a worker.
///
/// It carries a plain `std::net::TcpStream`, never a registered tokio stream, so that it can
/// cross threads; bytes already read travel with it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Connection {
    /// The client socket, in blocking mode.
    pub stream: TcpStream,
    /// The client's address.
    pub peer: SocketAddr,
    /// The address the connection arrived on.
    pub local: SocketAddr,
    /// Bytes already read from the socket.
    pub buffered: BytesMut,
    /// Its place in a pool's idle set, once admitted there.
    pub ticket: Option<Ticket>,
    /// The socket is already in non-blocking mode, so serving it again costs no system call
    /// to set it.
    pub nonblocking: bool,
    /// When the request partly received must be complete (a slow client's budget, kept while
    /// the connection waits for the rest).
    pub request_deadline: Option<Instant>,
    /// A head already parsed whose small body is still arriving (see
    /// `worker::PREBUFFER_BODY`).
    pub head: Option<Box<RequestHead>>,
    /// The rest of a response waiting for room in the send buffer (a slow reader).
    pub outbox: Option<Box<Outbox>>,
}

impl Connection {
    /// A connection just accepted: nothing read, not yet admitted anywhere.
    pub fn accepted(stream: TcpStream, peer: SocketAddr, local: SocketAddr) -> Self {
        Connection {
            stream,
            peer,
            local,
            buffered: BytesMut::new(),
            ticket: None,
            nonblocking: false,
            request_deadline: None,
            head: None,
            outbox: None,
        }
    }
}

/// A worker took a connection and no other worker was left waiting: if every worker is
/// serving, grow ahead of demand.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Exhausted;

/// The Monitor's periodic tick: retire surplus workers, replace lost ones.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Tick;

/// Answers once no worker is serving and no new connection with a request waits.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Drain;

/// Retires every worker, closes waiting connections, and stops the Dispatcher.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// A started worker, as the Dispatcher holds it.
pub struct WorkerLink {
    /// Its mailbox, closed once the worker has stopped (retired, or its thread died).
    pub alive: Recipient<Ping>,
    /// Set to retire the worker.
    pub retire: Arc<AtomicBool>,
    /// Its thread, stopped when the worker is retired (`None` for test stand-ins).
    pub arbiter: Option<Arbiter>,
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
        !self.alive.connected() && !self.retire.load(Ordering::Relaxed)
    }
}

/// Starts a worker with the given id that asks the given recipient to grow the pool; injected
/// so that tests can stand in for workers.
pub type WorkerFactory = Box<dyn FnMut(WorkerId, Recipient<Exhausted>) -> WorkerLink>;

/// Keeps the pool's size and admits connections.
pub struct Dispatcher {
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
    pub fn new(
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

    /// Adds workers ahead of demand: half the pool, the connections waiting, or GROW_MIN.
    fn grow(&mut self) {
        let threads = self.workers.len();
        let room = match self.max {
            0 => usize::MAX,
            max => max.saturating_sub(threads),
        };
        let waiting = self.pool.idle.fresh();
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

    /// Retires one surplus worker after SHRINK_AFTER_TICKS ticks with workers waiting.
    fn shrink(&mut self) {
        if self.pool.followers() == 0 || self.workers.len() <= self.min {
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

    /// Answers `Drain` once no worker serves, no response waits to be sent, and no new
    /// connection waits, or the ones that wait have sent nothing for a whole poll period (they
    /// carry no request in flight).
    fn check_drained(&mut self) {
        let progress = self.pool.progress();
        let quiet = self.drain_progress.replace(progress) == Some(progress);
        let nothing_waits = self.pool.idle.fresh() == 0 || quiet;
        if self.pool.serving() == 0 && self.pool.idle.sending() == 0 && nothing_waits {
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
