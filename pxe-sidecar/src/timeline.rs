//! The boot timeline: every step a machine takes through the boot services (DHCP offer and
//! acknowledgement, TFTP file, iPXE script, kernel and initrd, agent report, progress, log
//! upload) recorded on its Machine as `status.lastBoot` and as Events.
//!
//! Recording is cheap and never blocks the packet or request path: [`Timeline::record`] queues
//! the step in a bounded channel (a full queue drops the step and counts it). A task drains the
//! queue and, once per flush interval, writes **one** `status.lastBoot` update and **one**
//! Event per machine that took steps, whatever their number — a boot storm of N machines costs
//! at most 2N writes per interval.
//!
//! Which steps belong to the same boot is decided by [`append`] (pure): a DHCP offer to a
//! firmware or iPXE client (one that asked to boot) starts a new boot once the current one has
//! gone past DHCP and TFTP (it reached the script, the kernel or the agent), or after
//! [`QUIET`] without steps. The RAM disk's own DHCP client asks for no boot file, so it
//! stays within the boot that loaded it.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use machinist_boot_dhcp::{MessageType, ReplyObserver, ReplySummary};
use machinist_crds::machine::{BOOT_STEPS_MAX, BootStep, BootStepKind, BootTimeline};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Longest `detail` kept (bytes), as the CRD allows.
pub const DETAIL_MAX: usize = 256;
/// Steps queued before new ones are dropped.
pub const QUEUE_CAPACITY: usize = 8192;
/// Default time between writes.
pub const DEFAULT_FLUSH: Duration = Duration::from_secs(1);
/// Without a step for this long, the next boot request starts a new boot.
pub const QUIET: Duration = Duration::from_secs(30 * 60);
/// Addresses remembered for mapping TFTP and HTTP clients to machines.
const ADDRESSES_MAX: usize = 65_536;

/// One step, as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepRecord {
    /// The Machine's name.
    pub machine: String,
    /// What happened.
    pub kind: BootStepKind,
    /// Details (cut to [`DETAIL_MAX`] bytes).
    pub detail: String,
    /// When.
    pub time: jiff::Timestamp,
    /// Whether the client asked to boot (a DHCP request for a boot file): such a request may
    /// start a new boot.
    pub boot_request: bool,
    /// Whether the step is a problem (a NAK, a failed install step): its Event is a Warning.
    pub warning: bool,
}

impl StepRecord {
    /// A step happening now.
    pub fn now(machine: &str, kind: BootStepKind, detail: impl Into<String>) -> Self {
        Self {
            machine: machine.to_owned(),
            kind,
            detail: cut(detail.into(), DETAIL_MAX),
            time: jiff::Timestamp::now(),
            boot_request: false,
            warning: false,
        }
    }
}

