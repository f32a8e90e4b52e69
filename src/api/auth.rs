//! Who is calling the API and what that reaches: an account key reaches everything; a
//! repo token reaches the `/repo/{id}/…` routes of its own repos, and nothing else.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::{ApiError, ApiState, blocking};
use crate::model::RepoId;
use crate::store::TokenState;
use crate::store::secrets::{self, ACCOUNT_KEY_PREFIX};

/// An authenticated caller.
#[derive(Clone)]
pub enum Caller {
    /// An account key: every repo and every route.
    Account,
    /// A repo token.
    RepoToken {
        /// The token's hash, so it can read or delete itself.
        hash: String,
        /// Its name (commits it makes are attributed to it).
        name: String,
        /// The repos it reaches.
        repos: Vec<RepoId>,
    },
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Caller::Account => f.write_str("Account"),
            Caller::RepoToken { name, .. } => write!(f, "RepoToken({name})"),
        }
    }
}

impl Caller {
    /// May this caller use `/repo/{id}/…`? A token outside its repos gets 403 whether
    /// the repo exists or not, so nothing about other repos is revealed.
    pub fn check_repo(&self, id: &RepoId) -> Result<(), ApiError> {
        match self {
            Caller::Account => Ok(()),
            Caller::RepoToken { repos, .. } if repos.contains(id) => Ok(()),
            Caller::RepoToken { .. } => Err(ApiError::forbidden(
                "this repo token does not grant access to that repo",
            )),
        }
    }

    /// Routes only an account key may use (listing, creating, deleting repos, minting).
    pub fn require_account(&self, what: &str) -> Result<(), ApiError> {
        match self {
            Caller::Account => Ok(()),
            Caller::RepoToken { .. } => Err(ApiError::forbidden(format!(
                "a repo token cannot {what}; use an account API key"
            ))),
        }
    }

    /// Who commits made by this caller are attributed to.
    pub fn author(&self) -> &str {
        match self {
            Caller::Account => "scoped-repo-mcp api",
            Caller::RepoToken { name, .. } => name,
        }
    }

    /// Whether this caller is the repo token `token`.
    pub fn is_token(&self, token: &str) -> bool {
        matches!(self, Caller::RepoToken { hash, .. } if *hash == secrets::hash(token))
    }
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                ApiError::unauthorized(
                    "missing credential: send `Authorization: Bearer <API key or repo token>`",
                )
            })?;
        let credential = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header must be `Bearer <credential>`")
            })?
            .to_string();
        if secrets::looks_like_repo_token(&credential) {
            let token = credential;
            let hash = secrets::hash(&token);
            let (state, info) = blocking(state, move |s| s.token(&token)).await?;
            return match (state, info) {
                (TokenState::Live, Some(info)) => {
                    crate::audit::note_credential(crate::audit::Who::Token {
                        name: info.name.clone(),
                        id: hash[..12].to_string(),
                    });
                    Ok(Caller::RepoToken {
                        hash,
                        name: info.name,
                        repos: info.repo_ids,
                    })
                }
                (TokenState::Revoked, _) => {
                    Err(ApiError::unauthorized("this repo token has been revoked"))
                }
                (TokenState::Expired, _) => {
                    Err(ApiError::unauthorized("this repo token has expired"))
                }
                _ => Err(ApiError::unauthorized("invalid credential")),
            };
        }
        if credential.starts_with(ACCOUNT_KEY_PREFIX) {
            let live = blocking(state, move |s| s.live_account_key(&credential)).await?;
            if let Some((id, name)) = live {
                crate::audit::note_credential(crate::audit::Who::AccountKey { name, id });
                return Ok(Caller::Account);
            }
        }
        Err(ApiError::unauthorized("invalid credential"))
    }
}
