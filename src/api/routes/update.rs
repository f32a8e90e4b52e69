//! `POST /repo/{id}/update`: replace the files, apply a diff, or merge a git source.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use serde::Deserialize;

use super::wire::{RepoInfo, WireFile, files, info};
use super::{body_json, git_source, repo_with_right};
use crate::api::auth::Caller;
use crate::api::{ApiError, ApiState, blocking};
use crate::git_source::{FetchLimits, SourceError};
use crate::model::{Change, FileOp, RepoId, UpdateOutcome, UpdateSpec};
use crate::paths::RepoPath;
use crate::scope::Right;
use crate::store::{MergeSpec, StoreError};

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

pub(super) async fn update_repo(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<RepoInfo>, ApiError> {
    let id = repo_with_right(&caller, Right::Write, &id)?;
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
                UpdateOutcome {
                    previous_head: Some(head.clone()),
                    head,
                    changed_files: Vec::new(),
                }
            }
        };
        if let Some(m) = metadata {
            s.set_metadata(&id, &m)?;
        }
        Ok::<_, StoreError>(outcome)
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
    let (outcome, joined) = blocking(&state, move |s| {
        let joined = s.merge_history(&id, &spec, |dir| {
            source.fetch_into(&git, dir, &FetchLimits::default())
        })?;
        if let Some(m) = metadata {
            s.set_metadata(&id, &m)?;
        }
        Ok::<_, SourceError>(joined)
    })
    .await?;
    tracing::info!(repo = %id, joined = ?joined, "repo updated from a git source through the API");
    Ok(info(id, outcome))
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
