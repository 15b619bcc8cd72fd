//! The control plane and the boot services on loopback, for tests and benchmarks (feature
//! `cluster`): [`ControlPlane`] is the embedded API server serving machinist's CRDs from a
//! temporary directory, with an admin client; [`BootServices`] runs `machinist-boot` against it
//! from a configuration's text. Both stop when dropped (the API server when its runtime ends).
//!
//! ```no_run
//! # async fn example() -> Result<(), machinist_e2e::cluster::ClusterError> {
//! use machinist_e2e::cluster::{BootServices, ControlPlane};
//! let control = ControlPlane::start().await?;
//! let boot = BootServices::start(&control, &BootServices::http_only(&control.scratch("artifacts")?)).await?;
//! let report_url = format!("{}/machines/vm-1/report", boot.http_url()?);
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Resource};
use tokio_util::sync::CancellationToken;

/// The Secret holding the agent token of a Machine (`token_secret_name(namespace, machine)`),
/// as the boot services name it, in the namespace of token Secrets (by default
/// [`DEFAULT_TOKEN_NAMESPACE`]): tests read tokens from it to post as the agent does.
pub use machinist_boot::cluster::{DEFAULT_TOKEN_NAMESPACE, MACHINE_ANNOTATION, token_secret_name};

/// What went wrong starting the fixture.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A file or directory could not be made.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The API server did not start.
    #[error("failed to start the control plane: {0}")]
    ControlPlane(#[from] machinist_apiserver::StartError),
    /// No client could be made from its kubeconfig.
    #[error("failed to make a client for the control plane: {0}")]
    Client(String),
    /// The boot services' configuration was refused.
    #[error("the boot services' configuration is invalid: {0}")]
    BootConfig(String),
    /// The boot services did not start, or one of them failed.
    #[error("the boot services failed: {0}")]
    Boot(String),
    /// The components' identities could not be provisioned.
    #[error("failed to provision the components' identities: {0}")]
    Identity(#[from] machinist_apiserver::ProvisionError),
    /// A service that was asked for is not configured.
    #[error("the boot services have no {0} listener")]
    NotListening(&'static str),
}

/// The embedded API server with machinist's CRDs on `127.0.0.1` (any free port), its home in a
/// temporary directory, and an admin client (default namespace `default`).
pub struct ControlPlane {
    /// The kubeconfig it wrote.
    pub kubeconfig: PathBuf,
    /// An admin client (60 s read timeout: a fleet's writes can queue behind each other).
    pub client: Client,
    server: machinist_apiserver::Running,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane").field("address", &self.server.address).field("dir", &self.dir.path()).finish()
    }
}

impl ControlPlane {
    /// Starts it.
    pub async fn start() -> Result<Self, ClusterError> {
        let dir =
            tempfile::tempdir().map_err(|source| ClusterError::Io { what: "temporary directory".into(), source })?;
        let server = machinist_apiserver::start(machinist_apiserver::Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            crds: machinist_crds::all_crds(),
            ..machinist_apiserver::Config::new(dir.path().join("home"))
        })
        .await?;
        let client = client_for(&server.kubeconfig, Duration::from_secs(60)).await?;
        Ok(Self { kubeconfig: server.kubeconfig.clone(), client, server, dir })
    }

    /// Where it listens.
    pub fn address(&self) -> SocketAddr {
        self.server.address
    }

    /// A directory `name` in its temporary directory, created (for artifacts, logs, roots).
    pub fn scratch(&self, name: &str) -> Result<PathBuf, ClusterError> {
        let path = self.dir.path().join(name);
        std::fs::create_dir_all(&path)
            .map_err(|source| ClusterError::Io { what: format!("create {}", path.display()), source })?;
        Ok(path)
    }

    /// Objects of kind `K` in the default namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    {
        Api::default_namespaced(self.client.clone())
    }

    /// A client (60 s read timeout) that acts as the operator's ServiceAccount, with the
    /// least privilege `machinist up` and the Helm chart give it
    /// ([`machinist_crds::access`]), the identities provisioned for Machines in `default`
    /// and tokens in `machinist-system`.
    pub async fn operator_client(&self) -> Result<Client, ClusterError> {
        self.identity_client(machinist_crds::access::OPERATOR, "default", DEFAULT_TOKEN_NAMESPACE).await
    }

    /// A client (60 s read timeout) that acts as the boot services' ServiceAccount, as
    /// [`operator_client`](Self::operator_client) does for the operator.
    pub async fn boot_client(&self) -> Result<Client, ClusterError> {
        self.boot_client_for("default", DEFAULT_TOKEN_NAMESPACE).await
    }

    /// The boot services' client for Machines in `namespace` and tokens in `token_namespace`
    /// (120 s read timeout: a fleet's reports queue behind each other).
    pub async fn boot_client_for(&self, namespace: &str, token_namespace: &str) -> Result<Client, ClusterError> {
        self.identity_client(machinist_crds::access::BOOT, namespace, token_namespace).await
    }

    async fn identity_client(&self, account: &str, namespace: &str, tokens: &str) -> Result<Client, ClusterError> {
        use machinist_crds::access::{self, SYSTEM_NAMESPACE};
        self.server.apply(access::objects(SYSTEM_NAMESPACE, namespace, tokens)).await?;
        let kubeconfig = self.server.service_account_kubeconfig(SYSTEM_NAMESPACE, account).await?;
        client_for(&kubeconfig, Duration::from_secs(120)).await
    }

    /// The agent token Secrets, in [`DEFAULT_TOKEN_NAMESPACE`].
    pub fn token_secrets(&self) -> Api<k8s_openapi::api::core::v1::Secret> {
        Api::namespaced(self.client.clone(), DEFAULT_TOKEN_NAMESPACE)
    }

    /// A client of its own (its own connections), with `read_timeout`.
    pub async fn new_client(&self, read_timeout: Duration) -> Result<Client, ClusterError> {
        client_for(&self.kubeconfig, read_timeout).await
    }

    /// Stops serving (watches end, in-flight requests get 5 s).
    pub async fn stop(self) {
        self.server.stop().await;
    }
}

