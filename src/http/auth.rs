//! Who is calling: a request's bearer credential becomes a [`Grant`] through the front
//! door ([`crate::credentials::admit`]), narrowed by the operator's flags, which no
//! credential can widen. One resolver serves both backends; they differ only in which
//! authority checks a credential and which backend a session's calls go to.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::backend::{Backend, LocalBackend};
use crate::credentials::secrets;
use crate::credentials::{self, Authority, Presented, Surface};
pub use crate::credentials::{OperatorBound, Refusal as AuthError};
use crate::relace::{RelaceBackend, RelaceClient, RetryPolicy};
use crate::server::Grant;

/// Turns a bearer credential into a grant: a scope, and maybe a backend acting with it.
pub trait ScopeResolver: Send + Sync + 'static {
    /// The grant of a request bearing `bearer` (or none).
    fn resolve<'a>(
        &'a self,
        bearer: Option<&'a str>,
    ) -> futures::future::BoxFuture<'a, Result<Grant, AuthError>>;
}

/// The one resolver: the front door's rule, on the embedded store or the Relace API.
pub struct Resolver {
    bound: OperatorBound,
    backends: Backends,
}

enum Backends {
    /// The embedded store checks credentials, and serves every session.
    Local(LocalBackend),
    /// The Relace API checks each request's repo token, and the session's calls go
    /// upstream with that same token, so the service enforces the scope a second time.
    Relace(RelacePool),
}

/// One backend (connection pool, clone cache) per token, so nothing one token fetched
/// is served to another.
struct RelacePool {
    base_url: String,
    policy: RetryPolicy,
    /// The operator's own backend, for anonymous requests.
    operator: Arc<dyn Backend>,
    backends: Mutex<HashMap<String, Arc<RelaceBackend>>>,
    /// The data directory holding each token's history caches.
    data_dir: std::path::PathBuf,
}

/// Tokens whose backends are kept; past this, the map starts afresh.
const MAX_CACHED_CREDENTIALS: usize = 1024;

impl RelacePool {
    fn backend_for(&self, token: &str) -> Result<Arc<RelaceBackend>, AuthError> {
        let key = fingerprint(Some(token));
        let mut map = self.backends.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = map.get(&key) {
            return Ok(b.clone());
        }
        if map.len() >= MAX_CACHED_CREDENTIALS {
            map.clear();
        }
        let client = RelaceClient::new(&self.base_url, token, self.policy).map_err(|e| {
            tracing::error!(cause = %e, "cannot build an API client");
            AuthError::Unavailable
        })?;
        let backend = Arc::new(RelaceBackend::new(client).with_history(&self.data_dir));
        map.insert(key, backend.clone());
        Ok(backend)
    }
}

impl Resolver {
    /// Credentials of the embedded store behind `backend`: its repo tokens and account
    /// keys.
    pub fn local(backend: LocalBackend, bound: OperatorBound) -> Self {
        Self {
            bound,
            backends: Backends::Local(backend),
        }
    }

    /// Repo tokens of the Relace API at `base_url`; anonymous requests, when allowed,
    /// go upstream with the operator's own backend. Each token's history caches live
    /// under `data_dir`.
    pub fn relace(
        base_url: &str,
        policy: RetryPolicy,
        bound: OperatorBound,
        operator: Arc<dyn Backend>,
        data_dir: &std::path::Path,
    ) -> Self {
        Self {
            bound,
            backends: Backends::Relace(RelacePool {
                base_url: base_url.to_string(),
                policy,
                operator,
                backends: Mutex::new(HashMap::new()),
                data_dir: data_dir.to_path_buf(),
            }),
        }
    }
}

impl ScopeResolver for Resolver {
    fn resolve<'a>(
        &'a self,
        bearer: Option<&'a str>,
    ) -> futures::future::BoxFuture<'a, Result<Grant, AuthError>> {
        Box::pin(async move {
            match &self.backends {
                Backends::Local(local) => {
                    let scope =
                        credentials::admit(local, &self.bound, Surface::Http, bearer).await?;
                    Ok(Grant::new(scope))
                }
                Backends::Relace(pool) => {
                    let backend: Arc<dyn Backend> = match Presented::classify(bearer) {
                        Presented::RepoToken(token) => pool.backend_for(token)?,
                        Presented::AccountKey(_) => {
                            return Err(AuthError::NotTakenHere(
                                "an HTTP server on the relace backend takes repo tokens (rlcr-…) only",
                            ));
                        }
                        _ => pool.operator.clone(),
                    };
                    let authority = credentials::TokensOnly(backend.as_ref());
                    let scope = credentials::admit(
                        &authority as &dyn Authority,
                        &self.bound,
                        Surface::Http,
                        bearer,
                    )
                    .await?;
                    Ok(Grant {
                        scope: Arc::new(scope),
                        backend: Some(backend),
                    })
                }
            }
        })
    }
}

/// A stable, secret-free name for a credential: sessions are bound to it and
/// concurrency is counted by it.
pub fn fingerprint(bearer: Option<&str>) -> String {
    match bearer {
        None => "anonymous".to_string(),
        Some(b) => secrets::hash(b)[..24].to_string(),
    }
}
