//! The Worker actor: one per arbiter (thread). A free worker waits in the pool's idle set; it
//! takes a connection that has input, serves its requests with blocking I/O, running the
//! application inline, and parks the connection again when nothing more is buffered.

mod body;
mod origin;
mod respond;
mod session;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix::prelude::*;

use crate::conn::Connection;
use crate::dispatcher::{Exhausted, WorkerFactory, WorkerId, WorkerLink};
use crate::pool::{Parking, Pool, Role};

use session::{serve, Buffers, Outcome};

/// Starts the serving loop (sent by the worker to itself when started).
#[derive(Message)]
#[rtype(result = "()")]
struct Run;

/// A worker: its thread blocks while it waits and serves, which is what its own arbiter is for.
pub(crate) struct Worker {
    /// Its name in the Dispatcher's pool.
    id: WorkerId,
    /// The pool it serves.
    pool: Arc<Pool>,
    /// Set by the Dispatcher to retire this worker; checked between connections.
    retire: Arc<AtomicBool>,
    /// Where to ask for more workers when this one took the last waiting place.
    dispatcher: Recipient<Exhausted>,
    /// Buffers lent to each connection served.
    bufs: Buffers,
    /// Where it is in the pool's hand-off.
    role: Role,
}

impl Worker {
    /// A worker of `pool`, retired when `retire` is set.
    pub(crate) fn new(
        id: WorkerId,
        pool: Arc<Pool>,
        retire: Arc<AtomicBool>,
        dispatcher: Recipient<Exhausted>,
    ) -> Self {
        Worker {
            id,
            bufs: Buffers::new(pool.settings.stats.request_clock()),
            pool,
            retire,
            dispatcher,
            role: Role::Free,
        }
    }

    /// Starts workers on arbiters of their own, for a Dispatcher.
    pub(crate) fn factory(pool: Arc<Pool>) -> WorkerFactory {
        Box::new(move |id, dispatcher| {
            let arbiter = Arbiter::new();
            let retire = Arc::new(AtomicBool::new(false));
            let (pool, flag) = (pool.clone(), retire.clone());
            let addr = Worker::start_in_arbiter(&arbiter.handle(), move |_| {
                Worker::new(id, pool, flag, dispatcher)
            });
            WorkerLink {
                alive: Box::new(move || addr.connected()),
                retire,
                arbiter: Some(arbiter),
            }
        })
    }

    fn run(&mut self) {
        while !self.retire.load(Ordering::Relaxed) {
            if let Some((conn, hung_up)) = self.pool.next_connection(&mut self.role) {
                if self.pool.exhausted() {
                    self.ask_to_grow();
                }
                self.serve(conn, hung_up);
                self.pool.served(&mut self.role);
            }
        }
        self.pool.leave(&mut self.role);
        log::debug!("worker {} retired", self.id);
    }

    fn ask_to_grow(&self) {
        if self.pool.full.load(Ordering::Relaxed) {
            return;
        }
        if !self.pool.grow_requested.swap(true, Ordering::Relaxed) {
            self.dispatcher.do_send(Exhausted);
        }
    }

    /// Serves `conn` until it is parked or closed; input that arrived while it was served
    /// makes the worker serve it again at once. A connection whose peer has `hung_up` is
    /// closed once what it sent is answered.
    fn serve(&mut self, mut conn: Connection, hung_up: bool) {
        loop {
            let peer = conn.peer;
            match serve(conn, &self.pool.settings, &mut self.bufs) {
                Outcome::Idle(idle) if hung_up && idle.outbox.is_none() => {
                    log::debug!("{peer}: client closed its side");
                    self.pool.idle.forget_any(idle.ticket);
                    break;
                }
                Outcome::Idle(idle) => match self.pool.idle.park(idle) {
                    Parking::Parked => break,
                    Parking::Pending(again) => conn = again,
                    Parking::Sealed(moving) => {
                        self.pool.pass_on(moving);
                        break;
                    }
                },
                Outcome::Closed(ticket) => {
                    log::debug!("{peer}: connection closed");
                    self.pool.idle.forget_any(ticket);
                    break;
                }
            }
        }
    }
}

impl Actor for Worker {
    type Context = actix::Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.notify(Run);
    }
}

impl actix::Handler<Run> for Worker {
    type Result = ();

    fn handle(&mut self, _: Run, ctx: &mut Self::Context) {
        self.run();
        ctx.stop();
    }
}
