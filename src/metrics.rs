//! Prometheus metrics: one process-wide registry ([`metrics`]) that the SCIM middleware, the
//! store writer and the delivery engine update as they go, rendered in the text exposition
//! format by [`Metrics::render`] for the admin listener's `/metrics`.
//!
//! Owns: metric names, labels and buckets. Updating a metric is a few atomic operations
//! (plus a read lock to find a labelled series), never I/O. The outbox gauges are not kept
//! up to date continuously: they are set from the store's per-connector figures at scrape
//! time, which `render` takes as an argument, so this module never queries the store.
//!
//! Counters are registered without their `_total` suffix: the OpenMetrics encoder appends it
//! (`scim_requests` is exposed as `scim_requests_total`).

use std::sync::atomic::AtomicU64;
use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::store::{now_ms, ConnectorStatus, LogOutcome};

/// The `Content-Type` of [`Metrics::render`]'s output (OpenMetrics text, which Prometheus
/// scrapes natively).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectorLabels {
    connector: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    connector: String,
    outcome: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric the process exposes.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_duration: HistogramFamily<RouteLabels>,
    writes_committed: Counter,
    commit_batch_size: Histogram,
    outbox_pending: Family<ConnectorLabels, Gauge>,
    outbox_in_flight: Family<ConnectorLabels, Gauge>,
    outbox_dead: Family<ConnectorLabels, Gauge>,
    outbox_oldest_pending_age: Family<ConnectorLabels, Gauge<f64, AtomicU64>>,
    delivery_attempts: Family<AttemptLabels, Counter>,
    delivery_duration: HistogramFamily<ConnectorLabels>,
    circuit_open: Family<ConnectorLabels, Gauge>,
    provlog_dropped: Counter,
}

