//! The server's shared state: the store, the registry of served resources and the compiled
//! schemas of their versions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use serde_json::Value;

use crate::semantics::rbac::Policy;
use crate::semantics::registry::Registry;
use crate::store::{ResourceKey, Store};

/// Limits on what clients may send.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest request body, in bytes (the API server's default is 3 MiB).
    pub max_body_bytes: usize,
    /// Largest page a list returns when the client asks for more (or for no limit).
    pub max_list_items: usize,
    /// How long an Event lives after it was last written (Kubernetes' `--event-ttl`, 1 h).
    pub event_ttl: std::time::Duration,
    /// Watches open at once; one more is answered 429 until one ends.
    pub max_watches: usize,
    /// Watches one user (a token's identity) may have open at once; one more is answered 429,
    /// so one client cannot take every place.
    pub max_watches_per_user: usize,
    /// Requests whose storage work (decoding, admission, the commit) runs at once; more wait
    /// their turn. The work is CPU and one database: more than a few per core only adds threads.
    pub max_concurrent_work: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 3 * 1024 * 1024,
            max_list_items: 100_000,
            event_ttl: std::time::Duration::from_secs(3600),
            max_watches: 10_000,
            max_watches_per_user: 1_000,
            max_concurrent_work: std::thread::available_parallelism().map_or(4, |n| 2 * n.get()).max(4),
        }
    }
}

/// Compiled schemas, keyed by CRD uid + resourceVersion + version, so a changed CRD recompiles.
#[derive(Default)]
pub struct SchemaCache(Mutex<HashMap<String, Arc<machinist_apiserver_schema::Schema>>>);

impl std::fmt::Debug for SchemaCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SchemaCache")
    }
}

impl SchemaCache {
    /// The compiled schema stored under `key`, compiling `schema` the first time.
    pub fn get(&self, key: &str, schema: &Value) -> Result<Arc<machinist_apiserver_schema::Schema>, String> {
        let mut cache = self.0.lock().map_err(|_| "schema cache poisoned".to_owned())?;
        if let Some(compiled) = cache.get(key) {
            return Ok(Arc::clone(compiled));
        }
        let compiled = Arc::new(machinist_apiserver_schema::Schema::compile(schema).map_err(|e| e.to_string())?);
        cache.insert(key.to_owned(), Arc::clone(&compiled));
        Ok(compiled)
    }
}

/// Everything handlers and controllers share.
pub struct Api {
    /// Objects.
    pub store: Arc<Store>,
    registry: RwLock<Arc<Registry>>,
    /// One refresh at a time, so a slower refresh cannot replace a newer registry.
    refreshing: Mutex<()>,
    /// Compiled schemas per CRD version, keyed by the CRD's uid, version and resourceVersion.
    pub schemas: SchemaCache,
    /// Request limits.
    pub limits: Limits,
    /// The RBAC policy, with the revisions of the RBAC kinds it was built at.
    policy: RwLock<Option<([u64; 4], Arc<Policy>)>>,
}

const RBAC_RESOURCES: [&str; 4] = ["roles", "clusterroles", "rolebindings", "clusterrolebindings"];

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").field("store", &self.store).finish_non_exhaustive()
    }
}

impl Api {
    /// State over a store; serves the built-ins and the CRDs the store holds.
    pub fn new(store: Arc<Store>, limits: Limits) -> Self {
        let api = Self {
            store,
            registry: RwLock::new(Arc::new(Registry::default())),
            refreshing: Mutex::new(()),
            schemas: Default::default(),
            limits,
            policy: RwLock::new(None),
        };
        api.refresh_registry();
        api
    }

    /// The registry as of now.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.read().map(|r| Arc::clone(&r)).unwrap_or_default()
    }

    /// The RBAC policy as of now: rebuilt only after a Role, ClusterRole or binding changed.
    pub fn policy(&self) -> Arc<Policy> {
        let keys = RBAC_RESOURCES.map(|r| ResourceKey::new("rbac.authorization.k8s.io", r));
        let at = keys.clone().map(|k| self.store.changed_at(&k));
        // Every request asks: readers share the lock; one rebuilds after a change.
        if let Some((built_at, policy)) = self.policy.read().unwrap_or_else(std::sync::PoisonError::into_inner).as_ref()
            && *built_at == at
        {
            return Arc::clone(policy);
        }
        let mut cached = self.policy.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((built_at, policy)) = cached.as_ref()
            && *built_at == at
        {
            return Arc::clone(policy);
        }
        let [roles, cluster_roles, role_bindings, cluster_role_bindings] =
            keys.map(|k| self.store.list(&k, None, None).1.iter().map(|o| o.value()).collect::<Vec<_>>());
        let policy = Arc::new(Policy::new(
            roles.iter(),
            cluster_roles.iter(),
            role_bindings.iter(),
            cluster_role_bindings.iter(),
        ));
        *cached = Some((at, Arc::clone(&policy)));
        policy
    }

    /// Rebuilds the registry from the stored CRDs (after a CRD is written or deleted).
    pub fn refresh_registry(&self) {
        self.refresh_registry_without(None);
    }

    /// Rebuilds the registry from the stored CRDs but the one named `without` (about to be
    /// removed: its kind stops being served before anyone can see it gone).
    pub fn refresh_registry_without(&self, without: Option<&str>) {
        let _one_at_a_time = self.refreshing.lock();
        let (_, crds) =
            self.store.list(&ResourceKey::new("apiextensions.k8s.io", "customresourcedefinitions"), None, None);
        let crds: Vec<Value> = crds.iter().map(|c| c.value()).collect();
        let established: Vec<&Value> = crds
            .iter()
            .filter(|c| without.is_none() || c.pointer("/metadata/name").and_then(Value::as_str) != without)
            .filter(|c| {
                c.pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .is_some_and(|conds| conds.iter().any(|x| x["type"] == "Established" && x["status"] == "True"))
            })
            .collect();
        let registry = Arc::new(Registry::with_crds(established));
        if let Ok(mut slot) = self.registry.write() {
            *slot = registry;
        }
    }
}
