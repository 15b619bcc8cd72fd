//! The one writer of HardwareProfile, Cmdb and Hypervisor statuses: requests (take a slot, reserve an
//! entry, give them back, refresh the conditions) are queued per object and applied in
//! batches to the freshest copy of it, then written with its `resourceVersion` as a
//! precondition. A refused write (409: someone wrote in between, e.g. another replica) is
//! retried on a fresh read. Batching is what lets hundreds of machines bind at once: one
//! write per batch, not one per machine, and no conflict storm between them.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::PostParams;
use kube::{Api, Client, Resource, ResourceExt};
use machinist_crds::{Cmdb, CmdbStatus, HardwareProfile, HardwareProfileStatus, Hypervisor};
use machinist_matching::{Entry, GenerateError, expand_cmdb};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, oneshot};

use crate::binding::{self, EntryOutcome, EntryRequest, SlotOutcome, SlotRequest};
use crate::metrics::Metrics;
use crate::vm::host_ledger::{self, HostOutcome, HostRequest};

/// The field manager of the statuses the ledger writes.
pub const FIELD_MANAGER: &str = "machinist-operator-ledger";
/// Most requests applied in one write.
const BATCH_MAX: usize = 1024;
/// Refused writes in a row before the batch fails (and its reconciles back off).
const CONFLICTS_MAX: u32 = 64;

/// A request that could not be carried out.
#[derive(Clone, Debug, thiserror::Error)]
pub enum LedgerError {
    /// The object does not exist.
    #[error("{kind} {name} does not exist")]
    NotFound {
        /// Kind.
        kind: &'static str,
        /// Name.
        name: String,
    },
    /// The API refused or failed.
    #[error("failed to update {kind} {name}: {message}")]
    Api {
        /// Kind.
        kind: &'static str,
        /// Name.
        name: String,
        /// The API's error.
        message: String,
    },
    /// Writes kept being refused because others wrote first.
    #[error("failed to update {kind} {name}: {CONFLICTS_MAX} conflicting writes in a row")]
    Contended {
        /// Kind.
        kind: &'static str,
        /// Name.
        name: String,
    },
    /// The ledger stopped (shutdown).
    #[error("the ledger stopped")]
    Stopped,
}

/// How requests change one kind of object.
pub trait Book: Send + Sync + 'static {
    /// The kind.
    type Object: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Serialize
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static;
    /// A request.
    type Request: Send + Sync + 'static;
    /// What became of it.
    type Outcome: Send + 'static;
    /// The kind's name, for messages.
    const KIND: &'static str;
    /// Applies `requests` in order: the object to write (None: nothing changed) and one
    /// outcome per request.
    fn apply(
        &self,
        object: &Self::Object,
        requests: &[Self::Request],
        now: &Time,
    ) -> (Option<Self::Object>, Vec<Self::Outcome>);
}

type Reply<B> = oneshot::Sender<Result<<B as Book>::Outcome, LedgerError>>;
type Queue<B> = mpsc::UnboundedSender<(<B as Book>::Request, Reply<B>)>;

/// Queues and writers, one per object.
pub struct Ledger<B: Book> {
    client: Client,
    book: Arc<B>,
    metrics: Arc<Metrics>,
    queues: Mutex<HashMap<(String, String), Queue<B>>>,
}

impl<B: Book> Debug for Ledger<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").field("kind", &B::KIND).finish_non_exhaustive()
    }
}

impl<B: Book> Ledger<B> {
    /// A ledger writing through `client`.
    pub fn new(client: Client, book: B, metrics: Arc<Metrics>) -> Self {
        Self { client, book: Arc::new(book), metrics, queues: Mutex::new(HashMap::new()) }
    }

