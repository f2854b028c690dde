//! The hand-off with real threads: each rule on its own, then a stress test of workers
//! taking, serving (fast, slow, stuck), retiring and being replaced while items keep coming.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::{Handoff, Role, Seen, Source, PATIENCE};
use crate::test_support::wait_until;

/// A period no test waits out: a check that must come sooner is a wake-up.
const LONG: Duration = Duration::from_secs(30);
/// A short tick, so that followers come back to look soon.
const TICK: Duration = Duration::from_millis(5);

/// The idle set's stand-in: items in order; `take` waits up to its timeout for one.
#[derive(Default)]
struct Queue {
    items: Mutex<VecDeque<u32>>,
    arrived: Condvar,
}

impl Queue {
    fn push(&self, item: u32) {
        self.items.lock().unwrap().push_back(item);
        self.arrived.notify_one();
    }
}

impl Source for Queue {
    type Item = u32;

    fn take(&self, timeout: Duration, _batch: bool) -> Option<u32> {
        let items = self.items.lock().unwrap();
        let (mut items, _) = (self.arrived)
            .wait_timeout_while(items, timeout, |items| items.is_empty())
            .unwrap();
        items.pop_front()
    }
}

/// A worker placed by one step (it must not wait: a seat or the watch is free).
fn placed(handoff: &Handoff, queue: &Queue) -> Role {
    let mut role = Role::Free;
    assert_eq!(handoff.step(&mut role, queue), None);
    role
}

#[test]
fn free_workers_take_the_seats_then_the_watch_then_follow() {
    let (handoff, queue) = (Handoff::new(2, LONG, TICK), Queue::default());
    let places: Vec<Role> = (0..3).map(|_| placed(&handoff, &queue)).collect();
    assert_eq!(places[..2], [Role::Waiting { seated: true }; 2]);
    assert!(matches!(places[2], Role::Watching(_)), "{places:?}");
    assert_eq!(placed(&handoff, &queue), Role::Following, "after a tick");
    assert_eq!(
        handoff.benched(),
        1,
        "the watcher; the follower left to look"
    );
    assert_ne!(handoff.free(), 0);
}

#[test]
fn a_seated_worker_serves_what_it_takes_and_then_waits_again_in_its_seat() {
    let (handoff, queue) = (Handoff::new(1, LONG, TICK), Queue::default());
    let mut role = placed(&handoff, &queue);
    assert_eq!(
        handoff.step(&mut role, &queue),
        None,
        "nothing within a tick"
    );
    queue.push(1);
    assert_eq!(handoff.step(&mut role, &queue), Some(1));
    assert!(matches!(role, Role::Serving { .. }), "{role:?}");
    assert_eq!((handoff.serving(), handoff.taken()), (1, 1));
    assert_eq!(handoff.free(), 0, "no other free worker");
    handoff.done(&mut role);
    assert_eq!(
        (role, handoff.serving()),
        (Role::Waiting { seated: true }, 0)
    );
    assert!(
        matches!(placed(&handoff, &queue), Role::Watching(_)),
        "the seat is taken"
    );
}

#[test]
fn a_promoted_worker_done_serving_takes_a_free_seat_or_goes_to_the_bench() {
    let (handoff, queue) = (Handoff::new(1, LONG, TICK), Queue::default());
    let mut seated = placed(&handoff, &queue);
    let mut promoted = handoff.promote(handoff.lock());
    queue.push(1);
    assert_eq!(handoff.step(&mut promoted, &queue), Some(1));
    handoff.done(&mut promoted);
    assert_eq!(promoted, Role::Free);
    assert!(
        matches!(placed(&handoff, &queue), Role::Watching(_)),
        "the seat is held"
    );
    handoff.leave(&mut seated);
    assert_eq!(
        placed(&handoff, &queue),
        Role::Waiting { seated: true },
        "the seat was given up"
    );
}

#[test]
fn the_watcher_promotes_itself_after_a_whole_period_unwatched() {
    let (handoff, queue) = (
        Handoff::new(1, Duration::from_millis(1), TICK),
        Queue::default(),
    );
    let mut seated = placed(&handoff, &queue);
    let mut watcher = placed(&handoff, &queue);
    queue.push(1);
    queue.push(2);
    assert_eq!(
        handoff.step(&mut seated, &queue),
        Some(1),
        "and stuck serving it"
    );
    assert_eq!(handoff.step(&mut watcher, &queue), None);
    assert!(
        matches!(watcher, Role::Watching(_)),
        "the seat only just emptied"
    );
    // Promoted after a period, or after its patience if the other tests keep every core busy.
    let mut checks = 1;
    while watcher != (Role::Waiting { seated: false }) {
        assert_eq!(handoff.step(&mut watcher, &queue), None);
        checks += 1;
        assert!(checks < 1000, "never promoted");
    }
    assert_eq!(handoff.step(&mut watcher, &queue), Some(2));
}

