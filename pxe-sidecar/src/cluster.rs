//! The boot services' view of the cluster, through kube-rs reflectors of one namespace:
//!
//! - Machines, indexed by the MAC of every interface ([`MacIndex`]), answer DHCP
//!   ([`Directory`]) and HTTP ([`MachineSource`]) lookups without an API call;
//! - Cmdbs give reserved machines their network settings (`spec.network` of the Cmdb named
//!   in `status.allocation`);
//! - Roles give the cloud-init templates of the seed an install plan carries;
//! - agent token Secrets (`machinist-agent-<namespace>.<machine>`, [`token_secret_name`])
//!   authenticate reports. They live in a namespace of their own (`tokenNamespace`, default
//!   [`DEFAULT_TOKEN_NAMESPACE`]), where the only Secrets are agent tokens, so that the boot
//!   services' identity reads no other Secret. The boot services create the missing ones
//!   ([`run_token_keeper`]): they are the only party that hands tokens out (on kernel command
//!   lines) and checks them, so no other component needs to know about them. A Secret names its
//!   Machine by label ([`MACHINE_NAMESPACE_LABEL`]) and annotations ([`MACHINE_ANNOTATION`],
//!   [`MACHINE_UID_ANNOTATION`]) — ownerReferences cannot cross namespaces — and the keeper
//!   deletes it once its Machine is gone ([`orphaned_tokens`]);
//! - auto-registration creates a `Registered` Machine (named [`registered_name`]) for an
//!   unknown MAC, from its first DHCP request or iPXE script request;
//! - writes: hardware reports into `status.hardware`, the boot timeline into
//!   `status.lastBoot` and Events, agent logs into the ConfigMap `machinist-log-<machine>`.
//!
//! Each kind of status write has its own server-side-apply field manager, so one never
//! removes what another wrote.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, Secret};
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use machinist_agent_protocol::summary::summarize;
use machinist_boot_dhcp::{BootPolicy, Directory, MachineBoot, NetworkSettings};
use machinist_crds::events::{self, Notice};
use machinist_crds::machine::{BootTarget, BootTimeline};
use machinist_crds::{Cmdb, Machine, Role};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::machines::{
    BootRecord, HardwareReport, InstallView, LOG_KEEP, MacAddr, MachineSource, RegisterError, ReportSink, SinkError,
    append_bounded, constant_time_eq,
};
use crate::timeline::{StepRecord, TimelineError, TimelineSink, event_note};
use machinist_crds::machine::{InstallPhase, InstallProgress};

/// The field manager of hardware reports (`status.hardware`).
pub const FIELD_MANAGER: &str = "machinist-boot";
/// The field manager of the boot timeline (`status.lastBoot`).
pub const TIMELINE_MANAGER: &str = "machinist-boot-timeline";
/// The field manager of auto-registration (`status.phase: Registered`).
pub const REGISTRATION_MANAGER: &str = "machinist-boot-registration";
/// The field manager of install progress and the phone-home (`status.installProgress`).
pub const INSTALL_MANAGER: &str = "machinist-boot-install";
/// Key of the token in a Machine's agent Secret.
pub const TOKEN_KEY: &str = "token";
/// Key of the installed system's phone-home token in the same Secret.
pub const PHONE_HOME_KEY: &str = "phoneHome";
/// Label carried by agent token Secrets, `"true"`.
pub const TOKEN_LABEL: &str = "machinist.dev/agent-token";
/// Label of an agent token Secret: the namespace of its Machine.
pub const MACHINE_NAMESPACE_LABEL: &str = "machinist.dev/machine-namespace";
/// Annotation of an agent token Secret: the name of its Machine.
pub const MACHINE_ANNOTATION: &str = "machinist.dev/machine";
/// Annotation of an agent token Secret: the uid of its Machine (absent in a Secret made by a
/// person: it is then the token of whichever Machine has that name).
pub const MACHINE_UID_ANNOTATION: &str = "machinist.dev/machine-uid";
/// The namespace of agent token Secrets unless configured (`tokenNamespace`).
pub const DEFAULT_TOKEN_NAMESPACE: &str = "machinist-system";
/// Label of auto-registered Machines.
pub const REGISTERED_LABEL: &str = "machinist.dev/auto-registered";
/// Key of the agent log in its ConfigMap.
pub const LOG_KEY: &str = "agent.log";

const TOKEN_SECRET_PREFIX: &str = "machinist-agent-";
/// The longest object name Kubernetes takes (a DNS subdomain).
const MAX_NAME: usize = 253;
/// Hex digits of the hash that ends a shortened name (64 bits).
const NAME_HASH_DIGITS: usize = 16;

/// Name of the Secret holding the agent token of Machine `machine` of namespace `namespace`:
/// `machinist-agent-<namespace>.<machine>`. A namespace has no `.`, so two Machines never share
/// a name. When that is longer than Kubernetes allows (253 characters), the name is shortened:
/// `machinist-agent-<namespace>-<machine, its dots as dashes, cut>-<16 hex digits of the
/// SHA-256 of "<namespace>/<machine>">`, which has no `.` and so is never the full name of
/// another Machine; two shortened names are the same only if the hashes are.
pub fn token_secret_name(namespace: &str, machine: &str) -> String {
    let full = format!("{TOKEN_SECRET_PREFIX}{namespace}.{machine}");
    if full.len() <= MAX_NAME {
        return full;
    }
    use sha2::Digest;
    let digest = sha2::Sha256::digest(format!("{namespace}/{machine}").as_bytes());
    let hash: String = digest.iter().map(|b| format!("{b:02x}")).collect::<String>()[..NAME_HASH_DIGITS].to_owned();
    let head = format!("{TOKEN_SECRET_PREFIX}{namespace}-");
    // Object names are ASCII: a byte count is a character count.
    let room = MAX_NAME.saturating_sub(head.len() + 1 + NAME_HASH_DIGITS);
    let cut: String = machine.chars().take(room).map(|c| if c == '.' { '-' } else { c }).collect();
    format!("{head}{}-{hash}", cut.trim_end_matches('-'))
}

/// The label selector of the token Secrets of the Machines of `namespace`.
pub fn token_selector(namespace: &str) -> String {
    format!("{TOKEN_LABEL}=true,{MACHINE_NAMESPACE_LABEL}={namespace}")
}

/// Name of the ConfigMap keeping a Machine's agent log.
pub fn log_config_map_name(machine: &str) -> String {
    format!("machinist-log-{machine}")
}

/// The name of a Machine registered from its MAC: `mac-52-54-00-12-34-56`.
pub fn registered_name(mac: MacAddr) -> String {
    let hex: Vec<String> = mac.0.iter().map(|b| format!("{b:02x}")).collect();
    format!("mac-{}", hex.join("-"))
}

/// A new random agent token: 32 bytes, hex.
pub fn new_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether a token Secret is that of Machine `machine` of `namespace` with uid `uid`: it says
/// it is the token of a Machine of that namespace (label) and, if it names one, of that Machine
/// (annotation), with that uid or none (made by a person). `uid` `None` (the Machine not known
/// yet) trusts the uid.
fn secret_belongs(secret: &Secret, namespace: &str, machine: &str, uid: Option<&str>) -> bool {
    let labels = secret.labels();
    let annotations = secret.annotations();
    let of_namespace = labels.get(MACHINE_NAMESPACE_LABEL).is_some_and(|n| n == namespace);
    let of_name = annotations.get(MACHINE_ANNOTATION).is_none_or(|m| m == machine);
    let of_uid = match (uid, annotations.get(MACHINE_UID_ANNOTATION)) {
        (Some(uid), Some(annotated)) => annotated == uid,
        _ => true,
    };
    of_namespace && of_name && of_uid
}

/// A token Secret whose Machine the Machine cache does not have: a candidate for deletion, once
/// the API server confirms that the Machine is gone ([`machine_gone`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrphanedToken {
    /// The Secret's name.
    pub secret: String,
    /// The Secret's uid: the precondition of its deletion.
    pub secret_uid: Option<String>,
    /// The Machine it is the token of (annotation [`MACHINE_ANNOTATION`]).
    pub machine: String,
    /// That Machine's uid (annotation [`MACHINE_UID_ANNOTATION`]), if it says.
    pub machine_uid: Option<String>,
}

