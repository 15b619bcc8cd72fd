//! Leader election on a `coordination.k8s.io/v1` Lease, with client-go's semantics, so that one
//! operator replica runs the controllers while the others stand by.
//!
//! - The holder stamps `renewTime` every `renew_period`; a standby takes the Lease once
//!   `renewTime + leaseDurationSeconds` is in the past on its clock (or at once when no one
//!   holds it), counting the change of holder in `leaseTransitions`.
//! - Every write is a replace carrying the `resourceVersion` that was read, so when several
//!   contenders write at once the API server lets exactly one through (409 for the others).
//! - The holder gives up ([`Leadership::lost`]) when no renewal succeeded for `lease_duration`,
//!   measured on its own monotonic clock from before the last successful write: it stops before
//!   any standby can consider the Lease expired (modulo clock skew, as in client-go).
//! - [`Leadership::release`] clears `holderIdentity`, so a standby takes over within a retry
//!   period instead of waiting for the Lease to expire.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, PostParams};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::jitter;

/// Who competes for which Lease, and how fast.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub lease_name: String,
    /// This contender's identity (unique per process, e.g. the pod name).
    pub identity: String,
    /// How long a holder's claim lasts after its last renewal (`leaseDurationSeconds`,
    /// rounded up to whole seconds).
    pub lease_duration: Duration,
    /// How often the holder renews; well below `lease_duration`, so a few failed renewals in a
    /// row are survived.
    pub renew_period: Duration,
    /// How often a standby retries, and a failed renewal is retried (plus up to 20 % jitter).
    pub retry_period: Duration,
}

impl LeaderConfig {
    /// client-go's defaults: a 15 s lease, renewed every 5 s, retried every 2 s.
    pub fn new(namespace: impl Into<String>, lease_name: impl Into<String>, identity: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            lease_name: lease_name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_period: Duration::from_secs(5),
            retry_period: Duration::from_secs(2),
        }
    }

    /// The retry period plus up to 20 %, so contenders started together do not retry in step.
    fn retry_delay(&self) -> Duration {
        jitter::between(self.retry_period, self.retry_period.saturating_add(self.retry_period / 5))
    }

    /// `leaseDurationSeconds` for this config, or why the config cannot work.
    fn validate(&self) -> Result<i32, LeaderError> {
        let invalid = |message: &str| Err(LeaderError::Config(message.to_owned()));
        if self.namespace.is_empty() || self.lease_name.is_empty() || self.identity.is_empty() {
            return invalid("namespace, lease name and identity must not be empty");
        }
        if self.lease_duration.is_zero() || self.renew_period.is_zero() || self.retry_period.is_zero() {
            return invalid("lease duration, renew period and retry period must be positive");
        }
        if self.renew_period >= self.lease_duration {
            return invalid("the renew period must be shorter than the lease duration");
        }
        // Rounded up: the holder gives up after `lease_duration`, standbys wait at least as long.
        let seconds = self.lease_duration.as_secs().saturating_add(u64::from(self.lease_duration.subsec_nanos() > 0));
        i32::try_from(seconds).or_else(|_| invalid("the lease duration does not fit leaseDurationSeconds"))
    }
}

/// Failures that retrying cannot fix; transient API errors are logged and retried instead.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// The settings cannot work (empty names, renew period not below the lease duration, ...).
    #[error("invalid leader election settings: {0}")]
    Config(String),
    /// The API server refused the Lease for good (forbidden, invalid, namespace missing, ...).
    #[error("the API server refused Lease {namespace}/{name}: {source}")]
    Refused {
        /// Namespace of the Lease.
        namespace: String,
        /// Name of the Lease.
        name: String,
        /// The refusal.
        #[source]
        source: kube::Error,
    },
}

/// What a contender should do about a Lease, from [`decide`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The Lease is absent, held by no one, or expired: take it.
    Acquire,
    /// This contender holds the Lease: renew it.
    Renew,
    /// Someone else holds the Lease until `until` (their `renewTime + leaseDurationSeconds`).
    Wait {
        /// The current holder.
        holder: String,
        /// When their claim expires, unless renewed.
        until: Timestamp,
    },
}