#[test]
fn while_every_core_is_busy_the_watcher_waits_out_its_patience() {
    let (handoff, queue) = (
        Handoff::new(1, Duration::from_millis(1), TICK),
        Queue::default(),
    );
    let mut seated = placed(&handoff, &queue);
    queue.push(1);
    assert_eq!(handoff.step(&mut seated, &queue), Some(1));
    let start = handoff.first_look();
    // Looking as if no CPU had been used before: every core was busy since.
    let last = Seen {
        cpu: (start.at - super::CPU_WINDOW, Duration::ZERO),
        ..start
    };
    let now = handoff.look(&last, false);
    assert!(handoff.busy.load(Ordering::Relaxed));
    let unwatched_for = |d| Seen {
        unwatched_since: Some(now.at - d),
        ..now
    };
    assert!(!handoff.should_promote(&unwatched_for(Duration::from_millis(5)), false));
    assert!(handoff.should_promote(&unwatched_for(PATIENCE), false));
    handoff.busy.store(false, Ordering::Relaxed);
    assert!(
        handoff.should_promote(&unwatched_for(Duration::ZERO), false),
        "a core is free"
    );
    assert!(!handoff.should_promote(
        &Seen {
            unwatched_since: None,
            ..now
        },
        false
    ));
}

#[test]
fn the_watcher_stays_while_the_seated_worker_keeps_coming_back() {
    let (handoff, queue) = (
        Handoff::new(1, Duration::from_millis(1), TICK),
        Queue::default(),
    );
    let mut seated = placed(&handoff, &queue);
    let mut watcher = placed(&handoff, &queue);
    for item in 0..20 {
        queue.push(item);
        assert_eq!(handoff.step(&mut seated, &queue), Some(item));
        handoff.done(&mut seated);
        assert_eq!(handoff.step(&mut watcher, &queue), None);
        assert!(
            matches!(watcher, Role::Watching(_)),
            "round {item}: {watcher:?}"
        );
    }
}

#[test]
fn a_worker_of_a_slow_application_hands_its_place_on_when_it_takes_a_connection() {
    let (handoff, queue) = (
        Handoff::new(1, Duration::from_millis(1), TICK),
        Queue::default(),
    );
    let mut seated = placed(&handoff, &queue);
    for item in 0..20 {
        queue.push(item);
        assert_eq!(handoff.step(&mut seated, &queue), Some(item));
        assert!(!handoff.lock().hurry, "fast so far");
        handoff.done(&mut seated);
        assert_eq!(seated, Role::Waiting { seated: true }, "seated again");
    }
    // Connections start to be held long (2 ms, two watch periods): after a few, a take hands
    // the place on, though nothing else is ready.
    let mut hurried_at = None;
    for item in 20..40 {
        queue.push(item);
        assert_eq!(handoff.step(&mut seated, &queue), Some(item));
        if std::mem::take(&mut handoff.lock().hurry) {
            hurried_at.get_or_insert(item);
        }
        seated = Role::Serving {
            since: Instant::now() - Duration::from_millis(2),
            seated: true,
        };
        handoff.done(&mut seated);
        assert_eq!(seated, Role::Waiting { seated: true }, "seated again");
    }
    assert!(hurried_at.is_some_and(|item| item < 30), "{hurried_at:?}");
}

#[test]
fn a_worker_of_a_slow_application_that_takes_a_connection_promotes_a_sleeping_follower() {
    let (handoff, queue) = (
        Handoff::new(1, Duration::from_millis(1), LONG),
        Queue::default(),
    );
    handoff.note_hold(Duration::from_secs(1));
    let mut seated = placed(&handoff, &queue);
    let _watcher = placed(&handoff, &queue);
    thread::scope(|s| {
        let follower = s.spawn(|| {
            let mut role = Role::Free;
            handoff.step(&mut role, &queue);
            role
        });
        wait_until("a follower sleeps", || handoff.lock().followers == 1);
        queue.push(1);
        assert_eq!(handoff.step(&mut seated, &queue), Some(1));
        let promoted = follower.join().unwrap();
        assert_eq!(
            promoted,
            Role::Waiting { seated: false },
            "long before a tick"
        );
    });
    assert!(!handoff.lock().hurry, "the watcher was left alone");
}

#[test]
fn a_hurried_watcher_promotes_itself_at_its_next_check() {
    let (handoff, queue) = (Handoff::new(1, LONG, TICK), Queue::default());
    let mut seated = placed(&handoff, &queue);
    let mut watcher = placed(&handoff, &queue);
    queue.push(1);
    queue.push(2);
    assert_eq!(handoff.step(&mut seated, &queue), Some(1));
    handoff.hurry();
    let started = Instant::now();
    assert_eq!(handoff.step(&mut watcher, &queue), None);
    assert_eq!(
        watcher,
        Role::Waiting { seated: false },
        "without waiting a period"
    );
    assert!(started.elapsed() < LONG);
    assert_eq!(handoff.step(&mut watcher, &queue), Some(2));
}

