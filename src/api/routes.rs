//! The API's routes and their wire types (private: the shapes the hosted service and the
//! official SDKs use, not this crate's domain types).

use std::collections::BTreeMap;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::auth::Caller;
use super::{ApiError, ApiState, MAX_BODY_BYTES, REPO_HEAD_HEADER, blocking};
use crate::git_source::{FetchLimits, GitProgram, GitSource, SourceError};
use crate::model::{
    Change, FileOp, LineQuery, MintSpec, RankedQuery, RepoId, SearchHit, TokenInfo, UpdateSpec,
    parse_rfc3339, rfc3339,
};
use crate::paths::RepoPath;
use crate::scope::Right;
use crate::store::{MergeSpec, RepoRow, Store, StoreError, TokenState};
use crate::text::is_binary;

/// Default and largest page of `GET /repo`.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

pub(super) fn router(state: ApiState) -> Router {
    let v1 = Router::new()
        .route("/repo", post(create_repo).get(list_repos))
        .route("/repo/{id}", get(get_repo).delete(delete_repo))
        .route("/repo/{id}/update", post(update_repo))
        .route("/repo/{id}/clone", get(clone_repo))
        .route(
            "/repo/{id}/file/{*path}",
            get(get_file).put(put_file).delete(delete_file),
        )
        .route("/repo/{id}/retrieve", post(retrieve))
        .route("/repo/{id}/search", post(search))
        .route("/repo/{id}/agent", post(agent))
        .route("/repo/{id}/embedding_status", get(embedding_status))
        // git's smart HTTP; `{id}` is `<repo id>.git` (or the bare id).
        .route("/repo/{id}/info/refs", get(super::git::info_refs))
        .route("/repo/{id}/git-upload-pack", post(super::git::upload_pack))
        .route(
            "/repo/{id}/git-receive-pack",
            post(super::git::receive_pack),
        )
        .route("/repo_token", post(create_token))
        .route("/repo_token/{token}", get(get_token).delete(delete_token));
    Router::new()
        .nest("/v1", v1)
        .fallback(|| async { ApiError::not_found("no such route; the API lives under /v1") })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

// ---- wire types ----

#[derive(Deserialize, Serialize)]
struct WireFile {
    filename: String,
    content: String,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum CreateSource {
    Files {
        files: Vec<WireFile>,
    },
    Git {
        url: String,
        #[serde(default)]
        branch: Option<String>,
    },
    Relace {
        repo_id: String,
        #[serde(default)]
        copy_metadata: bool,
    },
}

#[derive(Deserialize)]
struct CreateBody {
    #[serde(default)]
    source: Option<CreateSource>,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum DiffOp {
    Write {
        filename: String,
        content: String,
    },
    Delete {
        filename: String,
    },
    Rename {
        old_filename: String,
        new_filename: String,
    },
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum UpdateSource {
    Files {
        files: Vec<WireFile>,
    },
    Diff {
        operations: Vec<DiffOp>,
    },
    Git {
        url: String,
        #[serde(default)]
        branch: Option<String>,
    },
}

#[derive(Deserialize)]
struct UpdateBody {
    #[serde(default)]
    source: Option<UpdateSource>,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
    /// Extension: refuse with 409 unless the head is still this commit.
    #[serde(default)]
    expected_head: Option<String>,
    /// Extension: the commit message.
    #[serde(default)]
    message: Option<String>,
}

#[derive(Serialize)]
struct RepoInfo {
    repo_id: String,
    repo_head: String,
    changed_files: Vec<String>,
}

#[derive(Serialize)]
struct RepoMetadata {
    repo_id: String,
    created_at: String,
    updated_at: Option<String>,
    metadata: BTreeMap<String, String>,
    auto_index: bool,
    /// Extension: the head commit, so clients can tell whether a repo changed.
    repo_head: String,
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    page_start: usize,
    #[serde(default)]
    page_size: Option<usize>,
    #[serde(default)]
    order_by: Option<String>,
    #[serde(default)]
    order_descending: bool,
    #[serde(default)]
    created_after: Option<String>,
    #[serde(default)]
    created_before: Option<String>,
    #[serde(default)]
    filter_metadata: Option<String>,
}

#[derive(Serialize)]
struct RepoList {
    items: Vec<RepoMetadata>,
    total_items: usize,
    next_page: Option<usize>,
}

#[derive(Deserialize)]
struct CloneQuery {
    #[serde(default)]
    commit: Option<String>,
}

#[derive(Serialize)]
struct CloneAnswer {
    files: Vec<WireFile>,
    /// Extension: the commit the files were read at.
    repo_head: String,
}

fn default_threshold() -> f64 {
    0.3
}
fn default_token_limit() -> usize {
    30_000
}

#[derive(Deserialize)]
struct RetrieveBody {
    query: String,
    #[serde(default)]
    include_content: bool,
    #[serde(default = "default_threshold")]
    score_threshold: f64,
    #[serde(default = "default_token_limit")]
    token_limit: usize,
}

#[derive(Serialize)]
struct RetrieveResult {
    filename: String,
    score: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<String>,
}

/// Most files one `retrieve` answer ranks.
const RETRIEVE_MAX_FILES: usize = 50;

#[derive(Serialize)]
struct RetrieveAnswer {
    results: Vec<RetrieveResult>,
    hash: String,
    pending_embeddings: u64,
}

fn yes() -> bool {
    true
}
fn hundred() -> usize {
    100
}

#[derive(Deserialize)]
struct SearchBody {
    query: String,
    /// Extensions beyond the hosted line-search form: how to match, and how much.
    #[serde(default)]
    regex: bool,
    #[serde(default = "yes")]
    case_sensitive: bool,
    #[serde(default)]
    path_glob: Option<String>,
    #[serde(default = "hundred")]
    max_results: usize,
    #[serde(default)]
    context_lines: usize,
}

#[derive(Serialize)]
struct WireMatch {
    start: usize,
    end: usize,
}

#[derive(Serialize)]
struct SearchResult {
    filename: String,
    line_number: u64,
    line_content: String,
    match_start: usize,
    match_end: usize,
    matches: Vec<WireMatch>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    before: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    after: Vec<String>,
}

#[derive(Serialize)]
struct SearchAnswer {
    results: Vec<SearchResult>,
    truncated: bool,
    files_searched: usize,
    repo_head: String,
}

#[derive(Serialize)]
struct EmbeddingStatus {
    completed_embeddings: usize,
    pending_embeddings: usize,
    hash: String,
}

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
struct TokenAnswer {
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

// ---- helpers ----

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
fn admit(caller: &Caller, raw: &str) -> Result<RepoId, ApiError> {
    admit_for(caller, Right::Read, raw)
}

/// Parse the ID and check the caller has `right` on the repo.
fn admit_for(caller: &Caller, right: Right, raw: &str) -> Result<RepoId, ApiError> {
    let id = repo_id(raw)?;
    caller.check(right, &id)?;
    Ok(id)
}

fn files(files: Vec<WireFile>) -> Result<Vec<(RepoPath, String)>, ApiError> {
    files
        .into_iter()
        .map(|f| {
            let path = RepoPath::parse(&f.filename)
                .map_err(|e| ApiError::bad_request(format!("filename: {e}")))?;
            Ok((path, f.content))
        })
        .collect()
}

fn path(raw: &str) -> Result<RepoPath, ApiError> {
    RepoPath::parse(raw).map_err(|e| ApiError::bad_request(format!("file path: {e}")))
}

fn metadata_of(store: &Store, row: &RepoRow) -> Result<RepoMetadata, StoreError> {
    Ok(RepoMetadata {
        repo_id: row.id.to_string(),
        created_at: rfc3339(row.created_at),
        updated_at: Some(rfc3339(row.updated_at)),
        metadata: row.metadata.clone(),
        auto_index: row.auto_index,
        repo_head: store.head(&row.id)?,
    })
}

fn info(id: RepoId, outcome: crate::model::UpdateOutcome) -> Json<RepoInfo> {
    crate::audit::note_update(&outcome);
    Json(RepoInfo {
        repo_id: id.to_string(),
        repo_head: outcome.head,
        changed_files: outcome.changed_files,
    })
}

/// The hosted service's diff order: deletes, then writes (the last write to a path
/// winning), then renames.
fn diff_ops(operations: Vec<DiffOp>) -> Result<Vec<FileOp>, ApiError> {
    let (mut deletes, mut writes, mut renames) = (Vec::new(), Vec::<FileOp>::new(), Vec::new());
    for (i, op) in operations.into_iter().enumerate() {
        let at =
            |e: crate::paths::PathError| ApiError::bad_request(format!("operations[{i}]: {e}"));
        match op {
            DiffOp::Delete { filename } => deletes.push(FileOp::Delete {
                path: RepoPath::parse(&filename).map_err(at)?,
            }),
            DiffOp::Write { filename, content } => {
                let path = RepoPath::parse(&filename).map_err(at)?;
                writes.retain(|w| !matches!(w, FileOp::Write { path: p, .. } if *p == path));
                writes.push(FileOp::Write { path, content });
            }
            DiffOp::Rename {
                old_filename,
                new_filename,
            } => renames.push(FileOp::Rename {
                path: RepoPath::parse(&old_filename).map_err(at)?,
                new_path: RepoPath::parse(&new_filename).map_err(at)?,
            }),
        }
    }
    deletes.extend(writes);
    deletes.extend(renames);
    Ok(deletes)
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

/// Run a blocking fetch of a git source and the store's work on it.
async fn fetching<T, F>(state: &ApiState, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&Store) -> Result<T, SourceError> + Send + 'static,
{
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(ApiError::internal)?
        .map_err(ApiError::from)
}

// ---- repos ----

async fn create_repo(
    State(state): State<ApiState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<RepoInfo>, ApiError> {
    caller.require_account("create repos")?;
    let body: CreateBody = body_json(body)?;
    let mut metadata = body.metadata.unwrap_or_default();
    crate::rules::metadata(&metadata)?;
    let (files, copy_from) = match body.source {
        None => (Vec::new(), None),
        Some(CreateSource::Files { files: f }) => (files(f)?, None),
        Some(CreateSource::Git { url, branch }) => {
            let (source, git) = git_source(&state, &url, branch.as_deref())?;
            let (row, outcome) = fetching(&state, move |s| {
                s.create_from_history(metadata, |dir| {
                    source.fetch_into(&git, dir, &FetchLimits::default())
                })
            })
            .await?;
            tracing::info!(repo = %row.id, files = outcome.changed_files.len(), "repo created from a git source through the API");
            return Ok(info(row.id, outcome));
        }
        Some(CreateSource::Relace {
            repo_id: from,
            copy_metadata,
        }) => (Vec::new(), Some((repo_id(&from)?, copy_metadata))),
    };
    let (row, outcome) = blocking(&state, move |s| {
        let files = match copy_from {
            None => files,
            Some((from, copy_metadata)) => {
                if copy_metadata {
                    let source_meta = s.repo_row(&from)?.metadata;
                    for (k, v) in source_meta {
                        if crate::rules::RESERVED_METADATA_KEYS.contains(&k.as_str()) {
                            continue;
                        }
                        metadata.entry(k).or_insert(v);
                    }
                }
                let (_, snapshot) = s.snapshot(&from, None)?;
                snapshot
                    .into_iter()
                    .filter_map(|(p, c)| RepoPath::parse(&p).ok().map(|p| (p, c)))
                    .collect()
            }
        };
        s.create_repo(metadata, &files)
    })
    .await?;
    tracing::info!(repo = %row.id, files = outcome.changed_files.len(), "repo created through the API");
    Ok(info(row.id, outcome))
}

async fn list_repos(
    State(state): State<ApiState>,
    caller: Caller,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<RepoList>, ApiError> {
    caller.require_account("list all repos")?;
    let q = query(q)?;
    let page_size = q.page_size.unwrap_or(DEFAULT_PAGE);
    if page_size == 0 || page_size > MAX_PAGE {
        return Err(ApiError::unprocessable(format!(
            "page_size must be between 1 and {MAX_PAGE}"
        )));
    }
    let time = |field: &str, raw: &Option<String>| -> Result<Option<i64>, ApiError> {
        raw.as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| {
                parse_rfc3339(s).ok_or_else(|| {
                    ApiError::unprocessable(format!("{field} `{s}` is not an ISO 8601 timestamp"))
                })
            })
            .transpose()
    };
    let after = time("created_after", &q.created_after)?;
    let before = time("created_before", &q.created_before)?;
    let filter: BTreeMap<String, String> = match q.filter_metadata.as_deref() {
        None | Some("") => BTreeMap::new(),
        Some(raw) => serde_json::from_str(raw).map_err(|e| {
            ApiError::unprocessable(format!(
                "filter_metadata must be a JSON object of strings: {e}"
            ))
        })?,
    };
    let by_updated = match q.order_by.as_deref() {
        None | Some("created_at") => false,
        Some("updated_at") => true,
        Some(other) => {
            return Err(ApiError::unprocessable(format!(
                "order_by `{other}` is not one of created_at, updated_at"
            )));
        }
    };
    let (page_start, descending) = (q.page_start, q.order_descending);
    blocking(&state, move |s| {
        let mut rows: Vec<RepoRow> = s
            .repo_rows()?
            .into_iter()
            .filter(|r| after.is_none_or(|a| r.created_at > a))
            .filter(|r| before.is_none_or(|b| r.created_at < b))
            .filter(|r| filter.iter().all(|(k, v)| r.metadata.get(k) == Some(v)))
            .collect();
        rows.sort_by_key(|r| {
            (
                if by_updated {
                    r.updated_at
                } else {
                    r.created_at
                },
                r.id,
            )
        });
        if descending {
            rows.reverse();
        }
        let total_items = rows.len();
        let items = rows
            .iter()
            .skip(page_start)
            .take(page_size)
            .map(|r| metadata_of(s, r))
            .collect::<Result<Vec<_>, _>>()?;
        let end = page_start.saturating_add(page_size);
        Ok(Json(RepoList {
            items,
            total_items,
            next_page: (end < total_items).then_some(end),
        }))
    })
    .await
}

async fn get_repo(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<RepoMetadata>, ApiError> {
    let id = admit(&caller, &id)?;
    blocking(&state, move |s| metadata_of(s, &s.repo_row(&id)?).map(Json)).await
}

async fn delete_repo(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    caller.require_account("delete repos")?;
    let id = repo_id(&id)?;
    blocking(&state, move |s| s.delete_repo(&id)).await?;
    tracing::info!(repo = %id, "repo deleted through the API");
    Ok(StatusCode::NO_CONTENT)
}

async fn update_repo(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<RepoInfo>, ApiError> {
    let id = admit_for(&caller, Right::Write, &id)?;
    let body: UpdateBody = body_json(body)?;
    let change = match body.source {
        None => None,
        Some(UpdateSource::Files { files: f }) => Some(Change::ReplaceAll(files(f)?)),
        Some(UpdateSource::Diff { operations }) => Some(Change::Operations(diff_ops(operations)?)),
        Some(UpdateSource::Git { url, branch }) => {
            return update_from_git(
                state,
                caller,
                id,
                url,
                branch,
                body.metadata,
                body.expected_head,
            )
            .await;
        }
    };
    if let Some(m) = &body.metadata {
        crate::rules::metadata(m)?;
    }
    let author = caller.author().to_string();
    let visible = caller.scope().visible();
    let (metadata, expected_head, message) = (body.metadata, body.expected_head, body.message);
    let outcome = blocking(&state, move |s| {
        let outcome = match change {
            Some(change) => s.update(
                &id,
                &UpdateSpec {
                    change,
                    expected_head: expected_head.filter(|h| !h.is_empty()),
                    message,
                    control: Default::default(),
                    visible,
                },
                &author,
            )?,
            None => {
                let head = s.head(&id)?;
                crate::model::UpdateOutcome {
                    previous_head: Some(head.clone()),
                    head,
                    changed_files: Vec::new(),
                }
            }
        };
        if let Some(m) = metadata {
            s.set_metadata(&id, &m)?;
        }
        Ok(outcome)
    })
    .await?;
    Ok(info(id, outcome))
}

/// `POST /repo/{id}/update` with a git source: fetch, then fast-forward or merge.
async fn update_from_git(
    state: ApiState,
    caller: Caller,
    id: RepoId,
    url: String,
    branch: Option<String>,
    metadata: Option<BTreeMap<String, String>>,
    expected_head: Option<String>,
) -> Result<Json<RepoInfo>, ApiError> {
    if caller.scope().paths().is_some() {
        return Err(ApiError::forbidden(
            "a token limited to paths cannot update from a git source: a merge takes the whole tree",
        ));
    }
    if let Some(m) = &metadata {
        crate::rules::metadata(m)?;
    }
    let (source, git) = git_source(&state, &url, branch.as_deref())?;
    let spec = MergeSpec {
        message: format!("Merge {} into main", source.describe()),
        author: caller.author().to_string(),
        expected_head: expected_head.filter(|h| !h.is_empty()),
    };
    let (outcome, joined) = fetching(&state, move |s| {
        let joined = s.merge_history(&id, &spec, |dir| {
            source.fetch_into(&git, dir, &FetchLimits::default())
        })?;
        if let Some(m) = metadata {
            s.set_metadata(&id, &m)?;
        }
        Ok(joined)
    })
    .await?;
    tracing::info!(repo = %id, joined = ?joined, "repo updated from a git source through the API");
    Ok(info(id, outcome))
}

async fn clone_repo(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    q: Result<Query<CloneQuery>, QueryRejection>,
) -> Result<Json<CloneAnswer>, ApiError> {
    let id = admit(&caller, &id)?;
    let commit = query(q)?.commit.filter(|c| !c.is_empty());
    let (head, files) = blocking(&state, move |s| s.snapshot(&id, commit.as_deref())).await?;
    Ok(Json(CloneAnswer {
        files: files
            .into_iter()
            .filter(|(filename, _)| caller.scope().sees(filename))
            .map(|(filename, content)| WireFile { filename, content })
            .collect(),
        repo_head: head,
    }))
}

// ---- files ----

async fn get_file(
    State(state): State<ApiState>,
    caller: Caller,
    Path((id, raw)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id = admit(&caller, &id)?;
    let path = path(&raw)?;
    let hidden = !caller.scope().sees(path.as_str());
    let (head, bytes) = blocking(&state, move |s| match s.read_file(&id, &path, None) {
        // Outside a path-limited token's view: the same answer as a missing file.
        _ if hidden => Err(StoreError::FileNotFound(format!(
            "`{path}` does not exist at {}",
            s.head(&id)?
        ))),
        Ok(f) => Ok((f.head, f.content.into_bytes())),
        // Binary files are served as bytes too; only the MCP tools insist on text.
        Err(StoreError::Binary(_)) => Ok((s.head(&id)?, s.read_bytes(&id, &path)?)),
        Err(e) => Err(e),
    })
    .await?;
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Ok(v) = HeaderValue::from_str(&head) {
        headers.insert(REPO_HEAD_HEADER, v);
    }
    Ok(response)
}

async fn put_file(
    State(state): State<ApiState>,
    caller: Caller,
    Path((id, raw)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<RepoInfo>, ApiError> {
    let id = admit_for(&caller, Right::Write, &id)?;
    let path = path(&raw)?;
    if !caller.scope().sees(path.as_str()) {
        return Err(ApiError::forbidden(format!(
            "`{path}` is outside the paths this token may touch"
        )));
    }
    let bytes = body.map_err(|r| ApiError::new(r.status(), r.body_text()))?;
    let limit = state.store.limits().max_file_bytes;
    if bytes.len() > limit {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "`{path}` is {} bytes, over the limit of {limit} bytes a file",
                bytes.len()
            ),
        ));
    }
    if is_binary(&bytes) {
        return Err(ApiError::bad_request(format!(
            "`{path}`: content contains a NUL byte; only text files are accepted"
        )));
    }
    let content = String::from_utf8(bytes.to_vec())
        .map_err(|_| ApiError::bad_request(format!("`{path}`: content is not UTF-8 text")))?;
    commit_one(&state, &caller, id, FileOp::Write { path, content }).await
}

/// Commit one file operation (the single-file PUT and DELETE routes).
async fn commit_one(
    state: &ApiState,
    caller: &Caller,
    id: RepoId,
    op: FileOp,
) -> Result<Json<RepoInfo>, ApiError> {
    let author = caller.author().to_string();
    let spec = UpdateSpec {
        change: Change::Operations(vec![op]),
        expected_head: None,
        message: None,
        control: Default::default(),
        visible: caller.scope().visible(),
    };
    let outcome = blocking(state, move |s| s.update(&id, &spec, &author)).await?;
    Ok(info(id, outcome))
}

async fn delete_file(
    State(state): State<ApiState>,
    caller: Caller,
    Path((id, raw)): Path<(String, String)>,
) -> Result<Json<RepoInfo>, ApiError> {
    let id = admit_for(&caller, Right::Write, &id)?;
    let path = path(&raw)?;
    commit_one(&state, &caller, id, FileOp::Delete { path }).await
}

// ---- search ----

fn check_query(q: &str) -> Result<(), ApiError> {
    if q.trim().is_empty() {
        return Err(ApiError::unprocessable("query is empty"));
    }
    // The MCP tools' limit, answered 422 as the API answers every bad body.
    crate::rules::query_length("query", q).map_err(|e| ApiError::unprocessable(e.to_string()))
}

/// `POST /repo/{id}/retrieve`: ranked retrieval.
async fn retrieve(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<RetrieveAnswer>, ApiError> {
    let id = admit(&caller, &id)?;
    let body: RetrieveBody = body_json(body)?;
    check_query(&body.query)?;
    if !(0.0..=1.0).contains(&body.score_threshold) {
        return Err(ApiError::unprocessable(
            "score_threshold must be between 0 and 1",
        ));
    }
    // The same ranked engine as `search_repo`'s ranked mode; scores are scaled so the
    // best file scores 1 and `score_threshold` is relative to it.
    let query = RankedQuery {
        text: body.query.clone(),
        path_glob: None,
        visible: caller.scope().visible(),
        max_results: RETRIEVE_MAX_FILES,
        token_limit: body.token_limit,
    };
    let ranked = blocking(&state, move |s| s.search_ranked(&id, &query)).await?;
    let head = ranked.head;
    let top = ranked
        .hits
        .first()
        .map(|h| h.score)
        .unwrap_or(1.0)
        .max(f32::MIN_POSITIVE);
    let results = ranked
        .hits
        .into_iter()
        .map(|h| RetrieveResult {
            filename: h.path,
            score: f64::from(h.score / top),
            content: body.include_content.then_some(h.snippet),
        })
        .filter(|r| r.score >= body.score_threshold)
        .collect();
    Ok(Json(RetrieveAnswer {
        results,
        hash: head,
        pending_embeddings: 0,
    }))
}

async fn search(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    // The hosted route now streams Server-Sent Events, and the official SDKs ask for
    // only that: answer them with the same results as one `result` event.
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let as_events = accept.contains("text/event-stream") && !accept.contains("application/json");
    let id = admit(&caller, &id)?;
    let answer = search_lines(state, &caller, id, body_json(body)?).await?;
    if as_events {
        events(&answer)
    } else {
        Ok(Json(answer).into_response())
    }
}

/// Search results as the hosted agentic search's event stream: `started`, then one
/// `result` event whose data is the JSON answer.
fn events(answer: &SearchAnswer) -> Result<Response, ApiError> {
    let data = serde_json::to_string(answer).map_err(ApiError::internal)?;
    let stream = format!("event: started\ndata: {{}}\n\nevent: result\ndata: {data}\n\n");
    Ok(([(header::CONTENT_TYPE, "text/event-stream")], stream).into_response())
}

#[derive(Deserialize)]
struct AgentBody {
    agent_name: String,
    #[serde(default)]
    agent_inputs: BTreeMap<String, String>,
}

/// `POST /repo/{id}/agent`, where the TypeScript SDK sends its `search`: the one agent
/// offered is `relace-search`, answered as a line search over the same event stream.
async fn agent(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let id = admit(&caller, &id)?;
    let body: AgentBody = body_json(body)?;
    if body.agent_name != "relace-search" {
        return Err(ApiError::not_found(format!(
            "no agent `{}` on this server; the one agent offered is relace-search (answered as a line search)",
            body.agent_name
        )));
    }
    let query = body.agent_inputs.get("query").cloned().ok_or_else(|| {
        ApiError::unprocessable("agent_inputs.query is required for relace-search")
    })?;
    let search = SearchBody {
        query,
        regex: false,
        case_sensitive: true,
        path_glob: None,
        max_results: hundred(),
        context_lines: 0,
    };
    events(&search_lines(state, &caller, id, search).await?)
}

async fn search_lines(
    state: ApiState,
    caller: &Caller,
    id: RepoId,
    body: SearchBody,
) -> Result<SearchAnswer, ApiError> {
    check_query(&body.query)?;
    if body.max_results == 0 || body.max_results > 1000 {
        return Err(ApiError::unprocessable(
            "max_results must be between 1 and 1000",
        ));
    }
    if body.context_lines > 10 {
        return Err(ApiError::unprocessable("context_lines must be at most 10"));
    }
    let q = LineQuery {
        pattern: body.query,
        regex: body.regex,
        case_sensitive: body.case_sensitive,
        path_glob: body.path_glob.filter(|g| !g.is_empty()),
        visible: caller.scope().visible(),
        max_results: body.max_results,
        context_lines: body.context_lines,
    };
    let results = blocking(&state, move |s| s.search_lines(&id, &q)).await?;
    let wire = |h: SearchHit| {
        let first = h.matches.first().copied();
        SearchResult {
            filename: h.path,
            line_number: h.line,
            line_content: h.text,
            match_start: first.map(|m| m.start).unwrap_or(0),
            match_end: first.map(|m| m.end).unwrap_or(0),
            matches: h
                .matches
                .iter()
                .map(|m| WireMatch {
                    start: m.start,
                    end: m.end,
                })
                .collect(),
            before: h.before,
            after: h.after,
        }
    };
    Ok(SearchAnswer {
        results: results.hits.into_iter().map(wire).collect(),
        truncated: results.truncated,
        files_searched: results.files_searched,
        repo_head: results.head,
    })
}

async fn embedding_status(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<EmbeddingStatus>, ApiError> {
    let id = admit(&caller, &id)?;
    // Ranked retrieval here reads the head directly: nothing is ever pending.
    let (head, files) = blocking(&state, move |s| s.snapshot(&id, None)).await?;
    Ok(Json(EmbeddingStatus {
        completed_embeddings: files.len(),
        pending_embeddings: 0,
        hash: head,
    }))
}

// ---- tokens ----

async fn create_token(
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

async fn get_token(
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

async fn delete_token(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_applies_deletes_then_writes_then_renames_last_write_winning() {
        let ops = diff_ops(vec![
            DiffOp::Rename {
                old_filename: "a".into(),
                new_filename: "b".into(),
            },
            DiffOp::Write {
                filename: "x".into(),
                content: "1".into(),
            },
            DiffOp::Delete {
                filename: "d".into(),
            },
            DiffOp::Write {
                filename: "x".into(),
                content: "2".into(),
            },
        ])
        .unwrap();
        let p = |s: &str| RepoPath::parse(s).unwrap();
        assert_eq!(
            ops,
            vec![
                FileOp::Delete { path: p("d") },
                FileOp::Write {
                    path: p("x"),
                    content: "2".into()
                },
                FileOp::Rename {
                    path: p("a"),
                    new_path: p("b")
                },
            ]
        );
    }
}