/// The token Secrets of `secrets` whose Machine is not in the Machine cache: `cached_uid` gives
/// the uid of the cached Machine of a name (`None`: no Machine of that name). A Secret is a
/// candidate when no Machine has its Machine's name, or one with another uid than it names. A
/// Secret that names no Machine (no annotation) is never a candidate. Pure.
pub fn orphaned_tokens<'s>(
    secrets: impl IntoIterator<Item = &'s Secret>,
    cached_uid: impl Fn(&str) -> Option<String>,
) -> Vec<OrphanedToken> {
    secrets
        .into_iter()
        .filter_map(|secret| {
            let annotations = secret.annotations();
            let machine = annotations.get(MACHINE_ANNOTATION)?;
            let machine_uid = annotations.get(MACHINE_UID_ANNOTATION);
            let orphaned = match cached_uid(machine) {
                None => true,
                Some(cached) => machine_uid.is_some_and(|uid| *uid != cached),
            };
            orphaned.then(|| OrphanedToken {
                secret: secret.name_any(),
                secret_uid: secret.metadata.uid.clone(),
                machine: machine.clone(),
                machine_uid: machine_uid.cloned(),
            })
        })
        .collect()
}

/// Whether the Machine of `orphan` is gone for good, given what the API server has under its
/// name (`current`, read after the caches showed the orphan): nothing, or a Machine with another
/// uid (uids are never reused). A Secret that names no uid goes only when no Machine has the
/// name. Pure.
pub fn machine_gone(orphan: &OrphanedToken, current: Option<&Machine>) -> bool {
    match (current, &orphan.machine_uid) {
        (None, _) => true,
        (Some(machine), Some(uid)) => machine.metadata.uid.as_deref() != Some(uid.as_str()),
        (Some(_), None) => false,
    }
}

/// An agent token that could not be read or created.
#[derive(Debug, thiserror::Error)]
#[error("agent token: {0}")]
pub struct TokenError(pub String);

/// Failures starting the cluster view.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The initial lists did not complete in time.
    #[error(
        "the Machine, Cmdb and Role caches of namespace {namespace} and the token Secret cache of namespace \
         {token_namespace} were not ready within {seconds} s"
    )]
    NotReady {
        /// Namespace watched.
        namespace: String,
        /// Namespace of the token Secrets.
        token_namespace: String,
        /// How long we waited.
        seconds: u64,
    },
}

/// MAC → Machine name, kept from the Machine watch events. Pure: fed events, answers lookups.
#[derive(Debug, Default)]
pub struct MacIndex {
    by_mac: HashMap<MacAddr, String>,
    by_name: HashMap<String, Vec<MacAddr>>,
    /// The list being received during a (re)list.
    pending: Option<Vec<Machine>>,
    /// Whether a first list was complete.
    ready: bool,
}

fn machine_macs(machine: &Machine) -> Vec<MacAddr> {
    machine.spec.interfaces.iter().filter_map(|interface| interface.mac.parse().ok()).collect()
}

impl MacIndex {
    /// Applies one watch event.
    pub fn apply(&mut self, event: &watcher::Event<Machine>) {
        match event {
            watcher::Event::Init => self.pending = Some(Vec::new()),
            watcher::Event::InitApply(machine) => self.pending.get_or_insert_with(Vec::new).push(machine.clone()),
            watcher::Event::InitDone => {
                self.by_mac.clear();
                self.by_name.clear();
                for machine in self.pending.take().unwrap_or_default() {
                    self.insert(&machine);
                }
                self.ready = true;
            }
            watcher::Event::Apply(machine) => {
                self.remove(&machine.name_any());
                self.insert(machine);
            }
            watcher::Event::Delete(machine) => self.remove(&machine.name_any()),
        }
    }

    fn insert(&mut self, machine: &Machine) {
        let name = machine.name_any();
        let macs = machine_macs(machine);
        for mac in &macs {
            // Two Machines claiming one MAC: the first keeps it (the API rejects duplicates
            // within one Machine, not across Machines); the operator reports the conflict.
            self.by_mac.entry(*mac).or_insert_with(|| name.clone());
        }
        self.by_name.insert(name, macs);
    }

    fn remove(&mut self, name: &str) {
        for mac in self.by_name.remove(name).unwrap_or_default() {
            if self.by_mac.get(&mac).is_some_and(|owner| owner == name) {
                self.by_mac.remove(&mac);
            }
        }
    }

    /// Whether the first complete list has been indexed.
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// The Machine with an interface of this MAC.
    pub fn get(&self, mac: MacAddr) -> Option<&str> {
        self.by_mac.get(&mac).map(String::as_str)
    }
}

/// What the DHCP service learns of a Machine (pure: the Machine and its Cmdb in, settings out).
pub fn machine_boot(machine: &Machine, cmdb: Option<&Cmdb>) -> MachineBoot {
    let status = machine.status.as_ref();
    let parse = |s: &Option<String>| s.as_deref().and_then(|s| s.parse::<Ipv4Addr>().ok());
    let network = cmdb.and_then(|c| c.spec.network.as_ref()).map(|n| NetworkSettings {
        netmask: parse(&n.netmask),
        gateway: parse(&n.gateway),
        dns_servers: n.dns_servers.iter().filter_map(|d| d.parse().ok()).collect(),
        domain: n.domain.clone(),
    });
    MachineBoot {
        name: machine.name_any(),
        address: status.and_then(|s| parse(&s.ip)),
        hostname: status.and_then(|s| s.hostname.clone()),
        network: network.unwrap_or_default(),
        policy: match status.and_then(|s| s.boot_target) {
            Some(BootTarget::None) => BootPolicy::Ignore,
            _ => BootPolicy::Network,
        },
    }
}

/// Agent tokens this process created, by Machine: they verify until the Secret cache shows
/// them. Pure: fed the Machine and Secret watch events, which prune it; never more entries than
/// Machines whose Secret the cache has not shown yet.
#[derive(Debug, Default)]
pub struct CreatedTokens {
    by_machine: HashMap<String, CreatedToken>,
}

#[derive(Debug)]
struct CreatedToken {
    /// The Machine's uid: a later Machine of the same name is another machine.
    uid: Option<String>,
    token: String,
}

impl CreatedTokens {
    /// Keeps `token`, created for `machine`.
    pub fn insert(&mut self, machine: &Machine, token: String) {
        self.by_machine.insert(machine.name_any(), CreatedToken { uid: machine.uid(), token });
    }

    /// The token kept for the Machine named `machine`, if `cached` (the Machine of that name in
    /// the cache, `None` while the cache has none yet) is the Machine it was made for.
    pub fn get(&self, machine: &str, cached: Option<&Machine>) -> Option<&str> {
        let kept = self.by_machine.get(machine)?;
        cached.is_none_or(|current| current.uid() == kept.uid).then_some(kept.token.as_str())
    }

    /// Whether a token is kept for `machine`.
    pub fn contains(&self, machine: &str) -> bool {
        self.by_machine.contains_key(machine)
    }

    /// Forgets the tokens of Machines that are gone, after the Machine store took `event`;
    /// `listed` says whether the store holds a Machine of that name.
    pub fn machine_event(&mut self, event: &watcher::Event<Machine>, listed: impl Fn(&str) -> bool) {
        match event {
            watcher::Event::Delete(machine) => {
                let name = machine.name_any();
                // A late delete of an earlier Machine of that name leaves the new one's token.
                if self.by_machine.get(&name).is_some_and(|kept| kept.uid == machine.uid()) {
                    self.by_machine.remove(&name);
                }
            }
            watcher::Event::Apply(machine) | watcher::Event::InitApply(machine) => {
                // Re-created under the same name (its delete missed by a re-list): another machine.
                let name = machine.name_any();
                if self.by_machine.get(&name).is_some_and(|kept| kept.uid != machine.uid()) {
                    self.by_machine.remove(&name);
                }
            }
            // A re-list no longer shows them: deleted while the watch was down.
            watcher::Event::InitDone => self.by_machine.retain(|name, _| listed(name)),
            watcher::Event::Init => {}
        }
    }