/// Decides from the Lease's spec (None if the Lease or its spec is absent) whether `me` may take
/// it at `now`. Pure, so every branch is unit-tested. A holder whose claim carries no
/// `renewTime`/`acquireTime` or no positive `leaseDurationSeconds` holds nothing; the claim
/// expires once `renewTime + leaseDurationSeconds < now`.
pub fn decide(spec: Option<&LeaseSpec>, me: &str, now: Timestamp) -> Decision {
    let Some(spec) = spec else { return Decision::Acquire };
    let Some(holder) = spec.holder_identity.as_deref().filter(|holder| !holder.is_empty()) else {
        return Decision::Acquire;
    };
    if holder == me {
        return Decision::Renew;
    }
    let renewed = spec.renew_time.as_ref().or(spec.acquire_time.as_ref());
    let seconds = spec.lease_duration_seconds.filter(|seconds| *seconds > 0);
    let (Some(renewed), Some(seconds)) = (renewed, seconds) else { return Decision::Acquire };
    // Beyond the representable range: the claim never expires on our clock.
    let until = renewed.0.checked_add(SignedDuration::from_secs(i64::from(seconds))).unwrap_or(Timestamp::MAX);
    if until < now { Decision::Acquire } else { Decision::Wait { holder: holder.to_owned(), until } }
}

/// Competes for one Lease; see the module documentation.
#[derive(Clone, Debug)]
pub struct Elector {
    api: Api<Lease>,
    config: LeaderConfig,
}

/// One round of [`Elector::acquire`].
#[derive(Debug)]
enum Attempt {
    /// Written as holder; `since` is taken before the write (the start of our claim).
    Acquired { lease: Box<Lease>, since: Instant },
    /// Someone else holds it.
    Held { holder: String, until: Timestamp },
    /// Another contender wrote first (409): read again next round.
    Contended,
    /// A transient failure.
    Failed(kube::Error),
    /// The round took longer than a lease duration.
    TimedOut,
}

impl Elector {
    /// An elector for `config.lease_name` in `config.namespace`; nothing is sent until
    /// [`Elector::acquire`].
    pub fn new(client: Client, config: LeaderConfig) -> Self {
        Self { api: Api::namespaced(client, &config.namespace), config }
    }

    /// Waits until this process holds the lease; None if `shutdown` fired first. Transient API
    /// errors are logged and retried (never returned) unless unrecoverable.
    pub async fn acquire(&self, shutdown: &CancellationToken) -> Result<Option<Leadership>, LeaderError> {
        let seconds = self.config.validate()?;
        let mut waiting_for: Option<String> = None;
        loop {
            if shutdown.is_cancelled() {
                return Ok(None);
            }
            // Not raced against `shutdown`: a write dropped in flight may still land and leave
            // a claim nobody renews. Bounded so a hung request cannot stall the election.
            let attempt = tokio::time::timeout(self.config.lease_duration, self.try_acquire(seconds))
                .await
                .unwrap_or(Ok(Attempt::TimedOut))?;
            match attempt {
                Attempt::Acquired { lease, since } => {
                    let leadership = Leadership::start(self.api.clone(), self.config.clone(), *lease, since);
                    if shutdown.is_cancelled() {
                        leadership.release().await;
                        return Ok(None);
                    }
                    return Ok(Some(leadership));
                }
                Attempt::Held { holder, until } => {
                    if waiting_for.as_deref() != Some(holder.as_str()) {
                        tracing::info!(
                            identity = %self.config.identity, lease = %self.config.lease_name, %holder, %until,
                            "waiting for the current leader"
                        );
                        waiting_for = Some(holder);
                    }
                }
                Attempt::Contended => {
                    tracing::debug!(identity = %self.config.identity, "another contender wrote the Lease first");
                }
                Attempt::Failed(error) => {
                    tracing::warn!(identity = %self.config.identity, %error, "leader election attempt failed; retrying");
                }
                Attempt::TimedOut => {
                    tracing::warn!(identity = %self.config.identity, "leader election attempt timed out; retrying");
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return Ok(None),
                () = tokio::time::sleep(self.config.retry_delay()) => {}
            }
        }
    }

    /// Reads the Lease and, if [`decide`] allows, writes this contender in as holder.
    async fn try_acquire(&self, seconds: i32) -> Result<Attempt, LeaderError> {
        let name = &self.config.lease_name;
        let current = match self.api.get_opt(name).await {
            Ok(current) => current,
            Err(error) => return self.failed(error, false),
        };
        let since = Instant::now();
        let now = Timestamp::now();
        let Some(mut lease) = current else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(claimed(None, &self.config.identity, seconds, now)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(lease) => Ok(Attempt::Acquired { lease: Box::new(lease), since }),
                // AlreadyExists: another contender created it first.
                Err(error) if status_code(&error) == Some(409) => Ok(Attempt::Contended),
                // 404 on create: the namespace (or the Lease API) is missing.
                Err(error) => self.failed(error, true),
            };
        };
        if let Decision::Wait { holder, until } = decide(lease.spec.as_ref(), &self.config.identity, now) {
            return Ok(Attempt::Held { holder, until });
        }
        lease.spec = Some(claimed(lease.spec.take(), &self.config.identity, seconds, now));
        match self.api.replace(name, &PostParams::default(), &lease).await {
            Ok(lease) => Ok(Attempt::Acquired { lease: Box::new(lease), since }),
            // Conflict: someone wrote since we read. Not found: deleted since; created next round.
            Err(error) if matches!(status_code(&error), Some(409 | 404)) => Ok(Attempt::Contended),
            Err(error) => self.failed(error, false),
        }
    }