/// The process-wide metrics, created on first use.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// Latency buckets from half a millisecond (a durable write in a group commit) to 10 s.
fn request_buckets() -> Histogram {
    Histogram::new([
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

/// Delivery latency: loopback receivers answer in a millisecond, slow targets time out
/// after tens of seconds.
fn delivery_buckets() -> Histogram {
    Histogram::new([
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    ])
}

/// Method label: the standard methods by name, anything else as `other` (a client cannot
/// create series at will).
fn method_label(method: &str) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "CONNECT", "TRACE",
    ];
    KNOWN.into_iter().find(|m| *m == method).unwrap_or("other")
}

fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "scim_requests",
            "SCIM requests answered, by route template, method and status",
            requests.clone(),
        );
        let request_duration: HistogramFamily<RouteLabels> =
            Family::new_with_constructor(request_buckets);
        registry.register(
            "scim_request_duration_seconds",
            "Time to answer a SCIM request, by route template and method",
            request_duration.clone(),
        );
        let writes_committed = Counter::default();
        registry.register(
            "store_writes_committed",
            "Write jobs made durable by the store writer's commits",
            writes_committed.clone(),
        );
        let commit_batch_size = Histogram::new((0..11).map(|i| f64::from(1u32 << i)));
        registry.register(
            "store_commit_batch_size",
            "Write jobs per group commit",
            commit_batch_size.clone(),
        );
        let outbox_pending = Family::<ConnectorLabels, Gauge>::default();
        registry.register(
            "outbox_pending",
            "Deliveries waiting to be sent, per connector",
            outbox_pending.clone(),
        );
        let outbox_in_flight = Family::<ConnectorLabels, Gauge>::default();
        registry.register(
            "outbox_in_flight",
            "Deliveries being sent, per connector",
            outbox_in_flight.clone(),
        );
        let outbox_dead = Family::<ConnectorLabels, Gauge>::default();
        registry.register(
            "outbox_dead",
            "Dead-lettered deliveries, per connector",
            outbox_dead.clone(),
        );
        let outbox_oldest_pending_age = Family::<ConnectorLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "outbox_oldest_pending_age_seconds",
            "Age of the oldest delivery not yet done, per connector (0 when none)",
            outbox_oldest_pending_age.clone(),
        );
        let delivery_attempts = Family::<AttemptLabels, Counter>::default();
        registry.register(
            "delivery_attempts",
            "Delivery attempts by connector and outcome (delivered, retry, dead, deferred)",
            delivery_attempts.clone(),
        );
        let delivery_duration: HistogramFamily<ConnectorLabels> =
            Family::new_with_constructor(delivery_buckets);
        registry.register(
            "delivery_duration_seconds",
            "Time one delivery attempt took, per connector",
            delivery_duration.clone(),
        );
        let circuit_open = Family::<ConnectorLabels, Gauge>::default();
        registry.register(
            "circuit_open",
            "1 while a connector's circuit is open (every attempt failing; probing)",
            circuit_open.clone(),
        );
        let provlog_dropped = Counter::default();
        registry.register(
            "provlog_dropped",
            "Provisioning log entries dropped because the recorder was behind or storage failed",
            provlog_dropped.clone(),
        );
        Metrics {
            registry,
            requests,
            request_duration,
            writes_committed,
            commit_batch_size,
            outbox_pending,
            outbox_in_flight,
            outbox_dead,
            outbox_oldest_pending_age,
            delivery_attempts,
            delivery_duration,
            circuit_open,
            provlog_dropped,
        }
    }

    /// One SCIM request answered. `route` is the matched route template (never a raw path,
    /// so ids do not become series).
    pub fn observe_request(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        let method = method_label(method);
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_string(),
                method,
                status,
            })
            .inc();
        self.request_duration
            .get_or_create(&RouteLabels {
                route: route.to_string(),
                method,
            })
            .observe(seconds(elapsed));
    }

    /// A group commit made `jobs` writes durable.
    pub fn writes_committed(&self, jobs: usize) {
        let jobs = u64::try_from(jobs).unwrap_or(u64::MAX);
        self.writes_committed.inc_by(jobs);
        // Exact for every batch size the writer takes (at most a few thousand).
        self.commit_batch_size.observe(jobs as f64);
    }

    /// One delivery attempt finished with `outcome` after `elapsed`.
    pub fn delivery_attempt(&self, connector: &str, outcome: LogOutcome, elapsed: Duration) {
        self.delivery_attempts
            .get_or_create(&AttemptLabels {
                connector: connector.to_string(),
                outcome: outcome.as_str(),
            })
            .inc();
        self.delivery_duration
            .get_or_create(&ConnectorLabels {
                connector: connector.to_string(),
            })
            .observe(seconds(elapsed));
    }

    /// A connector's circuit opened (`true`) or closed.
    pub fn set_circuit_open(&self, connector: &str, open: bool) {
        self.circuit_open
            .get_or_create(&ConnectorLabels {
                connector: connector.to_string(),
            })
            .set(i64::from(open));
    }

    /// Provisioning log entries that were not stored.
    pub fn provlog_dropped(&self, n: u64) {
        self.provlog_dropped.inc_by(n);
    }

    /// The text exposition of every metric, with the outbox gauges set from `outbox` (the
    /// rows of `Store::connector_status` for the configured connectors, read at scrape time).
    pub fn render(&self, outbox: &[ConnectorStatus]) -> String {
        let now = now_ms();
        for row in outbox {
            let labels = ConnectorLabels {
                connector: row.connector.clone(),
            };
            self.outbox_pending
                .get_or_create(&labels)
                .set(gauge_value(row.pending));
            self.outbox_in_flight
                .get_or_create(&labels)
                .set(gauge_value(row.in_flight));
            self.outbox_dead
                .get_or_create(&labels)
                .set(gauge_value(row.dead));
            let age_ms = row
                .oldest_pending_at
                .map_or(0, |at| now.saturating_sub(at).max(0));
            self.outbox_oldest_pending_age
                .get_or_create(&labels)
                .set(age_ms as f64 / 1000.0);
            // A connector whose circuit never opened still shows 0, so alerts see the series.
            let _ = self.circuit_open.get_or_create(&labels);
        }
        let mut out = String::new();
        // Writing into a String cannot fail; on an encoder error the partial text is
        // returned rather than nothing.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0.0)
    }

    #[test]
    fn renders_every_family_with_labels() {
        let m = Metrics::new();
        m.observe_request(
            "/scim/v2/Users/{id}",
            "PATCH",
            200,
            Duration::from_millis(3),
        );
        m.observe_request(
            "/scim/v2/Users/{id}",
            "PATCH",
            200,
            Duration::from_millis(5),
        );
        m.observe_request("/scim/v2/Users", "BREW", 405, Duration::from_millis(1));
        m.writes_committed(7);
        m.delivery_attempt("hooks", LogOutcome::Dead, Duration::from_millis(12));
        m.set_circuit_open("hooks", true);
        m.provlog_dropped(2);
        let text = m.render(&[ConnectorStatus {
            connector: "hooks".into(),
            pending: 4,
            dead: 1,
            oldest_pending_at: Some(now_ms() - 2_000),
            ..ConnectorStatus::default()
        }]);
        assert_eq!(
            value(
                &text,
                r#"scim_requests_total{route="/scim/v2/Users/{id}",method="PATCH",status="200"}"#
            ),
            2.0,
            "{text}"
        );
        assert_eq!(
            value(
                &text,
                r#"scim_requests_total{route="/scim/v2/Users",method="other",status="405"}"#
            ),
            1.0
        );
        assert_eq!(
            value(
                &text,
                r#"scim_request_duration_seconds_count{route="/scim/v2/Users/{id}",method="PATCH"}"#
            ),
            2.0
        );
        assert_eq!(value(&text, "store_writes_committed_total"), 7.0);
        assert_eq!(value(&text, "store_commit_batch_size_count"), 1.0);
        assert_eq!(value(&text, r#"outbox_pending{connector="hooks"}"#), 4.0);
        assert_eq!(value(&text, r#"outbox_dead{connector="hooks"}"#), 1.0);
        assert!(
            value(
                &text,
                r#"outbox_oldest_pending_age_seconds{connector="hooks"}"#
            ) >= 2.0
        );
        assert_eq!(
            value(
                &text,
                r#"delivery_attempts_total{connector="hooks",outcome="dead"}"#
            ),
            1.0
        );
        assert_eq!(
            value(
                &text,
                r#"delivery_duration_seconds_count{connector="hooks"}"#
            ),
            1.0
        );
        assert_eq!(value(&text, r#"circuit_open{connector="hooks"}"#), 1.0);
        assert_eq!(value(&text, "provlog_dropped_total"), 2.0);
        assert!(text.ends_with("# EOF\n"));
    }
}
