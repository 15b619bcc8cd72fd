//! machinist's boot services (`machinist-boot`): DHCP, TFTP and HTTP for network-booting
//! machines.
//!
//! Built so far: [`ipxe`], the iPXE scripts a machine is served according to its status.
//! DHCP and TFTP live in the `machinist-boot-dhcp` and `machinist-boot-tftp` crates beside
//! this one; the HTTP server, the Machine reflector and the binary that ties them together
//! arrive with the rest of the "Boot services" issue.

pub mod ipxe;
