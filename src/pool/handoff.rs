//! Which free worker waits for ready connections, and how a free one is found when those
//! waiting have all gone to serve: the pool's hand-off protocol (docs/architecture.md has
//! the states, the transitions and the progress argument).
//!
//! A free worker is in one of three places:
//!
//! - **waiting** on the idle set (its epoll), which hands each ready connection to one
//!   waiting worker. There are [`Handoff::seats`] seats (the cores the process may run on);
//!   a seated worker keeps its seat while it serves and waits again when done, so under load
//!   each core's worker serves connection after connection without waking anyone;
//! - **watching**: one free worker checks every period whether the idle set has gone
//!   unwatched for a whole period (every worker that could wait is serving: a slow
//!   application) while a core is free. Then it *promotes* itself: it waits on the idle set in
//!   addition to the seats and hands the watch to a follower. While the application is slow,
//!   the last waiting worker to take a connection *hurries* (promotes a follower at once), so
//!   every request of a blocking application finds a worker waiting;
//! - **following**: the others, asleep until promoted or handed the watch.
//!
//! Nothing on the hot path wakes another thread: taking a connection is one atomic addition
//! to [`Counts`]. The watcher *dozes* (sleeps until woken) while a worker waits on the idle set
//! and nobody took a connection for a whole period; the worker that takes one next, or the
//! last one to stop waiting, wakes it. The decision to doze and a take change the same atomic
//! word, so one of them always sees the other.

use std::time::{Duration, Instant};

use super::sync::{now, process_cpu_time, AtomicBool, AtomicU64, AtomicUsize, Condvar, Mutex};
use super::sync::{wait_period, wait_woken};
use super::sync::{MutexGuard, Ordering};

/// Where ready connections come from: the idle set (a stand-in in the model checks).
pub(crate) trait Source {
    /// What is taken.
    type Item;
    /// Waits up to `timeout` for a ready item and takes it; `batch` says others found ready
    /// meanwhile may be kept for the next takes (the application is fast: this worker will
    /// be back for them soon).
    fn take(&self, timeout: Duration, batch: bool) -> Option<Self::Item>;
}

/// Where a worker is in the hand-off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Between places: it takes a seat if one is free, else goes to the bench.
    Free,
    /// Waiting on the idle set; `seated` if it holds a seat (else it was promoted).
    Waiting {
        /// It holds one of the seats, and keeps it while it serves.
        seated: bool,
    },
    /// Watching, with what it saw at its last check.
    Watching(Seen),
    /// Asleep on the bench until the watch is handed over.
    Following,
    /// Serving a connection taken at `since`.
    Serving {
        /// When it was taken: how long workers keep connections tells a slow application.
        since: Instant,
        /// It holds a seat: once done it waits on the idle set again at once.
        seated: bool,
    },
}

/// What the watcher saw at a check, to compare with the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Seen {
    /// When it looked.
    at: Instant,
    /// [`Handoff::vacated`] then.
    vacated: u64,
    /// The counts then.
    counts: Counts,
    /// When the current CPU window began, and the process's CPU time then: how busy the cores
    /// were is measured over [`CPU_WINDOW`] or more.
    cpu: (Instant, Duration),
    /// Since when the idle set has stayed unwatched, as far as the watcher saw.
    unwatched_since: Option<Instant>,
    /// Checks in a row that found nothing to do: the watcher checks less often (up to
    /// [`MAX_BACKOFF`] doublings of its period) while the application is fast.
    quiet: u32,
}

/// The shortest time over which the watcher measures whether the cores are busy (more than
/// 75 % used by the process: a server under load that does not block): shorter windows
/// flicker between busy and idle.
const CPU_WINDOW: Duration = Duration::from_millis(10);

/// How long the idle set may stay unwatched while every core is busy before the watcher
/// promotes itself anyway: another thread would then only share the cores, which helps
/// latency (time slices) but not throughput, so only a long wait is worth it.
const PATIENCE: Duration = Duration::from_millis(10);

/// Quiet checks before the watcher's period doubles.
const QUIET_CHECKS: u32 = 8;

/// The most doublings of the watcher's period (100 µs becomes 800 µs).
const MAX_BACKOFF: u32 = 3;

/// The most doublings while every core is busy (100 µs becomes 3.2 ms): the watcher could
/// only promote itself after [`PATIENCE`] then, and each check would take a core's time
/// from a worker (two context switches).
const MAX_BACKOFF_BUSY: u32 = 5;

