#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // a test failing is a panic
//! Leader election against the embedded control plane: hand-over on release, takeover only
//! after expiry when the holder dies, loss noticed when someone else overwrites the Lease, and
//! giving up the wait on shutdown. Short timings (2 s lease, 500 ms renewal, 200 ms retry);
//! every wait is on a future or token, bounded by a timeout.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::PostParams;
use kube::{Api, Client};
use machinist_e2e::cluster::ControlPlane;
use machinist_operator::leader::{Elector, LeaderConfig, Leadership};
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

const LEASE: &str = "machinist-operator";
const LEASE_DURATION: Duration = Duration::from_secs(2);
/// Bound on anything that should happen "soon" (API round trips, a few retries).
const WAIT: Duration = Duration::from_secs(10);

struct Cluster {
    control: ControlPlane,
    client: Client,
}

impl Cluster {
    async fn start() -> Self {
        let control = ControlPlane::start().await.unwrap();
        Self { client: control.client.clone(), control }
    }

    fn elector(&self, identity: &str) -> Elector {
        Elector::new(
            self.client.clone(),
            LeaderConfig {
                lease_duration: LEASE_DURATION,
                renew_period: Duration::from_millis(500),
                retry_period: Duration::from_millis(200),
                ..LeaderConfig::new("default", LEASE, identity)
            },
        )
    }

    fn leases(&self) -> Api<Lease> {
        Api::namespaced(self.client.clone(), "default")
    }

    async fn lease(&self) -> Lease {
        self.leases().get(LEASE).await.unwrap()
    }
}

async fn acquire(elector: &Elector) -> Leadership {
    timeout(WAIT, elector.acquire(&CancellationToken::new()))
        .await
        .expect("not acquired in time")
        .unwrap()
        .expect("acquire gave up without shutdown")
}

fn holder(lease: &Lease) -> Option<&str> {
    lease.spec.as_ref().unwrap().holder_identity.as_deref()
}

fn transitions(lease: &Lease) -> i32 {
    lease.spec.as_ref().unwrap().lease_transitions.unwrap_or(0)
}

fn renew_time(lease: &Lease) -> Timestamp {
    lease.spec.as_ref().unwrap().renew_time.as_ref().unwrap().0
}

fn acquire_time(lease: &Lease) -> Timestamp {
    lease.spec.as_ref().unwrap().acquire_time.as_ref().unwrap().0
}