    /// Forgets the tokens whose Secret the cache holds (whatever its value: from then on the
    /// cache answers), after the Secret store took `event`; a Secret names its Machine by the
    /// annotation [`MACHINE_ANNOTATION`]; `cached` says whether the store holds the token
    /// Secret of a Machine of that name.
    pub fn secret_event(&mut self, event: &watcher::Event<Secret>, cached: impl Fn(&str) -> bool) {
        match event {
            watcher::Event::Apply(secret) => {
                if let Some(machine) = secret.annotations().get(MACHINE_ANNOTATION) {
                    self.by_machine.remove(machine);
                }
            }
            // The store swaps the listed Secrets in at the end of a (re-)list.
            watcher::Event::InitDone => self.by_machine.retain(|machine, _| !cached(machine)),
            watcher::Event::Init | watcher::Event::InitApply(_) | watcher::Event::Delete(_) => {}
        }
    }
}

/// What [`ClusterMachines::start`] watches and whether it registers unknown MACs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    /// Namespace of the Machines served, their Cmdbs, Roles, Events and log ConfigMaps.
    pub namespace: String,
    /// Namespace of the agent token Secrets (of Machines of `namespace`, told apart by the
    /// label [`MACHINE_NAMESPACE_LABEL`]).
    pub token_namespace: String,
    /// Create a `Registered` Machine for an unknown MAC.
    pub auto_register: bool,
}

impl ClusterConfig {
    /// The Machines of `namespace`, their tokens in [`DEFAULT_TOKEN_NAMESPACE`], no
    /// auto-registration.
    pub fn new(namespace: impl Into<String>) -> Self {
        Self { namespace: namespace.into(), token_namespace: DEFAULT_TOKEN_NAMESPACE.into(), auto_register: false }
    }
}

/// Machines, Cmdbs and agent tokens of one namespace, kept current by reflectors.
#[derive(Clone)]
pub struct ClusterMachines {
    inner: Arc<Inner>,
}

struct Inner {
    machines: Store<Machine>,
    index: Arc<Mutex<MacIndex>>,
    cmdbs: Store<Cmdb>,
    roles: Store<Role>,
    secrets: Store<Secret>,
    client: Client,
    namespace: String,
    /// Where the token Secrets are.
    token_namespace: String,
    auto_register: bool,
    registrations: mpsc::Sender<MacAddr>,
    /// Who writes the boot timeline's Events (`reportingController`, `reportingInstance`).
    reporter: (String, String),
    /// Bumped after each Machine, Cmdb or token Secret event reached the caches.
    changes: tokio::sync::watch::Receiver<u64>,
    /// Agent tokens this process created: they verify before the Secret cache shows them. The
    /// Machine and Secret reflectors prune it (a deleted Machine's token must not verify for a
    /// new Machine of that name).
    created: Arc<Mutex<CreatedTokens>>,
    /// Poked when the caches may show a token Secret whose Machine is gone (a Machine deleted,
    /// a re-list, such a Secret cached): the token keeper's collector sweeps.
    sweep: Arc<tokio::sync::Notify>,
    /// Machines of the cache whose token Secret the Secret cache saw deleted, and its poke: the
    /// token keeper makes them a new one. (The keeper's Controller watches the Secrets too, but
    /// its watch may show a deletion before this cache does, when the cache still answers.)
    lost: Arc<(Mutex<HashSet<String>>, tokio::sync::Notify)>,
}

impl std::fmt::Debug for ClusterMachines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterMachines")
            .field("namespace", &self.inner.namespace)
            .field("token_namespace", &self.inner.token_namespace)
            .field("auto_register", &self.inner.auto_register)
            .finish_non_exhaustive()
    }
}

/// Runs a reflector until `shutdown`, calling `on_event` with each watch event (and the store)
/// after the store has taken it.
fn run_reflector<K>(
    api: Api<K>,
    config: watcher::Config,
    shutdown: CancellationToken,
    mut on_event: impl FnMut(&watcher::Event<K>, &Store<K>) + Send + 'static,
) -> Store<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, config)).default_backoff();
    let store = reader.clone();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                next = stream.next() => match next {
                    Some(Ok(event)) => on_event(&event, &store),
                    // The watcher backs off and retries by itself; say what happened.
                    Some(Err(error)) => tracing::warn!(%error, "watch of the boot services' cache failed; retrying"),
                    None => return,
                },
            }
        }
    });
    reader
}

fn owner_reference(machine: &Machine) -> Option<OwnerReference> {
    machine.controller_owner_ref(&())
}

/// Deletion of that very object: a uid precondition, so that one made meanwhile under its name
/// is never the one deleted.
fn delete_exactly(object: &impl Resource) -> kube::api::DeleteParams {
    delete_uid(object.meta().uid.clone())
}

fn delete_uid(uid: Option<String>) -> kube::api::DeleteParams {
    kube::api::DeleteParams {
        preconditions: Some(kube::api::Preconditions { uid, resource_version: None }),
        ..Default::default()
    }
}

impl ClusterMachines {
    /// Starts the reflectors of `config.namespace` (and of its token Secrets in
    /// `config.token_namespace`) and waits (bounded) for their initial lists. With
    /// `auto_register`, unknown MACs seen by DHCP are registered by a background task.
    pub async fn start(
        client: Client,
        config: ClusterConfig,
        shutdown: CancellationToken,
    ) -> Result<Self, ClusterError> {
        let ClusterConfig { namespace, token_namespace, auto_register } = config;
        let index = Arc::new(Mutex::new(MacIndex::default()));
        let feed = index.clone();
        let (changed, changes) = tokio::sync::watch::channel(0u64);
        let changed = Arc::new(changed);
        let (cmdb_changed, secret_changed) = (changed.clone(), changed.clone());
        let created = Arc::new(Mutex::new(CreatedTokens::default()));
        let (machines_prune, secrets_prune) = (created.clone(), created.clone());
        let sweep = Arc::new(tokio::sync::Notify::new());
        let (machines_sweep, secrets_sweep) = (sweep.clone(), sweep.clone());
        let machines_namespace = namespace.clone();
        let machines = run_reflector(
            Api::<Machine>::namespaced(client.clone(), &namespace),
            watcher::Config::default(),
            shutdown.clone(),
            move |event, store| {
                if let Ok(mut index) = feed.lock() {
                    index.apply(event);
                }
                let listed = |name: &str| store.get(&ObjectRef::new(name).within(&machines_namespace)).is_some();
                machines_prune.lock().unwrap_or_else(std::sync::PoisonError::into_inner).machine_event(event, listed);
                // A Machine gone (or, after a re-list, perhaps gone while the watch was down):
                // its token Secret may be left.
                if matches!(event, watcher::Event::Delete(_) | watcher::Event::InitDone) {
                    machines_sweep.notify_one();
                }
                changed.send_modify(|n| *n += 1);
            },
        );
        let cmdbs = run_reflector(
            Api::<Cmdb>::namespaced(client.clone(), &namespace),
            watcher::Config::default(),
            shutdown.clone(),
            move |_, _| cmdb_changed.send_modify(|n| *n += 1),
        );
        let roles = run_reflector(
            Api::<Role>::namespaced(client.clone(), &namespace),
            watcher::Config::default(),
            shutdown.clone(),
            |_, _| {},
        );
        let lost: Arc<(Mutex<HashSet<String>>, tokio::sync::Notify)> = Arc::default();
        let (secrets_namespace, secrets_token_namespace, secret_machines, secrets_lost) =
            (namespace.clone(), token_namespace.clone(), machines.clone(), lost.clone());
        let secrets = run_reflector(
            Api::<Secret>::namespaced(client.clone(), &token_namespace),
            watcher::Config::default().labels(&token_selector(&namespace)),
            shutdown.clone(),
            move |event, store| {
                let cached = |machine: &str| {
                    let name = token_secret_name(&secrets_namespace, machine);
                    store.get(&ObjectRef::new(&name).within(&secrets_token_namespace)).is_some()
                };
                secrets_prune.lock().unwrap_or_else(std::sync::PoisonError::into_inner).secret_event(event, cached);
                let cached_uid = |machine: &str| {
                    secret_machines.get(&ObjectRef::new(machine).within(&secrets_namespace)).and_then(|m| m.uid())
                };
                match event {
                    watcher::Event::InitDone => secrets_sweep.notify_one(),
                    watcher::Event::Apply(secret) if !orphaned_tokens([secret], cached_uid).is_empty() => {
                        secrets_sweep.notify_one();
                    }
                    // A live Machine's token is gone (deleted by someone): the keeper makes another.
                    watcher::Event::Delete(secret) if orphaned_tokens([secret], cached_uid).is_empty() => {
                        if let Some(machine) = secret.annotations().get(MACHINE_ANNOTATION) {
                            let (machines, poke) = &*secrets_lost;
                            machines.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(machine.clone());
                            poke.notify_one();
                        }
                    }
                    _ => {}
                }
                secret_changed.send_modify(|n| *n += 1);
            },
        );
        const WAIT: Duration = Duration::from_secs(30);
        let mut index_changes = changes.clone();
        let index_ready = index.clone();
        let ready = async {
            // The stores are ready when they took the first list; the MAC index a moment after.
            let mut indexed = false;
            while !indexed {
                indexed = index_ready.lock().is_ok_and(|i| i.is_ready());
                if !indexed && index_changes.changed().await.is_err() {
                    return false;
                }
            }
            machines.wait_until_ready().await.is_ok()
                && cmdbs.wait_until_ready().await.is_ok()
                && roles.wait_until_ready().await.is_ok()
                && secrets.wait_until_ready().await.is_ok()
        };
        if !matches!(tokio::time::timeout(WAIT, ready).await, Ok(true)) {
            return Err(ClusterError::NotReady { namespace, token_namespace, seconds: WAIT.as_secs() });
        }
        let controller = "machinist-boot".to_owned();
        let instance = std::env::var("POD_NAME").ok().or_else(|| hostname().ok()).unwrap_or_else(|| controller.clone());
        let (registrations, queue) = mpsc::channel(1024);
        let cluster = Self {
            inner: Arc::new(Inner {
                machines,
                index,
                cmdbs,
                roles,
                secrets,
                reporter: (controller, instance),
                client,
                namespace,
                token_namespace,
                auto_register,
                registrations,
                changes,
                created,
                sweep,
                lost,
            }),
        };
        tokio::spawn(cluster.clone().run_registrar(queue, shutdown));
        Ok(cluster)
    }

