//! Model checks of the hand-off with loom: every interleaving of a few workers, with the
//! idle set replaced by a queue whose `take` blocks until an item arrives (as `epoll_wait`
//! does). Under loom, a wait ended only by a notification never times out and the watcher's
//! period has always passed (see `sync`), so a lost wake-up is a deadlock loom reports, and
//! every item must be taken by some worker that is free.
//!
//! Run with `RUSTFLAGS="--cfg skyrocket_loom" cargo test --release --lib loom`.

use std::collections::VecDeque;
use std::time::Duration;

use loom::sync::atomic::{AtomicBool, Ordering};
use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;

use super::handoff::{Handoff, Role, Source};

/// Steps a worker may take to reach an item: more than the protocol needs (doze, two checks,
/// promotion, take), so running out means it never would.
const STEPS: usize = 8;

/// The idle set's stand-in: items in order; `take` blocks until one arrives or it closes.
#[derive(Default)]
struct Queue {
    items: Mutex<VecDeque<u32>>,
    arrived: Condvar,
    closed: AtomicBool,
}

impl Queue {
    fn with(items: &[u32]) -> Arc<Queue> {
        let queue = Queue::default();
        queue.items.lock().unwrap().extend(items);
        Arc::new(queue)
    }

    fn push(&self, item: u32) {
        self.items.lock().unwrap().push_back(item);
        self.arrived.notify_one();
    }
}

impl Source for Queue {
    type Item = u32;

    fn take(&self, _timeout: Duration, _batch: bool) -> Option<u32> {
        let mut items = self.items.lock().unwrap();
        loop {
            if let Some(item) = items.pop_front() {
                return Some(item);
            }
            if self.closed.load(Ordering::SeqCst) {
                return None;
            }
            items = self.arrived.wait(items).unwrap();
        }
    }
}

/// One seat; the watch period and the tick do not matter under loom.
fn handoff() -> Arc<Handoff> {
    Arc::new(Handoff::new(
        1,
        Duration::from_micros(100),
        Duration::from_secs(1),
    ))
}

/// A worker placed by steps taken now (before the threads start): seated or on the bench.
fn placed(handoff: &Handoff, queue: &Queue) -> Role {
    let mut role = Role::Free;
    assert!(handoff.step(&mut role, queue).is_none());
    role
}

/// Steps a worker until it takes an item, which it then serves for ever (never done).
fn take_one(handoff: &Handoff, queue: &Queue, mut role: Role) -> Option<u32> {
    (0..STEPS).find_map(|_| handoff.step(&mut role, queue))
}

#[test]
fn loom_a_dozing_watcher_is_woken_when_the_seated_worker_takes_a_connection() {
    loom::model(|| {
        let (handoff, queue) = (handoff(), Queue::with(&[1]));
        let seated = placed(&handoff, &queue);
        let watcher = placed(&handoff, &queue);
        assert!(matches!(watcher, Role::Watching(_)));
        let worker = {
            let (handoff, queue) = (handoff.clone(), queue.clone());
            thread::spawn(move || take_one(&handoff, &queue, seated))
        };
        // One check: it may doze (nobody served yet); the take must then wake it.
        let mut role = watcher;
        assert!(handoff.step(&mut role, &*queue).is_none());
        assert_eq!(worker.join().unwrap(), Some(1));
    });
}

#[test]
fn loom_a_connection_behind_a_stuck_worker_is_taken_by_the_watcher() {
    loom::model(|| {
        let (handoff, queue) = (handoff(), Queue::with(&[1, 2]));
        let seated = placed(&handoff, &queue);
        let watcher = placed(&handoff, &queue);
        let worker = {
            let (handoff, queue) = (handoff.clone(), queue.clone());
            thread::spawn(move || take_one(&handoff, &queue, seated))
        };
        let promoted = take_one(&handoff, &queue, watcher);
        let first = worker.join().unwrap();
        let mut taken = [first, promoted];
        taken.sort();
        assert_eq!(taken, [Some(1), Some(2)], "both connections are served");
    });
}

#[test]
fn loom_a_retired_seated_worker_leaves_the_watcher_to_take_its_place() {
    loom::model(|| {
        let (handoff, queue) = (handoff(), Queue::with(&[]));
        let mut seated = placed(&handoff, &queue);
        let watcher = placed(&handoff, &queue);
        let leaving = {
            let handoff = handoff.clone();
            thread::spawn(move || handoff.leave(&mut seated))
        };
        let watching = {
            let (handoff, queue) = (handoff.clone(), queue.clone());
            thread::spawn(move || take_one(&handoff, &queue, watcher))
        };
        queue.push(7);
        leaving.join().unwrap();
        assert_eq!(watching.join().unwrap(), Some(7));
    });
}

#[test]
fn loom_a_retired_watcher_hands_the_watch_to_a_follower() {
    loom::model(|| {
        let (handoff, queue) = (handoff(), Queue::with(&[1, 2]));
        let seated = placed(&handoff, &queue);
        let mut watcher = placed(&handoff, &queue);
        let leaving = {
            let handoff = handoff.clone();
            thread::spawn(move || handoff.leave(&mut watcher))
        };
        let worker = {
            let (handoff, queue) = (handoff.clone(), queue.clone());
            thread::spawn(move || take_one(&handoff, &queue, seated))
        };
        // This thread arrives last: it follows while the watcher is still there.
        let promoted = take_one(&handoff, &queue, Role::Free);
        leaving.join().unwrap();
        let mut taken = [worker.join().unwrap(), promoted];
        taken.sort();
        assert_eq!(taken, [Some(1), Some(2)], "the follower took the second");
    });
}
