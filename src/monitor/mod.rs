//! The Monitor actor: keeps time for a pool. Every tick it closes connections idle longer
//! than `timeout` and sends `Tick` to the Dispatcher; on stop it closes the idle connections,
//! on restart it hands every waiting connection over to the next pool.
//!
//! The waiting itself needs no thread per connection: connections wait in the pool's
//! [`IdleSet`], one epoll instance that free workers wait on.

mod idle_set;

use std::io::Write;
use std::net::Shutdown;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

pub use idle_set::{IdleSet, Parking, Ticket};

use crate::dispatcher::{Connection, Tick};
use crate::http::{error_response, ProtocolError};
use crate::pool::Pool;

/// How often the Monitor checks, while workers serve, that some free worker is waiting for
/// input: about the longest a slow application can delay other connections' requests. Each
/// check wakes the Monitor's thread; 5 ms keeps that below 1% of a busy core.
const PROMOTE_EVERY: Duration = Duration::from_millis(5);

/// The same check while no worker serves, so that an idle server stays (almost) asleep.
const PROMOTE_IDLE_EVERY: Duration = Duration::from_millis(10);

/// Closes the idle keep-alive connections and stops the Monitor (graceful stop: connections
/// never served yet stay, for the draining workers).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Close;

/// Takes every waiting connection, with whether it was never served, and stops the Monitor
/// (restart: they move to the next pool).
#[derive(Message)]
#[rtype(result = "Vec<(Connection, bool)>")]
pub struct Handover;

/// Expires idle connections and ticks.
pub struct Monitor {
    /// The pool whose idle set is watched.
    pool: Arc<Pool>,
    /// How long a connection may stay idle.
    timeout: Duration,
    /// The tick period.
    tick: Duration,
    /// Where ticks go.
    ticks: Recipient<Tick>,
    /// Connections taken from the idle set at the last promotion check.
    seen: u64,
}

impl Monitor {
    /// A Monitor closing connections idle for `timeout` and ticking every `tick`.
    pub fn new(pool: Arc<Pool>, timeout: Duration, tick: Duration, ticks: Recipient<Tick>) -> Self {
        Monitor {
            pool,
            timeout,
            tick,
            ticks,
            seen: 0,
        }
    }

    fn on_tick(&mut self) {
        for (conn, _) in self.pool.idle.expire(self.timeout) {
            match (&conn.outbox, conn.request_deadline) {
                (Some(_), _) => give_up_sending(conn),
                (None, Some(_)) => self.time_out(conn),
                (None, None) => log::debug!("{}: idle for {:?}; closing", conn.peer, self.timeout),
            }
        }
        self.ticks.do_send(Tick);
    }

    /// Answers a head that did not arrive in time with 408 (if the socket takes it at once)
    /// and closes.
    fn time_out(&self, conn: Connection) {
        log::debug!("{}: request head incomplete in time; closing", conn.peer);
        let server = &self.pool.settings.server_name;
        let response = error_response(&ProtocolError::RequestTimeout, server);
        let _ = (&conn.stream).write(&response);
        let _ = conn.stream.shutdown(Shutdown::Write);
    }
}

/// Resets a connection whose client stopped reading its response.
fn give_up_sending(conn: Connection) {
    log::debug!("{}: response not read in time; resetting", conn.peer);
    crate::worker::reset(&conn.stream);
}

impl Monitor {
    /// Promotes a follower if the serving workers are stuck, then checks again later.
    fn watch_workers(&mut self, ctx: &mut actix::Context<Self>) {
        self.pool.promote(&mut self.seen);
        let delay = match self.pool.serving() {
            0 => PROMOTE_IDLE_EVERY,
            _ => PROMOTE_EVERY,
        };
        ctx.run_later(delay, |monitor, ctx| monitor.watch_workers(ctx));
    }
}

impl Actor for Monitor {
    type Context = actix::Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.tick, |monitor, _| monitor.on_tick());
        self.watch_workers(ctx);
    }
}

impl actix::Handler<Close> for Monitor {
    type Result = ();

    fn handle(&mut self, _: Close, ctx: &mut Self::Context) {
        let closed = self.pool.idle.take_idle().len();
        log::debug!("closed {closed} idle connections");
        ctx.stop();
    }
}

impl actix::Handler<Handover> for Monitor {
    type Result = MessageResult<Handover>;

    fn handle(&mut self, _: Handover, ctx: &mut Self::Context) -> Self::Result {
        ctx.stop();
        MessageResult(self.pool.idle.take_all())
    }
}