    /// Waits until `probe` finds what it looks for in the caches, re-trying after each Machine,
    /// Cmdb or token Secret change; `None` after `timeout`.
    pub async fn wait_for<T>(&self, timeout: Duration, mut probe: impl FnMut(&Self) -> Option<T>) -> Option<T> {
        let mut changes = self.inner.changes.clone();
        let wait = async {
            loop {
                changes.borrow_and_update();
                if let Some(found) = probe(self) {
                    return Some(found);
                }
                if changes.changed().await.is_err() {
                    return probe(self);
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.ok().flatten()
    }

    fn machines_api(&self) -> Api<Machine> {
        Api::namespaced(self.inner.client.clone(), &self.inner.namespace)
    }

    fn machine(&self, name: &str) -> Option<Arc<Machine>> {
        self.inner.machines.get(&ObjectRef::new(name).within(&self.inner.namespace))
    }

    fn machine_by_mac(&self, mac: MacAddr) -> Option<Arc<Machine>> {
        let name = self.inner.index.lock().ok()?.get(mac)?.to_owned();
        self.machine(&name)
    }

    fn token_of(&self, machine: &str) -> Option<String> {
        self.secret_value(machine, TOKEN_KEY)
    }

    /// Whether a token this process created for `machine` is still kept beside the Secret cache
    /// (until the cache shows its Secret, or the Machine goes).
    pub fn keeps_created_token(&self, machine: &str) -> bool {
        self.created().contains(machine)
    }

    fn created(&self) -> std::sync::MutexGuard<'_, CreatedTokens> {
        self.inner.created.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The token Secrets, in their own namespace.
    fn secrets_api(&self) -> Api<Secret> {
        Api::namespaced(self.inner.client.clone(), &self.inner.token_namespace)
    }

    /// The name of the token Secret of `machine`.
    fn secret_name(&self, machine: &str) -> String {
        token_secret_name(&self.inner.namespace, machine)
    }

    /// The cached token Secret named `name`.
    fn cached_secret(&self, name: &str) -> Option<Arc<Secret>> {
        self.inner.secrets.get(&ObjectRef::new(name).within(&self.inner.token_namespace))
    }

    /// The cached token Secret of `machine`, unless it belongs to another Machine of that name
    /// (one deleted and re-created: the old Secret, annotated with the old uid, is not this one's).
    fn token_secret(&self, machine: &str) -> Option<Arc<Secret>> {
        let secret = self.cached_secret(&self.secret_name(machine))?;
        let uid = self.machine(machine).and_then(|m| m.metadata.uid.clone());
        secret_belongs(&secret, &self.inner.namespace, machine, uid.as_deref()).then_some(secret)
    }

    fn secret_value(&self, machine: &str, key: &str) -> Option<String> {
        let secret = self.token_secret(machine)?;
        let bytes = secret.data.as_ref()?.get(key)?;
        String::from_utf8(bytes.0.clone()).ok().filter(|t| !t.is_empty())
    }

    /// The machine's phone-home token, added to its token Secret when it has none (a replace
    /// under the resourceVersion read, so two plan requests at once agree on one token).
    async fn ensure_phone_home(&self, machine: &str) -> Result<String, String> {
        if let Some(token) = self.secret_value(machine, PHONE_HOME_KEY) {
            return Ok(token);
        }
        let secrets = self.secrets_api();
        let name = self.secret_name(machine);
        for _ in 0..5 {
            let mut secret = secrets.get(&name).await.map_err(|e| format!("failed to read Secret {name}: {e}"))?;
            let existing = secret.data.as_ref().and_then(|d| d.get(PHONE_HOME_KEY)).map(|b| b.0.clone());
            if let Some(token) = existing.and_then(|b| String::from_utf8(b).ok()).filter(|t| !t.is_empty()) {
                return Ok(token);
            }
            let token = new_token().map_err(|e| format!("no randomness for a token: {e}"))?;
            secret
                .data
                .get_or_insert_with(Default::default)
                .insert(PHONE_HOME_KEY.to_owned(), k8s_openapi::ByteString(token.clone().into_bytes()));
            match secrets.replace(&name, &PostParams::default(), &secret).await {
                Ok(_) => return Ok(token),
                Err(kube::Error::Api(status)) if status.code == 409 => continue,
                Err(error) => return Err(format!("failed to update Secret {name}: {error}")),
            }
        }
        Err(format!("Secret {name} kept changing"))
    }

    /// The machine's token, creating its Secret when there is none.
    pub async fn ensure_token(&self, machine: &Machine) -> Result<String, TokenError> {
        self.ensure_token_inner(machine).await.map_err(TokenError)
    }

    async fn ensure_token_inner(&self, machine: &Machine) -> Result<String, String> {
        let name = machine.name_any();
        if let Some(token) = self.token_of(&name) {
            return Ok(token);
        }
        let secrets = self.secrets_api();
        let secret_name = self.secret_name(&name);
        self.remove_stale_secret(&secrets, machine, &secret_name).await?;
        let token = new_token().map_err(|e| format!("no randomness for a token: {e}"))?;
        let mut annotations = std::collections::BTreeMap::from([(MACHINE_ANNOTATION.to_owned(), name.clone())]);
        if let Some(uid) = machine.uid() {
            annotations.insert(MACHINE_UID_ANNOTATION.to_owned(), uid);
        }
        let secret = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(secret_name.clone()),
                namespace: Some(self.inner.token_namespace.clone()),
                labels: Some(
                    [
                        (TOKEN_LABEL.to_owned(), "true".to_owned()),
                        (MACHINE_NAMESPACE_LABEL.to_owned(), self.inner.namespace.clone()),
                    ]
                    .into(),
                ),
                annotations: Some(annotations),
                ..Default::default()
            },
            string_data: Some([(TOKEN_KEY.to_owned(), token.clone())].into()),
            type_: Some("Opaque".into()),
            ..Default::default()
        };
        match secrets.create(&PostParams::default(), &secret).await {
            Ok(_) => {
                tracing::info!(machine = %name, secret = %secret_name, "created the agent token");
                // Until the Secret cache shows it, a report with it must still verify. Checked
                // under the lock the Secret reflector prunes with: when its event came first, the
                // cache answers and an entry would never be pruned by it.
                let mut created = self.created();
                if self.cached_secret(&secret_name).is_none() {
                    created.insert(machine, token.clone());
                }
                Ok(token)
            }
            // Created meanwhile (by us for another request, or by a person): use it, if it is
            // this Machine's.
            Err(kube::Error::Api(status)) if status.code == 409 => {
                let existing = secrets.get(&secret_name).await.map_err(|e| e.to_string())?;
                if !secret_belongs(&existing, &self.inner.namespace, &name, machine.metadata.uid.as_deref()) {
                    return Err(format!(
                        "Secret {secret_name} belongs to an earlier Machine {name}; it is being replaced"
                    ));
                }
                existing
                    .data
                    .as_ref()
                    .and_then(|d| d.get(TOKEN_KEY))
                    .and_then(|b| String::from_utf8(b.0.clone()).ok())
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| format!("Secret {secret_name} has no {TOKEN_KEY}"))
            }
            Err(error) => Err(format!("failed to create Secret {secret_name}: {error}")),
        }
    }

