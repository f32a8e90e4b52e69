//! `/repo` and `/repo/{id}`: create, list, read and delete repos, and clone one whole.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::wire::{RepoInfo, WireFile, files, info};
use super::{body_json, git_source, query, readable_repo, repo_id};
use crate::api::auth::Caller;
use crate::api::{ApiError, ApiState, blocking};
use crate::git_source::FetchLimits;
use crate::model::{parse_rfc3339, rfc3339};
use crate::store::{RepoRow, Store, StoreError};

/// Default and largest page of `GET /repo`.
const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

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

#[derive(Serialize)]
pub(super) struct RepoMetadata {
    repo_id: String,
    created_at: String,
    updated_at: Option<String>,
    metadata: BTreeMap<String, String>,
    auto_index: bool,
    /// Extension: the head commit, so clients can tell whether a repo changed.
    repo_head: String,
}

#[derive(Deserialize)]
pub(super) struct ListQuery {
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
pub(super) struct RepoList {
    items: Vec<RepoMetadata>,
    total_items: usize,
    next_page: Option<usize>,
}

#[derive(Deserialize)]
pub(super) struct CloneQuery {
    #[serde(default)]
    commit: Option<String>,
}

#[derive(Serialize)]
pub(super) struct CloneAnswer {
    files: Vec<WireFile>,
    /// Extension: the commit the files were read at.
    repo_head: String,
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

pub(super) async fn create_repo(
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
            let (row, outcome) = blocking(&state, move |s| {
                s.create_from_history(metadata, |dir| {
                    source.fetch_into(&git, dir, &FetchLimits::default())
                })
            })
            .await?;
            tracing::info!(repo = %row.id, files = outcome.changed_files.len(), "repo created from a git source through the API");
            // A history can be large: its indexes are built after the answer, in the
            // background, so that the first ranked question loads a stored copy (one
            // asked meanwhile is answered partially, see `search_ranked_with`).
            let (store, id) = (state.store.clone(), row.id);
            tokio::task::spawn_blocking(move || store.index_import(&id, &|_| {}));
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
                // Every file, binary ones included.
                return s.copy_repo(&from, metadata);
            }
        };
        s.create_repo(metadata, &files)
    })
    .await?;
    tracing::info!(repo = %row.id, files = outcome.changed_files.len(), "repo created through the API");
    Ok(info(row.id, outcome))
}

pub(super) async fn list_repos(
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
        Ok::<_, StoreError>(Json(RepoList {
            items,
            total_items,
            next_page: (end < total_items).then_some(end),
        }))
    })
    .await
}

pub(super) async fn get_repo(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<RepoMetadata>, ApiError> {
    let id = readable_repo(&caller, &id)?;
    blocking(&state, move |s| metadata_of(s, &s.repo_row(&id)?).map(Json)).await
}

pub(super) async fn delete_repo(
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

pub(super) async fn clone_repo(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    q: Result<Query<CloneQuery>, QueryRejection>,
) -> Result<Json<CloneAnswer>, ApiError> {
    let id = readable_repo(&caller, &id)?;
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
