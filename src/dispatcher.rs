//! The Dispatcher actor: a FIFO of waiting connections and the pool of workers that serve them.

use std::collections::{HashMap, VecDeque};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use actix::prelude::*;
use bytes::BytesMut;
use tokio::sync::oneshot;

use crate::stats::{Gauge, Stats};
use crate::worker::Serve;

/// Names a worker within its pool.
pub type WorkerId = u64;

/// Workers added at once when connections wait and none is free (at least; see `grow`).
const GROW_MIN: usize = 4;

/// Ticks with a free worker and an empty queue before one worker is retired.
const SHRINK_AFTER_TICKS: u32 = 2;

/// An accepted connection on its way to a worker: from a Listener, or back from the Monitor.
///
/// It carries a plain `std::net::TcpStream`, never a registered tokio stream, so that it can
/// cross arbiters; bytes already read travel with it.
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
}

/// A worker finished its connection and can take another.
#[derive(Message)]
#[rtype(result = "()")]
pub struct WorkerFree {
    /// Which worker.
    pub id: WorkerId,
}

/// The Monitor's periodic tick: retire surplus workers, replace lost ones.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Tick;

/// Answers once every queued connection has been served and every worker is free.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Drain;

/// Stops every worker and the Dispatcher itself; queued connections are closed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// A started worker, as the Dispatcher holds it.
pub struct WorkerLink {
    /// Where connections for it go.
    pub serve: Recipient<Serve>,
    /// Its thread, stopped when the worker is retired (`None` for test stand-ins).
    pub arbiter: Option<Arbiter>,
}

/// Starts a worker with the given id that reports to the given recipient; injected so that
/// tests can stand in for workers.
pub type WorkerFactory = Box<dyn FnMut(WorkerId, Recipient<WorkerFree>) -> WorkerLink>;

/// A worker and whether it is serving.
struct Slot {
    /// The worker.
    link: WorkerLink,
    /// Serving a connection right now.
    busy: bool,
}

/// Routes connections to free workers, queueing them in arrival order when none is free.
pub struct Dispatcher {
    /// Connections waiting for a worker, oldest first.
    queue: VecDeque<Connection>,
    /// Every live worker.
    slots: HashMap<WorkerId, Slot>,
    /// Free workers; the most recently freed is reused first (its caches are warm).
    free: Vec<WorkerId>,
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
    /// Consecutive ticks with a free worker and nothing queued.
    quiet_ticks: u32,
    /// Waiting `Drain` requests.
    drains: Vec<oneshot::Sender<()>>,
    /// This actor, as the workers' reply address.
    myself: Option<Recipient<WorkerFree>>,
}

impl Dispatcher {
    /// A pool of `min..=max` workers (max 0 = unbounded) started by `factory`.
    pub fn new(min: usize, max: usize, factory: WorkerFactory, stats: Arc<Stats>) -> Self {
        Dispatcher {
            queue: VecDeque::new(),
            slots: HashMap::new(),
            free: Vec::new(),
            next_id: 0,
            min,
            max,
            factory,
            stats,
            quiet_ticks: 0,
            drains: Vec::new(),
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
            let link = (self.factory)(id, myself.clone());
            self.slots.insert(id, Slot { link, busy: false });
            self.free.push(id);
            self.stats.inc(Gauge::Threads);
        }
    }

    /// Adds workers ahead of demand: at least the queue's length, half the pool, or GROW_MIN.
    fn grow(&mut self) {
        let threads = self.slots.len();
        let room = match self.max {
            0 => usize::MAX,
            max => max.saturating_sub(threads),
        };
        let want = self.queue.len().max(threads / 2).max(GROW_MIN);
        let count = want.min(room);
        if count > 0 {
            log::debug!("growing the pool by {count} (from {threads})");
            self.spawn_workers(count);
        }
    }

    /// Hands queued connections to free workers, growing the pool if they still wait.
    fn pump(&mut self) {
        self.assign();
        if !self.queue.is_empty() {
            self.grow();
            self.assign();
        }
        self.check_drained();
    }