    /// Deletes the token Secret `secret_name` when it is not `machine`'s (an earlier Machine's of
    /// the same name), with a uid precondition so that a Secret made meanwhile for this Machine
    /// is never the one deleted.
    async fn remove_stale_secret(
        &self,
        secrets: &Api<Secret>,
        machine: &Machine,
        secret_name: &str,
    ) -> Result<(), String> {
        let existing = match secrets.get_opt(secret_name).await {
            Ok(existing) => existing,
            Err(error) => return Err(format!("failed to read Secret {secret_name}: {error}")),
        };
        let Some(existing) = existing else { return Ok(()) };
        if secret_belongs(&existing, &self.inner.namespace, &machine.name_any(), machine.metadata.uid.as_deref()) {
            return Ok(());
        }
        match secrets.delete(secret_name, &delete_exactly(&existing)).await {
            Ok(_) => {
                tracing::info!(machine = %machine.name_any(), secret = %secret_name, "deleted the token Secret of an earlier Machine of this name");
                Ok(())
            }
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
            Err(error) => Err(format!("failed to delete the stale Secret {secret_name}: {error}")),
        }
    }

    /// Deletes the token Secrets whose Machine is gone: the candidates the caches show
    /// ([`orphaned_tokens`]) but those in `skip` (Secret uids deleted already, whose deletion the
    /// cache has not shown yet), each confirmed by a read of its Machine ([`machine_gone`]) and
    /// deleted with a uid precondition (so a Secret made meanwhile for a new Machine of that name
    /// is never the one deleted). Returns the uids of the Secrets deleted.
    async fn collect_orphaned_tokens(&self, skip: &HashSet<String>) -> Vec<String> {
        let secrets = self.inner.secrets.state();
        let orphans = orphaned_tokens(secrets.iter().map(|secret| &**secret), |machine| {
            self.machine(machine).and_then(|m| m.uid())
        });
        let mut deleted = Vec::new();
        for orphan in orphans {
            if orphan.secret_uid.as_ref().is_some_and(|uid| skip.contains(uid)) {
                continue;
            }
            match self.collect_orphan(&orphan).await {
                Ok(true) => deleted.extend(orphan.secret_uid),
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(machine = %orphan.machine, secret = %orphan.secret, %error, "failed to collect the token Secret of a Machine that may be gone");
                }
            }
        }
        deleted
    }

    /// Deletes `orphan` if its Machine is gone; whether it did.
    async fn collect_orphan(&self, orphan: &OrphanedToken) -> Result<bool, kube::Error> {
        let current = self.machines_api().get_opt(&orphan.machine).await?;
        if !machine_gone(orphan, current.as_ref()) {
            return Ok(false);
        }
        match self.secrets_api().delete(&orphan.secret, &delete_uid(orphan.secret_uid.clone())).await {
            Ok(_) => {
                tracing::info!(machine = %orphan.machine, secret = %orphan.secret, "deleted the token Secret of a Machine that is gone");
                Ok(true)
            }
            // Gone already, or replaced meanwhile: not this one to delete.
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Sweeps for token Secrets of gone Machines every `period` and whenever the caches suggest
    /// one (a Machine deleted, a re-list, such a Secret cached), until `shutdown`.
    async fn run_collector(self, period: Duration, shutdown: CancellationToken) {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut deleted: HashSet<String> = HashSet::new();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.inner.sweep.notified() => {}
                _ = ticks.tick() => {}
            }
            deleted.extend(self.collect_orphaned_tokens(&deleted).await);
            // Forget the deleted Secrets the cache no longer shows.
            let cached: HashSet<String> = self.inner.secrets.state().iter().filter_map(|s| s.uid()).collect();
            deleted.retain(|uid| cached.contains(uid));
        }
    }

    /// Makes a new token for each Machine whose token Secret the cache saw deleted, until
    /// `shutdown`.
    async fn run_restorer(self, shutdown: CancellationToken) {
        let (lost, poke) = &*self.inner.lost;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = poke.notified() => {}
            }
            let names: Vec<String> = lost.lock().unwrap_or_else(std::sync::PoisonError::into_inner).drain().collect();
            for name in names {
                let Some(machine) = self.machine(&name).filter(|m| m.meta().deletion_timestamp.is_none()) else {
                    continue;
                };
                if let Err(error) = self.ensure_token(&machine).await {
                    // The Controller retries from its own watch of the Secret.
                    tracing::warn!(machine = %name, %error, "failed to make a new agent token");
                }
            }
        }
    }

    async fn register_now(&self, mac: MacAddr) -> Result<BootRecord, RegisterError> {
        let failed = |reason: String| RegisterError::Failed { mac, reason };
        let name = registered_name(mac);
        let api = self.machines_api();
        let wanted: Machine = serde_json::from_value(json!({
            "apiVersion": "machinist.dev/v1alpha1",
            "kind": "Machine",
            "metadata": {"name": name, "labels": {REGISTERED_LABEL: "true"}},
            "spec": {"interfaces": [{"mac": mac.to_string(), "boot": true}], "provider": {"manual": {}}},
        }))
        .map_err(|e| failed(e.to_string()))?;
        let machine = match api.create(&PostParams::default(), &wanted).await {
            Ok(_) => {
                tracing::info!(%mac, machine = %name, "auto-registered a machine");
                let status = machinist_crds::apply::status::<Machine>(&json!({"phase": "Registered"}))
                    .map_err(|e| failed(e.to_string()))?;
                let params = PatchParams::apply(REGISTRATION_MANAGER);
                api.patch_status(&name, &params, &Patch::Apply(status)).await.map_err(|e| failed(e.to_string()))?
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {
                let existing = api.get(&name).await.map_err(|e| failed(e.to_string()))?;
                if !machine_macs(&existing).contains(&mac) {
                    return Err(failed(format!("a Machine named {name} exists without this MAC")));
                }
                existing
            }
            Err(error) => return Err(failed(error.to_string())),
        };
        let token = self.ensure_token_inner(&machine).await.map_err(failed)?;
        Ok(BootRecord {
            name,
            boot_target: None,
            boot_menu: None,
            token,
            on_success: machine.spec.on_success,
            debug: machine.spec.debug,
            installed: false,
        })
    }

    async fn run_registrar(self, mut queue: mpsc::Receiver<MacAddr>, shutdown: CancellationToken) {
        let mut done: HashSet<MacAddr> = HashSet::new();
        loop {
            let mac = tokio::select! {
                () = shutdown.cancelled() => return,
                mac = queue.recv() => match mac { Some(mac) => mac, None => return },
            };
            // DHCP asks for every packet until the reflector shows the Machine: do it once.
            if done.contains(&mac) && self.machine_by_mac(mac).is_some() {
                continue;
            }
            match self.register_now(mac).await {
                Ok(_) => {
                    done.insert(mac);
                }
                Err(error) => tracing::warn!(%error, "auto-registration failed"),
            }
        }
    }
}

/// Whether the current install attempt reported success (or the installed system phoned home).
fn installed(status: &machinist_crds::MachineStatus) -> bool {
    let attempt = status.install.as_ref().map(|i| i.attempt);
    status.install_progress.as_ref().is_some_and(|p| {
        Some(p.attempt) == attempt && matches!(p.phase, InstallPhase::Succeeded | InstallPhase::Booted)
    })
}

