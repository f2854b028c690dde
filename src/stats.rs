//! Counters shared by the actors, read by `Status` without a message round trip.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

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
    /// Every live worker's [`RequestClock`], so that a report can tell how long the oldest
    /// request in progress has run (a stuck application); a worker's own clock costs it no
    /// lock per request.
    clocks: Mutex<Vec<Weak<AtomicU64>>>,
    /// The responses after which the server stops to be replaced (`max_requests`), if set.
    quota: OnceLock<Quota>,
}

/// A number of responses, and the wake-up of whoever waits for them to be sent.
#[derive(Debug)]
struct Quota {
    /// How many.
    limit: u64,
    /// Notified (once) by the worker that sends the last of them.
    reached: tokio::sync::Notify,
}

/// When the request a worker serves began (milliseconds of the coarse monotonic clock; 0:
/// none), read by [`Stats::report`].
pub(crate) struct RequestClock(Arc<AtomicU64>);

impl RequestClock {
    /// A request begins.
    pub(crate) fn start(&self) {
        self.0.store(now_ms().max(1), Ordering::Relaxed);
    }

    /// The request is done.
    pub(crate) fn stop(&self) {
        self.0.store(0, Ordering::Relaxed);
    }
}

/// Milliseconds of the coarse monotonic clock (a few ms of resolution, no system call).
fn now_ms() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    now.tv_sec as u64 * 1000 + now.tv_nsec as u64 / 1_000_000
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
    /// How long the oldest request in progress has been served (zero when none is): a
    /// request stuck in the application shows here.
    pub longest_request: Duration,
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

    /// Counts a response sent: `true` for the one that completes the quota, which also
    /// wakes the quota's waiter.
    pub fn request_served(&self) -> bool {
        let total = self.requests.fetch_add(1, Ordering::Relaxed) + 1;
        let Some(quota) = self.quota.get() else {
            return false;
        };
        let completes = total == quota.limit;
        if completes {
            quota.reached.notify_one();
        }
        completes
    }

    /// Sets the quota of responses [`Stats::quota_sent`] waits for (once; later calls are
    /// ignored).
    pub(crate) fn set_quota(&self, limit: u64) {
        let reached = tokio::sync::Notify::new();
        if self.requests.load(Ordering::Relaxed) >= limit {
            reached.notify_one();
        }
        let _ = self.quota.set(Quota { limit, reached });
    }

    /// Returns once the quota's responses are sent (never without a quota).
    pub(crate) async fn quota_sent(&self) {
        match self.quota.get() {
            Some(quota) => quota.reached.notified().await,
            None => std::future::pending().await,
        }
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
            longest_request: self.longest_request(),
        }
    }

    /// A clock for a new worker, read by every report while the worker lives.
    pub(crate) fn request_clock(&self) -> RequestClock {
        let clock = Arc::new(AtomicU64::new(0));
        let mut clocks = self.clocks.lock().unwrap_or_else(|e| e.into_inner());
        clocks.retain(|clock| clock.strong_count() > 0);
        clocks.push(Arc::downgrade(&clock));
        RequestClock(clock)
    }

    /// The age of the oldest request in progress.
    fn longest_request(&self) -> Duration {
        let now = now_ms();
        let clocks = self.clocks.lock().unwrap_or_else(|e| e.into_inner());
        let oldest = (clocks.iter().filter_map(Weak::upgrade))
            .map(|clock| clock.load(Ordering::Relaxed))
            .filter(|&since| since > 0)
            .min();
        oldest.map_or(Duration::ZERO, |since| {
            Duration::from_millis(now.saturating_sub(since))
        })
    }
}

/// The sd_notify variable a worker process of a master reports its status in: the fields of
/// a [`StatusReport`] in order, as numbers (`running` as 0 or 1, `longest_request` in ms).
const NOTICE: &str = "X_SKYROCKET_STATUS=";

