//! `machinist up --demo`: the whole chain on one machine. A network namespace with a bridge
//! (192.168.122.1/24, libvirt's default network, which eDeploy's `vm` profile expects), the
//! boot services inside it, the seed examples applied (eDeploy's `hp` and `vm` profiles and
//! their `generate()` CMDBs, the api/ui Roles) and, for the `vm` profile's Role `mysql`, the
//! demo's system image (`machinist_lab::system`) in place of eDeploy's tree; and N QEMU VMs
//! that PXE-boot the RAM disk, report their hardware, are matched and allocated, install the
//! image, boot their disk and phone home: Ready — with one line per machine in the terminal
//! while `kubectl` sees the same. Stopping it stops the VMs and deletes the namespace.
//!
//! Everything it prints is for the person running it: what it set up, where to look, and how
//! to stop it. The services' own logs stay at warnings unless `RUST_LOG` asks for more.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client, ResourceExt};
use machinist_crds::machine::MachinePhase;
use machinist_crds::{Cmdb, HardwareProfile, Machine, Role};
use machinist_lab::{BRIDGE, Lab, LabHypervisor, Vm, VmConfig};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Kubernetes namespace the demo's objects live in.
const NAMESPACE: &str = "edeploy";
const BRIDGE_ADDRESS: Ipv4Addr = Ipv4Addr::new(192, 168, 122, 1);

/// What the demo needs.
#[derive(Debug)]
pub struct Options {
    /// VMs to boot.
    pub vms: usize,
    /// Directory with the RAM disk (`vmlinuz`, `initrd.gz`); built there when missing.
    pub ramdisk: PathBuf,
    /// Static agent to build the RAM disk with (`scripts/agent`).
    pub agent: Option<PathBuf>,
    /// The repository's `examples/` directory.
    pub examples: PathBuf,
    /// Work directory (disks, configuration).
    pub work: PathBuf,
}

