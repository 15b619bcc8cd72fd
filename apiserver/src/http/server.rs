//! What every handler shares: the API state, the token clients must present, the shutdown
//! signal, and the OpenAPI documents built for the current registry.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::http::openapi::OpenApiCache;
use crate::semantics::state::Api;

/// What every handler needs.
#[derive(Clone)]
pub struct Server {
    /// State.
    pub api: Arc<Api>,
    /// The bearer token clients must present.
    pub token: Arc<str>,
    /// Cancelled when the server shuts down (ends watches).
    pub shutdown: CancellationToken,
    /// OpenAPI documents of the registry they were built from.
    pub openapi: Arc<OpenApiCache>,
    /// Watches open at once, at most [`Limits::max_watches`](crate::semantics::state::Limits).
    pub watches: Arc<tokio::sync::Semaphore>,
}

impl Server {
    /// A server over `api`, answering requests that present `token` until `shutdown`.
    pub fn new(api: Arc<Api>, token: &str, shutdown: CancellationToken) -> Self {
        let watches = Arc::new(tokio::sync::Semaphore::new(api.limits.max_watches));
        Self { api, token: Arc::from(token), shutdown, openapi: Arc::default(), watches }
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").finish_non_exhaustive()
    }
}
