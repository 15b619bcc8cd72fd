//! The operator's metrics (`prometheus-client`, one registry per operator, no globals), served
//! on their own port with `/healthz` and `/readyz`.
//!
//! | Metric | Type | What |
//! |---|---|---|
//! | `machinist_operator_reconciles_total{controller}` | counter | reconciles run |
//! | `machinist_operator_reconcile_failures_total{controller,reason}` | counter | reconciles that failed, by error |
//! | `machinist_operator_reconcile_duration_seconds{controller}` | histogram | reconcile durations |
//! | `machinist_operator_machines{phase}` | gauge | Machines per phase (read at scrape time) |
//! | `machinist_operator_ledger_writes_total{kind}` | counter | status writes of HardwareProfiles and Cmdbs |
//! | `machinist_operator_ledger_requests_total{kind}` | counter | requests those writes carried (batching) |
//! | `machinist_operator_ledger_conflicts_total{kind}` | counter | writes refused because the object changed (409) |
//! | `machinist_operator_leader` | gauge | 1 while this replica leads |

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabel {
    controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    controller: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabel {
    phase: String,
}

/// What the operator is doing, for `/readyz`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    /// Starting.
    Starting = 0,
    /// Waiting for the lease (another replica leads).
    Standby = 1,
    /// Leading, caches synced.
    Leading = 2,
    /// Shutting down.
    Stopping = 3,
}

/// The registry and the handles the controllers record into.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ControllerLabel, Counter>,
    failures: Family<FailureLabels, Counter>,
    durations: Family<ControllerLabel, Histogram>,
    machines: Family<PhaseLabel, Gauge>,
    ledger_writes: Family<KindLabel, Counter>,
    ledger_requests: Family<KindLabel, Counter>,
    ledger_conflicts: Family<KindLabel, Counter>,
    leader: Gauge,
    state: AtomicU8,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("machinist_operator");
        let reconciles = Family::<ControllerLabel, Counter>::default();
        let failures = Family::<FailureLabels, Counter>::default();
        // 0.5 ms to 4.4 min.
        let durations = Family::<ControllerLabel, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.000_5, 2.0, 20))) as fn() -> Histogram,
        );
        let machines = Family::<PhaseLabel, Gauge>::default();
        let ledger_writes = Family::<KindLabel, Counter>::default();
        let ledger_requests = Family::<KindLabel, Counter>::default();
        let ledger_conflicts = Family::<KindLabel, Counter>::default();
        let leader = Gauge::default();
        registry.register("reconciles", "Reconciles run", reconciles.clone());
        registry.register("reconcile_failures", "Reconciles that failed, by error", failures.clone());
        registry.register("reconcile_duration_seconds", "Reconcile durations", durations.clone());
        registry.register("machines", "Machines per phase", machines.clone());
        registry.register("ledger_writes", "Status writes of HardwareProfiles and Cmdbs", ledger_writes.clone());
        registry.register("ledger_requests", "Requests carried by those writes", ledger_requests.clone());
        registry.register(
            "ledger_conflicts",
            "Status writes refused because the object changed",
            ledger_conflicts.clone(),
        );
        registry.register("leader", "1 while this replica leads", leader.clone());
        Self {
            registry,
            reconciles,
            failures,
            durations,
            machines,
            ledger_writes,
            ledger_requests,
            ledger_conflicts,
            leader,
            state: AtomicU8::new(State::Starting as u8),
        }
    }

    /// Counts a reconcile of `controller`; its duration is recorded when the guard drops.
    pub fn reconcile(&self, controller: &'static str) -> ReconcileTimer<'_> {
        self.reconciles.get_or_create(&ControllerLabel { controller }).inc();
        ReconcileTimer { metrics: self, controller, start: Instant::now() }
    }

    /// Counts a failed reconcile.
    pub fn failure(&self, controller: &'static str, reason: &'static str) {
        self.failures.get_or_create(&FailureLabels { controller, reason }).inc();
    }

    /// Counts a ledger write carrying `requests` requests.
    pub fn ledger_write(&self, kind: &'static str, requests: usize) {
        self.ledger_writes.get_or_create(&KindLabel { kind }).inc();
        self.ledger_requests.get_or_create(&KindLabel { kind }).inc_by(requests as u64);
    }

    /// Counts a refused ledger write.
    pub fn ledger_conflict(&self, kind: &'static str) {
        self.ledger_conflicts.get_or_create(&KindLabel { kind }).inc();
    }

    /// Records what the operator is doing.
    pub fn set_state(&self, state: State) {
        self.state.store(state as u8, Ordering::Relaxed);
        self.leader.set(i64::from(state == State::Leading));
    }

    /// What the operator is doing.
    pub fn state(&self) -> State {
        match self.state.load(Ordering::Relaxed) {
            1 => State::Standby,
            2 => State::Leading,
            3 => State::Stopping,
            _ => State::Starting,
        }
    }

    /// Sets the Machines-per-phase gauge (at scrape time, from the Machine cache).
    pub fn set_machines(&self, counts: &[(String, i64)]) {
        self.machines.clear();
        for (phase, count) in counts {
            self.machines.get_or_create(&PhaseLabel { phase: phase.clone() }).set(*count);
        }
    }

    /// The registry in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::warn!(%error, "failed to encode metrics");
        }
        text
    }
}

/// Records a reconcile's duration when dropped.
#[derive(Debug)]
pub struct ReconcileTimer<'m> {
    metrics: &'m Metrics,
    controller: &'static str,
    start: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.metrics
            .durations
            .get_or_create(&ControllerLabel { controller: self.controller })
            .observe(self.start.elapsed().as_secs_f64());
    }
}

/// The HTTP routes: `/metrics`, `/healthz`, `/readyz`. `refresh` runs before each scrape
/// (it sets the gauges read from caches).
pub fn router(metrics: Arc<Metrics>, refresh: Arc<dyn Fn() + Send + Sync>) -> axum::Router {
    use axum::http::{StatusCode, header};
    use axum::routing::get;
    let scrape = metrics.clone();
    axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = scrape.clone();
                let refresh = refresh.clone();
                async move {
                    refresh();
                    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], metrics.encode())
                }
            }),
        )
        // Alive as long as it answers.
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let state = metrics.state();
                async move {
                    match state {
                        State::Leading => (StatusCode::OK, "leading\n"),
                        State::Standby => (StatusCode::OK, "standby: another replica leads\n"),
                        State::Starting => (StatusCode::SERVICE_UNAVAILABLE, "starting\n"),
                        State::Stopping => (StatusCode::SERVICE_UNAVAILABLE, "stopping\n"),
                    }
                }
            }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_names_every_family_with_its_labels() {
        let metrics = Metrics::new();
        drop(metrics.reconcile("machine"));
        metrics.failure("machine", "Ledger");
        metrics.ledger_write("Cmdb", 7);
        metrics.set_machines(&[("Allocated".into(), 3)]);
        metrics.set_state(State::Leading);
        let text = metrics.encode();
        for line in [
            "machinist_operator_reconciles_total{controller=\"machine\"} 1",
            "machinist_operator_reconcile_failures_total{controller=\"machine\",reason=\"Ledger\"} 1",
            "machinist_operator_reconcile_duration_seconds_count{controller=\"machine\"} 1",
            "machinist_operator_ledger_requests_total{kind=\"Cmdb\"} 7",
            "machinist_operator_machines{phase=\"Allocated\"} 3",
            "machinist_operator_leader 1",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }
}
