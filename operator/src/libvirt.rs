//! The libvirt calls, through the `virt` crate: one connection per Hypervisor, every call
//! blocking (run them on Tokio's blocking pool). What to call is decided in [`crate::vm`].
//!
//! A domain is the operator's only if its metadata names the Machine's uid
//! ([`crate::vm::domain_xml::parse_ownership`]): [`Host::domain`] reports a domain of the name
//! that is not, and nothing here changes it.

use machinist_crds::hypervisor::{ForeignDomains, PoolStatus};

use virt::connect::Connect;
use virt::domain::{Domain, DomainState};
use virt::error::ErrorNumber;
use virt::storage_pool::StoragePool;
use virt::storage_vol::StorageVol;
use virt::sys;

use crate::vm::domain_xml::{METADATA_NAMESPACE, Ownership, VolumeSpec, parse_metadata_element, render_volume};
use crate::vm::host_ledger::Probe;
use crate::vm::power::Observed;

/// A libvirt call that failed.
#[derive(Debug, thiserror::Error)]
pub enum LibvirtError {
    /// The connection could not be opened.
    #[error("cannot connect to {uri}: {message}")]
    Connect {
        /// The URI.
        uri: String,
        /// libvirt's message.
        message: String,
    },
    /// A call failed.
    #[error("{action} failed: {message}")]
    Call {
        /// What was attempted (`define domain api_api-01`).
        action: String,
        /// libvirt's message.
        message: String,
        /// Whether the connection itself is broken (the host went away).
        connection_lost: bool,
    },
    /// The pool does not exist.
    #[error("storage pool {0} does not exist")]
    NoPool(String),
}

impl LibvirtError {
    fn call(action: impl Into<String>, error: &virt::error::Error) -> Self {
        let connection_lost = error.code().is_any(vec![
            ErrorNumber::SystemError,
            ErrorNumber::Rpc,
            ErrorNumber::NoConnect,
            ErrorNumber::InvalidConn,
        ]);
        LibvirtError::Call { action: action.into(), message: error.message().to_owned(), connection_lost }
    }

    /// Whether the host is unreachable (as opposed to refusing one call).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, LibvirtError::Connect { .. } | LibvirtError::Call { connection_lost: true, .. })
    }
}

/// What a probe of a host found: what the Hypervisor's status shows, and the domains that are
/// the operator's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probed {
    /// Capacity, pools, accelerator, foreign domains.
    pub probe: Probe,
    /// Domains with the operator's metadata: who they belong to.
    pub ours: Vec<Ownership>,
}

/// A domain of a given name, as libvirt has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainView {
    /// Its owner, if the metadata names one.
    pub ownership: Option<Ownership>,
    /// Its power.
    pub power: Observed,
    /// Its UUID.
    pub uuid: String,
}

/// A created (or found) volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeView {
    /// Path (or rbd image) on the host.
    pub path: String,
    /// Size, in bytes.
    pub capacity_bytes: u64,
}

/// One connection to a hypervisor.
pub struct Host {
    connection: Connect,
    uri: String,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host").field("uri", &self.uri).finish()
    }
}

/// Calls at once on one host: a host that hangs holds at most this many of Tokio's blocking
/// threads.
const CALLS_PER_HOST: usize = 4;

/// One connection per libvirt URI, opened on first use and again after it broke; calls run on
/// Tokio's blocking pool within a timeout.
#[derive(Default)]
pub struct Hosts {
    connections: std::sync::Mutex<std::collections::HashMap<String, Connection>>,
}

#[derive(Clone)]
struct Connection {
    host: Option<std::sync::Arc<Host>>,
    calls: std::sync::Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for Hosts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hosts").finish_non_exhaustive()
    }
}

