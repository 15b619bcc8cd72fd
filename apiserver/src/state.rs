//! The server's shared state: the store and the registry of served resources.

use std::sync::{Arc, Mutex, RwLock};

use serde_json::Value;

use crate::openapi::OpenApi;
use crate::registry::Registry;
use crate::store::{ResourceKey, Store};

/// Limits on what clients may send.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest request body, in bytes (the API server's default is 3 MiB).
    pub max_body_bytes: usize,
    /// Largest page a list returns when the client asks for more (or for no limit).
    pub max_list_items: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_body_bytes: 3 * 1024 * 1024, max_list_items: 100_000 }
    }
}

/// Everything handlers and controllers share.
pub struct Api {
    /// Objects.
    pub store: Arc<Store>,
    registry: RwLock<Arc<Registry>>,
    /// OpenAPI documents of the current registry (they change only when it does).
    openapi: RwLock<Arc<OpenApi>>,
    /// One refresh at a time, so the registry and its documents always come from the same one.
    refreshing: Mutex<()>,
    /// Compiled schemas per CRD version, keyed by the CRD's uid, version and resourceVersion.
    pub schemas: crate::admission::SchemaCache,
    /// Request limits.
    pub limits: Limits,
}

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
            openapi: RwLock::new(Arc::default()),
            refreshing: Mutex::new(()),
            schemas: Default::default(),
            limits,
        };
        api.refresh_registry();
        api
    }

    /// The registry as of now.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.read().map(|r| Arc::clone(&r)).unwrap_or_default()
    }

    /// The OpenAPI documents of the registry as of now.
    pub fn openapi(&self) -> Arc<OpenApi> {
        self.openapi.read().map(|o| Arc::clone(&o)).unwrap_or_default()
    }

    /// Rebuilds the registry from the stored CRDs (after a CRD is written or deleted).
    pub fn refresh_registry(&self) {
        let _one_at_a_time = self.refreshing.lock();
        let (_, crds) =
            self.store.list(&ResourceKey::new("apiextensions.k8s.io", "customresourcedefinitions"), None, None);
        let established: Vec<&Value> = crds
            .iter()
            .map(|c| c.as_ref())
            .filter(|c| {
                c.pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .is_some_and(|conds| conds.iter().any(|x| x["type"] == "Established" && x["status"] == "True"))
            })
            .collect();
        let registry = Arc::new(Registry::with_crds(established));
        let openapi = Arc::new(OpenApi::build(&registry));
        if let Ok(mut slot) = self.registry.write() {
            *slot = registry;
        }
        if let Ok(mut slot) = self.openapi.write() {
            *slot = openapi;
        }
    }
}