/// Workers serving, workers waiting on the idle set, whether the watcher dozes, and a
/// (wrapping) count of connections taken, packed into one word so that one atomic operation
/// changes them together and every change is ordered with every other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counts(u64);

impl Counts {
    /// One worker serving (bits 0..20).
    const SERVING: u64 = 1;
    /// One worker waiting on the idle set (bits 20..40).
    const WAITING: u64 = 1 << 20;
    /// The watcher dozes (bit 40).
    const DOZING: u64 = 1 << 40;
    /// One connection taken (bits 41..64, wrapping off the top).
    const TAKEN: u64 = 1 << 41;
    /// A waiting worker takes a connection: it serves instead, and one more was taken.
    const TAKE: u64 = Self::SERVING
        .wrapping_add(Self::TAKEN)
        .wrapping_sub(Self::WAITING);

    fn serving(self) -> u64 {
        self.0 & (Self::WAITING - 1)
    }

    fn waiting(self) -> u64 {
        (self.0 >> 20) & (Self::WAITING - 1)
    }

    fn dozing(self) -> bool {
        self.0 & Self::DOZING != 0
    }

    fn taken(self) -> u64 {
        self.0 >> 41
    }
}

/// Free workers not waiting on the idle set.
#[derive(Debug, Default)]
struct Bench {
    /// Workers asleep until the watch is handed over.
    followers: usize,
    /// Whether a worker watches.
    watcher: bool,
    /// A place on the idle set is to be filled and no follower slept to fill it: the watcher
    /// promotes itself without waiting a period.
    hurry: bool,
    /// Followers woken to wait on the idle set (each takes one).
    promotions: usize,
}

/// The hand-off state one pool's workers share.
pub(crate) struct Handoff {
    /// Seats: workers that serve and wait on the idle set without a promotion (one per core
    /// the process may use); more would only compete for the same cores.
    seats: u64,
    /// Workers holding a seat. A seated worker keeps it while it serves and waits on the idle
    /// set again when done, so a promoted worker that comes back finds no seat and leaves the
    /// cores to the seated ones.
    seated: AtomicU64,
    /// Serving, waiting, dozing and taken (see [`Counts`]).
    counts: AtomicU64,
    /// How long workers kept their recent connections, in ns (a moving average of 1/8
    /// weight): longer than a watch period means the application is slow, so a worker that
    /// takes a connection hands its place on at once rather than leave it empty that long.
    hold_ns: AtomicU64,
    /// The cores the pool may use were busy (the process used over 75 % of them) during the
    /// watcher's last CPU window: another thread on the idle set would only compete for them.
    busy: AtomicBool,
    /// How many times the last waiting worker stopped waiting: unchanged between two checks
    /// (with none waiting) means the idle set went unwatched for the whole period.
    vacated: AtomicU64,
    /// Free workers on the bench (followers and watcher), for lock-free reads.
    benched: AtomicUsize,
    /// The bench.
    bench: Mutex<Bench>,
    /// Followers sleep here.
    follow: Condvar,
    /// The watcher sleeps here between checks.
    watch: Condvar,
    /// Between two checks of the watcher: about the longest a ready connection waits while a
    /// free worker is on the bench.
    period: Duration,
    /// The longest any wait lasts, so that a worker sees its retirement.
    tick: Duration,
}

impl Handoff {
    /// A hand-off with `seats` seats, a watcher checking every `period`, and no wait longer
    /// than `tick`.
    pub(crate) fn new(seats: usize, period: Duration, tick: Duration) -> Self {
        Handoff {
            seats: u64::try_from(seats.max(1)).unwrap_or(u64::MAX),
            seated: AtomicU64::new(0),
            counts: AtomicU64::new(0),
            hold_ns: AtomicU64::new(0),
            busy: AtomicBool::new(false),
            vacated: AtomicU64::new(0),
            benched: AtomicUsize::new(0),
            bench: Mutex::new(Bench::default()),
            follow: Condvar::new(),
            watch: Condvar::new(),
            period,
            tick,
        }
    }

