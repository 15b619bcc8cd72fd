//! Support for machinist's end-to-end tests, which drive real peers (QEMU's iPXE, dnsmasq,
//! dhclient, udhcpc, tftp, curl, kubectl, the Python client) from Rust tests.
//!
//! A test asks for what it needs through [`prereq`]. On a developer machine a missing tool
//! skips the test with a message; in CI (`MACHINIST_E2E=require`, set by `.ci/run`) a missing
//! tool fails the test, so nothing is skipped silently.
//!
//! [`boot`] is the QEMU network-boot fixture: `machinist-lab`'s network namespace with a
//! bridge and its VMs booting from the network with QEMU's iPXE ROM (the same ones `machinist
//! up --demo` runs), dnsmasq, and a RAM disk that reports on the serial console what it was
//! booted with. [`netns`] joins two namespaces with a veth pair. `cluster` (feature `cluster`)
//! is the control plane and the boot services on loopback, for tests that need both;
//! `boot_http` (feature `boot-http`) the boot services' HTTP server over in-memory machines.

pub mod boot;
#[cfg(feature = "boot-http")]
pub mod boot_http;
#[cfg(feature = "cluster")]
pub mod cluster;
pub mod netns;
pub mod prereq;
pub mod system;