fn hostname() -> std::io::Result<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned())
}

impl MachineSource for ClusterMachines {
    fn lookup(&self, mac: MacAddr) -> Option<BootRecord> {
        let machine = self.machine_by_mac(mac)?;
        let name = machine.name_any();
        Some(BootRecord {
            token: self.token_of(&name).unwrap_or_default(),
            boot_target: machine.status.as_ref().and_then(|s| s.boot_target),
            boot_menu: machine.spec.boot_menu.clone(),
            on_success: machine.spec.on_success,
            debug: machine.spec.debug,
            installed: machine.status.as_ref().is_some_and(installed),
            name,
        })
    }

    fn install(&self, machine: &str) -> Option<InstallView> {
        let machine = self.machine(machine)?;
        let status = machine.status.clone().unwrap_or_default();
        let templates = status.install.as_ref().and_then(|install| {
            let role = self.inner.roles.get(&ObjectRef::new(&install.plan.role.name).within(&self.inner.namespace))?;
            role.spec.cloud_init.clone()
        });
        Some(InstallView {
            phase: status.phase,
            install: status.install,
            progress: status.install_progress,
            variables: status.variables,
            templates,
            namespace: self.inner.namespace.clone(),
        })
    }

    fn install_attempt(&self, machine: &str) -> Option<i32> {
        let machine = self.machine(machine)?;
        machine.status.as_ref()?.install.as_ref().map(|install| install.attempt)
    }

    fn verify_phone_home(&self, machine: &str, presented: &str) -> bool {
        self.secret_value(machine, PHONE_HOME_KEY)
            .is_some_and(|token| constant_time_eq(token.as_bytes(), presented.as_bytes()))
    }

    fn phone_home_token<'a>(&'a self, machine: &'a str) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move {
            match self.ensure_phone_home(machine).await {
                Ok(token) => Some(token),
                Err(error) => {
                    tracing::warn!(machine, %error, "no phone-home token");
                    None
                }
            }
        })
    }

    fn verify_token(&self, machine: &str, presented: &str) -> bool {
        // The cache's token when it has one; else the one this process just created, which
        // the cache has not shown yet, for the Machine it was made for.
        let token = self.token_of(machine).or_else(|| {
            let cached = self.machine(machine);
            self.created().get(machine, cached.as_deref()).map(str::to_owned)
        });
        token.is_some_and(|token| constant_time_eq(token.as_bytes(), presented.as_bytes()))
    }

    fn register(&self, mac: MacAddr) -> BoxFuture<'_, Result<BootRecord, RegisterError>> {
        Box::pin(async move {
            if !self.inner.auto_register {
                return Err(RegisterError::Disabled(mac));
            }
            self.register_now(mac).await
        })
    }

    fn token<'a>(&'a self, machine: &'a str) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move {
            let known = self.machine(machine)?;
            match self.ensure_token(&known).await {
                Ok(token) => Some(token),
                Err(error) => {
                    tracing::warn!(machine, %error, "no agent token for the script");
                    None
                }
            }
        })
    }
}

impl Directory for ClusterMachines {
    fn lookup(&self, mac: MacAddr) -> Option<MachineBoot> {
        let machine = self.machine_by_mac(mac)?;
        let cmdb = machine
            .status
            .as_ref()
            .and_then(|s| s.allocation.as_ref())
            .and_then(|a| self.inner.cmdbs.get(&ObjectRef::new(&a.cmdb).within(&self.inner.namespace)));
        Some(machine_boot(&machine, cmdb.as_deref()))
    }

    fn register_unknown(&self, mac: MacAddr) -> bool {
        if !self.inner.auto_register {
            tracing::info!(%mac, "ignoring an unknown machine (auto-registration is off)");
            return false;
        }
        // Called on the packet path: queue, never wait. A full queue only delays registration
        // to the client's next request.
        let _ = self.inner.registrations.try_send(mac);
        true
    }
}

impl ReportSink for ClusterMachines {
    fn hardware_report(&self, machine: &str, report: HardwareReport) -> BoxFuture<'_, Result<(), SinkError>> {
        let machine = machine.to_owned();
        Box::pin(async move {
            let failed = |error: &dyn std::fmt::Display| SinkError {
                machine: machine.clone(),
                reason: format!("failed to write the report: {error}"),
            };
            let status = machinist_crds::apply::status::<Machine>(&json!({"hardware": {
                "summary": summarize(&report.items),
                "items": report.items,
                "reportedTime": report.received.to_string(),
            }}))
            .map_err(|e| failed(&e))?;
            self.machines_api()
                .patch_status(&machine, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(status))
                .await
                .map(drop)
                .map_err(|e| failed(&e))
        })
    }

    fn append_log(&self, machine: &str, text: String) -> BoxFuture<'_, Result<(), SinkError>> {
        let machine = machine.to_owned();
        Box::pin(async move {
            let error = |reason: String| SinkError { machine: machine.clone(), reason };
            let owner = self.machine(&machine).ok_or_else(|| error("the Machine is not known".into()))?;
            let api: Api<ConfigMap> = Api::namespaced(self.inner.client.clone(), &self.inner.namespace);
            let name = log_config_map_name(&machine);
            // Read, append, replace with the resourceVersion read; retry when another upload
            // got in between.
            for _ in 0..5 {
                let result = match api.get_opt(&name).await.map_err(|e| error(e.to_string()))? {
                    None => {
                        let map = ConfigMap {
                            metadata: kube::api::ObjectMeta {
                                name: Some(name.clone()),
                                owner_references: owner_reference(&owner).map(|o| vec![o]),
                                ..Default::default()
                            },
                            data: Some([(LOG_KEY.to_owned(), append_bounded("", &text, LOG_KEEP))].into()),
                            ..Default::default()
                        };
                        api.create(&PostParams::default(), &map).await
                    }
                    Some(mut map) => {
                        let data = map.data.get_or_insert_with(Default::default);
                        let old = data.remove(LOG_KEY).unwrap_or_default();
                        data.insert(LOG_KEY.to_owned(), append_bounded(&old, &text, LOG_KEEP));
                        api.replace(&name, &PostParams::default(), &map).await
                    }
                };
                match result {
                    Ok(_) => return Ok(()),
                    Err(kube::Error::Api(status)) if status.code == 409 => continue,
                    Err(e) => return Err(error(format!("failed to write ConfigMap {name}: {e}"))),
                }
            }
            Err(error(format!("ConfigMap {name} kept changing; log not appended")))
        })
    }

    fn install_progress(&self, machine: &str, progress: InstallProgress) -> BoxFuture<'_, Result<(), SinkError>> {
        let machine = machine.to_owned();
        Box::pin(async move {
            let failed = |error: &dyn std::fmt::Display| SinkError {
                machine: machine.clone(),
                reason: format!("failed to write the install progress: {error}"),
            };
            let status = machinist_crds::apply::status::<Machine>(&json!({"installProgress": progress}))
                .map_err(|e| failed(&e))?;
            self.machines_api()
                .patch_status(&machine, &PatchParams::apply(INSTALL_MANAGER).force(), &Patch::Apply(status))
                .await
                .map(drop)
                .map_err(|e| failed(&e))
        })
    }
}

impl TimelineSink for ClusterMachines {
    fn stored(&self, machine: &str) -> Option<BootTimeline> {
        self.machine(machine)?.status.as_ref()?.last_boot.clone()
    }