    /// Sorts an API error into retried and fatal.
    fn failed(&self, error: kube::Error, creating: bool) -> Result<Attempt, LeaderError> {
        let fatal = match &error {
            kube::Error::Api(status) => {
                matches!(status.code, 400 | 401 | 403 | 405 | 422) || (creating && status.code == 404)
            }
            kube::Error::BuildRequest(_) => true,
            _ => false,
        };
        if fatal {
            Err(LeaderError::Refused {
                namespace: self.config.namespace.clone(),
                name: self.config.lease_name.clone(),
                source: error,
            })
        } else {
            Ok(Attempt::Failed(error))
        }
    }
}

/// The spec with `me` as holder at `now`: a change of holder stamps `acquireTime` and counts a
/// transition (the first holder of a new Lease is transition 0, as in client-go).
fn claimed(previous: Option<LeaseSpec>, me: &str, seconds: i32, now: Timestamp) -> LeaseSpec {
    let existed = previous.is_some();
    let mut spec = previous.unwrap_or_default();
    if spec.holder_identity.as_deref() != Some(me) {
        spec.holder_identity = Some(me.to_owned());
        spec.acquire_time = Some(MicroTime(now));
        spec.lease_transitions = Some(if existed { spec.lease_transitions.unwrap_or(0).saturating_add(1) } else { 0 });
    }
    spec.acquire_time.get_or_insert(MicroTime(now));
    spec.renew_time = Some(MicroTime(now));
    spec.lease_duration_seconds = Some(seconds);
    spec
}

/// Holding the Lease; a background task renews it until [`Leadership::release`], loss, or drop.
/// Dropping it stops renewal without clearing the holder (the Lease then expires on its own).
#[derive(Debug)]
pub struct Leadership {
    api: Api<Lease>,
    config: LeaderConfig,
    lost: CancellationToken,
    stop: StopOnDrop,
    /// Yields the last Lease written if renewal was stopped while still holding it.
    renewer: JoinHandle<Option<Lease>>,
}

impl Leadership {
    fn start(api: Api<Lease>, config: LeaderConfig, lease: Lease, since: Instant) -> Self {
        let spec = lease.spec.as_ref();
        tracing::info!(
            identity = %config.identity, namespace = %config.namespace, lease = %config.lease_name,
            transitions = spec.and_then(|spec| spec.lease_transitions).unwrap_or(0),
            "acquired leadership"
        );
        let lost = CancellationToken::new();
        let stop = CancellationToken::new();
        let renewer = tokio::spawn({
            let (api, config, lost, stop) = (api.clone(), config.clone(), lost.clone(), stop.clone());
            async move {
                let held = keep_renewing(&api, &config, lease, since, &stop).await;
                lost.cancel();
                held
            }
        });
        let stop = StopOnDrop { token: stop, identity: config.identity.clone(), armed: true };
        Self { api, config, lost, stop, renewer }
    }