impl StatusReport {
    /// The report as an sd_notify datagram, for the master (`--workers`).
    pub(crate) fn to_notice(self) -> String {
        let fields = [
            u64::from(self.running),
            self.threads as u64,
            self.busy as u64,
            self.queued as u64,
            self.idle_connections as u64,
            self.connections_total,
            self.requests_total,
            self.longest_request.as_millis() as u64,
        ];
        let fields: Vec<String> = fields.iter().map(u64::to_string).collect();
        format!("{NOTICE}{}\n", fields.join(" "))
    }

    /// The report a datagram of [`StatusReport::to_notice`] carries, if it carries one.
    pub(crate) fn from_notice(datagram: &[u8]) -> Option<StatusReport> {
        let text = std::str::from_utf8(datagram).ok()?;
        let line = text.lines().find_map(|line| line.strip_prefix(NOTICE))?;
        let numbers: Vec<u64> = (line.split(' ').map(str::parse))
            .collect::<Result<_, _>>()
            .ok()?;
        let [running, threads, busy, queued, idle, connections, requests, longest_ms] = numbers[..]
        else {
            return None;
        };
        Some(StatusReport {
            running: running != 0,
            threads: threads as usize,
            busy: busy as usize,
            queued: queued as usize,
            idle_connections: idle as usize,
            connections_total: connections,
            requests_total: requests,
            longest_request: Duration::from_millis(longest_ms),
        })
    }
}

/// A report with a different value in every field, for tests.
#[cfg(test)]
pub(crate) const SAMPLE_REPORT: StatusReport = StatusReport {
    running: true,
    threads: 10,
    busy: 3,
    queued: 2,
    idle_connections: 7,
    connections_total: 41,
    requests_total: 1234,
    longest_request: Duration::from_millis(1500),
};

#[cfg(test)]
mod tests {
    use std::future::Future;

    use super::*;
    use crate::test_support::wait_until;

    /// Whether [`Stats::quota_sent`] is done at once (one poll).
    fn quota_sent_now(stats: &Stats) -> bool {
        let mut sent = std::pin::pin!(stats.quota_sent());
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        sent.as_mut().poll(&mut cx).is_ready()
    }

    #[test]
    fn the_response_that_completes_the_quota_wakes_its_waiter() {
        let stats = Stats::default();
        assert!(!quota_sent_now(&stats), "no quota, never");
        stats.set_quota(3);
        assert!(!stats.request_served() && !stats.request_served());
        assert!(!quota_sent_now(&stats), "2 of 3");
        assert!(stats.request_served(), "the third completes it");
        assert!(quota_sent_now(&stats), "3 of 3");
        assert!(!stats.request_served(), "only the third");

        // A quota set once its responses are sent (a restart) is met at once.
        let late = Stats::default();
        late.request_served();
        late.set_quota(1);
        assert!(quota_sent_now(&late));
    }

    #[test]
    fn the_longest_request_is_the_oldest_clock_running() {
        let stats = Stats::default();
        let (first, second) = (stats.request_clock(), stats.request_clock());
        assert_eq!(stats.report(true).longest_request, Duration::ZERO);
        first.start();
        wait_until("the request has run 20 ms", || {
            stats.report(true).longest_request >= Duration::from_millis(20)
        });
        second.start();
        assert!(stats.report(true).longest_request >= Duration::from_millis(20));
        drop(first);
        assert!(stats.report(true).longest_request < Duration::from_millis(20));
        second.stop();
        assert_eq!(stats.report(true).longest_request, Duration::ZERO);
    }

    #[test]
    fn a_report_goes_through_a_notice_unchanged() {
        let report = SAMPLE_REPORT;
        let notice = report.to_notice();
        assert_eq!(notice, "X_SKYROCKET_STATUS=1 10 3 2 7 41 1234 1500\n");
        assert_eq!(StatusReport::from_notice(notice.as_bytes()), Some(report));
        let invalid = [
            &b"READY=1\n"[..],
            b"X_SKYROCKET_STATUS=1 10 3\n",
            b"X_SKYROCKET_STATUS=1 10 3 2 7 41 1234 x\n",
            b"X_SKYROCKET_STATUS=1 10 3 2 7 41 1234 1500 9\n",
            b"\xff",
        ];
        for datagram in invalid {
            assert_eq!(StatusReport::from_notice(datagram), None, "{datagram:?}");
        }
    }
}
