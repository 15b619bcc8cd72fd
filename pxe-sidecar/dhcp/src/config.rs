//! Two-stage configuration: [`RawConfig`] as read from a file (serde, camelCase), validated
//! into the runtime [`Config`].

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::bootfile::BootFiles;
use crate::directory::NetworkSettings;

/// Default lease time (`leaseTimeSeconds`): one hour.
pub const DEFAULT_LEASE_SECONDS: u32 = 3600;
/// Default per-packet timeout (`packetTimeoutMillis`).
pub const DEFAULT_PACKET_TIMEOUT_MS: u64 = 500;

/// The service's mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Mode {
    /// This service hands out addresses and boot options.
    #[default]
    Full,
    /// Another DHCP server hands out addresses; this one answers PXE clients with boot
    /// options only, on ports 67 and 4011.
    Proxy,
}

/// The configuration as written (all addresses as strings, everything optional).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawConfig {
    /// Interfaces to bind (`SO_BINDTODEVICE`); empty: DHCP off.
    #[serde(default)]
    pub interfaces: Vec<String>,
    /// `full` (default) or `proxy`.
    #[serde(default)]
    pub mode: Mode,
    /// This server's address on the boot network: server identifier (option 54) and, unless
    /// `tftpServer` says otherwise, `siaddr`. Required when an interface is configured.
    pub server_address: Option<String>,
    /// The dynamic range for machines without a reservation (full mode only).
    pub dynamic_range: Option<RawRange>,
    /// Lease time in seconds (default 3600).
    pub lease_time_seconds: Option<u32>,
    /// `siaddr`/next-server for TFTP (default: `serverAddress`).
    pub tftp_server: Option<String>,
    /// Boot file names and URLs.
    #[serde(default)]
    pub boot: RawBoot,
    /// SQLite lease database; absent: leases in memory only (tests).
    pub lease_file: Option<PathBuf>,
    /// Per-packet timeout in milliseconds (default 500).
    pub packet_timeout_millis: Option<u64>,
}

/// A dynamic range as written.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawRange {
    /// First address.
    pub start: String,
    /// Last address (inclusive).
    pub end: String,
    /// Subnet mask of the range's network.
    pub netmask: String,
    /// Default gateway.
    pub gateway: Option<String>,
    /// DNS servers.
    #[serde(default)]
    pub dns_servers: Vec<String>,
    /// DNS domain.
    pub domain: Option<String>,
}

/// Boot files as written; every field has a default (see [`BootFiles`]).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawBoot {
    /// BIOS file (default `undionly.kpxe`).
    pub bios: Option<String>,
    /// x86-64 UEFI file (default `ipxe.efi`).
    #[serde(rename = "uefiX86_64")] // camelCase alone would spell it uefiX8664
    pub uefi_x86_64: Option<String>,
    /// arm64 UEFI file (default `ipxe-arm64.efi`).
    pub uefi_arm64: Option<String>,
    /// HTTP base URL for UEFI HTTP boot clients.
    pub http_base_url: Option<String>,
    /// iPXE script URL, `{mac}` replaced by the client's MAC.
    pub ipxe_script_url: Option<String>,
}

/// The dynamic range, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DynamicRange {
    /// First address.
    pub start: Ipv4Addr,
    /// Last address (inclusive).
    pub end: Ipv4Addr,
    /// Settings sent with dynamic addresses (netmask always set).
    pub network: NetworkSettings,
}

impl DynamicRange {
    /// Whether the address is in the range.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        (self.start..=self.end).contains(&ip)
    }

    /// Whether `ip` is on the range's subnet (for relayed requests: `giaddr`).
    pub fn same_subnet(&self, ip: Ipv4Addr) -> bool {
        let mask = u32::from(self.network.netmask.unwrap_or(Ipv4Addr::BROADCAST));
        u32::from(ip) & mask == u32::from(self.start) & mask
    }

    /// The addresses of the range, in order.
    pub fn addresses(&self) -> impl Iterator<Item = Ipv4Addr> + use<> {
        (u32::from(self.start)..=u32::from(self.end)).map(Ipv4Addr::from)
    }
}

