//! `/repo_token`: mint, read and revoke repo tokens.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::{body_json, repo_id};
use crate::api::auth::Caller;
use crate::api::{ApiError, ApiState, blocking};
use crate::model::{MintSpec, TokenInfo, rfc3339};
use crate::scope::Right;
use crate::store::TokenState;

#[derive(Deserialize)]
struct TokenBody {
    name: String,
    repo_ids: Vec<String>,
    #[serde(default)]
    ttl_seconds: Option<u64>,
    // Extensions of this server; the hosted API lacks them.
    #[serde(default)]
    read_only: bool,
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    can_delegate: bool,
    /// The token's own rate limit (`60/m`, `10/s,burst=5`).
    #[serde(default)]
    rate: Option<String>,
}

#[derive(Serialize)]
pub(super) struct TokenAnswer {
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
    name: String,
    repo_ids: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<String>,
    // Always echoed, so a client can tell this server honoured them.
    read_only: bool,
    paths: Vec<String>,
    can_delegate: bool,
    /// `null` when the token has no rate of its own.
    rate: Option<String>,
}

impl TokenAnswer {
    fn new(token: Option<String>, info: TokenInfo) -> Self {
        Self {
            token,
            name: info.name,
            repo_ids: info.repo_ids.iter().map(ToString::to_string).collect(),
            expires_at: info.expires_at.map(rfc3339),
            read_only: info.read_only,
            paths: info.paths,
            can_delegate: info.can_delegate,
            rate: info.rate.map(|r| r.to_string()),
        }
    }
}

pub(super) async fn create_token(
    State(state): State<ApiState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<TokenAnswer>, ApiError> {
    // An account key mints anything; a repo token only when it may delegate.
    caller.check_all(Right::Mint, &[])?;
    let body: TokenBody = body_json(body)?;
    let name = crate::rules::token_name(&body.name)?.to_string();
    crate::rules::token_paths(&body.paths)?;
    let ttl = body.ttl_seconds.filter(|t| *t > 0);
    // A delegating token's child never outlives it.
    if let Some(expires) = caller.scope().expires_at() {
        let room = (expires - crate::model::unix_now()).max(0) as u64;
        if ttl.is_none_or(|t| t > room) {
            return Err(ApiError::unprocessable(format!(
                "a token minted by a repo token cannot outlive it: give ttl_seconds of at most {room}"
            )));
        }
    }
    match (ttl, state.settings.max_token_ttl) {
        (None, Some(max)) => {
            return Err(ApiError::unprocessable(format!(
                "this server mints no token without ttl_seconds; give at most {max} (its --max-token-ttl)"
            )));
        }
        (Some(t), Some(max)) if t > max => {
            return Err(ApiError::unprocessable(format!(
                "ttl_seconds {t} is over this server's maximum of {max} (its --max-token-ttl)"
            )));
        }
        _ => {}
    }
    // Refused before anything is written: an expiry that cannot be written down.
    if let Some(t) = ttl {
        crate::rules::token_expiry(crate::model::unix_now(), t)?;
    }
    if body.repo_ids.is_empty() {
        return Err(ApiError::unprocessable("repo_ids is empty"));
    }
    let rate = body
        .rate
        .as_deref()
        .map(|r| r.parse::<crate::rate::Rate>())
        .transpose()
        .map_err(|e| ApiError::unprocessable(format!("rate: {e}")))?;
    let ids = body
        .repo_ids
        .iter()
        .map(|r| repo_id(r))
        .collect::<Result<Vec<_>, _>>()?;
    // Children within the minter (the same rule as the MCP tool).
    caller.check_all(Right::Mint, &ids)?;
    crate::audit::note_repos(&ids);
    let spec = caller
        .scope()
        .child(MintSpec {
            name,
            repo_ids: ids,
            ttl_seconds: ttl,
            read_only: body.read_only,
            paths: body.paths,
            can_delegate: body.can_delegate,
            rate,
            parent: None,
        })
        .map_err(|e| ApiError::forbidden(e.to_string()))?;
    let minted = blocking(&state, move |s| s.mint(&spec)).await?;
    crate::audit::note_token(&minted.info.name, &minted.token);
    tracing::info!(name = %minted.info.name, repos = minted.info.repo_ids.len(), "repo token minted through the API");
    Ok(Json(TokenAnswer::new(Some(minted.token), minted.info)))
}

/// An account key sees every token; a repo token itself and the tokens minted from it.
async fn may_see_token(state: &ApiState, caller: &Caller, token: &str) -> Result<(), ApiError> {
    if caller.is_account() || caller.is_token(token) {
        return Ok(());
    }
    if let Some(mine) = caller.token_hash().map(str::to_string) {
        let token = token.to_string();
        let (_, info) = blocking(state, move |s| s.token(&token)).await?;
        if info.is_some_and(|i| i.lineage.contains(&mine)) {
            return Ok(());
        }
    }
    Err(ApiError::forbidden(
        "a repo token can only read or delete itself and the tokens minted from it",
    ))
}

pub(super) async fn get_token(
    State(state): State<ApiState>,
    caller: Caller,
    Path(token): Path<String>,
) -> Result<Json<TokenAnswer>, ApiError> {
    may_see_token(&state, &caller, &token).await?;
    let (token_state, info) = blocking(&state, move |s| s.token(&token)).await?;
    match (token_state, info) {
        (TokenState::Live, Some(info)) => Ok(Json(TokenAnswer::new(None, info))),
        (TokenState::Revoked, _) => Err(ApiError::not_found("this repo token has been revoked")),
        (TokenState::Expired, _) => Err(ApiError::not_found("this repo token has expired")),
        _ => Err(ApiError::not_found("no such repo token")),
    }
}

pub(super) async fn delete_token(
    State(state): State<ApiState>,
    caller: Caller,
    Path(token): Path<String>,
) -> Result<StatusCode, ApiError> {
    may_see_token(&state, &caller, &token).await?;
    let revoking = token.clone();
    match blocking(&state, move |s| s.revoke_token(&token)).await? {
        Some(info) => {
            crate::audit::note_repos(&info.repo_ids);
            crate::audit::note_token(&info.name, &revoking);
            tracing::info!(name = %info.name, "repo token revoked through the API");
            Ok(StatusCode::NO_CONTENT)
        }
        None => Err(ApiError::not_found(
            "no such repo token, or it was already revoked",
        )),
    }
}
