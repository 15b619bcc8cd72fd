//! What runs in the RAM disk: `/init` (the agent's, or a test's script) and the `udhcpc` event
//! script. Pure: rendered from the module load order.

/// Where the agent is in the image.
pub const AGENT_PATH: &str = "/bin/machinist-agent";
/// Where busybox is in the image (every applet is a symbolic link to it).
pub const BUSYBOX_PATH: &str = "/bin/busybox";
/// The `udhcpc` event script in the image: `busybox udhcpc -i IFACE -s` it.
pub const UDHCPC_SCRIPT_PATH: &str = "/usr/share/udhcpc/default.script";
/// Every module of the image in load order (dependencies first), one absolute path per line.
pub const MODULE_LIST_PATH: &str = "/etc/machinist/modules";

/// The modules the production `/init` loads besides those the PCI devices present select.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModuleLoading {
    /// Absolute paths in the image, `insmod`ed in this order whatever the hardware.
    pub always: Vec<String>,
    /// Absolute paths `insmod`ed, in this order, only when one of the modules named is loaded
    /// (`mlx4_en` when `mlx4_core` is).
    pub companions: Vec<(String, Vec<String>)>,
}

/// What `/init` does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Init {
    /// Production: mount the pseudo file systems, load the modules, run the agent on the
    /// console; a shell on the console if it is missing or exits ([`render_agent_init`]).
    Agent,
    /// This script as `/init` (tests). It loads modules itself, e.g. from [`MODULE_LIST_PATH`].
    Script(String),
}

impl Init {
    /// `/init`'s text, loading the modules that no PCI device selects as `loading` says.
    pub fn render(&self, loading: &ModuleLoading) -> String {
        match self {
            Self::Agent => render_agent_init(loading),
            Self::Script(script) => script.clone(),
        }
    }
}

const AGENT_INIT_HEAD: &str = r##"#!/bin/busybox sh
# machinist RAM disk /init (written by machinist-ramdisk): mounts the pseudo file systems,
# loads the NIC and disk drivers, runs /bin/machinist-agent on the console. PID 1 never exits:
# if the agent is missing or ends, a shell is started on the console instead.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
/bin/busybox mkdir -p /dev/pts /run /tmp
/bin/busybox mount -t devpts devpts /dev/pts
/bin/busybox mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
exec </dev/console >/dev/console 2>&1
say() { echo "machinist-init: $*"; }

# Drivers. First those of the PCI devices present: busybox modprobe matches each device's
# modalias against /lib/modules/$(uname -r)/modules.alias and loads the drivers with their
# dependencies (modules.dep). Then, dependencies first, the drivers of the buses those create
# (virtio, SCSI disks, Hyper-V VMBus), always, and the companions of the PCI drivers loaded
# (mlx4_en of mlx4_core). A driver that fails to load (no such hardware) is logged and
# counted: that is fine.
failed=0
aliases=$(cat /sys/bus/pci/devices/*/modalias 2>/dev/null)
if [ -n "$aliases" ]; then
  err=$(modprobe -q -a $aliases 2>&1)
  if [ -n "$err" ]; then
    echo "$err" >>/run/machinist-init.log
    failed=$(echo "$err" | wc -l)
  fi
fi
load() {
  if ! err=$(insmod "$1" 2>&1); then
    case "$err" in
      *"File exists"*) ;;
      *) failed=$((failed + 1)); echo "machinist-init: insmod ${1##*/}: $err" >>/run/machinist-init.log ;;
    esac
  fi
}
"##;

const AGENT_INIT_TAIL: &str = r##"loaded=$(wc -l </proc/modules)
say "$loaded modules loaded, $failed not (no such hardware?; see /run/machinist-init.log)"

if [ -x /bin/machinist-agent ]; then
  say "starting /bin/machinist-agent"
  /bin/machinist-agent </dev/console >/dev/console 2>&1
  say "/bin/machinist-agent exited with status $?"
else
  say "/bin/machinist-agent is missing from the RAM disk"
fi
say "starting a shell on the console (PID 1 stays up; 'reboot -f' or 'poweroff -f' to leave)"
while true; do
  setsid cttyhack /bin/sh -l || /bin/sh
  say "the shell exited; starting another"
  sleep 1
done
"##;

/// The production `/init`: mounts `proc`, `sysfs`, `devtmpfs`, `devpts` and a `/run` tmpfs;
/// loads the drivers of the PCI devices present (`modprobe -a` of their `modalias`, matched
/// against the image's `modules.alias`, dependencies from its `modules.dep`), then `insmod`s
/// `loading.always` in order and each of `loading.companions` whose module is loaded
/// (failures are logged to `/run/machinist-init.log` and counted, not fatal); runs
/// [`AGENT_PATH`] with the console as stdin, stdout and stderr; when it is missing or exits,
/// says so and runs a shell on the console, forever. The agent runs as a child rather than
/// `exec`ed so that its exit cannot end PID 1 (a kernel panic).
pub fn render_agent_init(loading: &ModuleLoading) -> String {
    let mut script = String::from(AGENT_INIT_HEAD);
    for path in &loading.always {
        script.push_str(&format!("load {}\n", shell_quote(path)));
    }
    for (path, after) in &loading.companions {
        let test: Vec<String> =
            after.iter().map(|module| format!("[ -d {} ]", shell_quote(&format!("/sys/module/{module}")))).collect();
        script.push_str(&format!("if {}; then load {}; fi\n", test.join(" || "), shell_quote(path)));
    }
    script.push_str(AGENT_INIT_TAIL);
    script
}