    /// Cancelled when leadership is lost (renewal failed for longer than lease_duration, or
    /// another holder took the lease), and on release. A child token: cancelling it does not
    /// give up the lease.
    pub fn lost(&self) -> CancellationToken {
        self.lost.child_token()
    }

    /// Graceful step-down: stop renewing and clear holderIdentity (so a standby takes over at
    /// once). [`Leadership::lost`] fires first; call this once the leader's work has stopped.
    /// Failures are logged: the Lease then expires on its own.
    pub async fn release(self) {
        let Self { api, config, lost, mut stop, renewer } = self;
        lost.cancel();
        stop.armed = false;
        stop.token.cancel();
        let held = match renewer.await {
            Ok(held) => held,
            Err(error) => {
                tracing::warn!(identity = %config.identity, %error, "the Lease renewer failed");
                None
            }
        };
        let Some(lease) = held else {
            tracing::info!(identity = %config.identity, lease = %config.lease_name, "leadership already lost; nothing to release");
            return;
        };
        // After a lease duration the claim has expired anyway.
        match tokio::time::timeout(config.lease_duration, clear_holder(&api, &config, lease)).await {
            Ok(true) => tracing::info!(identity = %config.identity, lease = %config.lease_name, "released leadership"),
            Ok(false) => tracing::info!(
                identity = %config.identity, lease = %config.lease_name,
                "stepped down; the Lease already had another holder"
            ),
            Err(_) => tracing::warn!(
                identity = %config.identity, lease = %config.lease_name,
                "could not clear the Lease holder; it expires on its own"
            ),
        }
    }

    /// Stops renewing without clearing the holder and waits for the renewer to end: a crash,
    /// for tests of expiry.
    #[doc(hidden)]
    pub async fn abandon(self) {
        let Self { stop, renewer, .. } = self;
        drop(stop);
        if let Err(error) = renewer.await {
            tracing::warn!(%error, "the Lease renewer failed");
        }
    }
}

/// Stops renewal when a [`Leadership`] is dropped without [`Leadership::release`], saying so.
#[derive(Debug)]
struct StopOnDrop {
    token: CancellationToken,
    identity: String,
    armed: bool,
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if self.armed {
            tracing::warn!(identity = %self.identity, "leadership dropped without release; the Lease expires on its own");
            self.token.cancel();
        }
    }
}

/// One renewal's outcome.
#[derive(Debug)]
enum Renewal {
    Renewed(Box<Lease>),
    /// Someone else holds the Lease, or it is gone.
    Lost(String),
    /// A transient failure: retry until the deadline.
    Failed(kube::Error),
    /// The Lease changed under us twice while we still held it: retry.
    Contended,
}

/// Renews until `stop` (returning the last Lease written) or until leadership is lost
/// (returning None). The claim lasts `lease_duration` from before the last successful write.
async fn keep_renewing(
    api: &Api<Lease>,
    config: &LeaderConfig,
    mut lease: Lease,
    since: Instant,
    stop: &CancellationToken,
) -> Option<Lease> {
    let lose = |reason: &str| {
        tracing::warn!(identity = %config.identity, lease = %config.lease_name, reason, "lost leadership");
        None
    };
    let mut deadline = since + config.lease_duration;
    let mut next = Instant::now() + config.renew_period;
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => return Some(lease),
            () = tokio::time::sleep_until(next.min(deadline)) => {}
        }
        if Instant::now() >= deadline {
            return lose("no renewal succeeded within the lease duration");
        }
        let attempt = Instant::now();
        let renewal = tokio::select! {
            biased;
            () = stop.cancelled() => return Some(lease),
            renewal = tokio::time::timeout_at(deadline, renew(api, config, &lease)) => renewal,
        };
        match renewal {
            Ok(Renewal::Renewed(renewed)) => {
                lease = *renewed;
                deadline = attempt + config.lease_duration;
                next = Instant::now() + config.renew_period;
            }
            Ok(Renewal::Lost(reason)) => return lose(&reason),
            Ok(Renewal::Failed(error)) => {
                tracing::warn!(identity = %config.identity, %error, "renewing the Lease failed; retrying");
                next = Instant::now() + config.retry_delay();
            }
            Ok(Renewal::Contended) => next = Instant::now() + config.retry_delay(),
            Err(_) => return lose("no renewal succeeded within the lease duration"),
        }
    }
}

