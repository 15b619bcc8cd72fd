//! The agent's instructions, on the kernel command line of the iPXE script the boot services
//! write: `machinist.url=… machinist.machine=… machinist.token=… machinist.mac=…
//! machinist.mode=… machinist.onSuccess=… [machinist.debug=1] [machinist.role=…]`.
//! [`Args::to_words`] writes them, [`parse`] reads them back from `/proc/cmdline`. Pure.

/// What the agent does once its work is done (`spec.onSuccess`, spelled as the API spells it).
pub use machinist_crds::machine::OnSuccess;

/// What the agent was booted to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Inventory and report the hardware.
    Discovery,
    /// Install the machine's role: fetch the plan, stream the image to the disk, report.
    Install,
}

impl Mode {
    /// The value of `machinist.mode=`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Mode::Discovery => "discovery",
            Mode::Install => "install",
        }
    }
}

/// The agent's arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Args {
    /// The boot services' base URL (`http://10.0.0.1:8080`), without a trailing `/`.
    pub url: String,
    /// The Machine's name.
    pub machine: String,
    /// The Machine's agent token.
    pub token: String,
    /// The MAC of the interface the machine booted from (the one to bring up), lower case.
    pub mac: String,
    /// Why it was booted.
    pub mode: Mode,
    /// What to do at the end.
    pub on_success: OnSuccess,
    /// Open a shell on the console.
    pub debug: bool,
    /// The role chosen from a boot menu (`machinist.role=`), if any.
    pub role: Option<String>,
}

/// A command line that does not say what to do.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CmdlineError {
    /// A required argument is absent.
    #[error("the kernel command line has no machinist.{0}=")]
    Missing(&'static str),
    /// An argument has a value the agent does not know.
    #[error("machinist.{key}={value:?} is not valid: {why}")]
    Invalid {
        /// The argument.
        key: &'static str,
        /// Its value.
        value: String,
        /// What is expected.
        why: &'static str,
    },
}

impl Args {
    /// The kernel arguments, in the order the boot services write them. Values are written as
    /// given: the iPXE script renderer refuses values that would break its line.
    pub fn to_words(&self) -> Vec<String> {
        let mut words = vec![
            format!("machinist.url={}", self.url),
            format!("machinist.machine={}", self.machine),
            format!("machinist.token={}", self.token),
            format!("machinist.mac={}", self.mac),
            format!("machinist.mode={}", self.mode.as_str()),
            format!("machinist.onSuccess={}", self.on_success.as_str()),
        ];
        if self.debug {
            words.push("machinist.debug=1".into());
        }
        if let Some(role) = &self.role {
            words.push(format!("machinist.role={role}"));
        }
        words
    }
}

/// Parses `/proc/cmdline`. The last occurrence of an argument wins, as for the kernel's own.
pub fn parse(cmdline: &str) -> Result<Args, CmdlineError> {
    let value = |key: &'static str| {
        cmdline
            .split_whitespace()
            .rev()
            .find_map(|word| word.strip_prefix("machinist.")?.strip_prefix(key)?.strip_prefix('='))
    };
    let required = |key: &'static str| value(key).filter(|v| !v.is_empty()).ok_or(CmdlineError::Missing(key));
    let url = required("url")?;
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(CmdlineError::Invalid { key: "url", value: url.into(), why: "an http:// or https:// URL" });
    }
    let mode = match required("mode")? {
        "discovery" => Mode::Discovery,
        "install" => Mode::Install,
        other => return Err(CmdlineError::Invalid { key: "mode", value: other.into(), why: "discovery or install" }),
    };
    let on_success = match value("onSuccess") {
        None => OnSuccess::default(),
        Some(name) => OnSuccess::from_name(name).ok_or_else(|| CmdlineError::Invalid {
            key: "onSuccess",
            value: name.into(),
            why: "reboot, kexec, halt or console",
        })?,
    };
    Ok(Args {
        url: url.trim_end_matches('/').to_owned(),
        machine: required("machine")?.to_owned(),
        token: required("token")?.to_owned(),
        mac: required("mac")?.to_ascii_lowercase(),
        mode,
        on_success,
        debug: matches!(value("debug"), Some("1" | "true" | "yes")),
        role: value("role").filter(|v| !v.is_empty()).map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const LINE: &str = "BOOT_IMAGE=vmlinuz console=ttyS0 machinist.url=http://10.0.0.1:8080/ machinist.machine=vm-1 \
                        machinist.token=abc machinist.mac=52:54:00:AB:00:01 machinist.mode=discovery \
                        machinist.onSuccess=halt";

    #[test]
    fn the_boot_services_arguments_parse() {
        let args = parse(LINE).unwrap();
        assert_eq!(args.url, "http://10.0.0.1:8080");
        assert_eq!((args.machine.as_str(), args.token.as_str()), ("vm-1", "abc"));
        assert_eq!(args.mac, "52:54:00:ab:00:01");
        assert_eq!((args.mode, args.on_success, args.debug), (Mode::Discovery, OnSuccess::Halt, false));
        assert_eq!(args.role, None);
        let debug = parse(&format!("{LINE} machinist.debug=1 machinist.onSuccess=console machinist.role=api")).unwrap();
        assert_eq!((debug.on_success, debug.debug, debug.role.as_deref()), (OnSuccess::Console, true, Some("api")));
        let default = parse(&LINE.replace("machinist.onSuccess=halt", "")).unwrap();
        assert_eq!(default.on_success, OnSuccess::Reboot);
    }

    #[test]
    fn missing_and_wrong_arguments_are_named() {
        assert_eq!(parse("console=ttyS0"), Err(CmdlineError::Missing("url")));
        assert_eq!(
            parse(&LINE.replace("machinist.token=abc", "machinist.token=")),
            Err(CmdlineError::Missing("token"))
        );
        assert!(matches!(parse(&LINE.replace("discovery", "wipe")), Err(CmdlineError::Invalid { key: "mode", .. })));
        assert!(matches!(parse(&LINE.replace("http://", "ftp://")), Err(CmdlineError::Invalid { key: "url", .. })));
        assert!(matches!(
            parse(&LINE.replace("=halt", "=explode")),
            Err(CmdlineError::Invalid { key: "onSuccess", .. })
        ));
        // `machinist.urlx=` is not `machinist.url=`.
        assert_eq!(parse("machinist.urlx=http://x"), Err(CmdlineError::Missing("url")));
    }

    #[test]
    fn what_the_boot_services_write_the_agent_reads() {
        for (mode, on_success, debug, role) in [
            (Mode::Discovery, OnSuccess::Reboot, false, None),
            (Mode::Install, OnSuccess::Kexec, true, Some("api".to_owned())),
            (Mode::Discovery, OnSuccess::Console, true, None),
        ] {
            let args = Args {
                url: "http://10.0.0.1:8080".into(),
                machine: "vm-1".into(),
                token: "t0k".into(),
                mac: "52:54:00:ab:00:01".into(),
                mode,
                on_success,
                debug,
                role,
            };
            let line = format!("BOOT_IMAGE=vmlinuz console=ttyS0 {}", args.to_words().join(" "));
            assert_eq!(parse(&line).unwrap(), args, "{line}");
        }
    }
}