/// Runs the demo until `shutdown`; everything it started is stopped and removed on return.
pub async fn run(
    client: Client,
    kubeconfig: &Path,
    api: SocketAddr,
    options: Options,
    shutdown: CancellationToken,
) -> Result<()> {
    machinist_lab::host::check().context("the demo cannot run on this host")?;
    ensure_ramdisk(&options).await?;
    std::fs::create_dir_all(&options.work).with_context(|| format!("failed to create {}", options.work.display()))?;

    let lab = Lab::new(BRIDGE_ADDRESS).context("failed to create the demo's network namespace")?;
    eprintln!(
        "demo network: bridge {BRIDGE} with {BRIDGE_ADDRESS}/24, in network namespace {} (your own interfaces are \
         not touched)",
        lab.name()
    );

    // The boot services run inside the namespace; they reach the API through a relay listening
    // on the namespace's loopback (same address, so the API's certificate still matches).
    let relay = lab
        .run_inside(|| std::net::TcpListener::bind("127.0.0.1:0"))
        .context("failed to enter the demo's network namespace")?
        .context("failed to listen in the demo's network namespace")?;
    let relay_port = relay.local_addr()?.port();
    relay.set_nonblocking(true)?;
    let relay = tokio::net::TcpListener::from_std(relay)?;
    tokio::spawn(run_relay(relay, api, shutdown.clone()));
    let boot_kubeconfig = options.work.join("boot-kubeconfig");
    let text =
        std::fs::read_to_string(kubeconfig).with_context(|| format!("failed to read {}", kubeconfig.display()))?;
    std::fs::write(
        &boot_kubeconfig,
        text.replace(&format!("127.0.0.1:{}", api.port()), &format!("127.0.0.1:{relay_port}")),
    )
    .with_context(|| format!("failed to write {}", boot_kubeconfig.display()))?;

    let boot_config =
        machinist_boot::config::BootConfig::parse(&boot_yaml(&options), Path::new("demo boot configuration"))
            .context("the demo's boot configuration is invalid")?;
    let dhcp_interfaces = boot_config.dhcp.interfaces.clone();
    let boot_stop = shutdown.child_token();
    let (bound, bound_rx) = tokio::sync::oneshot::channel();
    let (done, mut done_rx) = tokio::sync::oneshot::channel::<Result<()>>();
    let boot_thread = {
        let stop = boot_stop.clone();
        lab.spawn_thread(move || {
            let result = (|| -> Result<()> {
                let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
                runtime.block_on(async move {
                    let client = machinist_boot::service::connect(Some(&boot_kubeconfig)).await?;
                    let running = machinist_boot::service::start(boot_config, client, stop).await?;
                    // The demo waits for this before going on; it is only gone if the demo is.
                    let _ = bound.send(running.bound.clone());
                    running.wait().await?;
                    Ok(())
                })
            })();
            // Received below; gone only once the demo stopped waiting.
            let _ = done.send(result);
        })
        .context("failed to start the boot services in the demo's network namespace")?
    };
    let bound = match bound_rx.await {
        Ok(bound) => bound,
        Err(_) => return Err(boot_failure(done_rx.await).context("the boot services did not start")),
    };
    eprintln!("boot services are up: {}", crate::describe_boot_services(&dhcp_interfaces, &bound));

    apply_examples(&client, &options.examples).await?;
    apply_system_role(&client, &options).await?;
    // With libvirt installed, the operator creates the VMs (the seeds' path); else they are
    // started here with QEMU.
    let hypervisor = if libvirt_installed() {
        let dir = options.work.join("libvirt");
        if dir.exists() {
            // A fresh daemon each run: its definitions and volumes of the last run go.
            std::fs::remove_dir_all(&dir).with_context(|| format!("failed to clear {}", dir.display()))?;
        }
        let hypervisor = LabHypervisor::start(&lab, &dir).context("failed to start the demo's libvirtd")?;
        apply_hypervisor(&client, &hypervisor).await?;
        eprintln!(
            "libvirt: a private libvirtd in the demo's namespace is Hypervisor {HYPERVISOR} (kubectl get hv -n {}); \
             the VMs' consoles are logged in {}",
            machinist_crds::access::SYSTEM_NAMESPACE,
            hypervisor.console_log_dir().display()
        );
        Some(hypervisor)
    } else {
        None
    };
    let names = create_machines(&client, options.vms, hypervisor.is_some()).await?;
    let mut vms = Vec::new();
    let qemu_names = if hypervisor.is_some() { &names[..0] } else { &names[..] };
    for (i, name) in qemu_names.iter().enumerate() {
        let disk = options.work.join(format!("{name}.raw"));
        // Sparse: 8 GiB as eDeploy's vm profile wants (`disk size gt(4)`), nothing written.
        std::fs::File::create(&disk)
            .and_then(|file| file.set_len(8 << 30))
            .with_context(|| format!("failed to create the disk {}", disk.display()))?;
        // The network first, then the disk it installs; reboots are part of the install.
        let config = VmConfig {
            memory_mib: 1024,
            extra_args: vec!["-drive".into(), format!("file={},format=raw,if=virtio", disk.display())],
            boot: "order=nc".into(),
            reboot: true,
            ..VmConfig::new(mac(i))
        };
        vms.push(Vm::start(&lab, config).with_context(|| format!("failed to start the VM of {name}"))?);
    }
    if hypervisor.is_some() {
        eprintln!(
            "created {} for libvirt (QEMU with an emulated CPU: expect a minute or two until they are Ready)",
            counted(names.len(), "Machine", "Machines")
        );
    } else {
        eprintln!(
            "started {} (QEMU with an emulated CPU: expect a minute or two until they are Ready)",
            counted(vms.len(), "VM", "VMs")
        );
    }
    eprintln!(
        "watch them below, or from another shell with the KUBECONFIG above: kubectl -n {NAMESPACE} get machines -w"
    );
    eprintln!("Ctrl-C stops the demo: the VMs are stopped and the network namespace removed");

    let failed = tokio::select! {
        () = show_progress(&client, &names, shutdown.clone()) => None,
        done = &mut done_rx => match done {
            // Ctrl-C stops them too: that is no failure.
            Ok(Ok(())) if shutdown.is_cancelled() => None,
            done => Some(boot_failure(done).context("the boot services stopped")),
        },
    };
    drop(vms); // kills the QEMU processes
    drop(hypervisor); // kills libvirtd and its VMs
    boot_stop.cancel();
    match tokio::task::spawn_blocking(move || boot_thread.join()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::error!(error = %error, "the boot services' thread failed"),
        Err(error) => tracing::error!(error = %error, "failed to wait for the boot services' thread"),
    }
    drop(lab); // deletes the namespace
    eprintln!("demo stopped: the VMs are stopped and the network namespace is removed");
    failed.map_or(Ok(()), Err)
}

