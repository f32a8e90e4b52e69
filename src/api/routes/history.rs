//! The history routes, extensions the hosted API lacks: commits, one commit's diff, the
//! diff of two commits, blame, and reverting a commit. The same store calls and
//! limits as the MCP history tools, held to the caller's scope the same way.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use serde::{Deserialize, Serialize};

use super::wire::{RepoInfo, info};
use super::{body_json, path, query, readable_repo, repo_with_right};
use crate::api::auth::Caller;
use crate::api::{ApiError, ApiState, blocking};
use crate::model::{
    BlameQuery, BlameRange, CommitInfo, CommitQuery, DiffDetail, DiffQuery, FileDiff, HistoryMatch,
    HistoryMode, MAX_DIFF_CONTEXT, RevSpec, RevertSpec, UpdateControl, commit_page_size,
    format_commit_cursor, parse_commit_cursor, parse_rev, parse_time_bound,
};
use crate::rules::PathGlob;
use crate::scope::Right;
use crate::store::StoreError;

fn thirty() -> u32 {
    30
}
fn three() -> u32 {
    3
}

fn rev(field: &str, raw: &str) -> Result<RevSpec, ApiError> {
    parse_rev(raw).map_err(|e| ApiError::unprocessable(format!("{field}: {e}")))
}

fn glob(raw: &str) -> Result<Option<PathGlob>, ApiError> {
    if raw.is_empty() {
        return Ok(None);
    }
    Ok(Some(PathGlob::new("path_glob", raw)?))
}

/// Query of `GET /repo/{id}/commits`.
#[derive(Deserialize)]
pub(super) struct CommitsParams {
    #[serde(default)]
    path: String,
    #[serde(default)]
    author: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    #[serde(default = "thirty")]
    max_results: u32,
    #[serde(default)]
    cursor: String,
    /// With `query`: `message`, `added` or `removed` (`search_history`).
    #[serde(default)]
    mode: Option<HistoryMode>,
    #[serde(default)]
    query: String,
    #[serde(default)]
    path_glob: String,
}