/// `s` cut to at most `max` bytes, on a character boundary.
pub fn cut(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

fn past_dhcp(kind: BootStepKind) -> bool {
    !matches!(kind, BootStepKind::DhcpOffer | BootStepKind::DhcpAck | BootStepKind::DhcpNak | BootStepKind::TftpFile)
}

/// Adds `step` to `timeline`, starting a new boot when the step begins one (see the module
/// documentation). Keeps at most [`BOOT_STEPS_MAX`] steps.
pub fn append(timeline: &mut BootTimeline, step: &StepRecord) {
    let time = Time(step.time);
    let last = timeline.steps.last().map(|s| s.time.0);
    let quiet = last.is_none_or(|last| step.time.duration_since(last).unsigned_abs() > QUIET);
    let gone_past_dhcp = timeline.steps.iter().any(|s| past_dhcp(s.kind));
    if timeline.started_time.is_none() || quiet || (step.boot_request && gone_past_dhcp) {
        *timeline = BootTimeline { started_time: Some(time.clone()), steps: Vec::new(), dropped_steps: 0 };
    }
    timeline.steps.push(BootStep { kind: step.kind, detail: step.detail.clone(), time });
    if timeline.steps.len() > BOOT_STEPS_MAX {
        let excess = timeline.steps.len() - BOOT_STEPS_MAX;
        timeline.steps.drain(..excess);
        timeline.dropped_steps = timeline.dropped_steps.saturating_add(i32::try_from(excess).unwrap_or(i32::MAX));
    }
}

/// The note of the Event summarizing a batch of one machine's steps.
pub fn event_note(steps: &[StepRecord]) -> String {
    let mut note = String::new();
    for (i, step) in steps.iter().enumerate() {
        if i > 0 {
            note.push_str("; ");
        }
        let _ = write!(note, "{:?}", step.kind);
        if !step.detail.is_empty() {
            let _ = write!(note, " {}", step.detail);
        }
    }
    // Event notes are limited to 1 KiB by the Events API.
    cut(note, 1000)
}

/// A failed write of the timeline.
#[derive(Debug, thiserror::Error)]
#[error("failed to record the boot timeline of machine {machine}: {reason}")]
pub struct TimelineError {
    /// The machine.
    pub machine: String,
    /// Why.
    pub reason: String,
}

/// Where the timeline is written: the Machine's status and Events.
pub trait TimelineSink: Send + Sync + 'static {
    /// The machine's `status.lastBoot` as stored (to continue it after a restart).
    fn stored(&self, machine: &str) -> Option<BootTimeline>;
    /// Writes `status.lastBoot`.
    fn write_timeline<'a>(
        &'a self,
        machine: &'a str,
        timeline: &'a BootTimeline,
    ) -> BoxFuture<'a, Result<(), TimelineError>>;
    /// Publishes one Event about `steps` (all of one machine, oldest first).
    fn publish<'a>(&'a self, machine: &'a str, steps: &'a [StepRecord]) -> BoxFuture<'a, Result<(), TimelineError>>;
}

/// Counters of the timeline.
#[derive(Debug, Default)]
pub struct TimelineCounters {
    /// Steps queued.
    pub recorded: AtomicU64,
    /// Steps dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Status writes done.
    pub writes: AtomicU64,
    /// Writes (status or Event) that failed.
    pub failed_writes: AtomicU64,
    /// Steps for clients no machine could be found for.
    pub unattributed: AtomicU64,
}

/// Records steps; cheap to clone.
#[derive(Clone, Debug)]
pub struct Timeline {
    queue: mpsc::Sender<StepRecord>,
    addresses: Arc<Mutex<HashMap<IpAddr, String>>>,
    counters: Arc<TimelineCounters>,
}

impl Timeline {
    /// A timeline and the receiving end its writer ([`run_writer`]) drains.
    pub fn new() -> (Self, mpsc::Receiver<StepRecord>) {
        let (queue, receiver) = mpsc::channel(QUEUE_CAPACITY);
        (Self { queue, addresses: Arc::default(), counters: Arc::default() }, receiver)
    }

    /// The counters.
    pub fn counters(&self) -> &TimelineCounters {
        &self.counters
    }

    /// The counters, shared (for the writer and `/metrics`).
    pub fn counters_handle(&self) -> Arc<TimelineCounters> {
        self.counters.clone()
    }