impl Hosts {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Connection>> {
        self.connections.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `call` with the connection to `uri` (opened if needed), on the blocking pool; fails
    /// after `timeout`. A call that finds the host unreachable closes the connection, so the
    /// next one opens a new one.
    pub async fn call<T, F>(&self, uri: &str, timeout: std::time::Duration, call: F) -> Result<T, LibvirtError>
    where
        T: Send + 'static,
        F: FnOnce(&Host) -> Result<T, LibvirtError> + Send + 'static,
    {
        let connection = self
            .lock()
            .entry(uri.to_owned())
            .or_insert_with(|| Connection {
                host: None,
                calls: std::sync::Arc::new(tokio::sync::Semaphore::new(CALLS_PER_HOST)),
            })
            .clone();
        let timed_out =
            || LibvirtError::Connect { uri: uri.to_owned(), message: format!("no answer within {timeout:?}") };
        let permit = tokio::time::timeout(timeout, connection.calls.clone().acquire_owned())
            .await
            .map_err(|_| timed_out())?
            .map_err(|_| timed_out())?;
        let target = uri.to_owned();
        let existing = connection.host.clone();
        let work = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let host = match existing {
                Some(host) => host,
                None => std::sync::Arc::new(Host::connect(&target)?),
            };
            let outcome = call(&host);
            Ok::<_, LibvirtError>((host, outcome))
        });
        let result = match tokio::time::timeout(timeout, work).await {
            Err(_) => Err(timed_out()),
            Ok(Err(join)) => Err(LibvirtError::Connect { uri: uri.to_owned(), message: join.to_string() }),
            Ok(Ok(Err(error))) => Err(error),
            Ok(Ok(Ok((host, outcome)))) => {
                if let Some(entry) = self.lock().get_mut(uri) {
                    entry.host = Some(host);
                }
                outcome
            }
        };
        if result.as_ref().is_err_and(LibvirtError::is_unreachable) {
            let stale = self.lock().get_mut(uri).and_then(|entry| entry.host.take());
            // Closing a connection may block: not on a runtime thread.
            if let Some(stale) = stale {
                tokio::task::spawn_blocking(move || drop(stale));
            }
        }
        result
    }
}

/// Sends libvirt's errors to the callers only, not to stderr. Call once before connecting.
pub fn quiet_errors() {
    virt::error::clear_error_callback();
}

/// Prepares libvirt for long-lived connections, once per process: errors go to the callers
/// only, and libvirt's event loop runs on a thread of its own, which remote connections need
/// for their keepalive (without it libvirt may close them "unexpectedly").
pub fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        quiet_errors();
        if let Err(error) = virt::event::event_register_default_impl() {
            tracing::warn!(error = %error.message(), "libvirt's event loop is not available: remote connections may drop");
            return;
        }
        let spawned = std::thread::Builder::new().name("libvirt-events".into()).spawn(|| {
            while virt::event::event_run_default_impl().is_ok() {}
        });
        if let Err(error) = spawned {
            tracing::warn!(%error, "could not start libvirt's event loop");
        }
    });
}

impl Host {
    /// Opens a connection to `uri`.
    pub fn connect(uri: &str) -> Result<Host, LibvirtError> {
        let connection = Connect::open(Some(uri))
            .map_err(|e| LibvirtError::Connect { uri: uri.to_owned(), message: e.message().to_owned() })?;
        Ok(Host { connection, uri: uri.to_owned() })
    }

    /// The URI this connection was opened with.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// Whether the connection still works.
    pub fn is_alive(&self) -> bool {
        self.connection.is_alive().unwrap_or(false)
    }

    /// Capacity, pools, accelerator and the domains already there.
    pub fn probe(&self) -> Result<Probed, LibvirtError> {
        let fail = |action: &str| {
            let action = action.to_owned();
            move |e: virt::error::Error| LibvirtError::call(action.clone(), &e)
        };
        let version = self.connection.lib_version().map_err(fail("read libvirt's version"))?;
        let node = self.connection.node_info().map_err(fail("read the node's info"))?;
        let capabilities = self.connection.capabilities().map_err(fail("read the capabilities"))?;
        let mut pools = Vec::new();
        for pool in self.connection.list_all_storage_pools(0).map_err(fail("list storage pools"))? {
            pools.push(pool_status(&pool)?);
        }
        pools.sort_by(|a, b| a.name.cmp(&b.name));
        let mut foreign = ForeignDomains::default();
        let mut ours = Vec::new();
        for domain in self.connection.list_all_domains(0).map_err(fail("list domains"))? {
            match ownership(&domain)? {
                Some(owner) => ours.push(owner),
                None => {
                    if domain.is_active().map_err(fail("read a domain's state"))? {
                        let info = domain.info().map_err(fail("read a domain's info"))?;
                        foreign.domains += 1;
                        foreign.memory_mib += i64::try_from(info.max_mem / 1024).unwrap_or(i64::MAX);
                        foreign.vcpus += i64::from(info.nr_virt_cpu);
                    }
                }
            }
        }
        let probe = Probe {
            libvirt_version: format!("{}.{}.{}", version / 1_000_000, version / 1000 % 1000, version % 1000),
            memory_mib: i64::try_from(node.memory / 1024).unwrap_or(i64::MAX),
            cpus: i64::from(node.cpus),
            kvm: offers_kvm(&capabilities),
            pools,
            foreign,
        };
        Ok(Probed { probe, ours })
    }

