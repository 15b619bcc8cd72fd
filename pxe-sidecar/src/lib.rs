//! machinist's boot services (`machinist-boot`): DHCP, TFTP and HTTP for network-booting
//! machines.
//!
//! Built so far: [`ipxe`], the iPXE scripts a machine is served according to its status;
//! [`machines`], what the boot services need to know about Machines (looked up by MAC) and
//! where hardware reports go, as traits the Machine reflector implements; and [`http`], the
//! HTTP server (scripts, artifacts, hardware reports, health). DHCP and TFTP live in the
//! `machinist-boot-dhcp` and `machinist-boot-tftp` crates beside this one; the reflector and
//! the binary that ties them together arrive with the rest of the "Boot services" issue.

pub mod http;
pub mod ipxe;
pub mod machines;
