//! `machinist-boot`: the boot services (DHCP, TFTP, HTTP, metrics) as a process of their own —
//! the sidecar beside the operator in a cluster, or on a boot network's host. `machinist up
//! --boot-config FILE` runs the same services inside the embedded control plane's process.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use machinist_boot::config::BootConfig;
use tokio_util::sync::CancellationToken;

/// mimalloc, not glibc malloc: allocation was a third of the API server's CPU under a fleet of
/// writes, and glibc fragments across many threads (see the workspace Cargo.toml).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// machinist's boot services: DHCP (full or proxy), TFTP and HTTP for network-booting machines,
/// reading Machines from the Kubernetes API and writing back what they learn.
#[derive(Debug, Parser)]
#[command(name = "machinist-boot", version, about)]
struct Cli {
    /// The configuration file (YAML); see docs/boot-services.md.
    #[arg(long, short)]
    config: PathBuf,
    /// A kubeconfig; default: in-cluster configuration, then $KUBECONFIG, then ~/.kube/config.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Check the configuration and exit.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let config = BootConfig::read(&cli.config)?;
    if cli.check {
        config.dhcp.clone().validate().context("invalid dhcp section")?;
        if let Some(http) = &config.http {
            http.validate().context("invalid http section")?;
        }
        eprintln!("{}: ok", cli.config.display());
        return Ok(());
    }
    let runtime = tokio::runtime::Runtime::new().context("failed to start the async runtime")?;
    runtime.block_on(async move {
        let client = machinist_boot::service::connect(cli.kubeconfig.as_deref()).await?;
        let shutdown = CancellationToken::new();
        let running = machinist_boot::service::start(config, client, shutdown.clone())
            .await
            .context("failed to start the boot services")?;
        eprintln!("machinist-boot is up: {:?}", running.bound);
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("failed to listen for SIGTERM")?;
        let stop = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
            eprintln!("shutting down");
            stop.cancel();
        });
        running.wait().await.context("a boot service failed")
    })
}
