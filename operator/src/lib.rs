//! machinist's controllers (`machinist-operator`).
//!
//! Not yet built: the Machine, HardwareProfile, Cmdb, Role and LoadBalancerBackend
//! controllers, profile matching and CMDB allocation, and the libvirt and BMC providers
//! arrive with their issues. The crate exists so the workspace has its final shape; it
//! exports nothing that claims to work.
