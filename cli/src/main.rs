//! `machinist`: the command people run.

mod demo;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use machinist_crds::{generated, manifest, validation::Validator};

/// mimalloc, not glibc malloc: allocation was a third of the API server's CPU under a fleet of
/// writes, and glibc fragments across many threads (see the workspace Cargo.toml).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Declarative provisioning of bare-metal servers and virtual machines.
#[derive(Debug, Parser)]
#[command(name = "machinist", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run machinist on this machine: the embedded control plane (Kubernetes API for the
    /// machinist kinds, SQLite storage, HTTPS with a generated CA and an admin token) until
    /// interrupted. Point kubectl at the kubeconfig it writes.
    Up {
        /// Directory for the database, certificates, token and kubeconfig.
        #[arg(long, default_value = ".machinist")]
        home: PathBuf,
        /// Address the API listens on.
        #[arg(long, default_value = "127.0.0.1:6443")]
        listen: std::net::SocketAddr,
        /// Seconds an Event lives after it was last written (Kubernetes' --event-ttl).
        #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..))]
        event_ttl: u64,
        /// Also run the boot services (DHCP, TFTP, HTTP) in this process, configured by this
        /// file (see docs/boot-services.md).
        #[arg(long)]
        boot_config: Option<PathBuf>,
        /// Where the operator's /metrics, /healthz and /readyz listen (port 0: any free port).
        #[arg(long, default_value = "127.0.0.1:9465")]
        operator_metrics: std::net::SocketAddr,
        /// Run only the control plane (and boot services): no controllers in this process.
        #[arg(long)]
        no_operator: bool,
        /// Demonstrate the whole chain: a network namespace and bridge, the boot services in
        /// it, the seed examples applied, and QEMU VMs that PXE-boot, report, are matched and
        /// allocated, shown live. Needs root and QEMU (scripts/deps). Ctrl-C stops it all.
        #[arg(long)]
        demo: bool,
        /// VMs the demo boots (eDeploy's vm CMDB has 5 entries: more wait, exhausted).
        #[arg(long, default_value_t = 2, requires = "demo")]
        vms: usize,
        /// Static agent to build the demo's RAM disk with, when it has none yet
        /// (`--agent "$(scripts/agent)"`).
        #[arg(long, requires = "demo")]
        agent: Option<PathBuf>,
        /// The repository's examples directory (the demo applies its seed examples).
        #[arg(long, default_value = "examples", requires = "demo")]
        examples: PathBuf,
    },
    /// Print, regenerate or check the CustomResourceDefinitions and their reference.
    Crds {
        #[command(subcommand)]
        action: Option<CrdsAction>,
    },
    /// Import configuration from another tool.
    Import {
        #[command(subcommand)]
        source: ImportSource,
    },
    /// Check manifests (files or directories of .yaml/.yml/.json) against the machinist
    /// schemas and rules, as the API server would, without one.
    Validate {
        /// Files or directories to check.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Build the RAM disk machines boot into: a Debian kernel and an initrd with busybox, the
    /// NIC and disk drivers and the agent (see docs/ramdisk.md).
    Ramdisk {
        #[command(subcommand)]
        action: RamdiskAction,
    },
}

