//! machinist's boot services (`machinist-boot`): DHCP, TFTP and HTTP for network-booting
//! machines.
//!
//! Built so far: [`ipxe`], the iPXE scripts a machine is served according to its status;
//! [`machines`], what the boot services need to know about Machines (looked up by MAC) and
//! where hardware reports go, as traits the Machine reflector implements; and [`http`], the
//! HTTP server (scripts, artifacts, hardware reports, health); and [`cluster`], the
//! kube-rs side: Machines found by MAC and agent tokens through reflectors, reports written
//! into `status.hardware` with server-side apply. DHCP and TFTP live in the
//! `machinist-boot-dhcp` and `machinist-boot-tftp` crates beside this one; the binary that ties
//! them together arrives with the rest of the "Boot services" issue.

pub mod cluster;
pub mod http;
pub mod ipxe;
pub mod machines;
