//! The one "wait until" of every test, unit and integration alike: it polls a condition (no
//! sleep standing in for an event) and fails the test after [`WAIT`].

use std::fmt::Debug;
use std::future::Future;
use std::time::{Duration, Instant};

/// The longest a test waits for something that should happen.
pub const WAIT: Duration = Duration::from_secs(10);

/// Polls `cond`, yielding the thread in between, until it holds; fails after [`WAIT`].
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::yield_now();
    }
}

/// In an async test: awaits `probe` (other tasks, such as the actors, run in between) until
/// its value passes `done`, and answers that value; fails after [`WAIT`], showing the last.
pub async fn wait_for<T: Debug, F: Future<Output = T>>(
    what: &str,
    mut probe: impl FnMut() -> F,
    done: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        let value = probe().await;
        if done(&value) {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting until {what}: {value:?}"
        );
        tokio::task::yield_now().await;
    }
}

/// [`wait_until`] in an async test.
pub async fn wait_until_async(what: &str, mut cond: impl FnMut() -> bool) {
    wait_for(what, || std::future::ready(cond()), |&holds| holds).await;
}
