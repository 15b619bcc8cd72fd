//! `/metrics` (Prometheus text format 0.0.4) and `/healthz`, on their own port so scrapes and
//! probes never compete with machines for the boot port, and the boot port exposes nothing
//! about the service.
//!
//! | Metric | Type | What |
//! |---|---|---|
//! | `machinist_boot_dhcp_<counter>_total` | counter | each DHCP counter (`received`, `offers`, `acks`, `malformed`, `timeouts`…) |
//! | `machinist_boot_tftp_<counter>_total` | counter | TFTP transfers `served`, `refused`, `not_found`, `errors` |
//! | `machinist_boot_http_<counter>_total` | counter | iPXE `scripts`, `registered` machines, `artifacts`, `reports_accepted`, `reports_refused` |
//! | `machinist_boot_timeline_<counter>_total` | counter | boot steps `recorded`, `dropped` (queue full), `unattributed`, status `writes`, `failed_writes` |
//! | `machinist_boot_up` | gauge | 1 |

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use machinist_boot_dhcp::Engine;
use machinist_boot_tftp::TftpMetrics;

use crate::http::HttpCounters;
use crate::timeline::TimelineCounters;

/// What `/metrics` reads.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    /// The DHCP engine, when DHCP runs.
    pub dhcp: Option<Arc<Engine>>,
    /// TFTP counters.
    pub tftp: Option<Arc<TftpMetrics>>,
    /// HTTP counters.
    pub http: Option<Arc<HttpCounters>>,
    /// Timeline counters.
    pub timeline: Option<Arc<TimelineCounters>>,
}

fn counter(out: &mut String, subsystem: &str, name: &str, value: u64) {
    let metric = format!("machinist_boot_{subsystem}_{name}_total");
    let _ = writeln!(out, "# TYPE {metric} counter\n{metric} {value}");
}

/// The exposition text.
pub fn render(sources: &Sources) -> String {
    let mut out = String::from("# TYPE machinist_boot_up gauge\nmachinist_boot_up 1\n");
    if let Some(engine) = &sources.dhcp {
        for (name, value) in engine.snapshot().pairs() {
            counter(&mut out, "dhcp", name, value);
        }
    }
    if let Some(tftp) = &sources.tftp {
        let c = tftp.snapshot();
        for (name, value) in
            [("served", c.served), ("refused", c.refused), ("not_found", c.not_found), ("errors", c.errors)]
        {
            counter(&mut out, "tftp", name, value);
        }
    }
    if let Some(http) = &sources.http {
        for (name, value) in [
            ("scripts", &http.scripts),
            ("registered", &http.registered),
            ("artifacts", &http.artifacts),
            ("reports_accepted", &http.reports_accepted),
            ("reports_refused", &http.reports_refused),
        ] {
            counter(&mut out, "http", name, value.load(Ordering::Relaxed));
        }
    }
    if let Some(timeline) = &sources.timeline {
        for (name, value) in [
            ("recorded", &timeline.recorded),
            ("dropped", &timeline.dropped),
            ("unattributed", &timeline.unattributed),
            ("writes", &timeline.writes),
            ("failed_writes", &timeline.failed_writes),
        ] {
            counter(&mut out, "timeline", name, value.load(Ordering::Relaxed));
        }
    }
    out
}

/// The metrics router: `GET /metrics`, `GET /healthz`.
pub fn router(sources: Sources) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(sources): State<Arc<Sources>>| async move {
                ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], render(&sources)).into_response()
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(Arc::new(sources))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_is_exported_once_with_its_type() {
        let http = Arc::new(HttpCounters::default());
        http.scripts.store(3, Ordering::Relaxed);
        let text = render(&Sources {
            http: Some(http),
            tftp: Some(Arc::default()),
            timeline: Some(Arc::default()),
            dhcp: None,
        });
        assert!(
            text.contains("# TYPE machinist_boot_http_scripts_total counter\nmachinist_boot_http_scripts_total 3\n")
        );
        assert!(text.contains("machinist_boot_tftp_refused_total 0\n"));
        assert!(text.contains("machinist_boot_timeline_dropped_total 0\n"));
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        let names: std::collections::BTreeSet<&str> = samples.iter().filter_map(|l| l.split(' ').next()).collect();
        assert_eq!(names.len(), samples.len(), "a metric is exported twice");
        for line in samples {
            let (name, value) = line.split_once(' ').unwrap();
            assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'), "{name}");
            value.parse::<u64>().unwrap();
        }
    }
}
