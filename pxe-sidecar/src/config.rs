//! The boot services' configuration file (YAML or JSON), documented field by field in
//! `docs/boot-services.md`. Every service is off until configured: no `dhcp.interfaces`, no
//! DHCP; no `tftp.listen`, no TFTP; no `http`, no HTTP; no `metrics.listen`, no metrics.
//!
//! ```yaml
//! namespace: machinist           # where Machines, Cmdbs, Roles and log ConfigMaps live
//! tokenNamespace: machinist-system # agent token Secrets, the only Secrets the boot services read
//! autoRegister: true             # unknown MACs become Registered Machines
//! dhcp:                          # machinist_boot_dhcp::RawConfig
//!   interfaces: [br0]
//!   serverAddress: 10.0.0.1
//!   dynamicRange: {start: 10.0.0.100, end: 10.0.0.199, netmask: 255.255.255.0}
//!   leaseFile: /var/lib/machinist/leases.sqlite
//! tftp:
//!   listen: 10.0.0.1:69
//!   root: /var/lib/machinist/tftp
//!   ipxeSource: /usr/lib/ipxe     # copy Debian's iPXE binaries into the root at start
//! http:                          # machinist_boot::http::HttpConfig
//!   listen: 10.0.0.1:8080
//!   publicUrl: http://10.0.0.1:8080
//!   artifactRoot: /var/lib/machinist/artifacts
//!   ramdisk: {kernel: vmlinuz, initrd: initrd.gz, args: [console=ttyS0]}
//! metrics:
//!   listen: 127.0.0.1:9101
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use machinist_boot_dhcp::RawConfig as DhcpConfig;
use machinist_boot_tftp::TftpConfig;
use serde::Deserialize;

use crate::http::HttpConfig;

/// The whole file.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BootConfig {
    /// Namespace of the Machines served (default `default`).
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// The namespace where the boot services keep agent token Secrets — the only Secrets they
    /// read; nothing else should live there and no one else needs access (default
    /// `machinist-system`). It must exist.
    #[serde(default = "default_token_namespace")]
    pub token_namespace: String,
    /// Create a `Registered` Machine for an unknown MAC (from DHCP in full mode, or from its
    /// first iPXE script request) instead of ignoring it.
    #[serde(default)]
    pub auto_register: bool,
    /// DHCP; absent or without interfaces: off.
    #[serde(default)]
    pub dhcp: DhcpConfig,
    /// TFTP; absent or without `listen`: off.
    #[serde(default)]
    pub tftp: Option<TftpSection>,
    /// HTTP; absent: off.
    #[serde(default)]
    pub http: Option<HttpConfig>,
    /// `/metrics` and `/healthz`; absent: off.
    #[serde(default)]
    pub metrics: Option<MetricsSection>,
    /// Boot timeline batching.
    #[serde(default)]
    pub timeline: TimelineSection,
}

fn default_namespace() -> String {
    "default".into()
}

fn default_token_namespace() -> String {
    crate::cluster::DEFAULT_TOKEN_NAMESPACE.into()
}

/// TFTP as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TftpSection {
    /// Address to listen on; absent: off.
    pub listen: Option<SocketAddr>,
    /// Directory served.
    pub root: PathBuf,
    /// Copy the iPXE binaries found here (Debian: `/usr/lib/ipxe`) into `root` at start.
    pub ipxe_source: Option<PathBuf>,
    /// Largest block size granted (default 1468).
    pub block_size_limit: Option<u16>,
    /// Largest window size granted (default 64).
    pub window_size_limit: Option<u16>,
    /// Retransmission timeout in seconds without the client's `timeout` option (default 3).
    pub timeout_seconds: Option<u64>,
}

impl TftpSection {
    /// The TFTP crate's configuration.
    pub fn to_tftp_config(&self) -> TftpConfig {
        let mut config = TftpConfig::new(&self.root);
        config.bind = self.listen;
        if let Some(limit) = self.block_size_limit {
            config.block_size_limit = limit;
        }
        if let Some(limit) = self.window_size_limit {
            config.window_size_limit = limit;
        }
        if let Some(seconds) = self.timeout_seconds {
            config.timeout = Duration::from_secs(seconds);
        }
        config
    }
}

/// Metrics as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricsSection {
    /// Address of `/metrics` and `/healthz`.
    pub listen: SocketAddr,
}

/// Timeline batching as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TimelineSection {
    /// Time between writes of the boot timeline, in milliseconds (default 1000, at least 100).
    #[serde(default = "default_flush")]
    pub flush_millis: u64,
}

impl Default for TimelineSection {
    fn default() -> Self {
        Self { flush_millis: default_flush() }
    }
}