/// The validated runtime configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Interfaces to bind; empty: DHCP off.
    pub interfaces: Vec<String>,
    /// Full or proxy.
    pub mode: Mode,
    /// Server identifier.
    pub server_address: Ipv4Addr,
    /// Dynamic range (full mode).
    pub dynamic_range: Option<DynamicRange>,
    /// Lease time in seconds.
    pub lease_time: u32,
    /// `siaddr` (next server).
    pub tftp_server: Ipv4Addr,
    /// Boot file table.
    pub boot: BootFiles,
    /// Lease database; `None`: in memory.
    pub lease_file: Option<PathBuf>,
    /// Per-packet timeout.
    pub packet_timeout: Duration,
}

/// Why a configuration is invalid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A field is not an IPv4 address.
    #[error("{field}: {value:?} is not an IPv4 address")]
    BadAddress {
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
    },
    /// `serverAddress` is missing while interfaces are configured.
    #[error("serverAddress is required when interfaces are configured")]
    NoServerAddress,
    /// An interface name the kernel would not accept.
    #[error("interface name {0:?} is empty or longer than 15 bytes")]
    BadInterface(String),
    /// The range is empty or crosses its subnet.
    #[error("dynamic range {start}..{end} is reversed or not inside one subnet")]
    BadRange {
        /// Start.
        start: Ipv4Addr,
        /// End.
        end: Ipv4Addr,
    },
    /// A dynamic range in proxy mode.
    #[error("dynamicRange makes no sense in proxy mode (another server hands out addresses)")]
    RangeInProxyMode,
    /// A zero lease time or packet timeout.
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
}

fn ip(field: &'static str, value: &str) -> Result<Ipv4Addr, ConfigError> {
    value.parse().map_err(|_| ConfigError::BadAddress { field, value: value.to_owned() })
}

impl RawConfig {
    /// Validates into the runtime configuration.
    pub fn validate(self) -> Result<Config, ConfigError> {
        for name in &self.interfaces {
            if name.is_empty() || name.len() > 15 || name.contains(['/', ' ']) {
                return Err(ConfigError::BadInterface(name.clone()));
            }
        }
        let server_address = match (&self.server_address, self.interfaces.is_empty()) {
            (Some(a), _) => ip("serverAddress", a)?,
            (None, true) => Ipv4Addr::UNSPECIFIED,
            (None, false) => return Err(ConfigError::NoServerAddress),
        };
        let dynamic_range = match self.dynamic_range {
            None => None,
            Some(_) if self.mode == Mode::Proxy => return Err(ConfigError::RangeInProxyMode),
            Some(r) => {
                let range = DynamicRange {
                    start: ip("dynamicRange.start", &r.start)?,
                    end: ip("dynamicRange.end", &r.end)?,
                    network: NetworkSettings {
                        netmask: Some(ip("dynamicRange.netmask", &r.netmask)?),
                        gateway: r.gateway.as_deref().map(|g| ip("dynamicRange.gateway", g)).transpose()?,
                        dns_servers: r
                            .dns_servers
                            .iter()
                            .map(|d| ip("dynamicRange.dnsServers", d))
                            .collect::<Result<_, _>>()?,
                        domain: r.domain,
                    },
                };
                if range.start > range.end || !range.same_subnet(range.end) {
                    return Err(ConfigError::BadRange { start: range.start, end: range.end });
                }
                Some(range)
            }
        };
        let lease_time = self.lease_time_seconds.unwrap_or(DEFAULT_LEASE_SECONDS);
        if lease_time == 0 {
            return Err(ConfigError::Zero("leaseTimeSeconds"));
        }
        let timeout = self.packet_timeout_millis.unwrap_or(DEFAULT_PACKET_TIMEOUT_MS);
        if timeout == 0 {
            return Err(ConfigError::Zero("packetTimeoutMillis"));
        }
        let defaults = BootFiles::default();
        Ok(Config {
            interfaces: self.interfaces,
            mode: self.mode,
            server_address,
            dynamic_range,
            lease_time,
            tftp_server: self
                .tftp_server
                .as_deref()
                .map(|t| ip("tftpServer", t))
                .transpose()?
                .unwrap_or(server_address),
            boot: BootFiles {
                bios: self.boot.bios.unwrap_or(defaults.bios),
                uefi_x86_64: self.boot.uefi_x86_64.unwrap_or(defaults.uefi_x86_64),
                uefi_arm64: self.boot.uefi_arm64.unwrap_or(defaults.uefi_arm64),
                http_base_url: self.boot.http_base_url,
                ipxe_script_url: self.boot.ipxe_script_url,
            },
            lease_file: self.lease_file,
            packet_timeout: Duration::from_millis(timeout),
        })
    }
}

