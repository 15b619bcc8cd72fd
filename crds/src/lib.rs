//! machinist's API: the `machinist.dev/v1alpha1` kinds, their validation, and the generated
//! CRD manifests and reference documentation.
//!
//! Types only: no client, no controller logic. Every field carries a `///` doc, which becomes
//! the schema description and what `kubectl explain` shows.
//!
//! Features: none for the types (and [`apply`], the server-side apply bodies built from them);
//! `validation` for [`validation`] (objects checked as an API server checks them: JSON Schema,
//! CEL rules); `manifests` for [`manifest`] (reading YAML manifests), [`generated`] and
//! [`reference`] (the CRD files and reference documentation written from the types).

pub mod access;
pub mod apply;
pub mod cmdb;
pub mod common;
pub mod events;
#[cfg(feature = "manifests")]
pub mod generated;
pub mod hardware_profile;
pub mod hypervisor;
pub mod layout;
pub mod load_balancer_backend;
pub mod machine;
#[cfg(feature = "manifests")]
pub mod manifest;
#[cfg(feature = "manifests")]
pub mod reference;
pub mod role;
#[cfg(feature = "validation")]
pub mod validation;

pub use cmdb::{Cmdb, CmdbSpec, CmdbStatus};
pub use common::{LocalObjectRef, Quad, RoleRef, SecretRef};
pub use hardware_profile::{HardwareProfile, HardwareProfileSpec, HardwareProfileStatus};
pub use hypervisor::{Hypervisor, HypervisorSpec, HypervisorStatus};
pub use load_balancer_backend::{LoadBalancerBackend, LoadBalancerBackendSpec, LoadBalancerBackendStatus};
pub use machine::{Machine, MachineSpec, MachineStatus};
pub use role::{Role, RoleSpec, RoleStatus};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// API group of every machinist kind.
pub const GROUP: &str = "machinist.dev";
/// API version of every machinist kind.
pub const VERSION: &str = "v1alpha1";

/// The CustomResourceDefinitions of every kind, in a stable order.
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    vec![
        Machine::crd(),
        HardwareProfile::crd(),
        Cmdb::crd(),
        Role::crd(),
        LoadBalancerBackend::crd(),
        Hypervisor::crd(),
    ]
}
