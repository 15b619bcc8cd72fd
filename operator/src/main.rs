//! `machinist-operator`: the controllers as their own process (a Deployment in Kubernetes; two
//! replicas elect a leader on a Lease).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Parser;
use machinist_operator::leader::LeaderConfig;
use tokio_util::sync::CancellationToken;

/// mimalloc, not glibc malloc: allocation was a third of the API server's CPU under a fleet of
/// writes, and glibc fragments across many threads (see the workspace Cargo.toml).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// machinist's controllers: Machine lifecycle, profile binding, CMDB allocation.
#[derive(Debug, Parser)]
#[command(name = "machinist-operator", version)]
struct Args {
    /// kubeconfig to use; default: in-cluster configuration or ~/.kube/config.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Namespace to reconcile; default: every namespace.
    #[arg(long)]
    namespace: Option<String>,
    /// Where /metrics, /healthz and /readyz listen.
    #[arg(long, default_value = "127.0.0.1:9465")]
    metrics_listen: SocketAddr,
    /// Run without leader election (only when a single replica can ever run).
    #[arg(long)]
    no_leader_election: bool,
    /// Namespace of the leader Lease; default: $POD_NAMESPACE, else `default`.
    #[arg(long)]
    lease_namespace: Option<String>,
    /// Name of the leader Lease.
    #[arg(long, default_value = "machinist-operator")]
    lease_name: String,
    /// This replica's name in the Lease; default: $POD_NAME, else host name and process id.
    #[arg(long)]
    identity: Option<String>,
    /// How long a lease lasts without renewal before another replica may take it.
    #[arg(long, default_value_t = 15)]
    lease_duration_seconds: u64,
    /// Machines reconciled at once.
    #[arg(long, default_value_t = 128)]
    concurrency: u16,
    /// Namespace of the Hypervisors.
    #[arg(long, default_value = machinist_crds::access::SYSTEM_NAMESPACE)]
    hypervisor_namespace: String,
    /// A URL prefix install images may come from (repeat for several); none: any http(s) URL.
    #[arg(long = "image-source", value_name = "URL")]
    image_sources: Vec<String>,
}

fn identity() -> String {
    std::env::var("POD_NAME").ok().unwrap_or_else(|| {
        let host =
            std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_default();
        format!("{host}-{}", std::process::id())
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube_runtime=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<()> {
    let client = connect(args.kubeconfig.as_deref()).await?;
    let identity = args.identity.unwrap_or_else(identity);
    let leader = (!args.no_leader_election).then(|| {
        let namespace = args
            .lease_namespace
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| "default".to_owned());
        let mut config = LeaderConfig::new(namespace, args.lease_name, identity.clone());
        let duration = Duration::from_secs(args.lease_duration_seconds.max(1));
        config.lease_duration = duration;
        config.renew_period = duration / 3;
        config.retry_period = (duration / 7).max(Duration::from_millis(200));
        config
    });
    let config = machinist_operator::Config {
        namespace: args.namespace,
        hypervisor_namespace: args.hypervisor_namespace,
        metrics_listen: Some(args.metrics_listen),
        leader,
        concurrency: args.concurrency.max(1),
        instance: Some(identity),
        image_sources: args.image_sources,
    };
    let shutdown = CancellationToken::new();
    let started = machinist_operator::start(client, config, shutdown.clone()).await?;
    if let Some(address) = started.metrics {
        tracing::info!(%address, "metrics, healthz and readyz listening");
    }
    let mut task = started.task;
    tokio::select! {
        finished = &mut task => return finished.context("the operator task failed")?.map_err(Into::into),
        () = signal() => tracing::info!("shutting down"),
    }
    shutdown.cancel();
    // Bounded wait for in-flight reconciles and the lease release.
    match tokio::time::timeout(Duration::from_secs(20), task).await {
        Ok(finished) => finished.context("the operator task failed")?.map_err(Into::into),
        Err(_) => anyhow::bail!("the controllers did not stop within 20 s"),
    }
}

async fn signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

async fn connect(kubeconfig: Option<&std::path::Path>) -> Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let parsed = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("failed to read kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(parsed, &kube::config::KubeConfigOptions::default()).await?
        }
        None => kube::Config::infer().await.context("failed to find a cluster: no in-cluster config or kubeconfig")?,
    };
    kube::Client::try_from(config).context("failed to build the API client")
}
