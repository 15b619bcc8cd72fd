//! machinist's boot services (`machinist-boot`): DHCP, TFTP and HTTP for network-booting
//! machines, run together by [`service`] (the `machinist-boot` binary, and `machinist up
//! --boot-config`).
//!
//! - [`config`]: the configuration file;
//! - [`cluster`]: the kube-rs side — Machines by MAC, Cmdb network settings, Roles' cloud-init
//!   templates and agent tokens through reflectors, auto-registration, and the writes (hardware reports, boot timeline,
//!   agent logs);
//! - [`http`]: iPXE scripts ([`ipxe`]), artifacts, the agent's report, progress and log, the
//!   install plan with its NoCloud seed ([`nocloud`]), install progress and the phone-home;
//! - [`timeline`]: the boot timeline (`status.lastBoot` and Events), batched;
//! - [`metrics`]: `/metrics` and `/healthz` on their own port;
//! - [`machines`]: the traits between the HTTP server and the cluster view.
//!
//! DHCP and TFTP live in the `machinist-boot-dhcp` and `machinist-boot-tftp` crates beside this
//! one.

pub mod cluster;
pub mod config;
pub mod http;
pub mod ipxe;
pub mod machines;
pub mod metrics;
pub mod nocloud;
pub mod service;
pub mod timeline;