/// Why the boot services' thread ended, from what it sent (nothing: it panicked).
fn boot_failure(done: Result<Result<()>, tokio::sync::oneshot::error::RecvError>) -> anyhow::Error {
    match done {
        Ok(Err(error)) => error,
        Ok(Ok(())) => anyhow::anyhow!("they stopped without an error"),
        Err(_) => anyhow::anyhow!("their thread ended without a result (it panicked)"),
    }
}

/// `1 VM`, `2 VMs`.
fn counted(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

async fn ensure_ramdisk(options: &Options) -> Result<()> {
    let have = ["vmlinuz", "initrd.gz"].iter().all(|f| options.ramdisk.join(f).is_file());
    if have {
        return Ok(());
    }
    let Some(agent) = options.agent.clone() else {
        bail!(
            "no RAM disk in {dir} yet: pass --agent \"$(scripts/agent)\" and the demo builds it (or build it with \
             machinist ramdisk build --agent \"$(scripts/agent)\" --out {dir})",
            dir = options.ramdisk.display()
        );
    };
    eprintln!(
        "building the RAM disk the VMs boot into, in {} (only the first time; it downloads a Debian kernel)…",
        options.ramdisk.display()
    );
    let out = options.ramdisk.clone();
    tokio::task::spawn_blocking(move || {
        let recipe = machinist_ramdisk::RamdiskRecipe::production(Some(agent));
        let downloads = out.join(machinist_ramdisk::DOWNLOADS_DIR);
        machinist_ramdisk::build(&recipe, &out, &downloads).map(drop)
    })
    .await?
    .context("failed to build the RAM disk")
}

fn boot_yaml(options: &Options) -> String {
    format!(
        "namespace: {NAMESPACE}\n\
         autoRegister: true\n\
         dhcp:\n  interfaces: [{BRIDGE}]\n  serverAddress: {BRIDGE_ADDRESS}\n  \
         dynamicRange: {{start: 192.168.122.100, end: 192.168.122.150, netmask: 255.255.255.0, gateway: {BRIDGE_ADDRESS}}}\n  \
         boot: {{ipxeScriptUrl: machinist.ipxe}}\n\
         tftp:\n  listen: {BRIDGE_ADDRESS}:69\n  root: {tftp}\n  ipxeSource: /usr/lib/ipxe\n\
         http:\n  listen: {BRIDGE_ADDRESS}:8080\n  publicUrl: http://{BRIDGE_ADDRESS}:8080\n  artifactRoot: {artifacts}\n  \
         ramdisk: {{kernel: vmlinuz, initrd: initrd.gz, args: [console=ttyS0, panic=-1]}}\n\
         timeline:\n  flushMillis: 500\n",
        tftp = options.work.join("tftp").display(),
        artifacts = options.ramdisk.display(),
    )
}

/// Builds the demo's system image into the artifact root (the first time) and applies Role
/// `mysql`, the `vm` profile's, with it as its image: eDeploy's example installs a tree of
/// files, which machinist does not write yet.
async fn apply_system_role(client: &Client, options: &Options) -> Result<()> {
    // Beside the RAM disk, sharing its downloaded kernel package.
    let cache = options.ramdisk.clone();
    let image = tokio::task::spawn_blocking(move || machinist_lab::system::SystemImage::build_cached(&cache))
        .await?
        .with_context(|| {
            format!(
                "failed to build the demo's system image (it needs {} — scripts/deps installs them)",
                machinist_lab::system::PROGRAMS.join(", ")
            )
        })?;
    let images = options.ramdisk.join("images");
    std::fs::create_dir_all(&images).with_context(|| format!("failed to create {}", images.display()))?;
    let served = images.join("system.raw.gz");
    std::fs::copy(&image.gzip, &served).with_context(|| format!("failed to copy the image to {}", served.display()))?;
    let role = json!({
        "apiVersion": "machinist.dev/v1alpha1", "kind": "Role", "metadata": {"name": "mysql", "namespace": NAMESPACE},
        "spec": {
            "version": "D7-F.1.0.0",
            "description": "the demo's system image, in place of eDeploy's mysql tree",
            "install": {"method": "Image", "image": {
                "url": format!("http://{BRIDGE_ADDRESS}:8080/artifacts/images/system.raw.gz"),
                "sha256": image.gzip_sha256, "format": "raw", "compression": "gzip"}},
        },
    });
    let params = PatchParams::apply("machinist-demo").force();
    Api::<Role>::namespaced(client.clone(), NAMESPACE)
        .patch("mysql", &params, &Patch::Apply(&role))
        .await
        .context("failed to apply the demo's Role mysql")?;
    eprintln!(
        "applied Role mysql: the demo's system image ({} bytes), which the vm profile's machines install",
        image.size
    );
    Ok(())
}

/// Relays connections from the namespace's loopback to the API server.
async fn run_relay(listener: tokio::net::TcpListener, api: SocketAddr, shutdown: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => return,
        };
        let Ok((mut inside, _)) = accepted else { continue };
        tokio::spawn(async move {
            if let Ok(mut outside) = tokio::net::TcpStream::connect(api).await {
                let _ = tokio::io::copy_bidirectional(&mut inside, &mut outside).await;
            }
        });
    }
}