#[derive(Debug, Subcommand)]
enum RamdiskAction {
    /// Download the kernel package and build `vmlinuz`, `initrd.gz` and `manifest.json`.
    Build {
        /// The agent: a statically linked binary, installed as /bin/machinist-agent. Without
        /// it the RAM disk says so on the console and starts a shell.
        #[arg(long)]
        agent: Option<PathBuf>,
        /// Output directory (the kernel package is kept in its `packages/`).
        #[arg(long, default_value = ".machinist/ramdisk")]
        out: PathBuf,
        /// Debian kernel package; default: the one `linux-image-amd64` depends on.
        #[arg(long)]
        kernel_package: Option<String>,
        /// A directory of firmware files (like /lib/firmware), searched before the firmware
        /// packages; may be repeated.
        #[arg(long = "firmware-dir", value_name = "DIR")]
        firmware_dirs: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum ImportSource {
    /// Read an eDeploy configuration directory (`state`, `*.specs`, `*.cmdb`; `*.configure`
    /// noted, not executed) and print HardwareProfile and Cmdb manifests that reproduce it.
    Edeploy {
        /// The eDeploy CONFIGDIR.
        dir: PathBuf,
        /// Namespace of the objects written.
        #[arg(long, default_value = "default")]
        namespace: String,
    },
}

#[derive(Debug, Subcommand)]
enum CrdsAction {
    /// Print every CRD as one YAML stream (`machinist crds print | kubectl apply -f -`).
    Print,
    /// Write the CRD manifests, the chart's copy and the CRD reference under a repository.
    Generate {
        /// Repository root.
        #[arg(long, default_value = ".")]
        root: PathBuf,
    },
    /// Fail if the committed generated files differ from what the code generates.
    Check {
        /// Repository root.
        #[arg(long, default_value = ".")]
        root: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo draws its own table: only warnings from the services, unless RUST_LOG says more.
    let quiet = matches!(cli.command, Command::Up { demo: true, .. });
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(if quiet { "warn" } else { "info" })),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Crds { action: None | Some(CrdsAction::Print) } => {
            let yaml = generated::all_crds_yaml()?;
            std::io::stdout().write_all(yaml.as_bytes()).context("failed to write to stdout")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Crds { action: Some(CrdsAction::Generate { root }) } => generate(&root),
        Command::Crds { action: Some(CrdsAction::Check { root }) } => check(&root),
        Command::Validate { paths } => validate(&paths),
        Command::Up {
            home,
            listen,
            event_ttl,
            boot_config,
            operator_metrics,
            no_operator,
            demo,
            vms,
            agent,
            examples,
        } => {
            let demo = demo.then(|| demo::Options {
                vms,
                ramdisk: home.join("ramdisk"),
                agent,
                examples,
                work: home.join("demo"),
            });
            if demo.is_some() && (no_operator || boot_config.is_some()) {
                anyhow::bail!(
                    "--demo runs its own boot services and the operator: drop --boot-config and --no-operator"
                );
            }
            let event_ttl = std::time::Duration::from_secs(event_ttl);
            up(home, listen, event_ttl, boot_config, (!no_operator).then_some(operator_metrics), demo)
        }
        Command::Import { source: ImportSource::Edeploy { dir, namespace } } => import_edeploy(&dir, &namespace),
        Command::Ramdisk { action: RamdiskAction::Build { agent, out, kernel_package, firmware_dirs } } => {
            ramdisk_build(agent, &out, kernel_package, firmware_dirs)
        }
    }
}

fn up(
    home: PathBuf,
    listen: std::net::SocketAddr,
    event_ttl: std::time::Duration,
    boot_config: Option<PathBuf>,
    operator_metrics: Option<std::net::SocketAddr>,
    demo: Option<demo::Options>,
) -> Result<ExitCode> {
    // Read the boot configuration before starting anything: a mistake in it stops here.
    let boot_config = boot_config
        .map(|path| machinist_boot::config::BootConfig::read(&path))
        .transpose()
        .context("invalid boot services configuration")?;
    let token_namespace = boot_config.as_ref().map(|c| c.token_namespace.clone());
    let runtime = tokio::runtime::Runtime::new().context("failed to start the async runtime")?;
    runtime.block_on(async move {
        let mut config = machinist_apiserver::Config {
            listen,
            crds: machinist_crds::all_crds(),
            ..machinist_apiserver::Config::new(&home)
        };
        config.limits.event_ttl = event_ttl;
        let running = machinist_apiserver::start(config)
            .await
            .with_context(|| format!("failed to start the control plane in {}", home.display()))?;
        let kubeconfig = std::fs::canonicalize(&running.kubeconfig).unwrap_or_else(|_| running.kubeconfig.clone());
        let shutdown = tokio_util::sync::CancellationToken::new();
        let client = machinist_boot::service::connect(Some(&kubeconfig))
            .await
            .context("failed to connect to the control plane it runs")?;
        // The components run as their own ServiceAccounts with least privilege (the RBAC the
        // Helm chart ships); the admin token stays with the person.
        let machine_namespace = boot_config.as_ref().map_or("default", |c| c.namespace.as_str()).to_owned();
        use machinist_crds::access::{self, SYSTEM_NAMESPACE};
        // Agent tokens live in a namespace of their own (made here, as the admin; a
        // machinist-boot started beside uses machinist-system by default).
        let token_namespace = token_namespace.unwrap_or_else(|| SYSTEM_NAMESPACE.to_owned());
        running
            .apply(access::objects(SYSTEM_NAMESPACE, &machine_namespace, &token_namespace))
            .await
            .context("failed to create the components' identities")?;
        let operator_kubeconfig = running
            .service_account_kubeconfig(SYSTEM_NAMESPACE, access::OPERATOR)
            .await
            .context("failed to issue the operator's token")?;
        // Written whether or not they run here: for a machinist-boot started beside it.
        let boot_kubeconfig = running
            .service_account_kubeconfig(SYSTEM_NAMESPACE, access::BOOT)
            .await
            .context("failed to issue the boot services' token")?;
        // Announced once the identities' kubeconfigs are there too.
        eprintln!("machinist is up: Kubernetes API on https://{}", running.address);
        eprintln!("  export KUBECONFIG={}", kubeconfig.display());
        eprintln!("  kubectl get machinist -A");
        let operator_client = machinist_boot::service::connect(Some(&operator_kubeconfig))
            .await
            .context("failed to connect as the operator")?;
        // The operator, as the machinist-operator binary runs it (with leader election, so that
        // a machinist-operator started beside it waits instead of competing).
        let mut operator_task = match operator_metrics {
            None => None,
            Some(metrics_listen) => {
                let identity = format!("machinist-up-{}", std::process::id());
                let leader = machinist_operator::leader::LeaderConfig::new(
                    SYSTEM_NAMESPACE,
                    "machinist-operator",
                    identity.clone(),
                );
                let operator_config = machinist_operator::Config {
                    metrics_listen: Some(metrics_listen),
                    leader: Some(leader),
                    instance: Some(identity),
                    ..machinist_operator::Config::default()
                };
                let operator = machinist_operator::start(operator_client, operator_config, shutdown.clone())
                    .await
                    .context("failed to start the operator")?;
                if let Some(address) = operator.metrics {
                    eprintln!("operator is up: metrics on http://{address}/metrics");
                }
                Some(operator.task)
            }
        };
        let boot = match boot_config {
            None => None,
            Some(boot_config) => {
                let dhcp_interfaces = boot_config.dhcp.interfaces.clone();
                let boot_client = machinist_boot::service::connect(Some(&boot_kubeconfig))
                    .await
                    .context("failed to connect as the boot services")?;
                let boot = machinist_boot::service::start(boot_config, boot_client, shutdown.clone())
                    .await
                    .context("failed to start the boot services")?;
                eprintln!("boot services are up: {}", describe_boot_services(&dhcp_interfaces, &boot.bound));
                Some(boot)
            }
        };
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("failed to listen for SIGTERM")?;
        let boot_result = async {
            match boot {
                Some(boot) => boot.wait().await,
                None => std::future::pending().await,
            }
        };
        let demo_task = demo.map(|options| {
            let (client, kubeconfig, address, stop) =
                (client.clone(), kubeconfig.clone(), running.address, shutdown.clone());
            tokio::spawn(async move { demo::run(client, &kubeconfig, address, options, stop).await })
        });
        let mut demo_task = demo_task;
        let demo_result = async {
            match demo_task.as_mut() {
                Some(task) => task.await,
                None => std::future::pending().await,
            }
        };
        let operator_result = async {
            match operator_task.as_mut() {
                Some(task) => task.await,
                None => std::future::pending().await,
            }
        };
        let failed: Option<anyhow::Error> = tokio::select! {
            result = tokio::signal::ctrl_c() => { result.context("failed to listen for SIGINT")?; None }
            _ = terminate.recv() => None,
            result = boot_result => result.err().map(|e| anyhow::Error::new(e).context("a boot service failed")),
            result = demo_result => match result {
                Ok(Ok(())) => None,
                Ok(Err(error)) => Some(error.context("the demo failed")),
                Err(error) => Some(anyhow::Error::new(error).context("the demo task failed")),
            },
            result = operator_result => Some(match result {
                Ok(Ok(())) => anyhow::anyhow!("the operator stopped"),
                Ok(Err(error)) => anyhow::Error::new(error).context("the operator failed"),
                Err(error) => anyhow::Error::new(error).context("the operator task failed"),
            }),
        };
        eprintln!("shutting down");
        shutdown.cancel();
        // The demo kills its VMs and deletes its namespace before the control plane goes.
        if let Some(task) = demo_task.filter(|t| !t.is_finished())
            && tokio::time::timeout(std::time::Duration::from_secs(30), task).await.is_err()
        {
            eprintln!("the demo did not stop within 30 s");
        }
        // Bounded wait for in-flight reconciles and the lease release.
        if let Some(task) = operator_task.filter(|t| !t.is_finished())
            && tokio::time::timeout(std::time::Duration::from_secs(10), task).await.is_err()
        {
            eprintln!("the operator did not stop within 10 s");
        }
        running.stop().await;
        match failed {
            Some(error) => Err(error),
            None => Ok(ExitCode::SUCCESS),
        }
    })
}

/// Where the boot services answer, for people: `DHCP on br0, TFTP on 10.0.0.1:69, HTTP on
/// http://10.0.0.1:8080, metrics on http://…/metrics`.
fn describe_boot_services(dhcp_interfaces: &[String], bound: &machinist_boot::service::Bound) -> String {
    let listeners =
        (bound.tftp.is_some() || bound.http.is_some() || bound.metrics.is_some()).then(|| bound.to_string());
    match (dhcp_interfaces.is_empty(), listeners) {
        (true, None) => "none configured (no DHCP interface, TFTP or HTTP address)".to_owned(),
        (true, Some(listeners)) => listeners,
        (false, None) => format!("DHCP on {}", dhcp_interfaces.join(", ")),
        (false, Some(listeners)) => format!("DHCP on {}, {listeners}", dhcp_interfaces.join(", ")),
    }
}

fn ramdisk_build(
    agent: Option<PathBuf>,
    out: &Path,
    kernel_package: Option<String>,
    firmware_dirs: Vec<PathBuf>,
) -> Result<ExitCode> {
    let mut recipe = machinist_ramdisk::RamdiskRecipe::production(agent);
    recipe.kernel_package = kernel_package;
    recipe.firmware.dirs = firmware_dirs;
    let downloads = out.join(machinist_ramdisk::DOWNLOADS_DIR);
    let built = machinist_ramdisk::build(&recipe, out, &downloads)
        .with_context(|| format!("failed to build the RAM disk in {}", out.display()))?;
    let manifest = &built.manifest;
    for warning in &manifest.warnings {
        eprintln!("warning: {warning}");
    }
    if recipe.agent.is_none() {
        eprintln!("warning: no --agent: the RAM disk starts a shell on the console instead");
    }
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let mut stdout = std::io::stdout().lock();
    let lines = format!(
        "kernel: {} ({:.1} MiB, {})\ninitrd: {} ({:.1} MiB, {:.1} MiB uncompressed)\nmodules: {} ({})\n\
         firmware: {} files, {} missing ({})\n",
        built.kernel.display(),
        mib(manifest.kernel_size),
        manifest.kernel_package,
        built.initrd.display(),
        mib(manifest.initrd_size),
        mib(manifest.uncompressed_size),
        manifest.modules.len(),
        manifest.modules.join(" "),
        manifest.firmware.len(),
        manifest.missing_firmware.len(),
        if manifest.firmware_packages.is_empty() {
            "no firmware package".to_owned()
        } else {
            manifest.firmware_packages.join(", ")
        },
    );
    stdout.write_all(lines.as_bytes()).context("failed to write to stdout")?;
    Ok(ExitCode::SUCCESS)
}

fn import_edeploy(dir: &Path, namespace: &str) -> Result<ExitCode> {
    let mut imported = machinist_matching::import_edeploy_dir(dir)
        .with_context(|| format!("failed to import the eDeploy configuration in {}", dir.display()))?;
    imported.set_namespace(namespace);
    let yaml = imported.to_yaml().context("failed to write the imported objects as YAML")?;
    std::io::stdout().write_all(yaml.as_bytes()).context("failed to write to stdout")?;
    Ok(ExitCode::SUCCESS)
}

fn generate(root: &Path) -> Result<ExitCode> {
    for dir in generated::GENERATED_DIRS {
        let dir = root.join(dir);
        if dir.is_dir() {
            // Start clean so a renamed kind leaves nothing behind.
            std::fs::remove_dir_all(&dir).with_context(|| format!("failed to clear {}", dir.display()))?;
        }
    }
    for file in generated::files()? {
        let path = root.join(&file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("failed to create {}", parent.display()))?;
        }
        std::fs::write(&path, &file.contents).with_context(|| format!("failed to write {}", path.display()))?;
        eprintln!("wrote {}", file.path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn check(root: &Path) -> Result<ExitCode> {
    let drifts = generated::drift(root)?;
    if drifts.is_empty() {
        eprintln!("generated files are up to date");
        return Ok(ExitCode::SUCCESS);
    }
    for drift in &drifts {
        eprintln!("{}: {}", drift.path.display(), drift.detail);
    }
    eprintln!("{} generated file(s) out of date: run `machinist crds generate`", drifts.len());
    Ok(ExitCode::FAILURE)
}

fn manifest_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut entries = Vec::new();
            for entry in std::fs::read_dir(path).with_context(|| format!("failed to read {}", path.display()))? {
                entries.push(entry.with_context(|| format!("failed to read {}", path.display()))?.path());
            }
            entries.sort();
            let (dirs, plain): (Vec<_>, Vec<_>) = entries.into_iter().partition(|p| p.is_dir());
            files.extend(
                plain
                    .into_iter()
                    .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json"))),
            );
            files.extend(manifest_files(&dirs)?);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

fn validate(paths: &[PathBuf]) -> Result<ExitCode> {
    let validator = Validator::machinist()?;
    let known: Vec<String> = validator.kinds().map(|(_, kind)| kind.to_owned()).collect();
    let (mut valid, mut invalid, mut foreign) = (0usize, 0usize, 0usize);
    for file in manifest_files(paths)? {
        let text = std::fs::read_to_string(&file).with_context(|| format!("failed to read {}", file.display()))?;
        let documents = match manifest::parse_documents(&text) {
            Ok(documents) => documents,
            Err(error) => {
                eprintln!("{}: {error}", file.display());
                invalid += 1;
                continue;
            }
        };
        for document in documents {
            let kind = document.get("kind").and_then(|k| k.as_str()).unwrap_or_default();
            let group_matches = document
                .get("apiVersion")
                .and_then(|v| v.as_str())
                .is_some_and(|v| v.starts_with(&format!("{}/", machinist_crds::GROUP)));
            if !group_matches && !known.iter().any(|k| k == kind) {
                // Namespaces, Secrets, Argo CD Applications…: not ours to judge.
                foreign += 1;
                continue;
            }
            match validator.validate(&document) {
                Ok(()) => valid += 1,
                Err(error) => {
                    invalid += 1;
                    eprintln!("{}: {} {:?} is invalid:", file.display(), error.kind, error.name);
                    for field_error in &error.errors {
                        eprintln!("  - {field_error}");
                    }
                }
            }
        }
    }
    eprintln!("{valid} valid, {invalid} invalid, {foreign} not machinist objects (not checked)");
    Ok(if invalid == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