    fn lookup(&self, name: &str) -> Result<Option<Domain>, LibvirtError> {
        match self.connection.lookup_domain_by_name(name) {
            Ok(domain) => Ok(Some(domain)),
            Err(e) if e.code().is(ErrorNumber::NoDomain) => Ok(None),
            Err(e) => Err(LibvirtError::call(format!("look up domain {name}"), &e)),
        }
    }

    /// The domain called `name`, if there is one.
    pub fn domain(&self, name: &str) -> Result<Option<DomainView>, LibvirtError> {
        let Some(domain) = self.lookup(name)? else { return Ok(None) };
        let ownership = ownership(&domain)?;
        let (state, _) = domain.state().map_err(|e| LibvirtError::call(format!("read the state of {name}"), &e))?;
        let power = match state.unwrap_or(DomainState::NoState) {
            DomainState::Running | DomainState::Blocked => Observed::On,
            DomainState::Paused | DomainState::PMSuspended => Observed::Paused,
            DomainState::Shutdown => Observed::ShuttingDown,
            DomainState::Shutoff | DomainState::Crashed | DomainState::NoState => Observed::Off,
        };
        let uuid = domain.uuid_string().map_err(|e| LibvirtError::call(format!("read the UUID of {name}"), &e))?;
        Ok(Some(DomainView { ownership, power, uuid }))
    }

    /// Defines (or redefines, same name and UUID) a domain.
    pub fn define(&self, name: &str, xml: &str) -> Result<(), LibvirtError> {
        self.connection
            .define_domain_xml(xml)
            .map(drop)
            .map_err(|e| LibvirtError::call(format!("define domain {name}"), &e))
    }

    fn with_domain(
        &self,
        name: &str,
        action: &str,
        call: impl FnOnce(&Domain) -> Result<(), virt::error::Error>,
    ) -> Result<(), LibvirtError> {
        let Some(domain) = self.lookup(name)? else {
            return Err(LibvirtError::Call {
                action: format!("{action} {name}"),
                message: "the domain does not exist".into(),
                connection_lost: false,
            });
        };
        call(&domain).map_err(|e| LibvirtError::call(format!("{action} {name}"), &e))
    }

    /// Powers a domain on.
    pub fn start(&self, name: &str) -> Result<(), LibvirtError> {
        self.with_domain(name, "start", Domain::create)
    }

    /// Resumes a paused domain.
    pub fn resume(&self, name: &str) -> Result<(), LibvirtError> {
        self.with_domain(name, "resume", Domain::resume)
    }

    /// Asks a domain's guest to power off, the hypervisor's default way (QEMU: the ACPI power
    /// button; naming it would make the call fail on drivers without that flag).
    pub fn shutdown(&self, name: &str) -> Result<(), LibvirtError> {
        self.with_domain(name, "shut down", Domain::shutdown)
    }

    /// Powers a domain off at once.
    pub fn destroy(&self, name: &str) -> Result<(), LibvirtError> {
        self.with_domain(name, "destroy", Domain::destroy)
    }

    /// Resets a running domain (a power cycle without powering off).
    pub fn reset(&self, name: &str) -> Result<(), LibvirtError> {
        self.with_domain(name, "reset", Domain::reset)
    }

    /// Removes a domain's definition (and its UEFI variables with `nvram`); `false` if there was
    /// none.
    pub fn undefine(&self, name: &str, nvram: bool) -> Result<bool, LibvirtError> {
        let Some(domain) = self.lookup(name)? else { return Ok(false) };
        let mut flags = sys::VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | sys::VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA;
        if nvram {
            flags |= sys::VIR_DOMAIN_UNDEFINE_NVRAM;
        }
        domain.undefine_flags(flags).map_err(|e| LibvirtError::call(format!("undefine {name}"), &e))?;
        Ok(true)
    }

    fn pool(&self, pool: &str) -> Result<StoragePool, LibvirtError> {
        match self.connection.lookup_storage_pool_by_name(pool) {
            Ok(found) => Ok(found),
            Err(e) if e.code().is(ErrorNumber::NoStoragePool) => Err(LibvirtError::NoPool(pool.to_owned())),
            Err(e) => Err(LibvirtError::call(format!("look up pool {pool}"), &e)),
        }
    }

