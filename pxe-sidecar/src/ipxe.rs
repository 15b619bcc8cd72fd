//! iPXE scripts: what a machine boots next, decided by its status (`status.bootTarget`):
//! the discovery RAM disk, the installer, a menu of roles with a default and a timeout (the
//! seeds' PXE menu), or its local disk (iPXE `exit`, as eDeploy's pxemngr local boot).
//!
//! Pure rendering: the HTTP layer passes in what it knows and serves the text.

use std::fmt::Write as _;

/// A kernel and initrd to boot, with their arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootImage {
    /// Kernel URL.
    pub kernel: String,
    /// Initrd URL.
    pub initrd: String,
    /// Kernel command line (the agent reads the sidecar URL and its token from it).
    pub args: Vec<String>,
}

/// One entry of a boot menu.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MenuEntry {
    /// Role name (also the menu key).
    pub role: String,
    /// What people read.
    pub label: String,
    /// The script URL that installs this role.
    pub url: String,
}

/// What the script does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Script {
    /// Boot a kernel and initrd (discovery or install).
    Boot(BootImage),
    /// Offer a menu; `default` after `timeout_seconds`.
    Menu {
        /// Title line.
        title: String,
        /// Entries in order.
        entries: Vec<MenuEntry>,
        /// Role chosen when nobody answers.
        default: String,
        /// Seconds to wait (0: boot the default at once).
        timeout_seconds: u32,
    },
    /// Boot from the local disk.
    LocalDisk,
    /// Nothing for this machine: iPXE stops trying and boots the next device.
    Refuse {
        /// Why, shown on the console.
        reason: String,
    },
}

impl Script {
    /// A short description for the boot timeline (`discovery`, `install api`, `menu`…).
    pub fn kind(&self) -> String {
        match self {
            Script::Boot(image) => {
                let arg = |key: &str| image.args.iter().find_map(|a| a.strip_prefix(key)).map(str::to_owned);
                let mode = arg("machinist.mode=").unwrap_or_else(|| "boot".into());
                match arg("machinist.role=") {
                    Some(role) => format!("{mode} {role}"),
                    None => mode,
                }
            }
            Script::Menu { default, timeout_seconds, .. } => format!("menu (default {default} in {timeout_seconds} s)"),
            Script::LocalDisk => "local disk".into(),
            Script::Refuse { reason } => format!("refused: {reason}"),
        }
    }
}

/// Rendering failures: values that would break out of the script.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScriptError {
    /// A value holds a character iPXE would interpret (newline, `$`, `${`, space in a URL…).
    #[error("{field} contains a character that is not allowed in an iPXE script: {value:?}")]
    Unsafe {
        /// Which value.
        field: &'static str,
        /// The value.
        value: String,
    },
    /// A menu without entries or whose default is not one of them.
    #[error("menu default {0:?} is not one of its entries")]
    BadDefault(String),
}

/// Values go into the script verbatim: refuse anything iPXE would expand or split.
fn checked<'a>(field: &'static str, value: &'a str, allow_space: bool) -> Result<&'a str, ScriptError> {
    let unsafe_char = |c: char| c.is_control() || c == '$' || c == '#' || (!allow_space && c.is_whitespace());
    if value.is_empty() || value.chars().any(unsafe_char) {
        return Err(ScriptError::Unsafe { field, value: value.to_owned() });
    }
    Ok(value)
}

