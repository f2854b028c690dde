//! What one generation of workers shares: the serving settings, the idle set, and the
//! leader/follower hand-off that decides which worker waits on the idle set.
//!
//! One free worker at a time (the *leader*) waits on the idle set's epoll; other free workers
//! (*followers*) wait on a condition variable. A leader that takes a connection serves it and
//! comes back to lead again: under load one hot thread serves connection after connection
//! without waking anyone (sleeping epoll waiters would each be woken by every new event).
//! When the leader stays away serving (a slow application), the Monitor promotes a follower so
//! that other connections are still taken (see [`Pool::promote`]). A promoted leader that takes
//! a connection while more wait for a worker wakes the next follower at once: a burst of
//! requests to a slow application is taken together, not one per promotion.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use crate::dispatcher::Connection;
use crate::monitor::IdleSet;
use crate::stats::Gauge;
use crate::worker::Settings;

/// How a thread's last call to [`Pool::next_connection`] ended.
#[derive(Clone, Copy, PartialEq, Eq)]
enum LastWait {
    /// It led (or this is its first call).
    Led,
    /// It followed and the wait timed out: it keeps following.
    TimedOut,
    /// It followed and was woken: it leads next, because the workers before it are stuck
    /// serving.
    Promoted,
}

thread_local! {
    /// How this thread's last wait ended.
    static LAST_WAIT: Cell<LastWait> = const { Cell::new(LastWait::Led) };
}

/// Shared by a Dispatcher, its Monitor and its workers.
pub struct Pool {
    /// How connections are served.
    pub settings: Settings,
    /// Connections waiting for input.
    pub idle: IdleSet,
    /// A worker is waiting on the idle set.
    leader: AtomicBool,
    /// Free workers waiting to lead.
    followers: AtomicUsize,
    /// The followers' lock (the condition needs one; it guards nothing else).
    follow_lock: Mutex<()>,
    /// Wakes a follower.
    follow: Condvar,
    /// Workers serving a connection.
    serving: AtomicUsize,
    /// Connections taken and connections served so far: the Monitor's sign of progress.
    progress: AtomicU64,
    /// A worker asked the Dispatcher to grow; cleared by the Dispatcher, so that one shortage
    /// sends one message.
    pub grow_requested: AtomicBool,
    /// The pool has `max_threads` workers: asking to grow is pointless.
    pub full: AtomicBool,
    /// How long a free worker blocks before it checks whether it was retired.
    pub tick: Duration,
    /// The pool that replaces this one after a restart: connections go there.
    successor: OnceLock<Arc<Pool>>,
}

impl Pool {
    /// A pool serving with `settings`, parking into `idle`.
    pub fn new(settings: Settings, idle: IdleSet, tick: Duration) -> Self {
        Pool {
            settings,
            idle,
            leader: AtomicBool::new(false),
            followers: AtomicUsize::new(0),
            follow_lock: Mutex::new(()),
            follow: Condvar::new(),
            serving: AtomicUsize::new(0),
            progress: AtomicU64::new(0),
            grow_requested: AtomicBool::new(false),
            full: AtomicBool::new(false),
            tick,
            successor: OnceLock::new(),
        }
    }

    /// Waits (up to a tick) for a connection with input, as the leader if the place is free,
    /// else as a follower; `None` when the wait ended without one. The flag says the peer has
    /// closed its side. A follower whose wait merely timed out keeps following on its next
    /// call instead of grabbing an empty leader's place: under load the place is empty only
    /// while the hot worker serves, and a second worker leading would be woken by every new
    /// event. Only the Monitor's promotion (or the hot worker itself) fills it.
    pub fn next_connection(&self) -> Option<(Connection, bool)> {
        let last = LAST_WAIT.replace(LastWait::Led);
        let lead = last != LastWait::TimedOut
            && (self.leader)
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok();
        if lead {
            let promoted = last == LastWait::Promoted;
            let conn = self.idle.take_ready(self.tick);
            self.leader.store(false, Ordering::Release);
            if conn.is_some() {
                self.progress.fetch_add(1, Ordering::Relaxed);
                if promoted && self.idle.has_ready() {
                    self.wake_follower();
                }
            }
            return conn;
        }
        LAST_WAIT.set(match self.follow() {
            true => LastWait::TimedOut,
            false => LastWait::Promoted,
        });
        None
    }

    /// Waits as a follower; true when the wait timed out (rather than being woken).
    fn follow(&self) -> bool {
        let guard = self.follow_lock.lock().unwrap_or_else(|p| p.into_inner());
        self.followers.fetch_add(1, Ordering::Relaxed);
        let waited = self.follow.wait_timeout(guard, self.tick);
        self.followers.fetch_sub(1, Ordering::Relaxed);
        waited.is_ok_and(|(_, result)| result.timed_out())
    }

    /// Wakes a follower to lead when no connection was taken or finished since the last call
    /// (`seen` holds the progress count then) while the leader's place is empty and workers
    /// serve: the serving workers are stuck in the application. Called by the Monitor every
    /// few milliseconds.
    pub fn promote(&self, seen: &mut u64) {
        let progress = self.progress.load(Ordering::Relaxed);
        let stuck = std::mem::replace(seen, progress) == progress;
        let vacant = !self.leader.load(Ordering::Relaxed);
        if stuck && vacant && self.serving() > 0 {
            self.wake_follower();
        }
    }

    /// Wakes one follower, if any, to lead.
    fn wake_follower(&self) {
        if self.followers() > 0 {
            let _guard = self.follow_lock.lock().unwrap_or_else(|p| p.into_inner());
            self.follow.notify_one();
        }
    }

    /// Names the pool that replaces this one (restart), before its connections are handed over.
    pub fn set_successor(&self, next: Arc<Pool>) {
        let _ = self.successor.set(next);
    }

    /// Moves a connection of this (sealed) pool to its successor, or closes it if none.
    pub fn pass_on(&self, conn: Connection) {
        let Some(next) = self.successor.get() else {
            return;
        };
        let peer = conn.peer;
        if let Err(e) = next.idle.admit(conn, false) {
            log::warn!("{peer}: cannot move the connection to the new pool: {e}");
        }
    }

    /// Wakes every follower (retirement, shutdown).
    pub fn wake_all(&self) {
        let _guard = self.follow_lock.lock().unwrap_or_else(|p| p.into_inner());
        self.follow.notify_all();
    }

    /// Whether a connection just taken leaves no free worker (no leader, no follower).
    pub fn exhausted(&self) -> bool {
        self.followers() == 0 && !self.leader.load(Ordering::Relaxed)
    }

    /// Counts a worker starting to serve (also in the server-wide Busy gauge).
    pub fn serving_started(&self) {
        self.serving.fetch_add(1, Ordering::Relaxed);
        self.settings.stats.inc(Gauge::Busy);
    }

    /// Counts a worker done serving.
    pub fn serving_ended(&self) {
        self.settings.stats.dec(Gauge::Busy);
        self.serving.fetch_sub(1, Ordering::Relaxed);
        self.progress.fetch_add(1, Ordering::Relaxed);
    }

    /// Connections taken and served so far.
    pub fn progress(&self) -> u64 {
        self.progress.load(Ordering::Relaxed)
    }

    /// Free workers waiting as followers.
    pub fn followers(&self) -> usize {
        self.followers.load(Ordering::Relaxed)
    }

    /// Workers serving.
    pub fn serving(&self) -> usize {
        self.serving.load(Ordering::Relaxed)
    }
}