    /// Takes the worker one step further: waits (at most a tick) in its place, moving it as the
    /// protocol says; an item when it took one (the role is then `Serving`).
    pub(crate) fn step<S: Source>(&self, role: &mut Role, source: &S) -> Option<S::Item> {
        match *role {
            Role::Free => *role = self.sit_down(),
            Role::Waiting { seated } => return self.wait(role, seated, source),
            Role::Watching(seen) => *role = self.watch(seen),
            Role::Following => *role = self.follow(),
            Role::Serving { .. } => self.done(role),
        }
        None
    }

    /// A worker is done serving. A seated one waits on the idle set again at once (it kept
    /// its seat); so does a promoted one while the application is slow (it blocks: more
    /// workers waiting serve more of it); otherwise a promoted one is free (it takes a seat if
    /// one is free, else goes to the bench, leaving the cores to the seated workers).
    pub(crate) fn done(&self, role: &mut Role) {
        let Role::Serving { since, seated } = *role else {
            return;
        };
        self.note_hold(now().duration_since(since));
        *role = match seated || self.holds_long() {
            true => {
                let back = Counts::WAITING.wrapping_sub(Counts::SERVING);
                self.counts.fetch_add(back, Ordering::SeqCst);
                Role::Waiting { seated }
            }
            false => {
                self.counts.fetch_sub(Counts::SERVING, Ordering::SeqCst);
                Role::Free
            }
        };
    }

    /// Adds how long a worker kept a connection to the moving average.
    fn note_hold(&self, held: Duration) {
        let held = u64::try_from(held.as_nanos()).unwrap_or(u64::MAX);
        let average = self.hold_ns.load(Ordering::Relaxed);
        let average = average - average / 8 + held / 8;
        self.hold_ns.store(average, Ordering::Relaxed);
    }

    /// Whether workers keep connections longer than a watch period (a slow application).
    fn holds_long(&self) -> bool {
        let period = u64::try_from(self.period.as_nanos()).unwrap_or(u64::MAX);
        self.hold_ns.load(Ordering::Relaxed) > period
    }

    /// Takes the worker out of the hand-off (it retires), handing on what it held.
    pub(crate) fn leave(&self, role: &mut Role) {
        match std::mem::replace(role, Role::Free) {
            Role::Waiting { seated } => {
                self.stop_waiting();
                self.stand_up(seated);
            }
            Role::Watching(_) => {
                let mut bench = self.lock();
                self.hand_on_watch(&mut bench);
            }
            Role::Serving { seated, .. } => {
                self.counts.fetch_sub(Counts::SERVING, Ordering::SeqCst);
                self.stand_up(seated);
            }
            Role::Free | Role::Following => {}
        }
    }

    /// Wakes every worker on the bench, so that retired ones leave now.
    pub(crate) fn wake_all(&self) {
        let _bench = self.lock();
        self.follow.notify_all();
        self.watch.notify_all();
    }

    /// Free workers on the bench (neither waiting nor serving).
    fn benched(&self) -> usize {
        self.benched.load(Ordering::Relaxed)
    }

    /// Free workers: waiting on the idle set or on the bench (none: the pool is exhausted).
    pub(crate) fn free(&self) -> usize {
        let waiting = usize::try_from(self.counts().waiting()).unwrap_or(usize::MAX);
        waiting.saturating_add(self.benched())
    }

    /// Workers serving a connection.
    pub(crate) fn serving(&self) -> usize {
        usize::try_from(self.counts().serving()).unwrap_or(usize::MAX)
    }

    /// Connections taken so far (wrapping): unchanged between two looks means none was taken.
    pub(crate) fn taken(&self) -> u64 {
        self.counts().taken()
    }

    /// Counts a worker as serving (or done, `false`) without a connection.
    #[cfg(test)]
    pub(crate) fn pretend_serving(&self, serving: bool) {
        match serving {
            true => self.counts.fetch_add(Counts::SERVING, Ordering::SeqCst),
            false => self.counts.fetch_sub(Counts::SERVING, Ordering::SeqCst),
        };
    }

    /// Whether the watcher dozes.
    #[cfg(all(test, not(skyrocket_loom)))]
    pub(crate) fn dozing(&self) -> bool {
        self.counts().dozing()
    }

    fn counts(&self) -> Counts {
        Counts(self.counts.load(Ordering::SeqCst))
    }