    /// Carries out one request on object `namespace/name`, batched with whatever else is queued
    /// for it.
    pub async fn submit(&self, namespace: &str, name: &str, request: B::Request) -> Result<B::Outcome, LedgerError> {
        let (reply, outcome) = oneshot::channel();
        let mut pending = Some((request, reply));
        for _ in 0..2 {
            let queue = self.queue(namespace, name);
            match queue.send(pending.take().ok_or(LedgerError::Stopped)?) {
                Ok(()) => return outcome.await.unwrap_or(Err(LedgerError::Stopped)),
                // The writer ended (its object was deleted): start another.
                Err(mpsc::error::SendError(back)) => {
                    pending = Some(back);
                    self.lock().remove(&(namespace.to_owned(), name.to_owned()));
                }
            }
        }
        Err(LedgerError::Stopped)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Queue<B>>> {
        self.queues.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn queue(&self, namespace: &str, name: &str) -> Queue<B> {
        let mut queues = self.lock();
        let key = (namespace.to_owned(), name.to_owned());
        if let Some(queue) = queues.get(&key).filter(|q| !q.is_closed()) {
            return queue.clone();
        }
        let (queue, requests) = mpsc::unbounded_channel();
        let writer = Writer::<B> {
            api: Api::namespaced(self.client.clone(), namespace),
            name: name.to_owned(),
            book: self.book.clone(),
            metrics: self.metrics.clone(),
            cached: None,
        };
        tokio::spawn(writer.run(requests));
        queues.insert(key, queue.clone());
        queue
    }
}

struct Writer<B: Book> {
    api: Api<B::Object>,
    name: String,
    book: Arc<B>,
    metrics: Arc<Metrics>,
    /// The object as last read or written: usually still current, so a batch costs one write.
    cached: Option<B::Object>,
}

impl<B: Book> Writer<B> {
    async fn run(mut self, mut requests: mpsc::UnboundedReceiver<(B::Request, Reply<B>)>) {
        let mut batch = Vec::with_capacity(BATCH_MAX);
        while requests.recv_many(&mut batch, BATCH_MAX).await > 0 {
            let (items, replies): (Vec<B::Request>, Vec<Reply<B>>) = batch.drain(..).unzip();
            match self.write(&items).await {
                Ok(outcomes) => {
                    for (reply, outcome) in replies.into_iter().zip(outcomes) {
                        let _ = reply.send(Ok(outcome)); // the reconcile may have been cancelled
                    }
                }
                Err(error) => {
                    let gone = matches!(error, LedgerError::NotFound { .. });
                    for reply in replies {
                        let _ = reply.send(Err(error.clone()));
                    }
                    if gone {
                        // Fail whatever else was queued, then end: a new writer starts if the
                        // object is created again.
                        requests.close();
                        while let Some((_, reply)) = requests.recv().await {
                            let _ = reply.send(Err(error.clone()));
                        }
                        return;
                    }
                }
            }
        }
    }

    async fn write(&mut self, requests: &[B::Request]) -> Result<Vec<B::Outcome>, LedgerError> {
        let kind = B::KIND;
        let failed = |message: String| LedgerError::Api { kind, name: self.name.clone(), message };
        let params = PostParams { field_manager: Some(FIELD_MANAGER.to_owned()), ..PostParams::default() };
        for _ in 0..CONFLICTS_MAX {
            let (object, fresh) = match self.cached.take() {
                Some(object) => (object, false),
                None => match self.api.get(&self.name).await {
                    Ok(object) => (object, true),
                    Err(kube::Error::Api(e)) if e.code == 404 => {
                        return Err(LedgerError::NotFound { kind, name: self.name.clone() });
                    }
                    Err(e) => return Err(failed(e.to_string())),
                },
            };
            let now = Time(jiff::Timestamp::now());
            let (changed, outcomes) = self.book.apply(&object, requests, &now);
            let Some(changed) = changed else {
                if !fresh {
                    // Nothing to write means no write to refuse a stale copy: decide again on
                    // a fresh read (a deletion, a spec change, entries freed by someone else).
                    continue;
                }
                self.cached = Some(object);
                return Ok(outcomes);
            };
            match self.api.replace_status(&self.name, &params, &changed).await {
                Ok(written) => {
                    self.metrics.ledger_write(kind, requests.len());
                    self.cached = Some(written);
                    return Ok(outcomes);
                }
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    self.metrics.ledger_conflict(kind);
                    tracing::debug!(kind, name = %self.name, "status changed since read; applying the batch again");
                }
                Err(kube::Error::Api(e)) if e.code == 404 => {
                    return Err(LedgerError::NotFound { kind, name: self.name.clone() });
                }
                Err(e) => return Err(failed(e.to_string())),
            }
        }
        Err(LedgerError::Contended { kind, name: self.name.clone() })
    }
}

/// A request on a HardwareProfile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProfileRequest {
    /// Take or give back a slot.
    Slot(SlotRequest),
    /// Recompute count and conditions (the profile changed).
    Refresh,
}

/// What became of a [`ProfileRequest`].
#[derive(Clone, Debug, PartialEq)]
pub enum ProfileOutcome {
    /// Of a slot request.
    Slot(SlotOutcome),
    /// Refreshed: the status as written (or found unchanged).
    Refreshed(Box<HardwareProfileStatus>),
}

/// HardwareProfile statuses: bound machines under `maxMachines`.
#[derive(Debug, Default)]
pub struct ProfileBook;

impl Book for ProfileBook {
    type Object = HardwareProfile;
    type Request = ProfileRequest;
    type Outcome = ProfileOutcome;
    const KIND: &'static str = "HardwareProfile";

