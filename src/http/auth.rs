//! Who is calling: a request's bearer credential becomes a [`Scope`], narrowed by the
//! operator's flags, which no credential can widen.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use crate::backend::{Backend, LocalBackend, TokenStatus};
use crate::model::RepoId;
use crate::relace::{RelaceBackend, RelaceClient, RetryPolicy};
use crate::scope::Scope;
use crate::server::Grant;
use crate::store::secrets;

/// Why a request's credential was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// No credential, and anonymous sessions are off.
    #[error("this server needs a credential: send `Authorization: Bearer <repo token>`")]
    Missing,
    /// The credential is not usable.
    #[error("the bearer credential {0}")]
    Invalid(&'static str),
    /// The credential is good but reaches none of the repos served here.
    #[error("the bearer token reaches none of the repos this server serves")]
    NoRepos,
    /// The credential could not be checked.
    #[error("the credential could not be checked; try again")]
    Unavailable,
}

/// The operator's upper bound on every session.
#[derive(Debug, Clone, Default)]
pub struct OperatorBound {
    /// Repos this server serves; empty: whatever the credential reaches.
    pub repos: Vec<RepoId>,
    /// Offer only read tools.
    pub read_only: bool,
    /// Let requests without a credential use exactly `repos`.
    pub allow_anonymous: bool,
}

impl OperatorBound {
    /// Apply the read-only bound and refuse an empty scope.
    pub fn finish(&self, scope: Scope) -> Result<Scope, AuthError> {
        if scope.is_empty() {
            return Err(AuthError::NoRepos);
        }
        Ok(if self.read_only {
            scope.read_only()
        } else {
            scope
        })
    }
}

/// Turns a bearer credential into a grant: a scope, and maybe a backend acting with it.
pub trait ScopeResolver: Send + Sync + 'static {
    /// The scope of a request bearing `bearer` (or none).
    fn resolve<'a>(
        &'a self,
        bearer: Option<&'a str>,
    ) -> futures::future::BoxFuture<'a, Result<Grant, AuthError>>;
}

/// Credentials of the embedded store: its repo tokens and account keys.
pub struct LocalResolver {
    backend: LocalBackend,
    bound: OperatorBound,
}

impl LocalResolver {
    /// Resolve against `backend`'s store, within `bound`.
    pub fn new(backend: LocalBackend, bound: OperatorBound) -> Self {
        Self { backend, bound }
    }

    fn finish(&self, scope: Scope) -> Result<Grant, AuthError> {
        self.bound.finish(scope).map(Grant::new)
    }
}

