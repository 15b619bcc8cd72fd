//! An embedded control plane: a single-node server of the Kubernetes API for the custom
//! resources its caller installs and the core objects controllers need (Namespaces, Secrets,
//! ConfigMaps, Events, Leases, CustomResourceDefinitions, ServiceAccounts and RBAC), persisted
//! in SQLite, over HTTPS with bearer tokens: the admin's, and ServiceAccount tokens whose
//! requests RBAC authorizes. It knows no kind of its caller's: [`Config::crds`] says which CRDs to
//! install at start (`machinist up` hands it the machinist CRDs). kubectl, kube-rs and other
//! Kubernetes clients talk to it through the kubeconfig it writes.
//!
//! Layers, each using only those before it (`tests/layers.rs` checks this, and that the
//! modules of one layer form no cycle):
//!
//! 1. [`store`]: durable objects, revisions and the change history watches read.
//! 2. [`semantics`]: the Kubernetes API's rules without HTTP — served resources, requests,
//!    writes, admission against schemas, managedFields and server-side apply, selectors,
//!    errors as `Status` objects.
//! 3. [`controllers`]: the server's own controllers (namespace and CRD deletion, garbage
//!    collection, Event expiry), using the same operations clients use.
//! 4. [`http`]: authentication, routing, discovery, OpenAPI, lists, watches, Tables.
//! 5. This crate root and [`home`] (certificates, token, kubeconfig): start and stop.

pub mod controllers;
pub mod home;
pub mod http;
pub mod semantics;
pub mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::home::Home;
use crate::semantics::ops::Patch;
use crate::semantics::request::{FieldValidation, Request};
use crate::semantics::state::{Api, Limits};
use crate::store::Store;

/// How to run the control plane.
#[derive(Clone, Debug)]
pub struct Config {
    /// Home directory (certificates, token, database, kubeconfig).
    pub home: PathBuf,
    /// Address to listen on (port 0: any free port).
    pub listen: SocketAddr,
    /// Request limits.
    pub limits: Limits,
    /// Changes kept for watches to resume from, at most.
    pub history: usize,
    /// Bytes the kept changes may hold, about (each counts the JSON size of the object and of
    /// the one it replaced): a fleet of 1 MiB reports cannot make the history gigabytes.
    pub history_bytes: usize,
    /// CustomResourceDefinitions installed at every start, by server-side apply: a changed one
    /// is updated, an unchanged one writes nothing. Others can be created through the API.
    pub crds: Vec<CustomResourceDefinition>,
}

impl Config {
    /// Defaults for a home directory: 127.0.0.1:6443, 3 MiB bodies, 10,000 changes of history
    /// holding at most 256 MiB, no CRDs installed at start.
    pub fn new(home: impl Into<PathBuf>) -> Self {
        Self {
            home: home.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 6443)),
            limits: Limits::default(),
            history: 10_000,
            history_bytes: 256 << 20,
            crds: Vec::new(),
        }
    }
}