fn default_flush() -> u64 {
    1000
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("failed to read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid configuration.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, with its location.
        message: String,
    },
    /// A value is out of range.
    #[error("{0}")]
    Invalid(String),
}

impl BootConfig {
    /// Parses `text` (YAML, hence also JSON); `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: Self = serde_saphyr::from_str(text)
            .map_err(|e| ConfigError::Parse { path: path.to_path_buf(), message: e.to_string() })?;
        if config.timeline.flush_millis < 100 {
            return Err(ConfigError::Invalid(format!(
                "timeline.flushMillis is {}, at least 100 is required",
                config.timeline.flush_millis
            )));
        }
        if config.namespace.is_empty() {
            return Err(ConfigError::Invalid("namespace must not be empty".into()));
        }
        if config.token_namespace.is_empty() {
            return Err(ConfigError::Invalid("tokenNamespace must not be empty".into()));
        }
        Ok(config)
    }

    /// What the cluster view watches.
    pub fn cluster(&self) -> crate::cluster::ClusterConfig {
        crate::cluster::ClusterConfig {
            namespace: self.namespace.clone(),
            token_namespace: self.token_namespace.clone(),
            auto_register: self.auto_register,
        }
    }

    /// Reads and parses a file.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Self::parse(&text, path)
    }

    /// The timeline's flush interval.
    pub fn flush_interval(&self) -> Duration {
        Duration::from_millis(self.timeline.flush_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_turns_everything_off() {
        let config = BootConfig::parse("{}", Path::new("boot.yaml")).unwrap();
        assert_eq!(config.namespace, "default");
        assert_eq!(config.token_namespace, "machinist-system");
        assert!(!config.auto_register && config.dhcp.interfaces.is_empty());
        assert!(config.tftp.is_none() && config.http.is_none() && config.metrics.is_none());
        assert_eq!(config.flush_interval(), Duration::from_secs(1));
    }

    #[test]
    fn the_documented_example_parses() {
        let doc = include_str!("config.rs");
        let example: String = doc
            .lines()
            .skip_while(|l| !l.starts_with("//! ```yaml"))
            .skip(1)
            .take_while(|l| !l.starts_with("//! ```"))
            .map(|l| format!("{}\n", l.strip_prefix("//! ").unwrap_or("")))
            .collect();
        let config = BootConfig::parse(&example, Path::new("example")).unwrap();
        assert!(config.auto_register);
        assert_eq!(config.cluster().namespace, "machinist");
        assert_eq!(config.cluster().token_namespace, "machinist-system");
        assert_eq!(config.dhcp.interfaces, ["br0"]);
        let tftp = config.tftp.unwrap().to_tftp_config();
        assert_eq!(tftp.bind, Some("10.0.0.1:69".parse().unwrap()));
        assert_eq!(config.http.unwrap().ramdisk.kernel, "vmlinuz");
    }

    #[test]
    fn the_documented_reference_parses() {
        let doc = include_str!("../../docs/boot-services.md");
        let start = doc.find("## Configuration").unwrap();
        let block = &doc[start..];
        let body = block.split("```yaml\n").nth(1).unwrap().split("```").next().unwrap();
        let config = BootConfig::parse(body, Path::new("docs/boot-services.md")).unwrap();
        assert_eq!(config.token_namespace, "machinist-system");
        let dhcp = config.dhcp.clone().validate().unwrap();
        assert_eq!(dhcp.boot.bios, "undionly.kpxe");
        assert_eq!(dhcp.lease_time, 3600);
        assert!(config.http.unwrap().validate().is_err(), "its artifactRoot does not exist here");
    }

    #[test]
    fn mistakes_are_named() {
        let err = BootConfig::parse("namespace: a\nautoRegistr: true\n", Path::new("b.yaml")).unwrap_err();
        assert!(err.to_string().starts_with("b.yaml: ") && err.to_string().contains("autoRegistr"), "{err}");
        let err = BootConfig::parse("tokenNamespace: ''", Path::new("b.yaml")).unwrap_err();
        assert!(err.to_string().contains("tokenNamespace must not be empty"), "{err}");
        let config = BootConfig::parse("tokenNamespace: boot-tokens", Path::new("b.yaml")).unwrap();
        assert_eq!(config.cluster().token_namespace, "boot-tokens");
        let err = BootConfig::parse("timeline: {flushMillis: 5}", Path::new("b.yaml")).unwrap_err();
        assert!(err.to_string().contains("at least 100"), "{err}");
        let err = BootConfig::parse("tftp: {listen: nowhere, root: /x}", Path::new("b.yaml")).unwrap_err();
        assert!(err.to_string().contains("b.yaml"), "{err}");
    }
}