#[derive(Serialize)]
pub(super) struct CommitsAnswer {
    repo_id: String,
    repo_head: String,
    commits: Vec<CommitInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

pub(super) async fn list_commits(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    params: Result<Query<CommitsParams>, QueryRejection>,
) -> Result<Json<CommitsAnswer>, ApiError> {
    let id = readable_repo(&caller, &id)?;
    let p = query(params)?;
    let matching = if p.query.is_empty() {
        None
    } else {
        crate::rules::search_query("query", &p.query)?;
        Some(HistoryMatch {
            text: p.query.clone(),
            mode: p.mode.unwrap_or_default(),
            path_glob: glob(&p.path_glob)?,
        })
    };
    crate::rules::query_length("author", &p.author)?;
    let q = CommitQuery {
        path: if p.path.is_empty() {
            None
        } else {
            Some(path(p.path.trim_end_matches('/'))?.to_string())
        },
        author: (!p.author.is_empty()).then(|| p.author.clone()),
        since: parse_time_bound("since", &p.since, false)?,
        until: parse_time_bound("until", &p.until, true)?,
        max_results: commit_page_size(p.max_results)?,
        cursor: parse_commit_cursor(&p.cursor)?,
        visible: caller.scope().visible(),
        matching,
        control: Default::default(),
    };
    let page = blocking(&state, move |s| s.list_commits(&id, &q)).await?;
    Ok(Json(CommitsAnswer {
        repo_id: id.to_string(),
        repo_head: page.head,
        commits: page.commits,
        next_cursor: page.next_cursor.as_ref().map(format_commit_cursor),
    }))
}

/// Query of the diff routes.
#[derive(Deserialize)]
pub(super) struct DiffParams {
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    detail: DiffDetail,
    #[serde(default)]
    path_glob: String,
    #[serde(default = "three")]
    context_lines: u32,
    #[serde(default)]
    file_cursor: u64,
}

impl DiffParams {
    fn to_query(&self, caller: &Caller) -> Result<DiffQuery, ApiError> {
        if self.context_lines > MAX_DIFF_CONTEXT {
            return Err(ApiError::unprocessable(format!(
                "context_lines must be at most {MAX_DIFF_CONTEXT}"
            )));
        }
        Ok(DiffQuery {
            detail: self.detail,
            path_glob: glob(&self.path_glob)?,
            context_lines: self.context_lines,
            first_file: usize::try_from(self.file_cursor).unwrap_or(usize::MAX),
            visible: caller.scope().visible(),
        })
    }
}

#[derive(Serialize)]
pub(super) struct DiffAnswer {
    repo_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    commit: Option<CommitInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<String>,
    to: String,
    files: Vec<FileDiff>,
    total_files: usize,
    truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_file_cursor: Option<usize>,
}

pub(super) async fn get_commit(
    State(state): State<ApiState>,
    caller: Caller,
    Path((id, sha)): Path<(String, String)>,
    params: Result<Query<DiffParams>, QueryRejection>,
) -> Result<Json<DiffAnswer>, ApiError> {
    let id = readable_repo(&caller, &id)?;
    let p = query(params)?;
    let commit = rev("commit", &sha)?;
    let q = p.to_query(&caller)?;
    let (info, diff) = blocking(&state, move |s| s.commit_diff(&id, &commit, &q)).await?;
    Ok(Json(DiffAnswer {
        repo_id: id.to_string(),
        commit: Some(info),
        from: diff.from,
        to: diff.to,
        truncated: diff.next_file.is_some(),
        next_file_cursor: diff.next_file,
        total_files: diff.total_files,
        files: diff.files,
    }))
}

pub(super) async fn compare(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    params: Result<Query<DiffParams>, QueryRejection>,
) -> Result<Json<DiffAnswer>, ApiError> {
    let id = readable_repo(&caller, &id)?;
    let p = query(params)?;
    let from = rev("from", &p.from)?;
    let to = rev("to", &p.to)?;
    let q = p.to_query(&caller)?;
    let diff = blocking(&state, move |s| s.compare(&id, &from, &to, &q)).await?;
    Ok(Json(DiffAnswer {
        repo_id: id.to_string(),
        commit: None,
        from: diff.from,
        to: diff.to,
        truncated: diff.next_file.is_some(),
        next_file_cursor: diff.next_file,
        total_files: diff.total_files,
        files: diff.files,
    }))
}

/// Query of `GET /repo/{id}/blame/{path}`.
#[derive(Deserialize)]
pub(super) struct BlameParams {
    #[serde(default)]
    start_line: u64,
    #[serde(default)]
    end_line: u64,
    #[serde(default)]
    commit: String,
}

#[derive(Serialize)]
pub(super) struct BlameAnswer {
    repo_id: String,
    path: String,
    commit: String,
    total_lines: u64,
    ranges: Vec<BlameRange>,
    truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_start_line: Option<u64>,
}

pub(super) async fn blame(
    State(state): State<ApiState>,
    caller: Caller,
    Path((id, raw)): Path<(String, String)>,
    params: Result<Query<BlameParams>, QueryRejection>,
) -> Result<Json<BlameAnswer>, ApiError> {
    let id = readable_repo(&caller, &id)?;
    let p = query(params)?;
    let file = path(&raw)?;
    let at = if p.commit.is_empty() {
        None
    } else {
        Some(rev("commit", &p.commit)?)
    };
    if !caller.scope().sees(file.as_str()) {
        // Outside a path-limited token's view: the same answer as a missing file.
        return Err(StoreError::FileNotFound(format!("`{file}` does not exist")).into());
    }
    let q = BlameQuery {
        path: file.clone(),
        start_line: p.start_line,
        end_line: p.end_line,
        at,
    };
    let b = blocking(&state, move |s| crate::backend::blame_in_store(s, &id, &q)).await?;
    Ok(Json(BlameAnswer {
        repo_id: id.to_string(),
        path: file.to_string(),
        commit: b.commit,
        total_lines: b.total_lines,
        truncated: b.next_line.is_some(),
        next_start_line: b.next_line,
        ranges: b.ranges,
    }))
}

/// Body of `POST /repo/{id}/revert`.
#[derive(Deserialize)]
struct RevertBody {
    commit: String,
    #[serde(default)]
    expected_head: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

pub(super) async fn revert(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<RepoInfo>, ApiError> {
    let id = repo_with_right(&caller, Right::Write, &id)?;
    let b: RevertBody = body_json(body)?;
    let commit = rev("commit", &b.commit)?;
    if b.message.as_deref().is_some_and(|m| m.contains('\0')) {
        return Err(ApiError::unprocessable(
            "the commit message contains a NUL byte; remove it",
        ));
    }
    let visible = caller.scope().visible();
    let author = caller.scope().actor().to_string();
    let spec = RevertSpec {
        commit,
        expected_head: b.expected_head,
        message: b.message,
        visible,
        control: UpdateControl::default(),
    };
    let outcome = blocking(&state, move |s| s.revert(&id, &spec, &author)).await?;
    Ok(info(id, outcome))
}