    fn lock(&self) -> MutexGuard<'_, Bench> {
        self.bench.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A free worker takes a seat if one is free and waits on the idle set, else goes to the
    /// bench (as the watcher if nobody watches).
    fn sit_down(&self) -> Role {
        let seats = self.seats;
        let seated = (self.seated).fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
            (n < seats).then_some(n + 1)
        });
        match seated {
            Ok(_) => {
                self.counts.fetch_add(Counts::WAITING, Ordering::SeqCst);
                Role::Waiting { seated: true }
            }
            Err(_) => self.follow(),
        }
    }

    /// Gives a seat up (a seated worker retires).
    fn stand_up(&self, seated: bool) {
        if seated {
            self.seated.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Waits on the idle set; on taking an item, stops waiting and starts serving. The last
    /// worker to leave the idle set hands its place on at once (hurries the watch) when it
    /// will likely be away long (a slow application) and a core is free for another.
    fn wait<S: Source>(&self, role: &mut Role, seated: bool, source: &S) -> Option<S::Item> {
        let item = source.take(self.tick, !self.holds_long())?;
        let before = Counts(self.counts.fetch_add(Counts::TAKE, Ordering::SeqCst));
        self.stopped_waiting(before);
        let last = before.waiting() == 1;
        if last && self.holds_long() && !self.busy.load(Ordering::Relaxed) {
            self.hurry();
        }
        *role = Role::Serving {
            since: now(),
            seated,
        };
        Some(item)
    }

    /// Stops waiting on the idle set without taking anything (retirement).
    fn stop_waiting(&self) {
        let before = Counts(self.counts.fetch_sub(Counts::WAITING, Ordering::SeqCst));
        self.stopped_waiting(before);
    }

    /// After a worker stopped waiting (the counts were `before`): the last one counts a
    /// vacancy, and a dozing watcher is woken.
    fn stopped_waiting(&self, before: Counts) {
        if before.waiting() == 1 {
            self.vacated.fetch_add(1, Ordering::SeqCst);
        }
        if before.dozing() {
            self.wake_watcher();
        }
    }

    /// Wakes the watcher if it dozes.
    fn wake_watcher(&self) {
        let _bench = self.lock();
        let before = self.counts.fetch_and(!Counts::DOZING, Ordering::SeqCst);
        if Counts(before).dozing() {
            self.watch.notify_one();
        }
    }

    /// Fills the place a worker just left on the idle set at once: promotes a sleeping
    /// follower, or, if none sleeps, makes the watcher promote itself.
    fn hurry(&self) {
        let mut bench = self.lock();
        if bench.followers > bench.promotions {
            bench.promotions += 1;
            self.follow.notify_one();
            return;
        }
        bench.hurry = true;
        self.counts.fetch_and(!Counts::DOZING, Ordering::SeqCst);
        self.watch.notify_one();
    }

    /// On the bench: takes a promotion if one is pending, else becomes the watcher if nobody
    /// watches, else sleeps (at most a tick) until promoted or handed the watch.
    fn follow(&self) -> Role {
        let mut bench = self.lock();
        self.benched.fetch_add(1, Ordering::SeqCst);
        if let Some(promoted) = self.take_promotion(&mut bench) {
            return promoted;
        }
        if !bench.watcher {
            bench.watcher = true;
            return Role::Watching(self.first_look());
        }
        bench.followers += 1;
        let mut bench = wait_woken(&self.follow, bench, self.tick);
        bench.followers -= 1;
        if let Some(promoted) = self.take_promotion(&mut bench) {
            return promoted;
        }
        self.benched.fetch_sub(1, Ordering::SeqCst);
        Role::Following
    }

    /// Takes a pending promotion off the bench: the worker waits on the idle set.
    fn take_promotion(&self, bench: &mut Bench) -> Option<Role> {
        bench.promotions = bench.promotions.checked_sub(1)?;
        self.benched.fetch_sub(1, Ordering::SeqCst);
        self.counts.fetch_add(Counts::WAITING, Ordering::SeqCst);
        Some(Role::Waiting { seated: false })
    }

    /// The watcher leaves the bench (retiring, or promoted) and hands the watch to a
    /// follower.
    fn hand_on_watch(&self, bench: &mut Bench) {
        bench.watcher = false;
        self.benched.fetch_sub(1, Ordering::SeqCst);
        if bench.followers > 0 {
            self.follow.notify_one();
        }
    }

    /// What a new watcher sees.
    fn first_look(&self) -> Seen {
        let at = now();
        Seen {
            at,
            vacated: self.vacated.load(Ordering::SeqCst),
            counts: self.counts(),
            cpu: (at, process_cpu_time()),
            unwatched_since: None,
            quiet: 0,
        }
    }

    /// One check of the watcher: sleeps a period (or dozes), looks, and promotes itself if
    /// it should.
    fn watch(&self, last: Seen) -> Role {
        let mut bench = self.lock();
        if !bench.hurry {
            bench = self.sleep(bench, last);
        }
        let hurried = std::mem::take(&mut bench.hurry);
        let now = self.look(&last, hurried);
        if self.should_promote(&now, hurried) {
            return self.promote(bench);
        }
        Role::Watching(now)
    }

    /// What the watcher sees after `last`; notes whether every core was busy meanwhile.
    fn look(&self, last: &Seen, hurried: bool) -> Seen {
        let at = now();
        let (vacated, counts) = (self.vacated.load(Ordering::SeqCst), self.counts());
        let stayed_unwatched = counts.waiting() == 0 && vacated == last.vacated;
        Seen {
            at,
            vacated,
            counts,
            cpu: self.measure_cpu(last.cpu, at),
            unwatched_since: stayed_unwatched.then(|| last.unwatched_since.unwrap_or(last.at)),
            quiet: match hurried || self.holds_long() {
                true => 0,
                false => last.quiet.saturating_add(1),
            },
        }
    }

    /// Notes whether every core was busy during the CPU window that began at `window` (when
    /// the process had used `window.1`), once it is [`CPU_WINDOW`] long; answers the window
    /// to measure from next.
    fn measure_cpu(&self, window: (Instant, Duration), at: Instant) -> (Instant, Duration) {
        let elapsed = at.duration_since(window.0);
        if elapsed < CPU_WINDOW {
            return window;
        }
        let cpu = process_cpu_time();
        let used = cpu.saturating_sub(window.1).as_nanos() * 4;
        let available = elapsed.as_nanos() * 3 * u128::from(self.seats);
        self.busy.store(used > available, Ordering::Relaxed);
        (at, cpu)
    }

    /// Whether the watcher promotes itself: hurried while nobody waits on the idle set, or the
    /// idle set stayed unwatched for a whole period while a core was free (the workers away
    /// are blocked), or for [`PATIENCE`] while every core was busy.
    fn should_promote(&self, now: &Seen, hurried: bool) -> bool {
        if hurried {
            return now.counts.waiting() == 0;
        }
        now.unwatched_since.is_some_and(|since| {
            !self.busy.load(Ordering::Relaxed) || now.at.duration_since(since) >= PATIENCE
        })
    }

    /// How long the watcher sleeps between checks: its period, doubled for every
    /// [`QUIET_CHECKS`] quiet checks in a row, at most [`MAX_BACKOFF`] times
    /// ([`MAX_BACKOFF_BUSY`] while every core is busy).
    fn period_after(&self, quiet: u32) -> Duration {
        let most = match self.busy.load(Ordering::Relaxed) {
            true => MAX_BACKOFF_BUSY,
            false => MAX_BACKOFF,
        };
        self.period * (1 << (quiet / QUIET_CHECKS).min(most))
    }

    /// Sleeps a period, or dozes (until woken) if nothing can need a promotion: a worker
    /// waits on the idle set, none serves, and none took a connection since `last`.
    fn sleep<'a>(&self, bench: MutexGuard<'a, Bench>, last: Seen) -> MutexGuard<'a, Bench> {
        let taken = last.counts.taken();
        let quiet = |n: u64| {
            let n = Counts(n);
            n.waiting() > 0 && n.serving() == 0 && n.taken() == taken && !n.dozing()
        };
        let dozing = (self.counts).fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
            quiet(n).then_some(n | Counts::DOZING)
        });
        if dozing.is_err() {
            return wait_period(&self.watch, bench, self.period_after(last.quiet));
        }
        let bench = wait_woken(&self.watch, bench, self.tick);
        self.counts.fetch_and(!Counts::DOZING, Ordering::SeqCst);
        bench
    }

    /// The watcher waits on the idle set and hands the watch to a follower.
    fn promote(&self, mut bench: MutexGuard<'_, Bench>) -> Role {
        self.hand_on_watch(&mut bench);
        self.counts.fetch_add(Counts::WAITING, Ordering::SeqCst);
        Role::Waiting { seated: false }
    }
}

#[cfg(all(test, not(skyrocket_loom)))]
#[path = "handoff_tests.rs"]
mod tests;