/// Failures starting the control plane.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The home directory could not be prepared.
    #[error(transparent)]
    Home(#[from] home::HomeError),
    /// The database could not be opened.
    #[error("failed to open the database: {0}")]
    Store(#[from] store::StoreError),
    /// The address could not be bound.
    #[error("failed to listen on {address}: {source}")]
    Listen {
        /// Address.
        address: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// TLS could not be configured.
    #[error("failed to configure TLS: {0}")]
    Tls(std::io::Error),
    /// A bootstrap object (namespace, CRD) could not be written.
    #[error("failed to create {what}: {message}")]
    Bootstrap {
        /// What.
        what: String,
        /// Cause.
        message: String,
    },
}

/// A running control plane.
#[derive(Debug)]
pub struct Running {
    /// Where it listens.
    pub address: SocketAddr,
    /// The kubeconfig written for it.
    pub kubeconfig: PathBuf,
    /// Shared state (for in-process components).
    pub api: Arc<Api>,
    /// What the server's own controllers have done.
    pub controllers: Arc<controllers::Activity>,
    home: Home,
    ca_pem: String,
    shutdown: CancellationToken,
    handle: axum_server::Handle<SocketAddr>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// A failure provisioning objects or identities in a running control plane.
#[derive(Debug, thiserror::Error)]
#[error("failed to {what}: {message}")]
pub struct ProvisionError {
    /// What was being done.
    pub what: String,
    /// Why it failed.
    pub message: String,
}

impl Running {
    /// Applies `objects` as the admin, by server-side apply (field manager `machinist`, forced):
    /// what a person would `kubectl apply --server-side`, done in-process.
    pub async fn apply(&self, objects: Vec<Value>) -> Result<(), ProvisionError> {
        let api = Arc::clone(&self.api);
        tokio::task::spawn_blocking(move || {
            for object in objects {
                let api_version = object["apiVersion"].as_str().map(str::to_owned);
                let kind = object["kind"].as_str().map(str::to_owned);
                let (api_version, kind) = (api_version.as_deref(), kind.as_deref());
                let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_owned();
                let fail =
                    |message: String| ProvisionError { what: format!("apply {} {name}", kind.unwrap_or("?")), message };
                let (group, version) = match api_version.unwrap_or_default().split_once('/') {
                    Some((group, version)) => (group, version),
                    None => ("", api_version.unwrap_or_default()),
                };
                let registry = api.registry();
                let resource = registry
                    .all()
                    .iter()
                    .find(|r| {
                        r.group == group && r.versions.iter().any(|v| v == version) && Some(r.kind.as_str()) == kind
                    })
                    .cloned()
                    .ok_or_else(|| fail("that kind is not served".into()))?;
                let request = Request {
                    version: version.to_owned(),
                    namespace: object.pointer("/metadata/namespace").and_then(Value::as_str).map(str::to_owned),
                    name: Some(name.clone()),
                    resource,
                    subresource: None,
                    dry_run: false,
                    field_manager: "machinist".into(),
                    field_validation: FieldValidation::Strict,
                };
                api.patch(&request, Patch::Apply { config: object, force: true }).map_err(|e| fail(e.message))?;
            }
            Ok(())
        })
        .await
        .map_err(|e| ProvisionError { what: "apply objects".into(), message: e.to_string() })?
    }

    /// A kubeconfig (`<home>/<name>.kubeconfig`, private) that authenticates as the
    /// ServiceAccount `namespace/name`, which must exist: its token Secret `<name>-token` is
    /// created the first time and kept, so the token survives restarts.
    pub async fn service_account_kubeconfig(&self, namespace: &str, name: &str) -> Result<PathBuf, ProvisionError> {
        let api = Arc::clone(&self.api);
        let (namespace, name) = (namespace.to_owned(), name.to_owned());
        let fail = {
            let name = name.clone();
            move |message: String| ProvisionError { what: format!("issue a token for ServiceAccount {name}"), message }
        };
        let secret_name = format!("{name}-token");
        let token = tokio::task::spawn_blocking({
            let fail = fail.clone();
            let name = name.clone();
            move || -> Result<String, ProvisionError> {
                let request = system_request(&api, "", "secrets", &secret_name)
                    .map(|r| Request { namespace: Some(namespace.clone()), ..r })
                    .ok_or_else(|| fail("Secrets are not served".into()))?;
                let secret = match api.get(&request) {
                    Ok(secret) => secret,
                    Err(error) if error.code == 404 => {
                        let object = json!({
                            "apiVersion": "v1", "kind": "Secret",
                            "metadata": {"name": secret_name, "namespace": namespace,
                                         "annotations": {semantics::identity::SERVICE_ACCOUNT_NAME: name}},
                            "type": semantics::identity::TOKEN_SECRET_TYPE,
                        });
                        api.create(&Request { name: None, ..request }, object).map_err(|e| fail(e.message))?.object
                    }
                    Err(error) => return Err(fail(error.message)),
                };
                let encoded = secret
                    .pointer("/data/token")
                    .and_then(Value::as_str)
                    .ok_or_else(|| fail("the token Secret has no token".into()))?;
                let bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, encoded)
                    .map_err(|e| fail(e.to_string()))?;
                String::from_utf8(bytes).map_err(|e| fail(e.to_string()))
            }
        })
        .await
        .map_err(|e| fail(e.to_string()))??;
        let path = self.home.dir.join(format!("{name}.kubeconfig"));
        self.home
            .write_kubeconfig_as(&path, self.address, &self.ca_pem, &name, &token)
            .map_err(|e| fail(e.to_string()))?;
        Ok(path)
    }

    /// Stops serving: ends watches, lets in-flight requests finish (5 s at most), closes.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.handle.graceful_shutdown(Some(Duration::from_secs(5)));
        match self.server.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(%error, "server stopped with an error"),
            Err(error) => tracing::error!(%error, "server task failed"),
        }
    }
}