/// Writes a fresh `renewTime` over the Lease last written; on a conflict, re-reads and goes on
/// only if we still hold it.
async fn renew(api: &Api<Lease>, config: &LeaderConfig, last: &Lease) -> Renewal {
    let me = config.identity.as_str();
    let seconds = last.spec.as_ref().and_then(|spec| spec.lease_duration_seconds).unwrap_or(1);
    let mut lease = last.clone();
    for _ in 0..2 {
        lease.spec = Some(claimed(lease.spec.take(), me, seconds, Timestamp::now()));
        match api.replace(&config.lease_name, &PostParams::default(), &lease).await {
            Ok(renewed) => return Renewal::Renewed(Box::new(renewed)),
            Err(error) if status_code(&error) == Some(404) => return Renewal::Lost("the Lease was deleted".into()),
            Err(error) if status_code(&error) == Some(409) => {}
            Err(error) => return Renewal::Failed(error),
        }
        match api.get_opt(&config.lease_name).await {
            Ok(Some(current)) if holder(&current) == Some(me) => lease = current,
            Ok(Some(current)) => {
                return Renewal::Lost(format!("taken by {}", holder(&current).unwrap_or("no one")));
            }
            Ok(None) => return Renewal::Lost("the Lease was deleted".into()),
            Err(error) => return Renewal::Failed(error),
        }
    }
    Renewal::Contended
}

/// Clears the holder (client-go's release: no holder, 1 s duration), unless someone else holds
/// the Lease by now. True if cleared. Transient failures are retried; the caller bounds time.
async fn clear_holder(api: &Api<Lease>, config: &LeaderConfig, mut lease: Lease) -> bool {
    loop {
        let mut spec = lease.spec.take().unwrap_or_default();
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        lease.spec = Some(spec);
        let error = match api.replace(&config.lease_name, &PostParams::default(), &lease).await {
            Ok(_) => return true,
            Err(error) if status_code(&error) == Some(404) => return false,
            Err(error) if status_code(&error) == Some(409) => None,
            Err(error) => Some(error),
        };
        if let Some(error) = error {
            tracing::warn!(identity = %config.identity, %error, "clearing the Lease holder failed; retrying");
            tokio::time::sleep(config.retry_delay()).await;
        }
        // Re-read: the Lease changed (a renewal may have landed as we stopped) or the write failed.
        loop {
            match api.get_opt(&config.lease_name).await {
                Ok(Some(current)) if holder(&current) == Some(config.identity.as_str()) => {
                    lease = current;
                    break;
                }
                Ok(_) => return false,
                Err(error) => {
                    tracing::warn!(identity = %config.identity, %error, "reading the Lease failed; retrying");
                    tokio::time::sleep(config.retry_delay()).await;
                }
            }
        }
    }
}

fn holder(lease: &Lease) -> Option<&str> {
    lease.spec.as_ref().and_then(|spec| spec.holder_identity.as_deref()).filter(|holder| !holder.is_empty())
}