impl ScopeResolver for LocalResolver {
    fn resolve<'a>(
        &'a self,
        bearer: Option<&'a str>,
    ) -> futures::future::BoxFuture<'a, Result<Grant, AuthError>> {
        Box::pin(async move {
            let Some(credential) = bearer else {
                if self.bound.allow_anonymous {
                    return self.finish(Scope::anonymous(self.bound.repos.iter().copied()));
                }
                return Err(AuthError::Missing);
            };
            if secrets::looks_like_repo_token(credential) {
                return match self.backend.token_status(credential).await {
                    Ok(TokenStatus::Live(info)) => self.finish(Scope::from_token(
                        credential.to_string(),
                        &info.name,
                        &info.repo_ids,
                        info.expires_at,
                        &self.bound.repos,
                    )),
                    Ok(TokenStatus::Revoked) => Err(AuthError::Invalid("has been revoked")),
                    Ok(TokenStatus::Expired) => Err(AuthError::Invalid("has expired")),
                    Ok(TokenStatus::Unknown) => Err(AuthError::Invalid("is not a known token")),
                    Err(e) => {
                        tracing::error!(cause = %e, "token check failed");
                        Err(AuthError::Unavailable)
                    }
                };
            }
            if credential.starts_with(secrets::ACCOUNT_KEY_PREFIX) {
                let store = self.backend.store().clone();
                let key = credential.to_string();
                let bound = self.bound.repos.clone();
                type Checked = Option<((String, String), BTreeSet<RepoId>)>;
                let checked = tokio::task::spawn_blocking(move || -> Result<Checked, String> {
                    let Some(live) = store.live_account_key(&key).map_err(|e| e.to_string())?
                    else {
                        return Ok(None);
                    };
                    if !bound.is_empty() {
                        return Ok(Some((live, bound.into_iter().collect())));
                    }
                    let rows = store.repo_rows().map_err(|e| e.to_string())?;
                    Ok(Some((live, rows.into_iter().map(|r| r.id).collect())))
                })
                .await
                .map_err(|_| AuthError::Unavailable)?;
                return match checked {
                    Ok(Some(((id, name), repos))) => {
                        self.finish(Scope::operator(repos).by_account_key(&name, &id))
                    }
                    Ok(None) => Err(AuthError::Invalid("is not a known account key")),
                    Err(e) => {
                        tracing::error!(cause = %e, "account key check failed");
                        Err(AuthError::Unavailable)
                    }
                };
            }
            Err(AuthError::Invalid(
                "is neither a repo token (rlcr-…) nor an account key (rlc-…)",
            ))
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

/// Credentials of the Relace API: each request's repo token is checked upstream
/// (`GET /repo_token/{token}`), and the session's calls go upstream with that token,
/// so the service enforces the same scope a second time.
pub struct RelaceResolver {
    base_url: String,
    policy: RetryPolicy,
    bound: OperatorBound,
    /// The operator's own backend, for anonymous requests.
    operator: Arc<dyn Backend>,
    /// One backend (connection pool, clone cache) per token, so nothing one token
    /// fetched is served to another.
    backends: Mutex<HashMap<String, Arc<RelaceBackend>>>,
}

/// Tokens whose backends are kept; past this, the map starts afresh.
const MAX_CACHED_CREDENTIALS: usize = 1024;

impl RelaceResolver {
    /// Resolve against the API at `base_url`.
    pub fn new(
        base_url: &str,
        policy: RetryPolicy,
        bound: OperatorBound,
        operator: Arc<dyn Backend>,
    ) -> Self {
        Self {
            base_url: base_url.to_string(),
            policy,
            bound,
            operator,
            backends: Mutex::new(HashMap::new()),
        }
    }

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
        let backend = Arc::new(RelaceBackend::new(client));
        map.insert(key, backend.clone());
        Ok(backend)
    }
}

impl ScopeResolver for RelaceResolver {
    fn resolve<'a>(
        &'a self,
        bearer: Option<&'a str>,
    ) -> futures::future::BoxFuture<'a, Result<Grant, AuthError>> {
        Box::pin(async move {
            let Some(token) = bearer else {
                if self.bound.allow_anonymous {
                    let scope = self
                        .bound
                        .finish(Scope::anonymous(self.bound.repos.iter().copied()))?;
                    return Ok(Grant {
                        scope: Arc::new(scope),
                        backend: Some(self.operator.clone()),
                    });
                }
                return Err(AuthError::Missing);
            };
            if !secrets::looks_like_repo_token(token) {
                return Err(AuthError::Invalid(
                    "is not a repo token (rlcr-…): an HTTP server on the relace backend takes repo tokens only",
                ));
            }
            let backend = self.backend_for(token)?;
            match backend.token_status(token).await {
                Ok(TokenStatus::Live(info)) => {
                    let scope = self.bound.finish(Scope::from_token(
                        token.to_string(),
                        &info.name,
                        &info.repo_ids,
                        info.expires_at,
                        &self.bound.repos,
                    ))?;
                    Ok(Grant {
                        scope: Arc::new(scope),
                        backend: Some(backend as Arc<dyn Backend>),
                    })
                }
                Ok(TokenStatus::Revoked) => Err(AuthError::Invalid("has been revoked")),
                Ok(TokenStatus::Expired) => Err(AuthError::Invalid("has expired")),
                Ok(TokenStatus::Unknown) => Err(AuthError::Invalid("is not a known token")),
                Err(e) => {
                    tracing::warn!(cause = %e, "token check against the API failed");
                    Err(AuthError::Unavailable)
                }
            }
        })
    }
}