    fn volume(pool: &StoragePool, pool_name: &str, name: &str) -> Result<Option<StorageVol>, LibvirtError> {
        match pool.lookup_storage_vol_by_name(name) {
            Ok(volume) => Ok(Some(volume)),
            Err(e) if e.code().is(ErrorNumber::NoStorageVolume) => Ok(None),
            Err(e) => Err(LibvirtError::call(format!("look up volume {name} in {pool_name}"), &e)),
        }
    }

    /// The volume `spec.name` in `pool`, created as `spec` says when missing (an existing one is
    /// kept as it is).
    pub fn ensure_volume(&self, pool_name: &str, spec: &VolumeSpec) -> Result<VolumeView, LibvirtError> {
        let pool = self.pool(pool_name)?;
        let action = |what: &str| format!("{what} volume {} in {pool_name}", spec.name);
        let volume = match Self::volume(&pool, pool_name, &spec.name)? {
            Some(volume) => volume,
            None => StorageVol::create_xml(&pool, &render_volume(spec), 0)
                .map_err(|e| LibvirtError::call(action("create"), &e))?,
        };
        let path = volume.path().map_err(|e| LibvirtError::call(action("read the path of"), &e))?;
        let info = volume.info().map_err(|e| LibvirtError::call(action("read"), &e))?;
        Ok(VolumeView { path, capacity_bytes: info.capacity })
    }

    /// Deletes a volume; `false` if there was none.
    pub fn delete_volume(&self, pool_name: &str, name: &str) -> Result<bool, LibvirtError> {
        let pool = match self.pool(pool_name) {
            Ok(pool) => pool,
            Err(LibvirtError::NoPool(_)) => return Ok(false),
            Err(e) => return Err(e),
        };
        let Some(volume) = Self::volume(&pool, pool_name, name)? else { return Ok(false) };
        volume.delete(0).map_err(|e| LibvirtError::call(format!("delete volume {name} in {pool_name}"), &e))?;
        Ok(true)
    }
}

/// The operator's metadata of a domain; `None` if it has none.
fn ownership(domain: &Domain) -> Result<Option<Ownership>, LibvirtError> {
    match domain.metadata(sys::VIR_DOMAIN_METADATA_ELEMENT as i32, Some(METADATA_NAMESPACE), 0) {
        Ok(xml) => Ok(parse_metadata_element(&xml)),
        Err(e) if e.code().is(ErrorNumber::NoDomainMetadata) => Ok(None),
        Err(e) => Err(LibvirtError::call("read a domain's metadata", &e)),
    }
}

fn pool_status(pool: &StoragePool) -> Result<PoolStatus, LibvirtError> {
    let name = pool.name().map_err(|e| LibvirtError::call("read a pool's name", &e))?;
    let info = pool.info().map_err(|e| LibvirtError::call(format!("read pool {name}"), &e))?;
    let xml = pool.xml_desc(0).map_err(|e| LibvirtError::call(format!("read pool {name}"), &e))?;
    let type_ = roxmltree::Document::parse(&xml)
        .ok()
        .and_then(|d| d.root_element().attribute("type").map(str::to_owned))
        .unwrap_or_else(|| "unknown".into());
    const GIB: u64 = 1 << 30;
    Ok(PoolStatus {
        name,
        type_,
        active: info.state == sys::VIR_STORAGE_POOL_RUNNING,
        capacity_gib: i64::try_from(info.capacity / GIB).unwrap_or(i64::MAX),
        available_gib: i64::try_from(info.available / GIB).unwrap_or(i64::MAX),
    })
}

/// Whether libvirt's capabilities offer KVM for x86_64 guests.
pub fn offers_kvm(capabilities: &str) -> bool {
    let Ok(document) = roxmltree::Document::parse(capabilities) else { return false };
    document
        .descendants()
        .filter(|n| n.has_tag_name("arch") && n.attribute("name") == Some("x86_64"))
        .any(|arch| arch.children().any(|c| c.has_tag_name("domain") && c.attribute("type") == Some("kvm")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kvm_is_read_from_the_x86_64_guest() {
        let with = r#"<capabilities><guest><os_type>hvm</os_type><arch name="x86_64"><domain type="qemu"/><domain type="kvm"/></arch></guest></capabilities>"#;
        let without = r#"<capabilities><guest><arch name="x86_64"><domain type="qemu"/></arch></guest><guest><arch name="i686"><domain type="kvm"/></arch></guest></capabilities>"#;
        assert!(offers_kvm(with));
        assert!(!offers_kvm(without));
        assert!(!offers_kvm("garbage"));
    }
}
