//! Request semantics: the Kubernetes API's rules, apart from HTTP. Which resources are served
//! ([`registry`]), what a request is ([`request`]), what a write does ([`ops`]: create, get,
//! update, patch, delete) and what it checks on the way ([`admission`] against CRD schemas,
//! [`builtins`], object [`meta`]data), who owns which fields ([`fields`]: managedFields and
//! server-side apply), [`selectors`], strategic merge [`patch`]es, and the errors clients get
//! ([`errors`]). Built on [`crate::store`]; knows nothing of HTTP.
//!
//! Inside the layer, from the bottom: [`errors`], [`meta`], [`patch`] and [`registry`] need
//! no other module of it; [`selectors`] check keys by [`meta`]'s rules; [`request`] and
//! [`state`] (the shared [`state::Api`]) build on the registry; [`admission`], [`builtins`] and [`fields`] check and
//! track a request's object; [`ops`] runs every write through them.

pub mod admission;
pub mod builtins;
pub mod errors;
pub mod fields;
pub mod identity;
pub mod meta;
pub mod ops;
pub mod patch;
pub mod rbac;
pub mod registry;
pub mod request;
pub mod selectors;
pub mod state;
