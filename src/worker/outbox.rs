//! The rest of a response that did not fit in the send buffer, kept with its connection while
//! it waits in the idle set for room: a client that reads slowly holds no worker.
//!
//! Only responses held in memory (a head and a body of bytes) wait this way; a stream or a
//! file is sent by its worker, within the write budget.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::budget::RENEW_BYTES;

/// Unsent response bytes and what to do once they are sent.
#[derive(Debug)]
pub struct Outbox {
    /// The unsent bytes, in order.
    pub(crate) chunks: VecDeque<Bytes>,
    /// Whether the connection serves another request once they are sent.
    pub(crate) keep_alive: bool,
    /// When the client is given up unless it reads: `read_timeout` after the response began
    /// waiting, moved on each time [`RENEW_BYTES`] were sent.
    deadline: Instant,
    /// Bytes sent since the deadline was last set.
    moved: usize,
}

impl Outbox {
    /// The rest of a response (its bytes are filled in when the connection is parked), due
    /// within `budget` unless the client reads.
    pub fn new(keep_alive: bool, budget: Duration) -> Self {
        Outbox {
            chunks: VecDeque::new(),
            keep_alive,
            deadline: Instant::now() + budget,
            moved: 0,
        }
    }

    /// Counts `n` more bytes sent; enough of them move the deadline `budget` ahead.
    pub(crate) fn sent(&mut self, n: usize, budget: Duration) {
        self.moved += n;
        if self.moved >= RENEW_BYTES {
            self.moved = 0;
            self.deadline = Instant::now() + budget;
        }
    }

    /// When the client is given up unless it reads.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Whether the deadline has passed.
    pub(crate) fn overdue(&self) -> bool {
        self.deadline <= Instant::now()
    }
}
