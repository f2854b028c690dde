//! Counters shared by the actors, read by `Status` without a message round trip.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Live gauges and running totals of one server (they survive restarts).
///
/// Gauges move by deltas, so two pools (the old one draining during a restart and the new one)
/// add up correctly.
#[derive(Debug, Default)]
pub struct Stats {
    /// Workers alive.
    threads: AtomicUsize,
    /// Workers serving a connection.
    busy: AtomicUsize,
    /// Connections admitted and never served yet (parked fresh in an idle set).
    queued: AtomicUsize,
    /// Keep-alive connections parked with a Monitor.
    idle: AtomicUsize,
    /// Connections accepted by a Listener and not yet received by a Dispatcher: counted so
    /// that a Listener's backpressure sees a burst it has just accepted.
    arriving: AtomicUsize,
    /// Connections accepted.
    connections: AtomicU64,
    /// Responses sent.
    requests: AtomicU64,
}

/// A snapshot of `Stats`, the answer to `Status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatusReport {
    /// Whether the server is accepting connections.
    pub running: bool,
    /// Workers alive.
    pub threads: usize,
    /// Workers serving a connection.
    pub busy: usize,
    /// Connections waiting for a worker.
    pub queued: usize,
    /// Idle keep-alive connections watched by the Monitor.
    pub idle_connections: usize,
    /// Connections accepted since the server was created.
    pub connections_total: u64,
    /// Responses sent since the server was created.
    pub requests_total: u64,
}

/// Which gauge a delta applies to.
#[derive(Debug, Clone, Copy)]
pub enum Gauge {
    /// Workers alive.
    Threads,
    /// Workers serving.
    Busy,
    /// Connections queued.
    Queued,
    /// Connections parked.
    Idle,
}

impl Stats {
    fn gauge(&self, gauge: Gauge) -> &AtomicUsize {
        match gauge {
            Gauge::Threads => &self.threads,
            Gauge::Busy => &self.busy,
            Gauge::Queued => &self.queued,
            Gauge::Idle => &self.idle,
        }
    }

    /// Raises a gauge by one.
    pub fn inc(&self, gauge: Gauge) {
        self.gauge(gauge).fetch_add(1, Ordering::Relaxed);
    }

    /// Lowers a gauge by one.
    pub fn dec(&self, gauge: Gauge) {
        self.gauge(gauge).fetch_sub(1, Ordering::Relaxed);
    }

    /// Reads a gauge.
    pub fn get(&self, gauge: Gauge) -> usize {
        self.gauge(gauge).load(Ordering::Relaxed)
    }

    /// Counts an accepted connection, on its way to a Dispatcher.
    pub fn connection_accepted(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
        self.arriving.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a connection a Dispatcher received (never below zero: a connection may come
    /// from elsewhere than a Listener).
    pub fn connection_arrived(&self) {
        let _ = (self.arriving)
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// Connections waiting for a worker, including those on their way to a Dispatcher.
    pub fn waiting(&self) -> usize {
        self.get(Gauge::Queued) + self.arriving.load(Ordering::Relaxed)
    }

    /// Counts a response sent.
    pub fn request_served(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes a snapshot.
    pub fn report(&self, running: bool) -> StatusReport {
        StatusReport {
            running,
            threads: self.get(Gauge::Threads),
            busy: self.get(Gauge::Busy),
            queued: self.waiting(),
            idle_connections: self.get(Gauge::Idle),
            connections_total: self.connections.load(Ordering::Relaxed),
            requests_total: self.requests.load(Ordering::Relaxed),
        }
    }
}