fn after(time: Timestamp, duration: Duration) -> Timestamp {
    time.checked_add(SignedDuration::try_from(duration).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_hands_over_to_the_standby_at_once() {
    let cluster = Cluster::start().await;
    let (a, b) = (cluster.elector("a"), cluster.elector("b"));
    let leader_a = acquire(&a).await;
    let first = cluster.lease().await;
    assert_eq!(holder(&first), Some("a"));
    assert_eq!(first.spec.as_ref().unwrap().lease_duration_seconds, Some(2));

    let shutdown = CancellationToken::new();
    let standby = b.acquire(&shutdown);
    tokio::pin!(standby);
    assert!(timeout(LEASE_DURATION * 2, &mut standby).await.is_err(), "b acquired while a renews");
    let renewed = cluster.lease().await;
    assert_eq!(holder(&renewed), Some("a"));
    assert!(renew_time(&renewed) > renew_time(&first), "a renewed the Lease");
    let lost_a = leader_a.lost();
    assert!(!lost_a.is_cancelled(), "a still leads");

    leader_a.release().await;
    assert!(lost_a.is_cancelled(), "release fires lost");
    let released = Instant::now();
    let leader_b = timeout(LEASE_DURATION / 2, &mut standby)
        .await
        .expect("b did not take over promptly after release")
        .unwrap()
        .expect("b gave up without shutdown");
    let handover = released.elapsed();
    assert!(handover < LEASE_DURATION / 2, "handover took {handover:?}");

    let taken = cluster.lease().await;
    assert_eq!(holder(&taken), Some("b"));
    assert!(transitions(&taken) > transitions(&first), "{} -> {}", transitions(&first), transitions(&taken));
    assert!(!leader_b.lost().is_cancelled());

    leader_b.release().await;
    assert_eq!(holder(&cluster.lease().await), None, "released Lease has no holder");
    cluster.control.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_leader_is_replaced_only_after_its_lease_expired() {
    let cluster = Cluster::start().await;
    let (a, b) = (cluster.elector("a"), cluster.elector("b"));
    let leader_a = acquire(&a).await;
    let lost_a = leader_a.lost();
    leader_a.abandon().await;
    assert!(lost_a.is_cancelled(), "a no longer considers itself leader");
    let last = cluster.lease().await;
    assert_eq!(holder(&last), Some("a"), "the crash left a as holder");
    let expiry = after(renew_time(&last), LEASE_DURATION);

    let started = Instant::now();
    let leader_b = acquire(&b).await;
    let acquired_at = Timestamp::now();
    assert!(acquired_at > expiry, "b acquired at {acquired_at}, before a's lease expired at {expiry}");
    let taken = cluster.lease().await;
    assert_eq!(holder(&taken), Some("b"));
    assert!(acquire_time(&taken) > expiry, "b's acquireTime {} <= expiry {expiry}", acquire_time(&taken));
    assert!(
        acquire_time(&taken) < after(expiry, Duration::from_secs(2)),
        "b took over late: {} (expiry {expiry})",
        acquire_time(&taken)
    );
    assert_eq!(transitions(&taken), transitions(&last) + 1);
    assert!(started.elapsed() < LEASE_DURATION + Duration::from_secs(2));

    leader_b.release().await;
    cluster.control.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_notices_when_another_holder_took_the_lease() {
    let cluster = Cluster::start().await;
    let leader_a = acquire(&cluster.elector("a")).await;
    let lost_a = leader_a.lost();

    let leases = cluster.leases();
    let intruded = loop {
        let mut lease = cluster.lease().await;
        let spec = lease.spec.as_mut().unwrap();
        let now = Timestamp::now();
        spec.holder_identity = Some("intruder".into());
        spec.acquire_time = Some(MicroTime(now));
        spec.renew_time = Some(MicroTime(now));
        spec.lease_duration_seconds = Some(30);
        match leases.replace(LEASE, &PostParams::default(), &lease).await {
            Ok(lease) => break lease,
            // a's renewal landed between our read and write: read again.
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(error) => panic!("overwriting the Lease: {error}"),
        }
    };
    assert_eq!(holder(&intruded), Some("intruder"));

    timeout(Duration::from_secs(3), lost_a.cancelled()).await.expect("a did not notice losing the Lease");
    leader_a.release().await;
    let after_release = cluster.lease().await;
    assert_eq!(holder(&after_release), Some("intruder"), "a's release left the intruder's claim alone");
    assert_eq!(after_release.metadata.resource_version, intruded.metadata.resource_version, "a wrote nothing");
    cluster.control.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_leadership_ends_on_shutdown() {
    let cluster = Cluster::start().await;
    let leader_a = acquire(&cluster.elector("a")).await;
    let b = cluster.elector("b");
    let shutdown = CancellationToken::new();
    let standby = b.acquire(&shutdown);
    tokio::pin!(standby);
    assert!(timeout(Duration::from_millis(500), &mut standby).await.is_err(), "b acquired a held Lease");
    shutdown.cancel();
    let outcome = timeout(WAIT, &mut standby).await.expect("acquire ignored shutdown").unwrap();
    assert!(outcome.is_none(), "no leadership after shutdown");
    assert!(timeout(WAIT, b.acquire(&shutdown)).await.unwrap().unwrap().is_none(), "already shut down");
    assert_eq!(holder(&cluster.lease().await), Some("a"));
    leader_a.release().await;
    cluster.control.stop().await;
}
