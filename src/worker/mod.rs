//! The Worker actor: one per arbiter (thread), serving one connection at a time with blocking
//! I/O and running the application inline.

mod body;
mod respond;
mod session;
mod socket;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::app::Application;
use crate::dispatcher::{Connection, WorkerFactory, WorkerFree, WorkerId, WorkerLink};
use crate::http::Limits;
use crate::monitor::Park;
use crate::stats::Stats;

pub(crate) use session::{serve, Outcome};

/// What every worker of one pool shares.
pub struct Settings {
    /// The application that answers requests.
    pub app: Arc<dyn Application>,
    /// Request head limits.
    pub limits: Limits,
    /// Head arrival budget, body stall limit and write limit.
    pub read_timeout: Duration,
    /// The `Server` header value.
    pub server_name: String,
    /// Gauges and totals.
    pub stats: Arc<Stats>,
    /// Set when the pool drains: responses say `Connection: close` and idle connections close.
    pub draining: Arc<AtomicBool>,
}

/// Serve this connection (from the Dispatcher).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Serve(pub Connection);

/// A worker: its thread blocks while it serves, which is what its own arbiter is for.
pub struct Worker {
    /// Its name in the Dispatcher's pool, sent back with [`WorkerFree`].
    id: WorkerId,
    /// The pool's settings.
    settings: Arc<Settings>,
    /// Where to report that this worker is free again.
    dispatcher: Recipient<WorkerFree>,
    /// Where idle keep-alive connections go.
    monitor: Recipient<Park>,
}

impl Worker {
    /// A worker reporting to `dispatcher` and parking idle connections with `monitor`.
    pub fn new(
        id: WorkerId,
        settings: Arc<Settings>,
        dispatcher: Recipient<WorkerFree>,
        monitor: Recipient<Park>,
    ) -> Self {
        Worker {
            id,
            settings,
            dispatcher,
            monitor,
        }
    }

    /// Starts workers on arbiters of their own, for a Dispatcher.
    pub fn factory(settings: Arc<Settings>, monitor: Recipient<Park>) -> WorkerFactory {
        Box::new(move |id, dispatcher| {
            let arbiter = Arbiter::new();
            let (settings, monitor) = (settings.clone(), monitor.clone());
            let addr = Worker::start_in_arbiter(&arbiter.handle(), move |_| {
                Worker::new(id, settings, dispatcher, monitor)
            });
            WorkerLink {
                serve: addr.recipient(),
                arbiter: Some(arbiter),
            }
        })
    }
}

impl Actor for Worker {
    type Context = actix::Context<Self>;
}

impl actix::Handler<Serve> for Worker {
    type Result = ();

    fn handle(&mut self, Serve(conn): Serve, _ctx: &mut Self::Context) {
        let peer = conn.peer;
        match serve(conn, &self.settings) {
            Outcome::Idle(conn) => self.monitor.do_send(Park(conn)),
            Outcome::Closed => log::debug!("{peer}: connection closed"),
        }
        self.dispatcher.do_send(WorkerFree { id: self.id });
    }
}