fn status_code(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "me";

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + seconds).unwrap()
    }

    fn held_by(holder: &str, renewed: Option<i64>, seconds: Option<i32>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.to_owned()),
            renew_time: renewed.map(|s| MicroTime(at(s))),
            lease_duration_seconds: seconds,
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn an_absent_lease_is_acquired() {
        assert_eq!(decide(None, ME, at(0)), Decision::Acquire);
    }

    #[test]
    fn a_lease_without_holder_is_acquired() {
        assert_eq!(decide(Some(&LeaseSpec::default()), ME, at(0)), Decision::Acquire);
        assert_eq!(decide(Some(&held_by("", Some(0), Some(15))), ME, at(0)), Decision::Acquire, "released");
    }

    #[test]
    fn my_lease_is_renewed_even_when_expired() {
        assert_eq!(decide(Some(&held_by(ME, Some(0), Some(15))), ME, at(1)), Decision::Renew);
        assert_eq!(decide(Some(&held_by(ME, Some(0), Some(15))), ME, at(100)), Decision::Renew);
    }

    #[test]
    fn a_live_lease_of_another_is_waited_for_until_it_expires() {
        let spec = held_by("other", Some(0), Some(15));
        let wait = Decision::Wait { holder: "other".into(), until: at(15) };
        assert_eq!(decide(Some(&spec), ME, at(3)), wait);
        assert_eq!(decide(Some(&spec), ME, at(15)), wait, "expired only strictly after renewTime + duration");
    }

    #[test]
    fn an_expired_lease_of_another_is_acquired() {
        let spec = held_by("other", Some(0), Some(15));
        assert_eq!(decide(Some(&spec), ME, at(16)), Decision::Acquire);
    }

    #[test]
    fn acquire_time_stands_in_for_a_missing_renew_time() {
        let spec = LeaseSpec { acquire_time: Some(MicroTime(at(0))), ..held_by("other", None, Some(15)) };
        assert_eq!(decide(Some(&spec), ME, at(3)), Decision::Wait { holder: "other".into(), until: at(15) });
        assert_eq!(decide(Some(&spec), ME, at(16)), Decision::Acquire);
    }

    #[test]
    fn a_claim_without_time_or_duration_holds_nothing() {
        assert_eq!(decide(Some(&held_by("other", None, Some(15))), ME, at(0)), Decision::Acquire);
        assert_eq!(decide(Some(&held_by("other", Some(0), None)), ME, at(0)), Decision::Acquire);
        assert_eq!(decide(Some(&held_by("other", Some(0), Some(0))), ME, at(0)), Decision::Acquire);
        assert_eq!(decide(Some(&held_by("other", Some(0), Some(-5))), ME, at(0)), Decision::Acquire);
    }

    #[test]
    fn claiming_counts_transitions_of_holder_only() {
        let first = claimed(None, ME, 15, at(0));
        assert_eq!(first.holder_identity.as_deref(), Some(ME));
        assert_eq!(first.lease_transitions, Some(0));
        assert_eq!(first.acquire_time, Some(MicroTime(at(0))));
        assert_eq!(first.renew_time, Some(MicroTime(at(0))));
        assert_eq!(first.lease_duration_seconds, Some(15));

        let renewed = claimed(Some(first), ME, 15, at(5));
        assert_eq!(renewed.lease_transitions, Some(0));
        assert_eq!(renewed.acquire_time, Some(MicroTime(at(0))), "acquireTime kept on renewal");
        assert_eq!(renewed.renew_time, Some(MicroTime(at(5))));

        let taken = claimed(Some(renewed), "other", 10, at(30));
        assert_eq!(taken.holder_identity.as_deref(), Some("other"));
        assert_eq!(taken.lease_transitions, Some(1));
        assert_eq!(taken.acquire_time, Some(MicroTime(at(30))));
        assert_eq!(taken.lease_duration_seconds, Some(10));

        let after_release = LeaseSpec { holder_identity: None, ..taken };
        assert_eq!(claimed(Some(after_release), ME, 15, at(40)).lease_transitions, Some(2));
    }

    #[test]
    fn settings_are_checked() {
        let good = LeaderConfig::new("default", "lease", ME);
        assert_eq!(good.validate().unwrap(), 15);
        let fractional = LeaderConfig {
            lease_duration: Duration::from_millis(2500),
            renew_period: Duration::from_secs(1),
            ..good.clone()
        };
        assert_eq!(fractional.validate().unwrap(), 3, "rounded up");
        for bad in [
            LeaderConfig { identity: String::new(), ..good.clone() },
            LeaderConfig { renew_period: Duration::from_secs(15), ..good.clone() },
            LeaderConfig { retry_period: Duration::ZERO, ..good.clone() },
            LeaderConfig { lease_duration: Duration::from_secs(u64::MAX), ..good.clone() },
        ] {
            assert!(matches!(bad.validate(), Err(LeaderError::Config(_))), "{bad:?}");
        }
    }

    #[test]
    fn retries_add_at_most_a_fifth() {
        let period = Duration::from_millis(200);
        let config = LeaderConfig { retry_period: period, ..LeaderConfig::new("default", "lease", ME) };
        for _ in 0..100 {
            let delay = config.retry_delay();
            assert!(delay >= period && delay <= period + period / 5, "{delay:?}");
        }
    }
}