/// Applies the profiles and CMDBs of `examples/edeploy` and the Roles of `examples/api-vms`,
/// all in the demo namespace.
async fn apply_examples(client: &Client, examples: &Path) -> Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": NAMESPACE}}))?;
    match namespaces.create(&PostParams::default(), &namespace).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => return Err(e).context(format!("failed to create the Kubernetes namespace {NAMESPACE}")),
    }
    let params = PatchParams::apply("machinist-demo").force();
    for file in ["edeploy/profiles.yaml", "edeploy/cmdbs.yaml", "api-vms/roles.yaml"] {
        let path = examples.join(file);
        let text = std::fs::read_to_string(&path).with_context(|| format!("failed to read {}", path.display()))?;
        let documents: Vec<Value> =
            serde_saphyr::from_multiple(&text).with_context(|| format!("failed to parse {}", path.display()))?;
        for mut document in documents.into_iter().filter(|d| !d.is_null()) {
            document["metadata"]["namespace"] = json!(NAMESPACE);
            let name = document["metadata"]["name"].as_str().unwrap_or_default().to_owned();
            let patch = Patch::Apply(&document);
            let applied = match document["kind"].as_str() {
                Some("HardwareProfile") => Api::<HardwareProfile>::namespaced(client.clone(), NAMESPACE)
                    .patch(&name, &params, &patch)
                    .await
                    .map(drop),
                Some("Cmdb") => {
                    Api::<Cmdb>::namespaced(client.clone(), NAMESPACE).patch(&name, &params, &patch).await.map(drop)
                }
                Some("Role") => {
                    Api::<Role>::namespaced(client.clone(), NAMESPACE).patch(&name, &params, &patch).await.map(drop)
                }
                _ => continue,
            };
            applied.with_context(|| format!("failed to apply {name} from {}", path.display()))?;
        }
        eprintln!("applied {}", path.display());
    }
    Ok(())
}

