//! What one generation of workers shares: the serving settings, the idle set, and the counters
//! that drive the pool's growth and draining. A restart makes a new one.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use crate::monitor::IdleSet;
use crate::worker::Settings;

/// Shared by a Dispatcher, its Monitor and its workers.
pub struct Pool {
    /// How connections are served.
    pub settings: Settings,
    /// Connections waiting for input; free workers wait on it.
    pub idle: IdleSet,
    /// Workers waiting in the idle set for a ready connection.
    pub waiting: AtomicUsize,
    /// Workers serving a connection.
    pub serving: AtomicUsize,
    /// A worker found no other worker waiting and asked the Dispatcher to grow; cleared by
    /// the Dispatcher, so that one shortage sends one message.
    pub grow_requested: AtomicBool,
    /// The pool has `max_threads` workers: asking to grow is pointless.
    pub full: AtomicBool,
    /// How long a waiting worker blocks before it checks whether it was retired.
    pub tick: Duration,
}

impl Pool {
    /// A pool serving with `settings`, parking into `idle`.
    pub fn new(settings: Settings, idle: IdleSet, tick: Duration) -> Self {
        Pool {
            settings,
            idle,
            waiting: AtomicUsize::new(0),
            serving: AtomicUsize::new(0),
            grow_requested: AtomicBool::new(false),
            full: AtomicBool::new(false),
            tick,
        }
    }

    /// Workers waiting for work.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Workers serving.
    pub fn serving(&self) -> usize {
        self.serving.load(Ordering::Relaxed)
    }
}
