//! Two network namespaces joined by a veth pair — a server side and a client side — for tests
//! and benchmarks that put a real peer on each end. Created by [`VethPair::new`], deleted in
//! `Drop` (also when the test panics).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::JoinHandle;

/// Namespaces `<tag>s` (interface `srv0`) and `<tag>c` (interface `cli0`), links and `lo` up.
#[derive(Debug)]
pub struct VethPair {
    server: String,
    client: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("ip {args:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {args:?}: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

impl VethPair {
    /// The server interface gets `server_address` (CIDR, e.g. `10.80.0.1/24`), the client
    /// interface `client_address` when given (a DHCP client gets none), and `client_mac` when
    /// given. `tag` must be unique among the namespaces alive at once.
    pub fn new(
        tag: &str,
        server_address: &str,
        client_address: Option<&str>,
        client_mac: Option<&str>,
    ) -> Result<Self, String> {
        let (server, client) = (format!("{tag}s"), format!("{tag}c"));
        ip(&["netns", "add", &server])?;
        // From here on, an error drops `pair`, which removes whatever was created.
        let pair = Self { server, client };
        ip(&["netns", "add", &pair.client])?;
        ip(&[
            "-n",
            &pair.server,
            "link",
            "add",
            "srv0",
            "type",
            "veth",
            "peer",
            "name",
            "cli0",
            "netns",
            &pair.client,
        ])?;
        if let Some(mac) = client_mac {
            ip(&["-n", &pair.client, "link", "set", "cli0", "address", mac])?;
        }
        ip(&["-n", &pair.server, "addr", "add", server_address, "dev", "srv0"])?;
        if let Some(address) = client_address {
            ip(&["-n", &pair.client, "addr", "add", address, "dev", "cli0"])?;
        }
        for (ns, dev) in [(&pair.server, "srv0"), (&pair.client, "cli0")] {
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(pair)
    }

    /// The server namespace's name.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The client namespace's name.
    pub fn client(&self) -> &str {
        &self.client
    }

    /// The path that names namespace `ns` (for [`spawn_in`]).
    pub fn path(ns: &str) -> PathBuf {
        Path::new("/var/run/netns").join(ns)
    }

    /// `program` run inside namespace `ns` (`ip netns exec`).
    pub fn exec(ns: &str, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", ns]).arg(program);
        command
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        for ns in [&self.client, &self.server] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Runs `f` on a new thread that entered the network namespace at `netns` (`setns`) first:
/// [`machinist_lab::spawn_in`], its error as text.
pub fn spawn_in<T, F>(netns: &Path, f: F) -> Result<JoinHandle<Option<T>>, String>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    machinist_lab::spawn_in(netns, f).map_err(|e| e.to_string())
}
