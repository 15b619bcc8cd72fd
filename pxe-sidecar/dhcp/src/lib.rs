//! DHCPv4 and proxyDHCP for network-booting machines.
//!
//! The [`Engine`] is pure (no sockets, no clock): an ordered chain of [`Handler`]s —
//! [`handlers::Parse`] → [`handlers::Classify`] → [`handlers::Lookup`] →
//! [`handlers::Lease`] (full mode) or [`handlers::Proxy`] (proxy mode) →
//! [`handlers::BootOptions`] → [`handlers::RequestedOptions`] (option 55) — each returning
//! continue, respond or no response. The [`server`] module binds the configured interfaces
//! and feeds it packets under a per-packet timeout. Configuration is two-stage: [`RawConfig`] (serde) → [`Config`].
//!
//! # Boot file by client
//!
//! Only clients that announce themselves as booting get boot options (`file`, option 67,
//! `siaddr` = `tftpServer`); other clients (an installed OS, udhcpc, dhclient) get an
//! address and network settings only. Names and URLs are configurable (`boot.*`).
//!
//! | Client | Recognised by | Boot file (default) | Option 60 in reply |
//! |---|---|---|---|
//! | Already running iPXE, any architecture | option 77 user class contains `iPXE` | `boot.ipxeScriptUrl` with `{mac}` replaced by the client's MAC (none configured: no boot options) | echoed (`PXEClient`/`HTTPClient`) |
//! | BIOS PXE | option 60 `PXEClient…`, option 93 = 0 or absent | `undionly.kpxe` (`boot.bios`), over TFTP | `PXEClient` |
//! | x86-64 UEFI PXE | option 60 `PXEClient…`, option 93 = 7 or 9 | `ipxe.efi` (`boot.uefiX86_64`), over TFTP | `PXEClient` |
//! | arm64 UEFI PXE | option 60 `PXEClient…`, option 93 = 11 | `ipxe-arm64.efi` (`boot.uefiArm64`), over TFTP | `PXEClient` |
//! | x86-64 UEFI HTTP boot | option 60 `HTTPClient…`, option 93 = 16 | `{boot.httpBaseUrl}/ipxe.efi` | `HTTPClient` |
//! | arm64 UEFI HTTP boot | option 60 `HTTPClient…`, option 93 = 19 | `{boot.httpBaseUrl}/ipxe-arm64.efi` | `HTTPClient` |
//! | Any other architecture, or HTTP boot without `boot.httpBaseUrl` | — | none (address only; no reply in proxy mode) | — |
//!
//! Echoing option 60 `PXEClient` in full-mode offers stops PXE ROMs waiting ~3 s for a
//! proxyDHCP offer. Replies to PXE clients, in both modes, carry PXE vendor options (option 43,
//! discovery control 8: boot the file named in the packet), without which a UEFI firmware's
//! own PXE client asks a boot server on port 4011. Proxy replies carry no address (`yiaddr` 0).
//!
//! # Leases
//!
//! See [`leases`]: SQLite, one durable transaction per binding; reservations (the Machine's
//! CMDB address) come first, the dynamic range serves machines not yet allocated.

pub mod bootfile;
pub mod classify;
pub mod config;
pub mod counters;
pub mod directory;
pub mod engine;
pub mod handlers;
pub mod leases;
pub mod mac;
pub mod server;

pub use bootfile::{BootChoice, BootFiles};
pub use classify::{ClientClass, Vendor};
pub use config::{Config, ConfigError, DynamicRange, Mode, RawConfig};
pub use counters::{Counters, CountersSnapshot};
pub use dhcproto::v4::MessageType;
pub use directory::{BootPolicy, Directory, MachineBoot, NetworkSettings, StaticDirectory};
pub use engine::{Engine, Flow, Handler, Inbound, Port, Reply, ReplyObserver, ReplySummary, Silence};
pub use leases::{LeaseError, LeaseStore};
pub use mac::MacAddr;
pub use server::{ServerError, run};