fn mac(i: usize) -> String {
    format!("52:54:00:de:00:{:02x}", i + 1)
}

/// The Hypervisor the demo's libvirt VMs go to.
const HYPERVISOR: &str = "demo";

/// Whether the libvirt daemons the demo's hypervisor needs are installed.
fn libvirt_installed() -> bool {
    ["libvirtd", "virtlogd", "virsh"].iter().all(|program| {
        std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
    })
}

/// The demo's Hypervisor: its private libvirtd, TCG (a host's `/dev/kvm` may hang nested guests).
async fn apply_hypervisor(client: &Client, hypervisor: &LabHypervisor) -> Result<()> {
    let api: Api<machinist_crds::Hypervisor> =
        Api::namespaced(client.clone(), machinist_crds::access::SYSTEM_NAMESPACE);
    let object = json!({
        "apiVersion": "machinist.dev/v1alpha1", "kind": "Hypervisor",
        "metadata": {"name": HYPERVISOR, "namespace": machinist_crds::access::SYSTEM_NAMESPACE},
        "spec": {
            "uri": hypervisor.uri(), "accelerator": "TCG", "reservedMemoryMiB": 0,
            "consoleLogDir": hypervisor.console_log_dir(), "probeIntervalSeconds": 10,
        },
    });
    api.patch(HYPERVISOR, &PatchParams::apply("machinist-demo").force(), &Patch::Apply(&object))
        .await
        .context("failed to apply the demo's Hypervisor")?;
    Ok(())
}

async fn create_machines(client: &Client, n: usize, libvirt: bool) -> Result<Vec<String>> {
    let machines: Api<Machine> = Api::namespaced(client.clone(), NAMESPACE);
    let params = PatchParams::apply("machinist-demo").force();
    let mut names = Vec::new();
    for i in 0..n {
        let name = format!("vm-{:02}", i + 1);
        // Disks of 8 GiB, as eDeploy's vm profile wants (`disk size gt(4)`), sparse.
        let provider = if libvirt {
            json!({"libvirt": {"host": HYPERVISOR, "pool": machinist_lab::POOL, "diskGiB": 8, "diskFormat": "raw",
                               "memoryMiB": 1024, "vcpus": 1, "bridge": BRIDGE}})
        } else {
            json!({"manual": {}})
        };
        let machine = json!({
            "apiVersion": "machinist.dev/v1alpha1", "kind": "Machine", "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"interfaces": [{"mac": mac(i), "boot": true}], "provider": provider},
        });
        machines
            .patch(&name, &params, &Patch::Apply(&machine))
            .await
            .with_context(|| format!("failed to create Machine {name}"))?;
        names.push(name);
    }
    Ok(names)
}