    fn write_timeline<'a>(
        &'a self,
        machine: &'a str,
        timeline: &'a BootTimeline,
    ) -> BoxFuture<'a, Result<(), TimelineError>> {
        Box::pin(async move {
            let failed = |reason: String| TimelineError { machine: machine.to_owned(), reason };
            let status = machinist_crds::apply::status::<Machine>(&json!({"lastBoot": timeline}))
                .map_err(|e| failed(e.to_string()))?;
            self.machines_api()
                .patch_status(machine, &PatchParams::apply(TIMELINE_MANAGER).force(), &Patch::Apply(status))
                .await
                .map(drop)
                .map_err(|e| failed(e.to_string()))
        })
    }

    fn publish<'a>(&'a self, machine: &'a str, steps: &'a [StepRecord]) -> BoxFuture<'a, Result<(), TimelineError>> {
        Box::pin(async move {
            let Some(object) = self.machine(machine) else {
                return Err(TimelineError { machine: machine.to_owned(), reason: "the Machine is not known".into() });
            };
            let reference: ObjectReference = object.object_ref(&());
            let warning = steps.iter().any(|s| s.warning);
            let notice = Notice {
                warning,
                reason: if warning { "BootProblem".into() } else { "BootProgress".into() },
                note: event_note(steps),
                action: "Boot".into(),
            };
            // One Event per flushed batch of steps (kube's Recorder would fold them into a
            // series that keeps the first batch's note, and scans its cache on every publish).
            let (controller, instance) = &self.inner.reporter;
            let event = events::event(&reference, notice, controller, instance, jiff::Timestamp::now());
            let namespace = reference.namespace.as_deref().unwrap_or(&self.inner.namespace);
            Api::<K8sEvent>::namespaced(self.inner.client.clone(), namespace)
                .create(&PostParams::default(), &event)
                .await
                .map(drop)
                .map_err(|e| TimelineError { machine: machine.to_owned(), reason: e.to_string() })
        })
    }
}

