//! The Status counters as an OpenMetrics text exposition (which Prometheus scrapes), written by
//! the `prometheus-client` crate.

use std::fmt;

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::Sample;
use crate::stats::StatusReport;

/// The exposition's media type.
pub(crate) const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A sample's labels: the worker process it comes from, if a master collected it.
type Labels = Vec<(&'static str, String)>;

/// A metric of a report: its name, its help, and how to read its value.
type Metric<T> = (&'static str, &'static str, fn(&StatusReport) -> T);

/// The gauges of a report.
const GAUGES: [Metric<usize>; 5] = [
    (
        "up",
        "Whether the server accepts connections (1) or is stopped (0)",
        |r| usize::from(r.running),
    ),
    ("threads", "Worker threads alive", |r| r.threads),
    ("busy_threads", "Worker threads serving a connection", |r| {
        r.busy
    }),
    (
        "queued_connections",
        "Connections accepted and not yet served",
        |r| r.queued,
    ),
    (
        "idle_connections",
        "Keep-alive connections waiting between requests",
        |r| r.idle_connections,
    ),
];

/// The counters of a report (`_total`).
const COUNTERS: [Metric<u64>; 2] = [
    ("connections", "Connections accepted", |r| {
        r.connections_total
    }),
    ("requests", "Responses sent, refusals included", |r| {
        r.requests_total
    }),
];

/// The exposition of the samples (one per process; a master's are labelled with each
/// child's `pid`): gauges, then counters, every name prefixed `skyrocket_`.
pub(crate) fn exposition(samples: &[Sample]) -> Result<String, fmt::Error> {
    let mut registry = Registry::with_prefix("skyrocket");
    for (name, help, value) in GAUGES {
        let family = Family::<Labels, Gauge>::default();
        for sample in samples {
            let gauge = family.get_or_create(&labels(sample));
            gauge.set(i64::try_from(value(&sample.report)).unwrap_or(i64::MAX));
        }
        registry.register(name, help, family);
    }
    register_longest(&mut registry, samples);
    if samples.iter().any(|sample| sample.child.is_some()) {
        register_stuck(&mut registry, samples);
    }
    for (name, help, value) in COUNTERS {
        let family = Family::<Labels, Counter>::default();
        for sample in samples {
            family
                .get_or_create(&labels(sample))
                .inc_by(value(&sample.report));
        }
        registry.register(name, help, family);
    }
    let mut text = String::new();
    encode(&mut text, &registry)?;
    Ok(text)
}

fn labels(sample: &Sample) -> Labels {
    (sample.child.iter())
        .map(|pid| ("pid", pid.to_string()))
        .collect()
}

/// `longest_request_seconds`: how long the oldest request in progress has run.
fn register_longest(registry: &mut Registry, samples: &[Sample]) {
    let family = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    for sample in samples {
        let longest = sample.report.longest_request.as_secs_f64();
        family.get_or_create(&labels(sample)).set(longest);
    }
    let help = "How long the oldest request in progress has been served";
    registry.register("longest_request_seconds", help, family);
}

/// `stuck`: whether the master takes a worker process for stuck (`--stuck-after`).
fn register_stuck(registry: &mut Registry, samples: &[Sample]) {
    let family = Family::<Labels, Gauge>::default();
    for sample in samples {
        family
            .get_or_create(&labels(sample))
            .set(i64::from(sample.stuck));
    }
    let help = "Whether the worker process has had a request in the application, or been silent, past --stuck-after";
    registry.register("stuck", help, family);
}

/// A single process's sample of `report`.
#[cfg(test)]
pub(super) fn alone(report: StatusReport) -> Vec<Sample> {
    vec![Sample {
        child: None,
        stuck: false,
        report,
    }]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::SAMPLE_REPORT;

    #[test]
    fn every_counter_has_its_help_type_and_value() {
        let text = exposition(&alone(SAMPLE_REPORT)).unwrap();
        let samples = [
            ("skyrocket_up", "gauge", "1"),
            ("skyrocket_threads", "gauge", "10"),
            ("skyrocket_busy_threads", "gauge", "3"),
            ("skyrocket_queued_connections", "gauge", "2"),
            ("skyrocket_idle_connections", "gauge", "7"),
            ("skyrocket_longest_request_seconds", "gauge", "1.5"),
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
        let text = exposition(&alone(StatusReport::default())).unwrap();
        assert!(text.contains("\nskyrocket_up 0\n"), "{text}");
        assert!(!text.contains("skyrocket_stuck"), "{text}");
    }

    #[test]
    fn a_masters_samples_are_labelled_with_each_childs_pid() {
        let child = |pid, stuck| Sample {
            child: Some(pid),
            stuck,
            report: SAMPLE_REPORT,
        };
        let text = exposition(&[child(41, false), child(42, true)]).unwrap();
        let samples = [
            "\nskyrocket_threads{pid=\"41\"} 10\n",
            "\nskyrocket_threads{pid=\"42\"} 10\n",
            "\nskyrocket_requests_total{pid=\"42\"} 1234\n",
            "\nskyrocket_stuck{pid=\"41\"} 0\n",
            "\nskyrocket_stuck{pid=\"42\"} 1\n",
            "\nskyrocket_longest_request_seconds{pid=\"41\"} 1.5\n",
        ];
        for sample in samples {
            assert!(text.contains(sample), "{sample}:\n{text}");
        }
    }
}