/// `path` quoted for `sh` when it needs to be.
fn shell_quote(text: &str) -> String {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-+=:,".contains(&b)) {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r#"'\''"#))
    }
}

/// The `udhcpc` event script ([`UDHCPC_SCRIPT_PATH`]): on `bound`/`renew` sets the address
/// (`$ip`/`$mask`, else `$subnet`), the default route through the first `$router`, and
/// `/etc/resolv.conf` from `$dns`, `$domain` and `$search`; on `deconfig` flushes the
/// interface's addresses and brings it up.
pub const UDHCPC_SCRIPT: &str = r##"#!/bin/sh
# udhcpc event script (machinist-ramdisk): configure the interface from the lease.
# Run as: busybox udhcpc -i IFACE -s /usr/share/udhcpc/default.script
RESOLV_CONF=/etc/resolv.conf

case "$1" in
  deconfig)
    ip -4 addr flush dev "$interface"
    ip link set "$interface" up
    ;;
  bound|renew)
    if [ -n "$mask" ]; then
      prefix="$mask"
    elif [ -n "$subnet" ]; then
      prefix=0
      for octet in $(echo "$subnet" | tr . ' '); do
        while [ "$octet" -gt 0 ]; do
          prefix=$((prefix + (octet & 1)))
          octet=$((octet >> 1))
        done
      done
    else
      prefix=32
    fi
    ip -4 addr flush dev "$interface"
    ip -4 addr add "$ip/$prefix" ${broadcast:+broadcast "$broadcast"} dev "$interface"
    ip link set "$interface" up
    if [ -n "$router" ]; then
      while ip -4 route del default dev "$interface" 2>/dev/null; do :; done
      for r in $router; do
        ip -4 route add default via "$r" dev "$interface" && break
      done
    fi
    if [ -n "$dns" ]; then
      {
        echo "# written by udhcpc for $interface"
        [ -n "$domain" ] && echo "domain $domain"
        [ -n "$search" ] && echo "search $search"
        for server in $dns; do
          echo "nameserver $server"
        done
      } >"$RESOLV_CONF.$interface"
      mv "$RESOLV_CONF.$interface" "$RESOLV_CONF"
    fi
    ;;
  leasefail|nak)
    echo "udhcpc: $1 on $interface${message:+: $message}" >&2
    ;;
esac
exit 0
"##;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_init_loads_modules_in_order_then_runs_the_agent() {
        let script = Init::Agent.render(&ModuleLoading {
            always: vec![
                "/lib/modules/6.1.0-56-amd64/kernel/drivers/virtio/virtio_ring.ko".to_owned(),
                "/lib/modules/6.1.0-56-amd64/kernel/drivers/net/virtio_net.ko".to_owned(),
            ],
            companions: vec![("/lib/modules/r/mlx4_en.ko".to_owned(), vec!["mlx4_core".to_owned()])],
        });
        assert!(script.starts_with("#!/bin/busybox sh\n"));
        for mount in ["-t proc", "-t sysfs", "-t devtmpfs", "-o mode=0755,nosuid,nodev tmpfs /run"] {
            assert!(script.contains(mount), "{mount}");
        }
        let modprobe = script.find("modprobe -q -a $aliases");
        assert!(script.contains("aliases=$(cat /sys/bus/pci/devices/*/modalias"));
        let ring = script.find("load /lib/modules/6.1.0-56-amd64/kernel/drivers/virtio/virtio_ring.ko\n");
        let net = script.find("load /lib/modules/6.1.0-56-amd64/kernel/drivers/net/virtio_net.ko\n");
        let agent = script.find("  /bin/machinist-agent </dev/console >/dev/console 2>&1\n");
        let companion = script.find("if [ -d /sys/module/mlx4_core ]; then load /lib/modules/r/mlx4_en.ko; fi\n");
        assert!(
            modprobe.is_some() && modprobe < ring && ring < net && net < companion && companion < agent,
            "{script}"
        );
        // PID 1 never ends: no exec of the agent, and a shell loop at the end.
        assert!(!script.contains("exec /bin/machinist-agent"));
        assert!(script.trim_end().ends_with("done"));
        assert!(script.contains("while true; do\n  setsid cttyhack /bin/sh"));
    }

    #[test]
    fn agent_init_without_modules_still_runs_the_agent() {
        let script = render_agent_init(&ModuleLoading::default());
        assert!(!script.contains("\nload "));
        assert!(script.contains("/bin/machinist-agent is missing"));
    }

    #[test]
    fn odd_module_paths_are_quoted() {
        let script = render_agent_init(&ModuleLoading {
            always: vec!["/lib/modules/x y/it's.ko".to_owned()],
            ..Default::default()
        });
        assert!(script.contains(r#"load '/lib/modules/x y/it'\''s.ko'"#));
    }

    #[test]
    fn test_scripts_are_used_as_they_are() {
        let init = Init::Script("#!/bin/sh\necho hi\n".to_owned());
        let loading = ModuleLoading { always: vec!["/a.ko".to_owned()], ..Default::default() };
        assert_eq!(init.render(&loading), "#!/bin/sh\necho hi\n");
    }

    #[test]
    fn udhcpc_script_sets_address_route_and_resolver() {
        for needle in ["ip -4 addr add \"$ip/$prefix\"", "route add default via \"$r\"", "nameserver $server"] {
            assert!(UDHCPC_SCRIPT.contains(needle), "{needle}");
        }
    }
}
