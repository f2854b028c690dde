//! The Status counters as an OpenMetrics text exposition (which Prometheus scrapes), written by
//! the `prometheus-client` crate.

use std::fmt;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::stats::StatusReport;

/// The exposition's media type.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The exposition of one report: gauges, then counters (`_total`), every name prefixed
/// `skyrocket_`.
pub(crate) fn exposition(report: &StatusReport) -> Result<String, fmt::Error> {
    let mut registry = Registry::with_prefix("skyrocket");
    let gauges = [
        (
            "up",
            "Whether the server accepts connections (1) or is stopped (0)",
            usize::from(report.running),
        ),
        ("threads", "Worker threads alive", report.threads),
        (
            "busy_threads",
            "Worker threads serving a connection",
            report.busy,
        ),
        (
            "queued_connections",
            "Connections accepted and not yet served",
            report.queued,
        ),
        (
            "idle_connections",
            "Keep-alive connections waiting between requests",
            report.idle_connections,
        ),
    ];
    for (name, help, value) in gauges {
        let gauge = Gauge::<i64>::default();
        gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
        registry.register(name, help, gauge);
    }
    let counters = [
        (
            "connections",
            "Connections accepted",
            report.connections_total,
        ),
        (
            "requests",
            "Responses sent, refusals included",
            report.requests_total,
        ),
    ];
    for (name, help, value) in counters {
        let counter = Counter::<u64>::default();
        counter.inc_by(value);
        registry.register(name, help, counter);
    }
    let mut text = String::new();
    encode(&mut text, &registry)?;
    Ok(text)
}

/// A report with a different value in every field, for tests.
#[cfg(test)]
pub(super) const SAMPLE_REPORT: StatusReport = StatusReport {
    running: true,
    threads: 10,
    busy: 3,
    queued: 2,
    idle_connections: 7,
    connections_total: 41,
    requests_total: 1234,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_has_its_help_type_and_value() {
        let text = exposition(&SAMPLE_REPORT).unwrap();
        let samples = [
            ("skyrocket_up", "gauge", "1"),
            ("skyrocket_threads", "gauge", "10"),
            ("skyrocket_busy_threads", "gauge", "3"),
            ("skyrocket_queued_connections", "gauge", "2"),
            ("skyrocket_idle_connections", "gauge", "7"),
            ("skyrocket_connections", "counter", "41"),
            ("skyrocket_requests", "counter", "1234"),
        ];
        for (name, kind, value) in samples {
            assert!(text.contains(&format!("# HELP {name} ")), "{name}:\n{text}");
            assert!(
                text.contains(&format!("# TYPE {name} {kind}\n")),
                "{name}:\n{text}"
            );
            let sample = match kind {
                "counter" => format!("\n{name}_total {value}\n"),
                _ => format!("\n{name} {value}\n"),
            };
            assert!(text.contains(&sample), "{name}:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn a_stopped_server_is_down() {
        let text = exposition(&StatusReport::default()).unwrap();
        assert!(text.contains("\nskyrocket_up 0\n"), "{text}");
    }
}
