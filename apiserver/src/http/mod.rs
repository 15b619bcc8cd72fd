//! HTTP and discovery: authentication and authorization ([`authz`]), routing ([`router`]),
//! the reviews answered without storage ([`review`]), reading requests
//! ([`decode`], [`path`], [`protobuf`]) and writing answers ([`response`], [`table`]), lists
//! ([`list`]), [`watch`]es, the `scale` subresource ([`scale`]), discovery documents
//! ([`discovery`]) and OpenAPI ([`openapi`]). Everything here turns HTTP into calls of
//! [`crate::semantics`] and their results back into HTTP.
//!
//! Inside the layer, from the bottom: [`path`], [`protobuf`], [`response`], [`discovery`],
//! [`openapi`] and [`table`] need no other module of it; [`decode`] reads protobuf bodies;
//! [`server`] holds the OpenAPI cache; [`authz`] and [`review`] ask the RBAC policy of the
//! state the server holds; [`list`], [`watch`] and [`scale`] serve on them; the [`router`]
//! sends each request to one of them.

pub mod authz;
pub mod decode;
pub mod discovery;
pub mod list;
pub mod openapi;
pub mod path;
pub mod protobuf;
pub mod response;
pub mod review;
pub mod router;
pub mod scale;
pub mod server;
pub mod table;
pub mod watch;
