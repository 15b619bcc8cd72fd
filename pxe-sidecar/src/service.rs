//! Runs the configured boot services together against one cluster: the shared Machine view
//! ([`ClusterMachines`]), the agent token keeper, the boot timeline writer, and DHCP, TFTP,
//! HTTP and metrics — each only if configured. Used by the `machinist-boot` binary and by
//! `machinist up`.

use std::net::SocketAddr;
use std::sync::Arc;

use kube::Client;
use machinist_boot_dhcp::{Engine, Mode, RawConfig};
use machinist_boot_tftp::{TftpMetrics, TftpServer, TransferObserver, install_ipxe};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::cluster::{ClusterError, ClusterMachines, run_token_keeper};
use crate::config::BootConfig;
use crate::http::{self, HttpCounters, UnknownMac};
use crate::metrics::{self, Sources};
use crate::timeline::{Timeline, run_writer};

/// Why the boot services could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The cluster caches did not fill.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// The DHCP configuration is invalid.
    #[error("invalid dhcp configuration: {0}")]
    DhcpConfig(#[from] machinist_boot_dhcp::ConfigError),
    /// The lease database cannot be opened.
    #[error("failed to open the DHCP lease database")]
    Leases(#[from] machinist_boot_dhcp::LeaseError),
    /// DHCP failed.
    #[error("DHCP failed")]
    Dhcp(#[from] machinist_boot_dhcp::ServerError),
    /// TFTP failed or is misconfigured.
    #[error("TFTP failed")]
    Tftp(#[from] machinist_boot_tftp::TftpError),
    /// The HTTP configuration is invalid.
    #[error("invalid http configuration")]
    HttpConfig(#[from] http::ConfigError),
    /// HTTP failed.
    #[error("HTTP failed")]
    Http(#[from] http::ServeError),
    /// A service task ended abnormally.
    #[error("a boot service task failed: {0}")]
    Task(String),
}

/// A Kubernetes client could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The kubeconfig cannot be read.
    #[error("failed to read {path}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// No usable configuration.
    #[error("no usable Kubernetes configuration")]
    Config(#[from] kube::config::KubeconfigError),
    /// In-cluster configuration, $KUBECONFIG and ~/.kube/config all failed.
    #[error("no Kubernetes configuration found")]
    Infer(#[from] kube::config::InferConfigError),
    /// The client cannot be built from the configuration.
    #[error("failed to build the Kubernetes client")]
    Build(#[from] kube::Error),
}

/// A client from `kubeconfig`, or (without one) from the in-cluster configuration, then
/// `$KUBECONFIG`, then `~/.kube/config`.
pub async fn connect(kubeconfig: Option<&std::path::Path>) -> Result<Client, ClientError> {
    let config = match kubeconfig {
        Some(path) => {
            let parsed = kube::config::Kubeconfig::read_from(path)
                .map_err(|source| ClientError::Read { path: path.to_path_buf(), source })?;
            kube::Config::from_custom_kubeconfig(parsed, &kube::config::KubeConfigOptions::default()).await?
        }
        None => kube::Config::infer().await?,
    };
    Ok(Client::try_from(config)?)
}

/// Where the services listen, once bound (ports chosen by the system are resolved).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bound {
    /// TFTP.
    pub tftp: Option<SocketAddr>,
    /// HTTP.
    pub http: Option<SocketAddr>,
    /// Metrics.
    pub metrics: Option<SocketAddr>,
}

impl std::fmt::Display for Bound {
    /// For people: `TFTP on 10.0.0.1:69, HTTP on http://10.0.0.1:8080, metrics on http://…/metrics`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(address) = self.tftp {
            parts.push(format!("TFTP on {address}"));
        }
        if let Some(address) = self.http {
            parts.push(format!("HTTP on http://{address}"));
        }
        if let Some(address) = self.metrics {
            parts.push(format!("metrics on http://{address}/metrics"));
        }
        if parts.is_empty() { f.write_str("no TFTP, HTTP or metrics listener") } else { f.write_str(&parts.join(", ")) }
    }
}

/// The services, bound and running.
#[derive(Debug)]
pub struct Running {
    /// Addresses bound.
    pub bound: Bound,
    tasks: JoinSet<Result<(), ServiceError>>,
    shutdown: CancellationToken,
}

impl Running {
    /// Waits until a service fails (its error) or all have stopped after `shutdown`.
    pub async fn wait(mut self) -> Result<(), ServiceError> {
        while let Some(joined) = self.tasks.join_next().await {
            let result = joined.map_err(|e| ServiceError::Task(e.to_string())).and_then(|r| r);
            if let Err(error) = result {
                self.shutdown.cancel();
                while self.tasks.join_next().await.is_some() {}
                return Err(error);
            }
        }
        Ok(())
    }
}

/// The name of the chain script written into the TFTP root when HTTP is configured.
pub const CHAIN_SCRIPT: &str = "machinist.ipxe";

/// The chain script: an iPXE client that fetched it over TFTP (`boot.ipxeScriptUrl:
/// machinist.ipxe`) goes on to its own script over HTTP, named by the MAC of the interface it
/// booted from.
pub fn chain_script(public_url: &str) -> String {
    format!("#!ipxe\nchain {public_url}/ipxe/${{netX/mac}}\n")
}

fn install_chain_script(root: &std::path::Path, public_url: &str) -> Result<(), ServiceError> {
    let err = |source| machinist_boot_tftp::TftpError::Root { root: root.to_path_buf(), source };
    std::fs::create_dir_all(root).map_err(err)?;
    let temporary = root.join(format!(".{CHAIN_SCRIPT}.tmp"));
    std::fs::write(&temporary, chain_script(public_url)).map_err(err)?;
    std::fs::rename(&temporary, root.join(CHAIN_SCRIPT)).map_err(err)?;
    Ok(())
}

/// The DHCP settings our own HTTP service implies, where the configuration leaves them out:
/// iPXE clients chain to `{publicUrl}/ipxe/{mac}`, and UEFI HTTP boot clients fetch the iPXE
/// binaries from `{publicUrl}/ipxe-binaries` when the TFTP section installs them.
pub fn dhcp_defaults(mut raw: RawConfig, http_public_url: Option<&str>, ipxe_over_http: bool) -> RawConfig {
    if let Some(url) = http_public_url {
        if raw.boot.ipxe_script_url.is_none() {
            raw.boot.ipxe_script_url = Some(format!("{url}/ipxe/{{mac}}"));
        }
        if raw.boot.http_base_url.is_none() && ipxe_over_http {
            raw.boot.http_base_url = Some(format!("{url}/ipxe-binaries"));
        }
    }
    raw
}

/// Binds every configured service and starts it; they stop when `shutdown` is cancelled.
pub async fn start(config: BootConfig, client: Client, shutdown: CancellationToken) -> Result<Running, ServiceError> {
    let cluster = ClusterMachines::start(client, config.cluster(), shutdown.clone()).await?;
    let mut tasks: JoinSet<Result<(), ServiceError>> = JoinSet::new();
    let mut bound = Bound::default();
    let mut sources = Sources::default();

    let (timeline, steps) = Timeline::new();
    sources.timeline = Some(timeline.counters_handle());
    {
        let (sink, counters, flush, stop) =
            (Arc::new(cluster.clone()), timeline.counters_handle(), config.flush_interval(), shutdown.clone());
        tasks.spawn(async move {
            run_writer(steps, sink, counters, flush, stop).await;
            Ok(())
        });
    }
    tasks.spawn({
        let (cluster, stop) = (cluster.clone(), shutdown.clone());
        async move {
            run_token_keeper(cluster, stop).await;
            Ok(())
        }
    });

    // HTTP first: DHCP's default iPXE script URL points at it.
    let http_public_url = config.http.as_ref().map(|h| h.public_url.trim_end_matches('/').to_owned());
    if let Some(http_config) = &config.http {
        let mut settings = http_config.validate()?;
        if config.auto_register {
            settings.unknown_mac = UnknownMac::Register;
        }
        // UEFI HTTP boot clients fetch the same iPXE binaries the TFTP server serves.
        settings.ipxe_binaries =
            config.tftp.as_ref().filter(|t| t.ipxe_source.is_some()).and_then(|t| std::fs::canonicalize(&t.root).ok());
        let counters = Arc::new(HttpCounters::default());
        sources.http = Some(counters.clone());
        if let Some(listener) = http::bind(http_config.listen).await? {
            bound.http = listener.local_addr().ok();
            let source = Arc::new(cluster.clone());
            let router = http::router_with(settings, source.clone(), source, Some(timeline.clone()), counters);
            let stop = shutdown.clone();
            tasks.spawn(async move { http::serve(listener, router, stop).await.map_err(ServiceError::from) });
        }
    }

    if let Some(section) = &config.tftp {
        let tftp_config = section.to_tftp_config();
        if let Some(source) = &section.ipxe_source {
            std::fs::create_dir_all(&section.root)
                .map_err(|source| machinist_boot_tftp::TftpError::Root { root: section.root.clone(), source })?;
            // install_ipxe says what it installed and what is missing.
            install_ipxe(source, &section.root)?;
        }
        if let Some(url) = &http_public_url {
            install_chain_script(&section.root, url)?;
        }
        let metrics = Arc::new(TftpMetrics::default());
        sources.tftp = Some(metrics.clone());
        let observer: Arc<dyn TransferObserver> = Arc::new(timeline.clone());
        if let Some(server) = TftpServer::bind_observed(&tftp_config, metrics, Some(observer)).await? {
            bound.tftp = Some(server.local_addr());
            let stop = shutdown.clone();
            tasks.spawn(async move { server.serve(stop).await.map_err(ServiceError::from) });
        }
    }

    let ipxe_over_http = config.tftp.as_ref().is_some_and(|t| t.ipxe_source.is_some());
    let dhcp_raw = dhcp_defaults(config.dhcp.clone(), http_public_url.as_deref(), ipxe_over_http);
    let dhcp_config = Arc::new(dhcp_raw.validate()?);
    if dhcp_config.enabled() {
        if config.auto_register && dhcp_config.mode == Mode::Full && dhcp_config.dynamic_range.is_none() {
            tracing::warn!("autoRegister is on but dhcp.dynamicRange is not set: unknown machines get no address");
        }
        let engine =
            Arc::new(Engine::open(dhcp_config, Arc::new(cluster.clone()))?.with_observer(Arc::new(timeline.clone())));
        sources.dhcp = Some(engine.clone());
        let stop = shutdown.clone();
        tasks.spawn(async move { machinist_boot_dhcp::run(engine, stop).await.map_err(ServiceError::from) });
    } else {
        tracing::info!("no DHCP interface configured: DHCP is off");
    }

    if let Some(section) = &config.metrics
        && let Some(listener) = http::bind(Some(section.listen)).await?
    {
        bound.metrics = listener.local_addr().ok();
        let router = metrics::router(sources);
        let stop = shutdown.clone();
        tasks.spawn(async move { http::serve(listener, router, stop).await.map_err(ServiceError::from) });
    }
    tracing::info!(listening = %bound, namespace = %config.namespace, token_namespace = %config.token_namespace, auto_register = config.auto_register, "boot services up");
    Ok(Running { bound, tasks, shutdown })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_http_service_gives_dhcp_its_boot_urls() {
        let raw = dhcp_defaults(RawConfig::default(), Some("http://10.0.0.1:8080"), true);
        assert_eq!(raw.boot.ipxe_script_url.as_deref(), Some("http://10.0.0.1:8080/ipxe/{mac}"));
        assert_eq!(raw.boot.http_base_url.as_deref(), Some("http://10.0.0.1:8080/ipxe-binaries"));
        let without_binaries = dhcp_defaults(RawConfig::default(), Some("http://10.0.0.1:8080"), false);
        assert_eq!(without_binaries.boot.http_base_url, None, "nothing to serve them from");
        let mut configured = RawConfig::default();
        configured.boot.http_base_url = Some("http://cdn/ipxe".into());
        let kept = dhcp_defaults(configured, Some("http://10.0.0.1:8080"), true);
        assert_eq!(kept.boot.http_base_url.as_deref(), Some("http://cdn/ipxe"));
        assert_eq!(dhcp_defaults(RawConfig::default(), None, true).boot.ipxe_script_url, None);
    }
}
