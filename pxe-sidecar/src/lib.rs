//! machinist's boot services (`machinist-boot`): DHCP, TFTP and HTTP.
//!
//! Not yet built: the services arrive with the "Boot services" issue. The crate exists so the
//! workspace has its final shape; it exports nothing that claims to work.