/// A client from a kubeconfig file.
pub async fn client_for(kubeconfig: &Path, read_timeout: Duration) -> Result<Client, ClusterError> {
    let failed = |e: &dyn std::fmt::Display| ClusterError::Client(format!("{}: {e}", kubeconfig.display()));
    let parsed = Kubeconfig::read_from(kubeconfig).map_err(|e| failed(&e))?;
    let mut config =
        kube::Config::from_custom_kubeconfig(parsed, &KubeConfigOptions::default()).await.map_err(|e| failed(&e))?;
    config.read_timeout = Some(read_timeout);
    Client::try_from(config).map_err(|e| failed(&e))
}

/// `machinist-boot` running in this process against a control plane; stopped on drop.
#[derive(Debug)]
pub struct BootServices {
    running: Option<machinist_boot::service::Running>,
    bound: machinist_boot::service::Bound,
    shutdown: CancellationToken,
}

impl Drop for BootServices {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl BootServices {
    /// Starts the services `yaml` configures (the text of a `boot.yaml`) on `control`, as their
    /// own least-privilege ServiceAccount, as `machinist up` runs them (their namespaces and
    /// RBAC made first, as the admin).
    pub async fn start(control: &ControlPlane, yaml: &str) -> Result<Self, ClusterError> {
        let config = machinist_boot::config::BootConfig::parse(yaml, Path::new("test boot configuration"))
            .map_err(|e| ClusterError::BootConfig(e.to_string()))?;
        let client = control.boot_client_for(&config.namespace, &config.token_namespace).await?;
        Self::start_parsed(client, config).await
    }

    /// Starts the services `yaml` configures as whoever `client` is (against a control plane
    /// of another process: `machinist up` writes the boot services' kubeconfig).
    pub async fn start_as(client: Client, yaml: &str) -> Result<Self, ClusterError> {
        let config = machinist_boot::config::BootConfig::parse(yaml, Path::new("test boot configuration"))
            .map_err(|e| ClusterError::BootConfig(e.to_string()))?;
        Self::start_parsed(client, config).await
    }

    async fn start_parsed(client: Client, config: machinist_boot::config::BootConfig) -> Result<Self, ClusterError> {
        let shutdown = CancellationToken::new();
        let running = machinist_boot::service::start(config, client, shutdown.clone())
            .await
            .map_err(|e| ClusterError::Boot(e.to_string()))?;
        Ok(Self { bound: running.bound.clone(), running: Some(running), shutdown })
    }

    /// Where the services listen.
    pub fn bound(&self) -> &machinist_boot::service::Bound {
        &self.bound
    }

    /// Stops the services and waits until they have (a service that failed says so).
    pub async fn stop(mut self) -> Result<(), ClusterError> {
        self.shutdown.cancel();
        match self.running.take() {
            Some(running) => running.wait().await.map_err(|e| ClusterError::Boot(e.to_string())),
            None => Ok(()),
        }
    }

    /// The configuration of HTTP alone on `127.0.0.1` (any free port), namespace `default`, no
    /// auto-registration, artifacts from `artifacts`: what the agent's reports need.
    pub fn http_only(artifacts: &Path) -> String {
        format!(
            "namespace: default\nautoRegister: false\nhttp:\n  listen: 127.0.0.1:0\n  publicUrl: http://boot.invalid:8080\n  artifactRoot: {}\n",
            artifacts.display()
        )
    }

    /// `http://<address>` of the HTTP server.
    pub fn http_url(&self) -> Result<String, ClusterError> {
        self.bound.http.map(|a| format!("http://{a}")).ok_or(ClusterError::NotListening("HTTP"))
    }

    /// `http://<address>` of the metrics server.
    pub fn metrics_url(&self) -> Result<String, ClusterError> {
        self.bound.metrics.map(|a| format!("http://{a}")).ok_or(ClusterError::NotListening("metrics"))
    }
}
