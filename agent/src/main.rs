//! `machinist-agent`: runs in the RAM disk (started by its `/init`). Reads its instructions from
//! the kernel command line and brings up the boot interface. In discovery mode it inventories
//! the hardware and reports it to the boot services with the machine's token (retrying while
//! they are unreachable); in install mode it fetches the install plan and streams the Role's
//! image to the target disk ([`machinist_agent::install`]), reporting its progress. Then it does
//! what `spec.onSuccess` says. On failure it reports it, uploads its log and leaves a shell on
//! the console.
//!
//! Off a RAM disk (development, tests): `machinist-agent --cmdline FILE --no-network --no-power
//! [--dev-root DIR]`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use machinist_agent::backoff::Backoff;
use machinist_agent::install;
use machinist_agent::kexec;
use machinist_agent::logbuf::LogBuffer;
use machinist_agent::network;
use machinist_agent::sidecar::Sidecar;
use machinist_agent_protocol::cmdline::{self, Args, Mode, OnSuccess};
use machinist_agent_protocol::progress::Level;
use machinist_agent_protocol::report::Report;

/// machinist's RAM-disk agent.
#[derive(Debug, Parser)]
#[command(name = "machinist-agent", version, about)]
struct Options {
    /// Where the kernel command line is read.
    #[arg(long, default_value = "/proc/cmdline")]
    cmdline: PathBuf,
    /// Root of the /sys and /proc trees inventoried.
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// Leave the network as it is (it is already configured).
    #[arg(long)]
    no_network: bool,
    /// Do not power off or reboot at the end; exit instead.
    #[arg(long)]
    no_power: bool,
    /// Where the plan's `/dev/…` target disk is looked up (tests point it at a directory of
    /// files).
    #[arg(long, default_value = "/dev")]
    dev_root: PathBuf,
}

/// Attempts at starting an image download before the install fails.
const DOWNLOAD_ATTEMPTS: u32 = 6;

/// Bytes of log kept for upload.
const LOG_KEEP: usize = 256 * 1024;
// What is kept must fit one upload with the boot services' default limit.
const _: () = assert!(LOG_KEEP <= machinist_agent_protocol::log::DEFAULT_BODY_LIMIT);

fn main() -> ExitCode {
    let log = LogBuffer::new(LOG_KEEP);
    tracing_subscriber::fmt().with_writer(log.clone()).with_ansi(false).with_target(false).init();
    let options = Options::parse();
    let started = Instant::now();
    let args = match std::fs::read_to_string(&options.cmdline)
        .with_context(|| format!("failed to read {}", options.cmdline.display()))
        .and_then(|text| cmdline::parse(&text).context("not booted by machinist"))
    {
        Ok(args) => args,
        Err(error) => {
            tracing::error!("{error:#}");
            return ExitCode::FAILURE;
        }
    };
    if args.debug {
        tracing::info!("machinist.debug=1: a shell on the console");
        let _ = std::process::Command::new("busybox").arg("sh").spawn();
    }
    let sidecar = Sidecar::new(&args, Backoff::default());
    match run(&options, &args, &sidecar) {
        Ok(installed) => {
            tracing::info!(elapsed = ?started.elapsed(), "done");
            finish(&options, args.on_success, installed.as_deref(), &sidecar)
        }
        Err(error) => {
            tracing::error!("{error:#}");
            if let Err(progress) = sidecar.progress("failed", &format!("{error:#}"), Level::Error) {
                tracing::warn!(%progress, "failed to report the failure as progress");
            }
            if let Err(upload) = sidecar.upload_log(&log.text()) {
                tracing::error!(%upload, "failed to upload the log");
            }
            ExitCode::FAILURE
        }
    }
}

