//! QEMU VMs that boot from the lab's network.

use std::process::ExitStatus;
use std::time::Duration;

use crate::{Lab, Process, Result};

/// The emulated NIC. QEMU's iPXE ROM for it boots the VM from the network.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Nic {
    /// `virtio-net-pci` (Linux driver `virtio_net`): the fastest to boot (about a second less
    /// than e1000, and its link is up at once where e1000 takes ~3 s before DHCP).
    #[default]
    VirtioNet,
    /// `e1000` (Linux driver `e1000`).
    E1000,
}

impl Nic {
    /// QEMU's device name.
    pub fn device(self) -> &'static str {
        match self {
            Self::VirtioNet => "virtio-net-pci",
            Self::E1000 => "e1000",
        }
    }
}

/// How to start a [`Vm`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmConfig {
    /// The NIC's MAC address, `52:54:00:xx:xx:xx`.
    pub mac: String,
    /// The NIC model.
    pub nic: Nic,
    /// Memory in MiB (machinist's RAM disk wants at least ~256).
    pub memory_mib: u32,
    /// Further QEMU arguments (disks, more NICs, `-smp`…).
    pub extra_args: Vec<String>,
    /// QEMU's `-boot` value: `n` (the network only, the default) or `order=nc` (the network,
    /// then the first disk: what an installed machine needs once iPXE exits to local boot).
    pub boot: String,
    /// Let the guest reboot (without it QEMU runs with `-no-reboot`: a reboot ends it).
    pub reboot: bool,
    /// Further properties of the NIC device (`romfile=`: no iPXE option ROM, so a UEFI
    /// firmware's own PXE client boots it).
    pub nic_properties: Vec<String>,
}

impl VmConfig {
    /// A virtio-net VM with 512 MiB and `mac`.
    pub fn new(mac: impl Into<String>) -> Self {
        Self {
            mac: mac.into(),
            nic: Nic::default(),
            memory_mib: 512,
            extra_args: Vec::new(),
            boot: "n".to_owned(),
            reboot: false,
            nic_properties: Vec::new(),
        }
    }
}

fn nic_device(config: &VmConfig) -> String {
    let mut device = format!("{},netdev=n0,mac={}", config.nic.device(), config.mac);
    for property in &config.nic_properties {
        device.push(',');
        device.push_str(property);
    }
    device
}

/// A QEMU VM on a new tap of a [`Lab`], booting from the network with QEMU's iPXE ROM. The CPU
/// is emulated (`-accel tcg`: slower than KVM, but it needs no `/dev/kvm`, so it also runs
/// inside VMs and containers). Its serial console is the [`Process`] output (`-nographic`). Killed and
/// reaped in `Drop`.
#[derive(Debug)]
pub struct Vm {
    process: Process,
    tap: String,
    config: VmConfig,
}

impl Vm {
    /// Adds a tap to `lab` and starts `qemu-system-x86_64 -accel tcg -m <mib> -nographic
    /// [-no-reboot] -boot <boot> -netdev tap,… -device <nic>,netdev=n0,mac=<mac>` in it.
    pub fn start(lab: &Lab, config: VmConfig) -> Result<Self> {
        let tap = lab.add_tap()?;
        let mut command = lab.command("qemu-system-x86_64");
        command.args(["-accel", "tcg", "-m", &config.memory_mib.to_string(), "-nographic"]);
        if !config.reboot {
            command.arg("-no-reboot");
        }
        command
            .args(["-boot", &config.boot])
            .args(["-netdev", &format!("tap,id=n0,ifname={tap},script=no,downscript=no")])
            .args(["-device", &nic_device(&config)])
            .args(&config.extra_args);
        let process = lab.spawn(format!("vm {} ({}, {tap})", config.mac, lab.name()), command)?;
        tracing::info!(mac = %config.mac, %tap, namespace = lab.name(), pid = process.id(), "lab VM started");
        Ok(Self { process, tap, config })
    }

    /// The MAC address.
    pub fn mac(&self) -> &str {
        &self.config.mac
    }

    /// The tap it is on.
    pub fn tap(&self) -> &str {
        &self.tap
    }

    /// The QEMU process: transcript, [`Process::wait_until`], [`Process::wait_exit`].
    pub fn process(&self) -> &Process {
        &self.process
    }

    /// Time since QEMU was started.
    pub fn elapsed(&self) -> Duration {
        self.process.started().elapsed()
    }

    /// Waits at most `timeout` for a console line containing `pattern`; returns it, or an error
    /// with the console's last lines. See [`Process`] for the order in which lines are consumed.
    pub fn wait_for(&self, pattern: &str, timeout: Duration) -> Result<String> {
        self.process.wait_for(pattern, timeout)
    }

    /// Waits for QEMU to exit (e.g. after the guest powered off; it runs with `-no-reboot`).
    pub fn wait_exit(&self, timeout: Duration) -> Result<ExitStatus> {
        self.process.wait_exit(timeout)
    }

    /// The console so far.
    pub fn transcript(&self) -> Vec<String> {
        self.process.transcript()
    }
}