    fn apply(
        &self,
        object: &HardwareProfile,
        requests: &[ProfileRequest],
        now: &Time,
    ) -> (Option<HardwareProfile>, Vec<ProfileOutcome>) {
        let prior = object.status.clone().unwrap_or_default();
        let mut bound = prior.bound_machines.clone();
        bound.sort();
        bound.dedup();
        let slots: Vec<SlotRequest> = requests
            .iter()
            .filter_map(|r| match r {
                ProfileRequest::Slot(s) => Some(s.clone()),
                ProfileRequest::Refresh => None,
            })
            .collect();
        let mut slot_outcomes = binding::apply_slots(&mut bound, object.spec.max_machines, &slots).into_iter();
        let deleting = object.meta().deletion_timestamp.is_some();
        let status = binding::profile_status(&object.spec, &prior, bound, object.meta().generation, deleting, now);
        let outcomes = requests
            .iter()
            .map(|r| match r {
                ProfileRequest::Slot(_) => slot_outcomes
                    .next()
                    .map_or_else(|| ProfileOutcome::Refreshed(Box::new(status.clone())), ProfileOutcome::Slot),
                ProfileRequest::Refresh => ProfileOutcome::Refreshed(Box::new(status.clone())),
            })
            .collect();
        if object.status.as_ref() == Some(&status) {
            return (None, outcomes);
        }
        let mut changed = object.clone();
        changed.status = Some(status);
        (Some(changed), outcomes)
    }
}

/// A request on a Cmdb.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CmdbRequest {
    /// Reserve or give back an entry.
    Entry(EntryRequest),
    /// Recompute counts and conditions (the Cmdb changed).
    Refresh,
}

/// What became of a [`CmdbRequest`].
#[derive(Clone, Debug, PartialEq)]
pub enum CmdbOutcome {
    /// Of an entry request.
    Entry(EntryOutcome),
    /// Refreshed: the status as written (or found unchanged).
    Refreshed(Box<CmdbStatus>),
}

/// Cmdb statuses: who holds which entry. Expanded entries are kept per generation: a
/// `generate()` of thousands of entries is expanded once, not per batch.
#[derive(Debug, Default)]
pub struct CmdbBook {
    expanded: Mutex<HashMap<String, (Option<i64>, Expanded)>>,
}

/// A Cmdb's entries, expanded, or why they do not expand.
type Expanded = Arc<Result<Vec<Entry>, GenerateError>>;

impl CmdbBook {
    fn entries(&self, cmdb: &Cmdb) -> Arc<Result<Vec<Entry>, GenerateError>> {
        let key = cmdb.uid().unwrap_or_else(|| cmdb.name_any());
        let generation = cmdb.meta().generation;
        let mut expanded = self.expanded.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((seen, entries)) = expanded.get(&key)
            && *seen == generation
            && generation.is_some()
        {
            return entries.clone();
        }
        let entries = Arc::new(expand_cmdb(&cmdb.spec));
        expanded.insert(key, (generation, entries.clone()));
        entries
    }
}

impl Book for CmdbBook {
    type Object = Cmdb;
    type Request = CmdbRequest;
    type Outcome = CmdbOutcome;
    const KIND: &'static str = "Cmdb";

    fn apply(&self, object: &Cmdb, requests: &[CmdbRequest], now: &Time) -> (Option<Cmdb>, Vec<CmdbOutcome>) {
        let entries = self.entries(object);
        let entries = entries.as_ref().as_ref().map(Vec::as_slice);
        let prior = object.status.clone().unwrap_or_default();
        let mut allocations = prior.allocations.clone();
        let entry_requests: Vec<EntryRequest> = requests
            .iter()
            .filter_map(|r| match r {
                CmdbRequest::Entry(e) => Some(e.clone()),
                CmdbRequest::Refresh => None,
            })
            .collect();
        let mut entry_outcomes = binding::apply_entries(entries, &mut allocations, &entry_requests).into_iter();
        let deleting = object.meta().deletion_timestamp.is_some();
        let status = binding::cmdb_status(entries, &prior, allocations, object.meta().generation, deleting, now);
        let outcomes = requests
            .iter()
            .map(|r| match r {
                CmdbRequest::Entry(_) => entry_outcomes
                    .next()
                    .map_or_else(|| CmdbOutcome::Refreshed(Box::new(status.clone())), CmdbOutcome::Entry),
                CmdbRequest::Refresh => CmdbOutcome::Refreshed(Box::new(status.clone())),
            })
            .collect();
        if object.status.as_ref() == Some(&status) {
            return (None, outcomes);
        }
        let mut changed = object.clone();
        changed.status = Some(status);
        (Some(changed), outcomes)
    }
}

/// Hypervisor statuses: what the last probe saw and the placements ([`host_ledger`]).
#[derive(Debug, Default)]
pub struct HypervisorBook;

impl Book for HypervisorBook {
    type Object = Hypervisor;
    type Request = HostRequest;
    type Outcome = HostOutcome;
    const KIND: &'static str = "Hypervisor";

    fn apply(
        &self,
        object: &Hypervisor,
        requests: &[HostRequest],
        now: &Time,
    ) -> (Option<Hypervisor>, Vec<HostOutcome>) {
        let prior = object.status.clone().unwrap_or_default();
        let (status, outcomes) = host_ledger::apply(&object.spec, object.meta().generation, &prior, requests, now);
        if object.status.as_ref() == Some(&status) {
            return (None, outcomes);
        }
        let mut changed = object.clone();
        changed.status = Some(status);
        (Some(changed), outcomes)
    }
}