#[test]
fn a_quiet_watcher_checks_less_often_up_to_eight_periods() {
    let handoff = Handoff::new(1, Duration::from_micros(100), TICK);
    let periods: Vec<u128> = [0, 7, 8, 16, 24, 1000]
        .map(|quiet| handoff.period_after(quiet).as_micros())
        .into();
    assert_eq!(periods, [100, 100, 200, 400, 800, 800]);
}

#[test]
fn a_quiet_watcher_checks_even_less_often_while_every_core_is_busy() {
    let handoff = Handoff::new(1, Duration::from_micros(100), TICK);
    handoff.busy.store(true, Ordering::Relaxed);
    let periods: Vec<u128> = [0, 8, 24, 32, 40, 1000]
        .map(|quiet| handoff.period_after(quiet).as_micros())
        .into();
    assert_eq!(periods, [100, 200, 800, 1600, 3200, 3200]);
}

#[test]
fn a_dozing_watcher_is_woken_by_the_next_take() {
    let (handoff, queue) = (
        Handoff::new(1, Duration::from_millis(1), LONG),
        Queue::default(),
    );
    let mut seated = placed(&handoff, &queue);
    let mut watcher = placed(&handoff, &queue);
    let (handoff, queue) = (&handoff, &queue);
    thread::scope(|s| {
        let watching = s.spawn(move || {
            // The first check dozes (nobody serves, nothing was taken); it ends when woken.
            handoff.step(&mut watcher, queue);
            watcher
        });
        wait_until("the watcher dozes", || handoff.dozing());
        queue.push(1);
        assert_eq!(handoff.step(&mut seated, queue), Some(1));
        let watcher = watching.join().unwrap();
        assert!(
            matches!(watcher, Role::Watching(_)),
            "woken, long before a tick"
        );
    });
}

/// Items come faster than they are served; workers serve them for a time taken from the
/// item (nothing, a little, a slow 2 ms), two of them for ever (stuck in the application,
/// until the end), while the first workers retire: every item is taken. Only the seated
/// workers would serve without promotions, and the stuck ones end up holding the seats.
#[test]
fn items_are_all_taken_while_workers_serve_slowly_get_stuck_and_retire() {
    const ITEMS: u32 = 5000;
    let pool = Stress::new();
    let mut workers: Vec<_> = (0..10).map(|_| pool.start_worker()).collect();
    let mut retired = Vec::new();
    for item in 0..ITEMS {
        pool.queue.push(item);
        if item % 100 == 50 && item < 400 {
            let (retire, worker) = workers.remove(0);
            retire.store(true, Ordering::Relaxed);
            pool.handoff.wake_all();
            retired.push(worker);
        }
    }
    wait_until("every item is taken", || {
        pool.taken.load(Ordering::Relaxed) == ITEMS as usize
    });
    pool.release.store(true, Ordering::Relaxed);
    for (retire, worker) in workers {
        retire.store(true, Ordering::Relaxed);
        retired.push(worker);
    }
    pool.handoff.wake_all();
    retired
        .into_iter()
        .for_each(|worker| worker.join().unwrap());
}

/// The stress test's shared state.
struct Stress {
    handoff: Arc<Handoff>,
    queue: Arc<Queue>,
    /// Items taken so far.
    taken: Arc<AtomicUsize>,
    /// Lets the stuck items go.
    release: Arc<AtomicBool>,
}

impl Stress {
    fn new() -> Stress {
        Stress {
            handoff: Arc::new(Handoff::new(2, Duration::from_micros(100), TICK)),
            queue: Arc::default(),
            taken: Arc::default(),
            release: Arc::default(),
        }
    }

    /// A worker thread and its retire flag.
    fn start_worker(&self) -> (Arc<AtomicBool>, thread::JoinHandle<()>) {
        let retire = Arc::new(AtomicBool::new(false));
        let (handoff, queue) = (self.handoff.clone(), self.queue.clone());
        let (taken, release, flag) = (self.taken.clone(), self.release.clone(), retire.clone());
        let worker = thread::spawn(move || {
            let mut role = Role::Free;
            while !flag.load(Ordering::Relaxed) {
                if let Some(item) = handoff.step(&mut role, &*queue) {
                    taken.fetch_add(1, Ordering::Relaxed);
                    serve(item, &release);
                    handoff.done(&mut role);
                }
            }
            handoff.leave(&mut role);
        });
        (retire, worker)
    }
}

/// Serves item `n`: 2500 and 4000 until released, every 13th for 2 ms, the others for up
/// to 300 µs.
fn serve(item: u32, release: &AtomicBool) {
    match item {
        2500 | 4000 => {
            while !release.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(1));
            }
        }
        n if n % 13 == 0 => thread::sleep(Duration::from_millis(2)),
        n => thread::sleep(Duration::from_micros(u64::from(n % 7) * 50)),
    }
}
