//! What every handler shares: the API state, the token clients must present, the shutdown
//! signal, and the OpenAPI documents built for the current registry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use crate::http::openapi::OpenApiCache;
use crate::semantics::errors::ApiError;
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
    /// Watches open at once per user, at most
    /// [`Limits::max_watches_per_user`](crate::semantics::state::Limits) each.
    pub user_watches: Arc<Mutex<HashMap<String, usize>>>,
    /// Requests doing storage work at once, at most
    /// [`Limits::max_concurrent_work`](crate::semantics::state::Limits).
    pub work: Arc<tokio::sync::Semaphore>,
}

/// One user's place among its open watches, given back when dropped.
#[derive(Debug)]
pub struct UserWatch {
    counts: Arc<Mutex<HashMap<String, usize>>>,
    user: String,
}

impl Drop for UserWatch {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.user) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.user);
            }
        }
    }
}

impl Server {
    /// A server over `api`, answering requests that present `token` until `shutdown`.
    pub fn new(api: Arc<Api>, token: &str, shutdown: CancellationToken) -> Self {
        let watches = Arc::new(tokio::sync::Semaphore::new(api.limits.max_watches));
        let work = Arc::new(tokio::sync::Semaphore::new(api.limits.max_concurrent_work.max(1)));
        Self {
            api,
            token: Arc::from(token),
            shutdown,
            openapi: Arc::default(),
            watches,
            user_watches: Arc::default(),
            work,
        }
    }

    /// Runs a request's storage work (decode, admit, commit) on the blocking pool, at most
    /// [`Limits::max_concurrent_work`](crate::semantics::state::Limits) at once: more wait their
    /// turn as tasks, not as threads (hundreds of threads, each with its allocator's caches, on a
    /// couple of cores were most of the server's memory under a fleet of writes, and no faster).
    pub async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let permit = Arc::clone(&self.work)
            .acquire_owned()
            .await
            .map_err(|_| ApiError::internal("the server is shutting down"))?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await
        .map_err(|e| ApiError::internal(format!("worker failed: {e}")))?
    }

    /// A place for one more watch of `user`, unless it has `limit` open already.
    pub fn user_watch(&self, user: &str, limit: usize) -> Option<UserWatch> {
        let mut counts = self.user_watches.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = counts.entry(user.to_owned()).or_default();
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(UserWatch { counts: Arc::clone(&self.user_watches), user: user.to_owned() })
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").finish_non_exhaustive()
    }
}
