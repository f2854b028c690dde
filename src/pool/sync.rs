//! The hand-off's synchronisation primitives: std's, or loom's when the protocol is model
//! checked (`RUSTFLAGS="--cfg skyrocket_loom" cargo test --release --lib loom`).
//!
//! The two kinds of timed wait say which timeouts the protocol relies on: the watcher's
//! period is a timer that always fires ([`wait_period`]; under loom it has fired at once);
//! every other wait must be ended by a notification when progress needs it, and its timeout
//! is only a safety net for retirement checks ([`wait_woken`]; under loom it never times
//! out, so a lost wake-up shows up as a deadlock).

use std::time::{Duration, Instant};

#[cfg(skyrocket_loom)]
pub(crate) use loom::sync::{
    atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    Condvar, Mutex, MutexGuard,
};
#[cfg(not(skyrocket_loom))]
pub(crate) use std::sync::{
    atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    Condvar, Mutex, MutexGuard,
};

/// Sleeps on `cv` for `period` (or until notified): a timer the protocol relies on.
pub(crate) fn wait_period<'a, T>(
    cv: &Condvar,
    guard: MutexGuard<'a, T>,
    period: Duration,
) -> MutexGuard<'a, T> {
    if cfg!(skyrocket_loom) {
        return guard;
    }
    let (guard, _) = (cv.wait_timeout(guard, period)).unwrap_or_else(|p| p.into_inner());
    guard
}

/// Sleeps on `cv` until notified; `safety` bounds the wait so that a retired worker leaves,
/// and nothing else may rely on it.
pub(crate) fn wait_woken<'a, T>(
    cv: &Condvar,
    guard: MutexGuard<'a, T>,
    safety: Duration,
) -> MutexGuard<'a, T> {
    let (guard, _) = (cv.wait_timeout(guard, safety)).unwrap_or_else(|p| p.into_inner());
    guard
}

/// The CPU time all threads of the process have used; zero under loom, whose model has no
/// busy cores.
pub(crate) fn process_cpu_time() -> Duration {
    if cfg!(skyrocket_loom) {
        return Duration::ZERO;
    }
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(
        now.tv_sec.unsigned_abs(),
        now.tv_nsec.unsigned_abs().try_into().unwrap_or(0),
    )
}

/// The time; under loom always the same instant, so that a model's runs take the same paths
/// (no period ever passes by the clock: the watcher's timer is modelled by `wait_period`).
pub(crate) fn now() -> Instant {
    #[cfg(skyrocket_loom)]
    {
        static FROZEN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *FROZEN.get_or_init(Instant::now)
    }
    #[cfg(not(skyrocket_loom))]
    Instant::now()
}