impl Config {
    /// Whether DHCP is on (at least one interface configured).
    pub fn enabled(&self) -> bool {
        !self.interfaces.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: &str) -> RawConfig {
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn empty_config_is_off() {
        let config = raw("{}").validate();
        assert!(matches!(config, Ok(ref c) if !c.enabled() && c.lease_time == DEFAULT_LEASE_SECONDS));
    }

    #[test]
    fn full_config_validates() {
        let config = raw(r#"{"interfaces":["br0"],"serverAddress":"10.0.0.1",
            "dynamicRange":{"start":"10.0.0.100","end":"10.0.0.200","netmask":"255.255.255.0",
              "gateway":"10.0.0.1","dnsServers":["10.0.0.53"],"domain":"lab"},
            "leaseTimeSeconds":600,"boot":{"httpBaseUrl":"http://10.0.0.1:8080"}}"#)
        .validate()
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(config.enabled());
        assert_eq!(config.tftp_server, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(config.boot.bios, "undionly.kpxe");
        let range = config.dynamic_range.unwrap_or_else(|| panic!("range"));
        assert!(range.contains(Ipv4Addr::new(10, 0, 0, 150)));
        assert!(!range.contains(Ipv4Addr::new(10, 0, 0, 201)));
        assert_eq!(range.addresses().count(), 101);
    }

    #[test]
    fn invalid_configs_say_why() {
        assert_eq!(raw(r#"{"interfaces":["br0"]}"#).validate(), Err(ConfigError::NoServerAddress));
        assert!(matches!(
            raw(r#"{"interfaces":["br0"],"serverAddress":"10.0.0"}"#).validate(),
            Err(ConfigError::BadAddress { field: "serverAddress", .. })
        ));
        assert!(matches!(
            raw(r#"{"interfaces":["an-interface-name-too-long"],"serverAddress":"10.0.0.1"}"#).validate(),
            Err(ConfigError::BadInterface(_))
        ));
        assert!(matches!(
            raw(r#"{"dynamicRange":{"start":"10.0.0.9","end":"10.0.0.1","netmask":"255.255.255.0"}}"#).validate(),
            Err(ConfigError::BadRange { .. })
        ));
        assert!(matches!(
            raw(r#"{"dynamicRange":{"start":"10.0.0.1","end":"10.0.1.1","netmask":"255.255.255.0"}}"#).validate(),
            Err(ConfigError::BadRange { .. })
        ));
        assert_eq!(
            raw(r#"{"mode":"proxy","dynamicRange":{"start":"10.0.0.1","end":"10.0.0.2","netmask":"255.255.255.0"}}"#)
                .validate(),
            Err(ConfigError::RangeInProxyMode)
        );
        assert_eq!(raw(r#"{"leaseTimeSeconds":0}"#).validate(), Err(ConfigError::Zero("leaseTimeSeconds")));
        assert!(serde_json::from_str::<RawConfig>(r#"{"mode":"relay"}"#).is_err());
        assert!(serde_json::from_str::<RawConfig>(r#"{"unknown":1}"#).is_err());
    }
}
