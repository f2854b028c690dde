//! What one generation of workers shares: how connections are served ([`Settings`]), the
//! idle set where connections wait for input ([`IdleSet`]), and the hand-off that decides
//! which free worker waits on it (`handoff`).
//!
//! This layer sits between the connection (`conn`) and the actors: it knows connections
//! and threads, and no actor.

mod handoff;
mod idle_set;
mod sync;

#[cfg(all(test, skyrocket_loom))]
mod loom_tests;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::access_log::AccessLog;
use crate::allow_list::AllowList;
use crate::app::Application;
use crate::conn::Connection;
use crate::http::Limits;
use crate::stats::{Gauge, Stats};

use handoff::Handoff;
pub(crate) use handoff::Role;
pub(crate) use idle_set::{IdleSet, Parking};

/// How often the watcher checks that some free worker waits on the idle set while workers
/// serve: about the longest a ready connection waits for a free worker. Each check wakes the
/// watcher's thread; at 100 µs that is about 1 % of a busy core.
const WATCH_PERIOD: Duration = Duration::from_micros(100);

/// How connections are served: what every worker of one pool shares.
pub(crate) struct Settings {
    /// The application that answers requests.
    pub(crate) app: Arc<dyn Application>,
    /// Request head limits.
    pub(crate) limits: Limits,
    /// How long a client may make a worker wait: for a head to complete (in all), for a body
    /// or on a response that does not move (see `conn::Budget`).
    pub(crate) read_timeout: Duration,
    /// The largest request body accepted (413 past it).
    pub(crate) max_body: u64,
    /// The `Server` header value.
    pub(crate) server_name: String,
    /// Gauges and totals.
    pub(crate) stats: Arc<Stats>,
    /// Set when the pool drains: responses say `Connection: close` (and the connection closes
    /// after its response).
    pub(crate) draining: Arc<AtomicBool>,
    /// Where a line for each answered request goes (refused ones too).
    pub(crate) access_log: Arc<AccessLog>,
    /// The peers whose forwarded headers are believed (`None`: nobody's, and they pass as
    /// sent).
    pub(crate) forwarded: Option<AllowList>,
}

impl Settings {
    /// Counts a response sent. The one that completes `max_requests` starts the drain at
    /// once: every response planned after it says `Connection: close`, even before the Server
    /// (woken by the same count) stops.
    pub(crate) fn count_response(&self) {
        if self.stats.request_served() {
            self.draining.store(true, Ordering::Relaxed);
        }
    }
}

/// Shared by a Dispatcher, its Monitor and its workers.
pub(crate) struct Pool {
    /// How connections are served.
    pub(crate) settings: Settings,
    /// Connections waiting for input.
    pub(crate) idle: IdleSet,
    /// Which free worker waits on `idle`.
    handoff: Handoff,
    /// A worker asked the Dispatcher to grow; cleared by the Dispatcher, so that one shortage
    /// sends one message.
    pub(crate) grow_requested: AtomicBool,
    /// The pool has `max_threads` workers: asking to grow is pointless.
    pub(crate) full: AtomicBool,
    /// The pool that replaces this one after a restart: connections go there.
    successor: OnceLock<Arc<Pool>>,
}

impl Pool {
    /// A pool serving with `settings`, parking into `idle`, with `seats` workers waiting on
    /// it (the cores it may use); no wait of a free worker lasts longer than `tick` (it then
    /// checks whether it was retired).
    pub(crate) fn new(settings: Settings, idle: IdleSet, seats: usize, tick: Duration) -> Self {
        Pool {
            settings,
            idle,
            handoff: Handoff::new(seats, WATCH_PERIOD, tick),
            grow_requested: AtomicBool::new(false),
            full: AtomicBool::new(false),
            successor: OnceLock::new(),
        }
    }

    /// Takes a free worker one step through the hand-off (waiting at most a tick); a ready
    /// connection when it took one (the flag says the peer has closed its side). The worker
    /// then serves it and calls [`Pool::served`].
    pub(crate) fn next_connection(&self, role: &mut Role) -> Option<(Connection, bool)> {
        let taken = self.handoff.step(role, &self.idle);
        if taken.is_some() {
            self.settings.stats.inc(Gauge::Busy);
        }
        taken
    }

    /// A worker is done serving the connection it took.
    pub(crate) fn served(&self, role: &mut Role) {
        self.settings.stats.dec(Gauge::Busy);
        self.handoff.done(role);
    }

    /// A worker leaves the pool (it was retired), handing on its place.
    pub(crate) fn leave(&self, role: &mut Role) {
        self.handoff.leave(role);
    }

    /// Wakes every free worker that sleeps (retirement, shutdown).
    pub(crate) fn wake_all(&self) {
        self.handoff.wake_all();
    }

    /// Whether no free worker is left (asked by a worker that just took a connection).
    pub(crate) fn exhausted(&self) -> bool {
        self.handoff.free() == 0
    }

    /// Free workers (neither serving nor retired).
    pub(crate) fn free(&self) -> usize {
        self.handoff.free()
    }

    /// Workers serving.
    pub(crate) fn serving(&self) -> usize {
        self.handoff.serving()
    }

    /// Connections taken so far: the drain's sign of progress.
    pub(crate) fn progress(&self) -> u64 {
        self.handoff.taken()
    }

    /// Counts a worker as serving (or done, `false`) as if it took (or served) a connection.
    #[cfg(test)]
    pub(crate) fn pretend_serving(&self, serving: bool) {
        self.handoff.pretend_serving(serving);
    }

    /// Names the pool that replaces this one (restart), before its connections are handed over.
    pub(crate) fn set_successor(&self, next: Arc<Pool>) {
        let _ = self.successor.set(next);
    }

    /// Moves a connection of this (sealed) pool to its successor, or closes it if none.
    pub(crate) fn pass_on(&self, conn: Connection) {
        let Some(next) = self.successor.get() else {
            return;
        };
        let peer = conn.peer;
        if let Err(e) = next.idle.admit(conn, false) {
            log::warn!("{peer}: cannot move the connection to the new pool: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use crate::stats::Gauge;
    use crate::test_support::*;

    #[test]
    fn pass_on_moves_a_connection_to_the_successor_or_closes_it() {
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
}