/// One line per machine, redrawn in place on a terminal (once a second and on every change),
/// printed on changes otherwise, until `shutdown`.
async fn show_progress(client: &Client, names: &[String], shutdown: CancellationToken) {
    let machines: Api<Machine> = Api::namespaced(client.clone(), NAMESPACE);
    let (reader, writer) = reflector::store();
    let mut events =
        std::pin::pin!(reflector::reflector(writer, watcher(machines, watcher::Config::default())).default_backoff());
    let terminal = std::io::stdout().is_terminal();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let mut drawn = 0usize;
    let mut last = Vec::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            event = events.next() => if event.is_none() { break },
            _ = ticker.tick() => {}
        }
        let now = jiff::Timestamp::now();
        let mut rows: BTreeMap<String, [String; 6]> = BTreeMap::new();
        for machine in reader.state() {
            let status = machine.status.clone().unwrap_or_default();
            // A transition time ahead of this clock counts as just now.
            let since = status
                .phase_transition_time
                .and_then(|t| u64::try_from(now.duration_since(t.0).as_secs()).ok())
                .unwrap_or(0);
            // The phase as the API spells it (what kubectl shows).
            let phase = status
                .phase
                .and_then(|p| serde_json::to_value(p).ok())
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_else(|| "-".to_owned());
            let installing = (status.phase == Some(MachinePhase::Provisioning))
                .then_some(status.install_progress.as_ref())
                .flatten()
                .filter(|p| status.install.as_ref().map(|i| i.attempt) == Some(p.attempt))
                .map(|p| match p.total_bytes {
                    Some(total) if total > 0 => format!(" ({}%)", p.bytes_written.saturating_mul(100) / total),
                    _ => format!(" ({} MiB)", p.bytes_written / (1024 * 1024)),
                });
            let waiting = status
                .conditions
                .iter()
                .filter(|c| c.status == "False")
                .find_map(|c| waiting_for(&c.reason))
                .map(|why| format!(" ({why})"))
                .or(installing)
                .unwrap_or_default();
            rows.insert(
                machine.name_any(),
                [
                    machine.name_any(),
                    format!("{phase}{waiting}"),
                    status.profile.unwrap_or_else(|| "-".into()),
                    status.ip.unwrap_or_else(|| "-".into()),
                    status.hostname.unwrap_or_else(|| "-".into()),
                    duration(since),
                ],
            );
        }
        if rows.is_empty() {
            continue;
        }
        let mut lines = vec![format!(
            "{:<24} {:<34} {:<10} {:<16} {:<10} {}",
            "MACHINE", "PHASE", "PROFILE", "IP", "HOSTNAME", "IN PHASE"
        )];
        for row in names
            .iter()
            .filter_map(|n| rows.get(n))
            .chain(rows.iter().filter(|(n, _)| !names.contains(n)).map(|(_, r)| r))
        {
            lines
                .push(format!("{:<24} {:<34} {:<10} {:<16} {:<10} {}", row[0], row[1], row[2], row[3], row[4], row[5]));
        }
        let mut stdout = std::io::stdout().lock();
        if terminal {
            if drawn > 0 {
                let _ = write!(stdout, "\x1b[{drawn}A\x1b[J");
            }
            let _ = writeln!(stdout, "{}", lines.join("\n"));
            drawn = lines.len();
        } else {
            // Without a terminal, print only what changed (not the seconds ticking).
            let stable: Vec<String> =
                lines.iter().map(|l| l.rsplit_once(' ').map_or(l.clone(), |(head, _)| head.to_owned())).collect();
            if stable != last {
                let _ = writeln!(stdout, "{}", lines.join("\n"));
                last = stable;
            }
        }
        let _ = stdout.flush();
    }
}

/// What a machine waits for, in words, from a `False` condition's reason; `None` for reasons
/// that are steps on the way, not a wait.
fn waiting_for(reason: &str) -> Option<&'static str> {
    match reason {
        "NoProfileMatched" => Some("no profile matches"),
        "ProfileFull" => Some("matching profile full"),
        "CmdbExhausted" => Some("no free CMDB entry"),
        "RoleNotFound" => Some("its Role does not exist"),
        "RoleInvalid" | "PlanInvalid" => Some("cannot install: see kubectl describe"),
        _ => None,
    }
}

/// `42s`, `3m05s`, `2h03m`.
fn duration(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, secs % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_and_durations_read_as_words() {
        assert_eq!(waiting_for("CmdbExhausted"), Some("no free CMDB entry"));
        assert_eq!(waiting_for("AwaitingHardwareReport"), None);
        assert_eq!((duration(7), duration(185), duration(7384)), ("7s".into(), "3m05s".into(), "2h03m".into()));
        assert_eq!(counted(1, "VM", "VMs"), "1 VM");
        assert_eq!(counted(2, "VM", "VMs"), "2 VMs");
    }
}
