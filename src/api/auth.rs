//! Who is calling the API and what that reaches, decided by the front door
//! ([`crate::credentials::admit`]) like on every other surface: an account key reaches every
//! repo and every route; a repo token reaches the `/repo/{id}/…` routes of its own
//! repos, and nothing else.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::{ApiError, ApiState};
use crate::credentials::secrets;
use crate::credentials::{self, OperatorBound, Refusal, Surface};
use crate::model::RepoId;
use crate::scope::{Credential, Right, Scope, ScopeError};

/// An authenticated caller: its scope, and its token's hash when it is a repo token.
#[derive(Clone)]
pub struct Caller {
    scope: Scope,
    token_hash: Option<String>,
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Caller({})", self.scope.actor())
    }
}

impl Caller {
    /// May this caller use `right` on `/repo/{id}/…`? A token outside its repos gets 403
    /// whether the repo exists or not, so nothing about other repos is revealed.
    pub fn check(&self, right: Right, id: &RepoId) -> Result<(), ApiError> {
        self.scope.admit(right, id).map_err(|e| {
            ApiError::forbidden(match e {
                // The same body for every repo outside, existing or not.
                ScopeError::OutOfScope { allowed, .. } => {
                    format!("this credential does not reach that repo; it reaches: {allowed}")
                }
                other => other.to_string(),
            })
        })
    }

    /// [`Caller::check`] for reading.
    pub fn check_repo(&self, id: &RepoId) -> Result<(), ApiError> {
        self.check(Right::Read, id)
    }

    /// Routes only an account key may use (listing, creating, deleting repos, minting).
    pub fn require_account(&self, what: &str) -> Result<(), ApiError> {
        match self.scope.credential() {
            Credential::AccountKey => Ok(()),
            _ => Err(ApiError::forbidden(format!(
                "a repo token cannot {what}; use an account API key"
            ))),
        }
    }

    /// Who commits made by this caller are attributed to.
    pub fn author(&self) -> &str {
        match self.scope.credential() {
            Credential::AccountKey => "scoped-repo-mcp api",
            _ => self.scope.actor(),
        }
    }

    /// Whether this caller is the repo token `token`.
    pub fn is_token(&self, token: &str) -> bool {
        self.token_hash
            .as_deref()
            .is_some_and(|h| h == secrets::hash(token))
    }

    /// [`Caller::check`] for several repos at once (minting).
    pub fn check_all(&self, right: Right, ids: &[RepoId]) -> Result<(), ApiError> {
        self.scope
            .admit_all(right, ids)
            .map_err(|e| ApiError::forbidden(e.to_string()))
    }

    /// The caller's scope.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// The hash of the caller's repo token, when it is one.
    pub fn token_hash(&self) -> Option<&str> {
        self.token_hash.as_deref()
    }

    /// Whether this caller holds an account key.
    pub fn is_account(&self) -> bool {
        matches!(self.scope.credential(), Credential::AccountKey)
    }
}

fn refused(refusal: Refusal) -> ApiError {
    ApiError::new(refusal.http_status(), refusal.to_string())
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let bearer = credentials::bearer(parts.headers.get(AUTHORIZATION).map(|v| v.as_bytes()))
            .map_err(refused)?;
        let scope = credentials::admit(
            &state.local,
            &OperatorBound::default(),
            Surface::Api,
            bearer,
        )
        .await
        .map_err(|r| {
            crate::audit::note_refused_credential(&r, bearer);
            refused(r)
        })?;
        let token_hash = match scope.credential() {
            Credential::RepoToken(t) => Some(secrets::hash(t)),
            _ => None,
        };
        match (&token_hash, scope.account_key()) {
            (Some(hash), _) => crate::audit::note_credential(crate::audit::Who::Token {
                name: scope.actor().to_string(),
                id: hash[..12].to_string(),
            }),
            (None, Some((name, id))) => {
                crate::audit::note_credential(crate::audit::Who::AccountKey {
                    name: name.to_string(),
                    id: id.to_string(),
                })
            }
            _ => {}
        }
        // Admitted: the request is charged to its credential before any work.
        crate::rate::charge(&scope).map_err(ApiError::rate_limited)?;
        Ok(Caller { scope, token_hash })
    }
}
