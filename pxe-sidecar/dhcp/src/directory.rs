//! What the DHCP service knows about machines: the [`Directory`] trait the sidecar implements
//! over its Machine reflector (indexed by MAC), and [`StaticDirectory`], an in-memory one.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::Mutex;

use crate::mac::MacAddr;

/// Network settings handed to a client: from the Cmdb's `network` (`CmdbNetwork`) for
/// reserved machines, from the dynamic range's settings otherwise.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkSettings {
    /// Option 1, subnet mask.
    pub netmask: Option<Ipv4Addr>,
    /// Option 3, default gateway.
    pub gateway: Option<Ipv4Addr>,
    /// Option 6, DNS servers.
    pub dns_servers: Vec<Ipv4Addr>,
    /// Option 15, DNS domain.
    pub domain: Option<String>,
}

/// Whether and how the service answers a machine (from `status.bootTarget`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BootPolicy {
    /// Address and boot options (discovery, install, menu, local disk via iPXE `exit`).
    #[default]
    Network,
    /// An address but no boot options.
    AddressOnly,
    /// No answer at all (`bootTarget: None`).
    Ignore,
}

/// What the directory knows about one machine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MachineBoot {
    /// The Machine's name, for logs.
    pub name: String,
    /// The reserved address (`status.ip`, from the CMDB allocation); `None`: use the dynamic
    /// range (machines not yet allocated).
    pub address: Option<Ipv4Addr>,
    /// Option 12, host name (`status.hostname`).
    pub hostname: Option<String>,
    /// Settings sent with the reserved address.
    pub network: NetworkSettings,
    /// Whether to answer and with what.
    pub policy: BootPolicy,
}

/// Looks machines up by MAC. Implementations must be quick (an in-memory index): they are
/// called under the per-packet timeout.
pub trait Directory: Send + Sync {
    /// The machine with this MAC, if any.
    fn lookup(&self, mac: MacAddr) -> Option<MachineBoot>;

    /// Called for a MAC the directory does not know. Returns `true` when the client is to be
    /// served from the dynamic range (auto-registration on: the implementation creates a
    /// `Registered` Machine), `false` to ignore it (after a log line).
    fn register_unknown(&self, mac: MacAddr) -> bool;
}

/// An in-memory directory: fixed machines, and a switch for unknown MACs.
#[derive(Debug, Default)]
pub struct StaticDirectory {
    machines: HashMap<MacAddr, MachineBoot>,
    serve_unknown: bool,
    registered: Mutex<Vec<MacAddr>>,
}

impl StaticDirectory {
    /// A directory of these machines; unknown MACs are served when `serve_unknown`.
    pub fn new(machines: impl IntoIterator<Item = (MacAddr, MachineBoot)>, serve_unknown: bool) -> Self {
        Self { machines: machines.into_iter().collect(), serve_unknown, registered: Mutex::default() }
    }

    /// The unknown MACs seen so far, in order.
    pub fn registered(&self) -> Vec<MacAddr> {
        self.registered.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

impl Directory for StaticDirectory {
    fn lookup(&self, mac: MacAddr) -> Option<MachineBoot> {
        self.machines.get(&mac).cloned()
    }

    fn register_unknown(&self, mac: MacAddr) -> bool {
        if let Ok(mut registered) = self.registered.lock()
            && !registered.contains(&mac)
        {
            registered.push(mac);
        }
        self.serve_unknown
    }
}