/// The script text.
pub fn render(script: &Script) -> Result<String, ScriptError> {
    let mut out = String::from("#!ipxe\n");
    match script {
        Script::Boot(image) => {
            let kernel = checked("kernel", &image.kernel, false)?;
            let initrd = checked("initrd", &image.initrd, false)?;
            let mut args = Vec::new();
            for arg in &image.args {
                args.push(checked("kernel argument", arg, false)?);
            }
            // `initrd=` names the image for EFI stubs; retries cover a busy server.
            let _ = writeln!(out, "kernel --name vmlinuz {kernel} initrd=initrd {}", args.join(" ").trim_end());
            let _ = writeln!(out, "initrd --name initrd {initrd}");
            out.push_str("boot || goto failed\n:failed\necho Boot failed; retrying in 10 seconds\nsleep 10\nchain --replace --autofree ${self-uri} ||\n");
        }
        Script::Menu { title, entries, default, timeout_seconds } => {
            if !entries.iter().any(|e| &e.role == default) {
                return Err(ScriptError::BadDefault(default.clone()));
            }
            let _ = writeln!(out, "menu {}", checked("title", title, true)?);
            for entry in entries {
                let _ = writeln!(
                    out,
                    "item {} {}",
                    checked("role", &entry.role, false)?,
                    checked("label", &entry.label, true)?
                );
            }
            let timeout_ms = u64::from(*timeout_seconds) * 1000;
            let _ = writeln!(
                out,
                "choose --default {} --timeout {timeout_ms} target && goto ${{target}} || goto {}",
                checked("default", default, false)?,
                default
            );
            for entry in entries {
                let _ =
                    writeln!(out, ":{}\nchain --replace --autofree {}", entry.role, checked("url", &entry.url, false)?);
            }
        }
        Script::LocalDisk => out.push_str("echo Booting from the local disk\nexit\n"),
        Script::Refuse { reason } => {
            let _ = writeln!(out, "echo {}\nexit 1", checked("reason", reason, true)?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boots_a_kernel_with_its_arguments() {
        let script = Script::Boot(BootImage {
            kernel: "http://10.0.0.1:8080/boot/vmlinuz".into(),
            initrd: "http://10.0.0.1:8080/boot/initrd".into(),
            args: vec![
                "console=ttyS0".into(),
                "machinist.url=http://10.0.0.1:8080".into(),
                "machinist.token=abc123".into(),
            ],
        });
        let text = render(&script).unwrap();
        assert!(text.starts_with("#!ipxe\n"));
        assert!(text.contains("kernel --name vmlinuz http://10.0.0.1:8080/boot/vmlinuz initrd=initrd console=ttyS0 machinist.url=http://10.0.0.1:8080 machinist.token=abc123\n"));
        assert!(text.contains("initrd --name initrd http://10.0.0.1:8080/boot/initrd\n"));
        assert!(text.contains("boot || goto failed"));
    }

    #[test]
    fn menus_default_after_their_timeout() {
        let entry = |role: &str| MenuEntry {
            role: role.into(),
            label: format!("Install {role}"),
            url: format!("http://h/ipxe/m1?role={role}"),
        };
        let script = Script::Menu {
            title: "api-01".into(),
            entries: vec![entry("base"), entry("api")],
            default: "api".into(),
            timeout_seconds: 600,
        };
        let text = render(&script).unwrap();
        assert!(text.contains("item base Install base\nitem api Install api\n"));
        assert!(text.contains("choose --default api --timeout 600000 target && goto ${target} || goto api\n"));
        assert!(text.contains(":api\nchain --replace --autofree http://h/ipxe/m1?role=api\n"));
        let bad =
            Script::Menu { title: "t".into(), entries: vec![entry("base")], default: "api".into(), timeout_seconds: 1 };
        assert_eq!(render(&bad), Err(ScriptError::BadDefault("api".into())));
    }

    #[test]
    fn local_disk_and_refusal() {
        assert_eq!(render(&Script::LocalDisk).unwrap(), "#!ipxe\necho Booting from the local disk\nexit\n");
        assert!(
            render(&Script::Refuse { reason: "unknown machine".into() })
                .unwrap()
                .ends_with("echo unknown machine\nexit 1\n")
        );
    }

    #[test]
    fn values_cannot_inject_commands() {
        for hostile in ["console=ttyS0\nshell", "x ${net0/ip}", "a b", "", "#comment"] {
            let script = Script::Boot(BootImage {
                kernel: "http://h/k".into(),
                initrd: "http://h/i".into(),
                args: vec![hostile.into()],
            });
            assert!(
                matches!(render(&script), Err(ScriptError::Unsafe { field: "kernel argument", .. })),
                "{hostile:?}"
            );
        }
        let menu = Script::Menu {
            title: "t".into(),
            entries: vec![MenuEntry { role: "api".into(), label: "ok\nexit".into(), url: "http://h/x".into() }],
            default: "api".into(),
            timeout_seconds: 5,
        };
        assert!(matches!(render(&menu), Err(ScriptError::Unsafe { field: "label", .. })));
    }
}