    /// Queues a step; drops it (counted) when the queue is full.
    pub fn record(&self, step: StepRecord) {
        match self.queue.try_send(step) {
            Ok(()) => {
                self.counters.recorded.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Remembers that `address` is `machine`'s (from DHCP, or the client of its script).
    pub fn note_address(&self, address: IpAddr, machine: &str) {
        let Ok(mut addresses) = self.addresses.lock() else { return };
        if addresses.len() >= ADDRESSES_MAX && !addresses.contains_key(&address) {
            // Bounded: forget everything rather than grow without limit (only attribution of
            // TFTP and artifact steps is lost, until the machines' next DHCP exchange).
            addresses.clear();
        }
        addresses.insert(address, machine.to_owned());
    }

    /// The machine last seen at `address`.
    pub fn machine_at(&self, address: IpAddr) -> Option<String> {
        let address = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
            v4 => v4,
        };
        self.addresses.lock().ok()?.get(&address).cloned()
    }

    /// Records a step of whichever machine is at `address`, if one is known.
    pub fn record_at(&self, address: IpAddr, kind: BootStepKind, detail: String) {
        match self.machine_at(address) {
            Some(machine) => self.record(StepRecord::now(&machine, kind, detail)),
            None => {
                self.counters.unattributed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl ReplyObserver for Timeline {
    fn replied(&self, summary: ReplySummary) {
        let Some(machine) = summary.machine else {
            self.counters.unattributed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if let Some(address) = summary.address {
            self.note_address(IpAddr::V4(address), &machine);
        }
        let kind = match summary.message_type {
            MessageType::Offer => BootStepKind::DhcpOffer,
            MessageType::Ack => BootStepKind::DhcpAck,
            MessageType::Nak => BootStepKind::DhcpNak,
            _ => return,
        };
        let mut detail = summary.address.map(|a| a.to_string()).unwrap_or_else(|| "no address".into());
        if let Some(file) = &summary.boot_file {
            detail.push_str(" boot ");
            detail.push_str(file);
        }
        let mut step = StepRecord::now(&machine, kind, detail);
        step.boot_request = kind == BootStepKind::DhcpOffer && summary.boot_file.is_some();
        step.warning = kind == BootStepKind::DhcpNak;
        self.record(step);
    }
}

impl machinist_boot_tftp::TransferObserver for Timeline {
    fn sending(&self, client: std::net::SocketAddr, file: &Path, size: u64) {
        self.record_at(client.ip(), BootStepKind::TftpFile, format!("{} ({size} bytes)", file.display()));
    }
}

/// Drains `steps` until `shutdown` (then flushes what is queued), writing each machine's
/// timeline and one Event per machine per `flush` interval.
pub async fn run_writer(
    mut steps: mpsc::Receiver<StepRecord>,
    sink: Arc<dyn TimelineSink>,
    counters: Arc<TimelineCounters>,
    flush: Duration,
    shutdown: CancellationToken,
) {
    let mut timelines: HashMap<String, BootTimeline> = HashMap::new();
    let mut pending: BTreeMap<String, Vec<StepRecord>> = BTreeMap::new();
    let mut ticker = tokio::time::interval(flush);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            step = steps.recv() => match step {
                Some(step) => pending.entry(step.machine.clone()).or_default().push(step),
                None => break,
            },
            _ = ticker.tick() => write_batch(&mut pending, &mut timelines, &*sink, &counters).await,
            () = shutdown.cancelled() => break,
        }
    }
    while let Ok(step) = steps.try_recv() {
        pending.entry(step.machine.clone()).or_default().push(step);
    }
    write_batch(&mut pending, &mut timelines, &*sink, &counters).await;
}

async fn write_batch(
    pending: &mut BTreeMap<String, Vec<StepRecord>>,
    timelines: &mut HashMap<String, BootTimeline>,
    sink: &dyn TimelineSink,
    counters: &TimelineCounters,
) {
    for (machine, steps) in std::mem::take(pending) {
        let timeline = timelines.entry(machine.clone()).or_insert_with(|| sink.stored(&machine).unwrap_or_default());
        for step in &steps {
            append(timeline, step);
        }
        // The Event first: once status.lastBoot shows a step, its Event exists too.
        let published = sink.publish(&machine, &steps).await;
        let written = sink.write_timeline(&machine, timeline).await;
        counters.writes.fetch_add(1, Ordering::Relaxed);
        for result in [published, written] {
            if let Err(error) = result {
                counters.failed_writes.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%error, "boot timeline not recorded");
            }
        }
    }
    if timelines.len() > ADDRESSES_MAX {
        // Bounded memory: the stored status is the source of truth and is read back.
        timelines.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn step(kind: BootStepKind, seconds: i64, boot_request: bool) -> StepRecord {
        StepRecord {
            machine: "m1".into(),
            kind,
            detail: String::new(),
            time: jiff::Timestamp::from_second(1_700_000_000 + seconds).unwrap(),
            boot_request,
            warning: false,
        }
    }

    fn kinds(timeline: &BootTimeline) -> Vec<BootStepKind> {
        timeline.steps.iter().map(|s| s.kind).collect()
    }

    #[test]
    fn one_boot_keeps_its_steps_until_the_next_boot_request() {
        use BootStepKind::*;
        let mut t = BootTimeline::default();
        for (i, (kind, req)) in
            [(DhcpOffer, true), (DhcpAck, false), (TftpFile, false), (DhcpOffer, true)].into_iter().enumerate()
        {
            append(&mut t, &step(kind, i as i64, req));
        }
        // iPXE's own DHCP after the TFTP chainload is still the same boot.
        assert_eq!(kinds(&t), [DhcpOffer, DhcpAck, TftpFile, DhcpOffer]);
        append(&mut t, &step(Script, 5, false));
        append(&mut t, &step(Artifact, 6, false));
        // The RAM disk's DHCP client asks for no boot file: same boot.
        append(&mut t, &step(DhcpOffer, 7, false));
        append(&mut t, &step(HardwareReport, 8, false));
        assert_eq!(t.steps.len(), 8);
        assert_eq!(t.started_time, Some(Time(jiff::Timestamp::from_second(1_700_000_000).unwrap())));
        // A reboot: firmware asks to boot again after the script was served.
        append(&mut t, &step(DhcpOffer, 100, true));
        assert_eq!(kinds(&t), [DhcpOffer]);
        assert_eq!(t.started_time, Some(Time(jiff::Timestamp::from_second(1_700_000_100).unwrap())));
    }

    #[test]
    fn a_quiet_machine_starts_over_and_steps_are_bounded() {
        let mut t = BootTimeline::default();
        append(&mut t, &step(BootStepKind::Progress, 0, false));
        append(&mut t, &step(BootStepKind::Progress, QUIET.as_secs() as i64 + 1, false));
        assert_eq!(t.steps.len(), 1);
        for i in 0..100 {
            append(&mut t, &step(BootStepKind::Progress, QUIET.as_secs() as i64 + 2 + i, false));
        }
        assert_eq!(t.steps.len(), BOOT_STEPS_MAX);
        assert_eq!(t.dropped_steps, 101 - BOOT_STEPS_MAX as i32);
    }

    #[test]
    fn details_and_notes_are_cut_on_character_boundaries() {
        assert_eq!(cut("ééé".into(), 3), "é");
        let long = StepRecord::now("m", BootStepKind::Progress, "x".repeat(1000));
        assert_eq!(long.detail.len(), DETAIL_MAX);
        let note = event_note(&vec![long; 10]);
        assert!(note.len() <= 1000 && note.starts_with("Progress xxx"));
    }

    #[test]
    fn dhcp_replies_map_addresses_to_machines() {
        let (timeline, mut rx) = Timeline::new();
        timeline.replied(ReplySummary {
            mac: machinist_boot_dhcp::MacAddr([2, 0, 0, 0, 0, 1]),
            machine: Some("m1".into()),
            message_type: MessageType::Offer,
            address: Some(Ipv4Addr::new(10, 0, 0, 5)),
            boot_file: Some("undionly.kpxe".into()),
        });
        let offer = rx.try_recv().unwrap();
        assert_eq!((offer.kind, offer.boot_request), (BootStepKind::DhcpOffer, true));
        assert_eq!(offer.detail, "10.0.0.5 boot undionly.kpxe");
        let mapped: IpAddr = "::ffff:10.0.0.5".parse().unwrap();
        assert_eq!(timeline.machine_at(mapped).as_deref(), Some("m1"));
        timeline.record_at(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9)), BootStepKind::Artifact, "k".into());
        assert_eq!(timeline.counters().unattributed.load(Ordering::Relaxed), 1);
        assert!(rx.try_recv().is_err());
    }
}
