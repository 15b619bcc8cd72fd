//! Virtual machines on libvirt hosts, pure: what a libvirt Machine's domain and volume are
//! called and look like ([`naming`], [`domain_xml`]), which Hypervisor a new one goes to
//! ([`placement`], recorded in the Hypervisor's status by [`host_ledger`]) and what its power
//! calls for ([`power`]). The libvirt calls live in
//! [`crate::libvirt`].

pub mod domain_xml;
pub mod host_ledger;
pub mod naming;
pub mod placement;
pub mod power;