/// How often the token keeper sweeps for token Secrets of gone Machines, beside the sweeps the
/// caches' events prompt.
pub const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Creates the agent token Secret of every Machine of the namespace that has none, and again
/// when one is deleted; deletes the token Secret of a Machine that is gone; until `shutdown`.
pub async fn run_token_keeper(cluster: ClusterMachines, shutdown: CancellationToken) {
    use kube::runtime::controller::{Action, Controller};

    let machines = cluster.machines_api();
    let namespace = cluster.inner.namespace.clone();
    let secrets = watcher::Config::default().labels(&token_selector(&namespace));
    let stop = shutdown.clone();
    // A token Secret stands for the Machine its annotations name: ownerReferences cannot cross
    // namespaces.
    let controller = Controller::new(machines, watcher::Config::default())
        .watches(cluster.secrets_api(), secrets, move |secret: Secret| {
            secret.annotations().get(MACHINE_ANNOTATION).map(|machine| ObjectRef::new(machine).within(&namespace))
        })
        .graceful_shutdown_on(async move { stop.cancelled().await })
        .run(
            |machine: Arc<Machine>, cluster: Arc<ClusterMachines>| async move {
                if machine.meta().deletion_timestamp.is_some() {
                    return Ok(Action::await_change());
                }
                cluster.ensure_token(&machine).await.map(|_| Action::await_change())
            },
            |machine, error: &TokenError, _| {
                tracing::warn!(machine = %machine.name_any(), %error, "failed to create an agent token; retrying");
                Action::requeue(Duration::from_secs(5))
            },
            Arc::new(cluster.clone()),
        );
    tokio::join!(
        controller.for_each(|_| async {}),
        cluster.clone().run_collector(SWEEP_EVERY, shutdown.clone()),
        cluster.run_restorer(shutdown),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(name: &str, macs: &[&str]) -> Machine {
        let interfaces: Vec<_> = macs.iter().map(|m| json!({"mac": m})).collect();
        serde_json::from_value(json!({
            "apiVersion": "machinist.dev/v1alpha1", "kind": "Machine", "metadata": {"name": name},
            "spec": {"interfaces": interfaces, "provider": {"manual": {}}},
        }))
        .unwrap()
    }

    fn mac(s: &str) -> MacAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_index_follows_watch_events() {
        let mut index = MacIndex::default();
        index.apply(&watcher::Event::Init);
        index.apply(&watcher::Event::InitApply(machine("a", &["52:54:00:00:00:01", "52:54:00:00:00:02"])));
        assert_eq!(index.get(mac("52:54:00:00:00:01")), None, "a relist is applied when complete");
        index.apply(&watcher::Event::InitDone);
        assert_eq!(index.get(mac("52:54:00:00:00:02")), Some("a"));
        // A changed MAC moves; the old one is forgotten.
        index.apply(&watcher::Event::Apply(machine("a", &["52:54:00:00:00:03"])));
        assert_eq!(index.get(mac("52:54:00:00:00:01")), None);
        assert_eq!(index.get(mac("52:54:00:00:00:03")), Some("a"));
        // The first owner of a MAC keeps it; its deletion does not remove another's entry.
        index.apply(&watcher::Event::Apply(machine("b", &["52:54:00:00:00:03", "52:54:00:00:00:04"])));
        assert_eq!(index.get(mac("52:54:00:00:00:03")), Some("a"));
        index.apply(&watcher::Event::Delete(machine("b", &["52:54:00:00:00:03", "52:54:00:00:00:04"])));
        assert_eq!(index.get(mac("52:54:00:00:00:03")), Some("a"));
        assert_eq!(index.get(mac("52:54:00:00:00:04")), None);
        // A relist replaces everything.
        index.apply(&watcher::Event::Init);
        index.apply(&watcher::Event::InitDone);
        assert_eq!(index.get(mac("52:54:00:00:00:03")), None);
    }

    #[test]
    fn reserved_machines_get_their_cmdb_network() {
        let mut m = machine("a", &["52:54:00:00:00:01"]);
        m.status = Some(
            serde_json::from_value(json!({
                "ip": "10.0.0.5", "hostname": "api1", "bootTarget": "LocalDisk",
                "allocation": {"cmdb": "lab", "entry": 0},
            }))
            .unwrap(),
        );
        let cmdb: Cmdb = serde_json::from_value(json!({
            "apiVersion": "machinist.dev/v1alpha1", "kind": "Cmdb", "metadata": {"name": "lab"},
            "spec": {"entries": [{"ip": "10.0.0.5"}], "network": {"netmask": "255.255.255.0", "gateway": "10.0.0.1",
                     "dnsServers": ["10.0.0.2"], "domain": "lab.example"}},
        }))
        .unwrap();
        let boot = machine_boot(&m, Some(&cmdb));
        assert_eq!(boot.address, Some(Ipv4Addr::new(10, 0, 0, 5)));
        assert_eq!(boot.hostname.as_deref(), Some("api1"));
        assert_eq!(boot.network.gateway, Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(boot.network.dns_servers, [Ipv4Addr::new(10, 0, 0, 2)]);
        assert_eq!(boot.network.domain.as_deref(), Some("lab.example"));
        assert_eq!(boot.policy, BootPolicy::Network);
        m.status.as_mut().unwrap().boot_target = Some(BootTarget::None);
        assert_eq!(machine_boot(&m, None).policy, BootPolicy::Ignore);
        assert_eq!(machine_boot(&machine("b", &[]), None).address, None);
    }

    #[test]
    fn registered_names_and_tokens() {
        assert_eq!(registered_name(mac("52:54:00:AB:cd:01")), "mac-52-54-00-ab-cd-01");
        let (a, b) = (new_token().unwrap(), new_token().unwrap());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }

    #[test]
    fn created_tokens_go_when_their_secret_is_cached_or_their_machine_goes() {
        let with_uid = |name: &str, uid: &str| {
            let mut m = machine(name, &[]);
            m.metadata.uid = Some(uid.into());
            m
        };
        let secret = |machine: &str| Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(token_secret_name("default", machine)),
                annotations: Some([(MACHINE_ANNOTATION.to_owned(), machine.to_owned())].into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let (a1, a2, b1, b2) = (with_uid("a", "u1"), with_uid("a", "u2"), with_uid("b", "u3"), with_uid("b", "u4"));
        let mut created = CreatedTokens::default();
        created.insert(&a1, "ta".into());
        created.insert(&b1, "tb".into());
        // It answers for its Machine, or while the cache shows none of that name; never for
        // another Machine of the name.
        assert_eq!(created.get("a", Some(&a1)), Some("ta"));
        assert_eq!(created.get("a", None), Some("ta"));
        assert_eq!(created.get("a", Some(&a2)), None);
        assert_eq!(created.get("c", None), None);

        // Its Secret reached the cache, whatever it holds: the cache answers from now on.
        created.secret_event(&watcher::Event::Apply(secret("x")), |_| true);
        let unannotated = Secret {
            metadata: kube::api::ObjectMeta { name: Some(token_secret_name("default", "a")), ..Default::default() },
            ..Default::default()
        };
        created.secret_event(&watcher::Event::Apply(unannotated), |_| true);
        assert!(created.contains("a") && created.contains("b"), "the machine is read from the annotation");
        created.secret_event(&watcher::Event::Apply(secret("a")), |_| true);
        assert!(!created.contains("a") && created.contains("b"));

        // Deleted: gone; a late delete of an earlier Machine of the name leaves the new one's.
        created.insert(&a2, "ta2".into());
        created.machine_event(&watcher::Event::Delete(a1.clone()), |_| true);
        assert!(created.contains("a"));
        created.machine_event(&watcher::Event::Delete(a2.clone()), |_| false);
        assert!(!created.contains("a"));
        // Seen again under its name with another uid (its delete missed): gone.
        created.machine_event(&watcher::Event::Apply(b1.clone()), |_| true);
        assert!(created.contains("b"));
        created.machine_event(&watcher::Event::Apply(b2), |_| true);
        assert!(!created.contains("b"));

        // A re-list: what it no longer lists of Machines, what it lists of Secrets.
        created.insert(&a1, "ta".into());
        created.insert(&b1, "tb".into());
        created.machine_event(&watcher::Event::InitDone, |name| name == "a");
        assert!(created.contains("a") && !created.contains("b"));
        created.secret_event(&watcher::Event::InitDone, |machine| machine == "a");
        assert!(!created.contains("a"));
    }

    /// A token Secret as the keeper makes it, of Machine `machine` (uid `uid`) of `namespace`.
    fn token_secret(namespace: &str, machine: &str, uid: Option<&str>, secret_uid: &str) -> Secret {
        let mut annotations = json!({MACHINE_ANNOTATION: machine});
        if let Some(uid) = uid {
            annotations[MACHINE_UID_ANNOTATION] = json!(uid);
        }
        serde_json::from_value(json!({"metadata": {
            "name": token_secret_name(namespace, machine), "namespace": DEFAULT_TOKEN_NAMESPACE, "uid": secret_uid,
            "labels": {TOKEN_LABEL: "true", MACHINE_NAMESPACE_LABEL: namespace}, "annotations": annotations,
        }}))
        .unwrap()
    }

    /// Whether `name` is a DNS subdomain as Kubernetes checks object names.
    fn dns_subdomain(name: &str) -> bool {
        name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            })
    }

    #[test]
    fn token_secret_names_tell_namespaces_apart_and_fit() {
        assert_eq!(token_secret_name("default", "vm-1"), "machinist-agent-default.vm-1");
        assert_eq!(token_secret_name("lab", "rack1.vm-1"), "machinist-agent-lab.rack1.vm-1");
        assert_ne!(token_secret_name("a", "b"), token_secret_name("b", "a"));
        assert_eq!(token_selector("lab"), "machinist.dev/agent-token=true,machinist.dev/machine-namespace=lab");

        // The longest full name is kept as it is.
        let namespace = "n".repeat(63);
        let fits = "m".repeat(253 - "machinist-agent-".len() - 64);
        assert_eq!(token_secret_name(&namespace, &fits), format!("machinist-agent-{namespace}.{fits}"));
        assert_eq!(token_secret_name(&namespace, &fits).len(), 253);

        // One more character: shortened, with no dot (never another Machine's full name), to
        // exactly 253 characters, a valid name, ending with a hash of the whole.
        let long = format!("{fits}m");
        let short = token_secret_name(&namespace, &long);
        assert_eq!(short.len(), 253);
        assert!(!short.contains('.') && dns_subdomain(&short), "{short}");
        assert!(short.starts_with(&format!("machinist-agent-{namespace}-mmm")), "{short}");
        // Names that differ only past the cut differ by their hash.
        let other = token_secret_name(&namespace, &format!("{fits}n"));
        assert_ne!(short, other);
        assert_eq!(short[..253 - 16], other[..253 - 16]);
        assert_ne!(token_secret_name("a", &long), token_secret_name("b", &long));

        // Dots become dashes, and a cut that ends in a dash or dot leaves neither before the hash.
        let dotted = format!("{}.{}", "a".repeat(200), "b".repeat(52));
        let short = token_secret_name("lab", &dotted);
        assert!(dns_subdomain(&short) && !short.contains('.') && !short.contains("--"), "{short}");
        let cut_at_dot = format!("{}.{}", "a".repeat(253 - "machinist-agent-lab-".len() - 17 - 1), "b".repeat(60));
        let short = token_secret_name("lab", &cut_at_dot);
        assert!(dns_subdomain(&short), "{short}");
        assert_eq!(short.len(), 252, "the trailing dash went: {short}");

        // Stable across builds and Rust versions: SHA-256, not std's hasher.
        assert_eq!(
            token_secret_name("default", &"x".repeat(300)),
            format!("machinist-agent-default-{}-{}", "x".repeat(253 - 24 - 17), "b3e861976215cd28")
        );
    }

    #[test]
    fn a_token_secret_belongs_to_the_machine_its_label_and_annotations_name() {
        let secret = token_secret("lab", "vm-1", Some("u1"), "s1");
        assert!(secret_belongs(&secret, "lab", "vm-1", Some("u1")));
        assert!(secret_belongs(&secret, "lab", "vm-1", None), "the Machine not cached yet");
        assert!(!secret_belongs(&secret, "lab", "vm-1", Some("u2")), "an earlier Machine of the name");
        assert!(!secret_belongs(&secret, "other", "vm-1", Some("u1")), "another namespace's");
        assert!(!secret_belongs(&secret, "lab", "vm-2", Some("u1")), "another Machine's");
        // Made by a person: no uid, so any Machine of the name.
        let by_hand = token_secret("lab", "vm-1", None, "s2");
        assert!(secret_belongs(&by_hand, "lab", "vm-1", Some("u2")));
        // Without the namespace label it is no token of ours (the cache never shows it).
        let mut unlabeled = by_hand.clone();
        unlabeled.metadata.labels = None;
        assert!(!secret_belongs(&unlabeled, "lab", "vm-1", Some("u2")));
    }

    #[test]
    fn orphaned_tokens_are_those_whose_machine_the_cache_lacks() {
        let secrets = [
            token_secret("lab", "live", Some("u1"), "s1"),
            token_secret("lab", "gone", Some("u2"), "s2"),
            token_secret("lab", "recreated", Some("u3"), "s3"),
            token_secret("lab", "by-hand", None, "s4"),
            token_secret("lab", "by-hand-gone", None, "s5"),
        ];
        let mut anonymous = token_secret("lab", "x", None, "s6");
        anonymous.metadata.annotations = None;
        let cache = HashMap::from([("live", "u1"), ("recreated", "u9"), ("by-hand", "u4")]);
        let orphans =
            orphaned_tokens(secrets.iter().chain([&anonymous]), |name| cache.get(name).map(|uid| (*uid).to_owned()));
        let names: Vec<(&str, &str)> = orphans.iter().map(|o| (o.machine.as_str(), o.secret.as_str())).collect();
        assert_eq!(
            names,
            [
                ("gone", "machinist-agent-lab.gone"),
                ("recreated", "machinist-agent-lab.recreated"),
                ("by-hand-gone", "machinist-agent-lab.by-hand-gone")
            ]
        );
        assert_eq!(orphans[0].secret_uid.as_deref(), Some("s2"));
        assert_eq!(orphans[0].machine_uid.as_deref(), Some("u2"));
        assert!(orphaned_tokens(&[] as &[Secret], |_| None).is_empty());
    }

    #[test]
    fn a_machine_is_gone_when_the_api_has_none_or_another_of_its_name() {
        let with_uid = |uid: &str| {
            let mut m = machine("vm", &[]);
            m.metadata.uid = Some(uid.into());
            m
        };
        let orphan = |uid: Option<&str>| OrphanedToken {
            secret: "s".into(),
            secret_uid: Some("s1".into()),
            machine: "vm".into(),
            machine_uid: uid.map(Into::into),
        };
        assert!(machine_gone(&orphan(Some("u1")), None));
        assert!(machine_gone(&orphan(Some("u1")), Some(&with_uid("u2"))), "re-created: another machine");
        assert!(!machine_gone(&orphan(Some("u1")), Some(&with_uid("u1"))), "the cache was behind");
        assert!(machine_gone(&orphan(None), None));
        assert!(!machine_gone(&orphan(None), Some(&with_uid("u2"))), "a person's token serves any Machine of the name");
    }
}
