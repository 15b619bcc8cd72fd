//! A private libvirt hypervisor in a lab: `libvirtd` and `virtlogd` inside the lab's network
//! namespace (so the VMs' taps join its bridge), in a mount namespace of their own (their state
//! directories are fresh tmpfs, their configuration a copy of `/etc/libvirt` that runs QEMU as
//! root without a security driver) and a PID namespace whose init is a shell that reaps what
//! libvirtd leaves (QEMU's capability probes). Their socket is in a directory of the caller's;
//! a `dir` pool `lab` is defined there too. Dropping it kills the whole PID namespace (VMs
//! included).
//!
//! KVM: `/dev/kvm` may exist on a host whose nested virtualisation hangs guests; the
//! Hypervisors that use this one should say `accelerator: TCG`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{Error, Lab, Process, Result};

/// What the daemons' init prints once both serve.
const READY: &str = "machinist-lab: libvirtd ready";

/// The storage pool the hypervisor starts with.
pub const POOL: &str = "lab";

/// A private libvirt daemon in a lab.
#[derive(Debug)]
pub struct LabHypervisor {
    process: Process,
    dir: PathBuf,
}

impl LabHypervisor {
    /// Starts the daemons with their files under `dir` (created; it should be empty), waits
    /// until libvirt answers (bounded), and defines and starts the pool [`POOL`] in `dir/pool`.
    pub fn start(lab: &Lab, dir: &Path) -> Result<Self> {
        let io = |what: &str, path: &Path| {
            let what = format!("{what} {}", path.display());
            move |source: std::io::Error| Error::Start { name: "libvirtd".into(), command: what.clone(), source }
        };
        for sub in ["etc", "run", "pool", "logs"] {
            let path = dir.join(sub);
            std::fs::create_dir_all(&path).map_err(io("create", &path))?;
        }
        let etc = dir.join("etc");
        machinist_ramdisk::run::run(std::process::Command::new("cp").args(["-a", "/etc/libvirt/."]).arg(&etc))?;
        let config = etc.join("libvirtd.conf");
        let run = dir.join("run");
        let libvirtd =
            format!("unix_sock_dir = \"{}\"\nauth_unix_rw = \"none\"\nauth_unix_ro = \"none\"\n", run.display());
        std::fs::write(&config, libvirtd).map_err(io("write", &config))?;
        let qemu = etc.join("qemu.conf");
        std::fs::write(&qemu, "user = \"root\"\ngroup = \"root\"\nsecurity_driver = \"none\"\n")
            .map_err(io("write", &qemu))?;
        // bash as PID 1: it reaps the processes libvirtd leaves behind (QEMU's capability
        // probes), which would otherwise stay zombies that libvirtd waits 40 s each for. A
        // daemon started with -d returns once it serves, hence the line awaited below.
        let script = format!(
            "set -e\n\
             for d in /run/libvirt /var/lib/libvirt /var/cache/libvirt /var/log/libvirt; do mkdir -p $d; mount -t tmpfs tmpfs $d; done\n\
             mkdir -p /var/lib/libvirt/qemu /var/log/libvirt/qemu /var/cache/libvirt/qemu\n\
             mount --bind '{etc}' /etc/libvirt\n\
             virtlogd -d -p '{dir}/virtlogd.pid'\n\
             libvirtd -d -p '{dir}/libvirtd.pid' --config '{config}'\n\
             echo {READY}\n\
             while :; do sleep 3600 & wait $!; done\n",
            etc = etc.display(),
            dir = dir.display(),
            config = config.display(),
        );
        let mut command = lab.command("unshare");
        command.args(["--mount", "--propagation", "private", "--pid", "--fork", "--kill-child", "--mount-proc"]);
        command.args(["bash", "-c", &script]);
        let process = lab.spawn("libvirtd", command)?;
        process.wait_for(READY, Duration::from_secs(60))?;
        let hypervisor = Self { process, dir: dir.to_owned() };
        let pool = dir.join("pool");
        hypervisor.virsh(&["pool-define-as", POOL, "dir", "--target", &pool.display().to_string()])?;
        hypervisor.virsh(&["pool-start", POOL])?;
        Ok(hypervisor)
    }

    /// The URI that reaches it (`qemu+unix:///system?socket=…`).
    pub fn uri(&self) -> String {
        format!("qemu+unix:///system?socket={}/libvirt-sock", self.dir.join("run").display())
    }

    /// Where the Hypervisor object should have VMs log their serial consoles.
    pub fn console_log_dir(&self) -> PathBuf {
        self.dir.join("logs")
    }

    /// Runs `virsh -c <uri> args…`: its stdout, or an error with its stderr.
    pub fn virsh(&self, args: &[&str]) -> Result<String> {
        let uri = self.uri();
        Ok(machinist_ramdisk::run::run(std::process::Command::new("virsh").args(["-c", &uri]).args(args))?)
    }

    /// The daemons' output so far.
    pub fn tail(&self, lines: usize) -> String {
        self.process.tail(lines)
    }
}