    fn assign(&mut self) {
        while !self.queue.is_empty() {
            let Some(id) = self.free.pop() else { return };
            let Some(conn) = self.queue.pop_front() else {
                return;
            };
            self.stats.dec(Gauge::Queued);
            if let Err(conn) = self.send_to(id, conn) {
                self.queue.push_front(conn);
                self.stats.inc(Gauge::Queued);
            }
        }
    }

    /// Sends to a worker; a worker found dead is replaced and the connection handed back.
    fn send_to(&mut self, id: WorkerId, conn: Connection) -> Result<(), Connection> {
        let Some(slot) = self.slots.get_mut(&id) else {
            return Err(conn);
        };
        match slot.link.serve.try_send(Serve(conn)) {
            Ok(()) => {
                slot.busy = true;
                self.stats.inc(Gauge::Busy);
                Ok(())
            }
            Err(SendError::Closed(Serve(conn)) | SendError::Full(Serve(conn))) => {
                log::warn!("worker {id} is gone; replacing it");
                self.retire(id);
                self.spawn_workers(1);
                Err(conn)
            }
        }
    }

    fn retire(&mut self, id: WorkerId) {
        let Some(slot) = self.slots.remove(&id) else {
            return;
        };
        self.free.retain(|f| *f != id);
        if slot.busy {
            self.stats.dec(Gauge::Busy);
        }
        self.stats.dec(Gauge::Threads);
        if let Some(arbiter) = slot.link.arbiter {
            arbiter.stop();
        }
    }

    /// Workers serving; a worker whose thread died is not waited for.
    fn busy(&self) -> usize {
        let serving = |s: &&Slot| s.busy && s.link.serve.connected();
        self.slots.values().filter(serving).count()
    }

    fn check_drained(&mut self) {
        if !self.drains.is_empty() && self.queue.is_empty() && self.busy() == 0 {
            for done in self.drains.drain(..) {
                let _ = done.send(());
            }
        }
    }

    /// Replaces workers whose mailbox closed (their thread died).
    fn replace_lost(&mut self) {
        let lost: Vec<WorkerId> = self
            .slots
            .iter()
            .filter(|(_, s)| !s.link.serve.connected())
            .map(|(id, _)| *id)
            .collect();
        for id in lost {
            log::warn!("worker {id} was lost; replacing it");
            self.retire(id);
            self.spawn_workers(1);
        }
    }

    fn shrink(&mut self) {
        let surplus = self.slots.len() > self.min;
        if !(self.queue.is_empty() && !self.free.is_empty() && surplus) {
            self.quiet_ticks = 0;
            return;
        }
        self.quiet_ticks += 1;
        if self.quiet_ticks >= SHRINK_AFTER_TICKS && !self.free.is_empty() {
            let oldest = self.free[0];
            log::debug!("retiring idle worker {oldest}");
            self.retire(oldest);
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
        self.queue.push_back(conn);
        self.stats.inc(Gauge::Queued);
        self.pump();
    }
}

impl actix::Handler<WorkerFree> for Dispatcher {
    type Result = ();

    fn handle(&mut self, msg: WorkerFree, _ctx: &mut Self::Context) {
        if let Some(slot) = self.slots.get_mut(&msg.id) {
            if slot.busy {
                slot.busy = false;
                self.stats.dec(Gauge::Busy);
                self.free.push(msg.id);
            }
        }
        self.pump();
    }
}

impl actix::Handler<Tick> for Dispatcher {
    type Result = ();

    fn handle(&mut self, _: Tick, _ctx: &mut Self::Context) {
        self.replace_lost();
        self.shrink();
        self.pump();
    }
}

impl actix::Handler<Drain> for Dispatcher {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Drain, _ctx: &mut Self::Context) -> Self::Result {
        let (done, wait) = oneshot::channel();
        self.drains.push(done);
        self.check_drained();
        Box::pin(async move {
            let _ = wait.await;
        })
    }
}

impl actix::Handler<Shutdown> for Dispatcher {
    type Result = ();

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) {
        let ids: Vec<WorkerId> = self.slots.keys().copied().collect();
        for id in ids {
            self.retire(id);
        }
        for _ in self.queue.drain(..) {
            self.stats.dec(Gauge::Queued);
        }
        ctx.stop();
    }
}