/// Starts the control plane: prepares the home directory, opens the database, creates the
/// default namespaces and applies [`Config::crds`], starts the controllers and serves HTTPS.
pub async fn start(config: Config) -> Result<Running, StartError> {
    // The ring provider: one TLS backend for server and clients, no C toolchain beyond cc.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let home = Home::create(&config.home)?;
    let store = Arc::new(Store::open(&home.database(), config.history)?.with_history_bytes(config.history_bytes));
    let api = Arc::new(Api::new(store, config.limits.clone()));
    let bootstrap_api = Arc::clone(&api);
    let crds = config.crds;
    tokio::task::spawn_blocking(move || bootstrap(&bootstrap_api, &crds))
        .await
        .map_err(|e| StartError::Bootstrap { what: "bootstrap objects".into(), message: e.to_string() })??;

    let listener = std::net::TcpListener::bind(config.listen)
        .map_err(|source| StartError::Listen { address: config.listen, source })?;
    listener.set_nonblocking(true).map_err(|source| StartError::Listen { address: config.listen, source })?;
    let address = listener.local_addr().map_err(|source| StartError::Listen { address: config.listen, source })?;
    let material = home.material(address)?;
    let kubeconfig = home.write_kubeconfig(address, &material)?;
    let ca_pem = material.ca_pem.clone();
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem(
        material.serving_cert_pem.into_bytes(),
        material.serving_key_pem.into_bytes(),
    )
    .await
    .map_err(StartError::Tls)?;

    let shutdown = CancellationToken::new();
    let server_state = http::server::Server::new(Arc::clone(&api), &material.token, shutdown.clone());
    let app = axum::Router::new().fallback(http::router::handle).with_state(server_state);
    let handle = axum_server::Handle::new();
    let server = tokio::spawn({
        let handle = handle.clone();
        async move { axum_server::from_tcp_rustls(listener, tls)?.handle(handle).serve(app.into_make_service()).await }
    });
    let activity = Arc::new(controllers::Activity::default());
    tokio::spawn(controllers::run(Arc::clone(&api), shutdown.clone(), Arc::clone(&activity)));
    tracing::info!(%address, kubeconfig = %kubeconfig.display(), "control plane serving");
    Ok(Running { address, kubeconfig, api, controllers: activity, home, ca_pem, shutdown, handle, server })
}

/// The default ClusterRoles and ClusterRoleBindings of Kubernetes' RBAC bootstrap policy that a
/// client needs: `cluster-admin` for `system:masters`; discovery, `/version` and the health
/// paths, and the self-reviews (`kubectl auth can-i`, `kubectl auth whoami`), for every
/// authenticated user.
pub fn rbac_defaults() -> Vec<Value> {
    let meta = |name: &str| {
        json!({"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
               "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}})
    };
    let role = |name: &str, rules: Value| json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": meta(name), "rules": rules});
    let binding = |name: &str, groups: &[&str]| {
        let subjects: Vec<Value> = groups
            .iter()
            .map(|g| json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": g}))
            .collect();
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": meta(name),
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
               "subjects": subjects})
    };
    vec![
        role(
            "cluster-admin",
            json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}, {"nonResourceURLs": ["*"], "verbs": ["*"]}]),
        ),
        binding("cluster-admin", &["system:masters"]),
        role(
            "system:discovery",
            json!([{"nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz", "/version", "/version/"], "verbs": ["get"]}]),
        ),
        binding("system:discovery", &["system:authenticated"]),
        role(
            "system:basic-user",
            json!([
                {"apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"], "verbs": ["create"]},
                {"apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"], "verbs": ["create"]},
            ]),
        ),
        binding("system:basic-user", &["system:authenticated"]),
    ]
}

fn system_request(api: &Api, group: &str, plural: &str, name: &str) -> Option<Request> {
    let registry = api.registry();
    let resource = registry.all().iter().find(|r| r.group == group && r.plural == plural)?.clone();
    Some(Request {
        version: resource.storage_version().to_owned(),
        resource,
        namespace: None,
        name: Some(name.to_owned()),
        subresource: None,
        dry_run: false,
        field_manager: "machinist".into(),
        field_validation: FieldValidation::Strict,
    })
}

/// Default namespaces, the default RBAC policy ([`rbac_defaults`]), and the caller's CRDs applied (server-side) so a newer binary updates
/// them and an unchanged one writes nothing.
fn bootstrap(api: &Api, crds: &[CustomResourceDefinition]) -> Result<(), StartError> {
    let fail = |what: &str, message: String| StartError::Bootstrap { what: what.to_owned(), message };
    for namespace in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let request =
            system_request(api, "", "namespaces", namespace).ok_or_else(|| fail("namespaces", "not served".into()))?;
        if api.get(&request).is_err() {
            let object = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}});
            api.create(&Request { name: None, ..request }, object).map_err(|e| fail(namespace, e.message))?;
        }
    }
    for object in rbac_defaults() {
        let plural = if object["kind"] == "ClusterRole" { "clusterroles" } else { "clusterrolebindings" };
        let name = object["metadata"]["name"].as_str().unwrap_or_default().to_owned();
        let request = system_request(api, "rbac.authorization.k8s.io", plural, &name)
            .ok_or_else(|| fail(plural, "not served".into()))?;
        api.patch(&request, Patch::Apply { config: object, force: true }).map_err(|e| fail(&name, e.message))?;
    }
    for crd in crds {
        let name = crd.metadata.name.clone().unwrap_or_default();
        let config: Value = serde_json::to_value(crd).map_err(|e| fail(&name, e.to_string()))?;
        let request = system_request(api, "apiextensions.k8s.io", "customresourcedefinitions", &name)
            .ok_or_else(|| fail("customresourcedefinitions", "not served".into()))?;
        api.patch(&request, Patch::Apply { config, force: true }).map_err(|e| fail(&name, e.message))?;
    }
    Ok(())
}