/// Does what the mode says; in install mode, returns the disk installed.
fn run(options: &Options, args: &Args, sidecar: &Sidecar) -> Result<Option<PathBuf>> {
    tracing::info!(machine = %args.machine, mode = ?args.mode, url = %args.url, "machinist agent starting");
    if !options.no_network {
        let interface =
            network::bring_up(&args.mac, Duration::from_secs(60)).context("failed to bring up the network")?;
        tracing::info!(%interface, "network up");
    }
    if args.mode == Mode::Install {
        return install_role(options, sidecar).map(Some);
    }
    let inventory = machinist_agent::Inventory::collect(&options.root).context("failed to take the inventory")?;
    let items = machinist_agent::to_items(&inventory);
    tracing::info!(items = items.len(), disks = inventory.disks.len(), nics = inventory.nics.len(), "inventory taken");
    if let Err(error) = sidecar.progress("inventory", &format!("{} items", items.len()), Level::Info) {
        tracing::warn!(%error, "failed to report progress");
    }
    sidecar
        .report(&Report { items }, |attempt, why| tracing::warn!(attempt, %why, "report not delivered; retrying"))
        .context("failed to deliver the hardware report")?;
    tracing::info!("hardware report delivered");
    Ok(None)
}

/// Install mode: the plan, the image, the reports ([`install::install`]); the disk written.
fn install_role(options: &Options, sidecar: &Sidecar) -> Result<PathBuf> {
    let (plan, written) = install::install(sidecar, &options.dev_root, DOWNLOAD_ATTEMPTS)?;
    tracing::info!(
        attempt = plan.attempt,
        disk = %plan.plan.target_disk,
        bytes = written.bytes,
        downloaded = written.downloaded,
        "installed"
    );
    Ok(install::device_path(&options.dev_root, &plan.plan.target_disk)?)
}

/// What `onSuccess` says. `kexec` after an install boots the installed kernel
/// ([`machinist_agent::kexec`]); when that cannot be prepared, and after discovery, it reboots
/// through the firmware like `reboot` (the boot services serve an installed machine local boot).
fn finish(options: &Options, on_success: OnSuccess, installed: Option<&Path>, sidecar: &Sidecar) -> ExitCode {
    let kexec_loaded = match (on_success, installed) {
        (OnSuccess::Kexec, Some(disk)) => prepare_kexec(disk, options.no_power, sidecar),
        _ => false,
    };
    if options.no_power {
        tracing::info!(?on_success, "--no-power: exiting instead");
        return ExitCode::SUCCESS;
    }
    nix::unistd::sync();
    let mode = match on_success {
        OnSuccess::Halt => nix::sys::reboot::RebootMode::RB_POWER_OFF,
        OnSuccess::Kexec if kexec_loaded => nix::sys::reboot::RebootMode::RB_KEXEC,
        OnSuccess::Reboot | OnSuccess::Kexec => nix::sys::reboot::RebootMode::RB_AUTOBOOT,
        OnSuccess::Console => {
            tracing::info!("onSuccess: console — staying up");
            // /init starts a shell on the console when the agent exits.
            return ExitCode::SUCCESS;
        }
    };
    tracing::info!(?on_success, ?mode, "powering off or rebooting");
    match nix::sys::reboot::reboot(mode) {
        Ok(never) => match never {},
        Err(error) => {
            tracing::error!(%error, "failed to power off or reboot");
            ExitCode::FAILURE
        }
    }
}

/// Finds the installed system's boot entry on `disk` and, unless `dry_run`, loads it with
/// `kexec -l`; says how it went in the log and the boot timeline. Whether a kernel is loaded.
fn prepare_kexec(disk: &Path, dry_run: bool, sidecar: &Sidecar) -> bool {
    let outcome = kexec::find(disk).and_then(|found| {
        let what = format!(
            "{} from {} (partition at byte {}), {} + {} bytes, append {:?}",
            found.entry.kernel,
            found.config,
            found.partition,
            found.kernel.len(),
            found.initrd.len(),
            found.entry.append
        );
        if !dry_run {
            kexec::load(&found, Path::new(kexec::KEXEC), &kexec::scratch_dir())?;
        }
        Ok(what)
    });
    let (loaded, message, level) = match outcome {
        Ok(what) => (!dry_run, what, Level::Info),
        Err(error) => (false, format!("not possible, rebooting through the firmware instead: {error}"), Level::Warning),
    };
    tracing::info!("kexec: {message}");
    if let Err(error) = sidecar.progress("kexec", &message, level) {
        tracing::warn!(%error, "failed to report progress");
    }
    loaded
}
