//! The API's routes, one resource a file, and the request helpers they share. Wire
//! types are private: the shapes the hosted service and the official SDKs use, not this
//! crate's domain types; each lives beside its handler, or in [`wire`] when several
//! resources answer with it.
//!
//! - `repos`: create, list, read, delete and clone repos.
//! - `update`: `POST /repo/{id}/update` (files, a diff or a git source).
//! - `files`: one file: read, write, delete.
//! - `search`: line search, and the `relace-search` agent answered by it.
//! - `retrieve`: ranked retrieval and its embedding status.
//! - `tokens`: mint, read and revoke repo tokens.
//! - `history`: commits, diffs, blame and revert (extensions the hosted API lacks).

mod files;
mod history;
mod repos;
mod retrieve;
mod search;
mod tokens;
mod update;
mod wire;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Query};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::de::DeserializeOwned;

use super::auth::Caller;
use super::{ApiError, ApiState, MAX_BODY_BYTES};
use crate::git_source::{GitProgram, GitSource};
use crate::model::RepoId;
use crate::paths::RepoPath;
use crate::scope::Right;

pub(super) fn router(state: ApiState) -> Router {
    let v1 = Router::new()
        .route("/repo", post(repos::create_repo).get(repos::list_repos))
        .route(
            "/repo/{id}",
            get(repos::get_repo).delete(repos::delete_repo),
        )
        .route("/repo/{id}/update", post(update::update_repo))
        .route("/repo/{id}/clone", get(repos::clone_repo))
        .route(
            "/repo/{id}/file/{*path}",
            get(files::get_file)
                .put(files::put_file)
                .delete(files::delete_file),
        )
        .route("/repo/{id}/commits", get(history::list_commits))
        .route("/repo/{id}/commit/{sha}", get(history::get_commit))
        .route("/repo/{id}/compare", get(history::compare))
        .route("/repo/{id}/blame/{*path}", get(history::blame))
        .route("/repo/{id}/revert", post(history::revert))
        .route("/repo/{id}/retrieve", post(retrieve::retrieve))
        .route("/repo/{id}/search", post(search::search))
        .route("/repo/{id}/agent", post(search::agent))
        .route(
            "/repo/{id}/embedding_status",
            get(retrieve::embedding_status),
        )
        // git's smart HTTP; `{id}` is `<repo id>.git` (or the bare id).
        .route("/repo/{id}/info/refs", get(super::git::info_refs))
        .route("/repo/{id}/git-upload-pack", post(super::git::upload_pack))
        .route(
            "/repo/{id}/git-receive-pack",
            post(super::git::receive_pack),
        )
        .route("/repo_token", post(tokens::create_token))
        .route(
            "/repo_token/{token}",
            get(tokens::get_token).delete(tokens::delete_token),
        );
    Router::new()
        .nest("/v1", v1)
        .fallback(|| async { ApiError::not_found("no such route; the API lives under /v1") })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

fn body_json<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let bytes = body.map_err(|r| ApiError::new(r.status(), r.body_text()))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::unprocessable(format!("the request body is not valid for this route: {e}"))
    })
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(t)| t)
        .map_err(|r| ApiError::unprocessable(r.body_text()))
}

fn repo_id(raw: &str) -> Result<RepoId, ApiError> {
    raw.parse()
        .map_err(|e: crate::model::BadRepoId| ApiError::unprocessable(e.to_string()))
}

/// Parse the ID and check the caller may read the repo.
fn readable_repo(caller: &Caller, raw: &str) -> Result<RepoId, ApiError> {
    repo_with_right(caller, Right::Read, raw)
}

/// Parse the ID and check the caller has `right` on the repo.
fn repo_with_right(caller: &Caller, right: Right, raw: &str) -> Result<RepoId, ApiError> {
    let id = repo_id(raw)?;
    caller.check(right, &id)?;
    Ok(id)
}

fn path(raw: &str) -> Result<RepoPath, ApiError> {
    RepoPath::parse(raw).map_err(|e| ApiError::bad_request(format!("file path: {e}")))
}

/// A git source of a request: checked against the allow list before anything runs.
fn git_source(
    state: &ApiState,
    url: &str,
    branch: Option<&str>,
) -> Result<(GitSource, GitProgram), ApiError> {
    let source = GitSource::from_api(url, branch, &state.settings.allowed_git_hosts)?;
    let git = match &state.settings.git {
        Some(g) => g.program().clone(),
        None => GitProgram::find(crate::git_source::MIN_GIT_REMOTE).map_err(|why| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("this server cannot fetch git sources: {why}"),
            )
        })?,
    };
    Ok((source, git))
}
