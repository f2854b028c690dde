//! How long a client may keep a worker waiting: time budgets that add up every wait.
//!
//! A per-read timeout lets a client that sends (or reads) one byte just before each timeout
//! hold a worker forever. A [`Budget`] is spent by every wait on the client instead, and only
//! real progress refills it: [`RENEW_BYTES`] moved since the last refill. A request body or a
//! response that keeps moving at a usable rate is never cut; a trickle is cut after the budget.

use std::io;
use std::time::{Duration, Instant};

/// Bytes that must move (since the last refill) to refill a renewable budget: with the default
/// 10 s `read_timeout`, a transfer slower than about 1.6 KiB/s is given up.
pub(crate) const RENEW_BYTES: usize = 16 * 1024;

/// Waiting time left for one request body, one response, or one lingering close.
#[derive(Debug, Clone)]
pub(crate) struct Budget {
    /// The whole budget, restored by progress when renewable.
    full: Duration,
    /// What is left of it.
    left: Duration,
    /// Bytes moved since the last refill.
    moved: usize,
    /// Bytes that refill the budget (`usize::MAX`: never refilled).
    renew_after: usize,
}

impl Budget {
    /// A budget that progress refills (bodies, responses).
    pub(crate) fn renewable(full: Duration) -> Self {
        Budget {
            full,
            left: full,
            moved: 0,
            renew_after: RENEW_BYTES,
        }
    }

    /// A budget that nothing refills (a lingering close).
    pub(crate) fn total(full: Duration) -> Self {
        Budget {
            renew_after: usize::MAX,
            ..Budget::renewable(full)
        }
    }

    /// The time left for the next wait; `TimedOut` once it is spent.
    pub(crate) fn left(&self) -> io::Result<Duration> {
        match self.left.is_zero() {
            true => Err(io::ErrorKind::TimedOut.into()),
            false => Ok(self.left),
        }
    }

    /// Charges a wait that began at `since`.
    pub(crate) fn waited_since(&mut self, since: Instant) {
        self.left = self.left.saturating_sub(since.elapsed());
    }

    /// Counts bytes moved; enough of them refill a renewable budget.
    pub(crate) fn moved(&mut self, n: usize) {
        self.moved = self.moved.saturating_add(n);
        if self.moved >= self.renew_after {
            self.moved = 0;
            self.left = self.full;
        }
    }

    /// Starts over, full (the next response on the same connection).
    pub(crate) fn refill(&mut self) {
        self.moved = 0;
        self.left = self.full;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn waits_add_up_until_the_budget_is_spent() {
        let mut budget = Budget::renewable(SECOND);
        let long_ago = Instant::now() - SECOND / 2;
        budget.waited_since(long_ago);
        assert!(budget.left().unwrap() <= SECOND / 2);
        budget.moved(RENEW_BYTES - 1);
        budget.waited_since(long_ago);
        assert_eq!(budget.left().unwrap_err().kind(), io::ErrorKind::TimedOut);
    }

    #[test]
    fn progress_refills_a_renewable_budget() {
        let mut budget = Budget::renewable(SECOND);
        budget.waited_since(Instant::now() - SECOND / 2);
        budget.moved(RENEW_BYTES / 2);
        budget.moved(RENEW_BYTES / 2);
        assert_eq!(budget.left().unwrap(), SECOND);
    }

    #[test]
    fn nothing_refills_a_total_budget() {
        let mut budget = Budget::total(SECOND);
        budget.waited_since(Instant::now() - SECOND);
        budget.moved(usize::MAX / 2);
        budget.moved(usize::MAX / 2);
        assert!(budget.left().is_err());
    }

    #[test]
    fn refill_starts_over() {
        let mut budget = Budget::renewable(SECOND);
        budget.waited_since(Instant::now() - 2 * SECOND);
        budget.refill();
        assert_eq!(budget.left().unwrap(), SECOND);
    }
}
