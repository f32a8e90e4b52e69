//! Wire types more than one resource answers with: a file of a request or an answer, and
//! the outcome of a change.

use axum::Json;
use serde::{Deserialize, Serialize};

use crate::api::ApiError;
use crate::model::{RepoId, UpdateOutcome};
use crate::paths::RepoPath;

#[derive(Deserialize, Serialize)]
pub(super) struct WireFile {
    pub(super) filename: String,
    pub(super) content: String,
}

#[derive(Serialize)]
pub(super) struct RepoInfo {
    repo_id: String,
    repo_head: String,
    changed_files: Vec<String>,
}

pub(super) fn files(files: Vec<WireFile>) -> Result<Vec<(RepoPath, String)>, ApiError> {
    files
        .into_iter()
        .map(|f| {
            let path = RepoPath::parse(&f.filename)
                .map_err(|e| ApiError::bad_request(format!("filename: {e}")))?;
            Ok((path, f.content))
        })
        .collect()
}

pub(super) fn info(id: RepoId, outcome: UpdateOutcome) -> Json<RepoInfo> {
    crate::audit::note_update(&outcome);
    Json(RepoInfo {
        repo_id: id.to_string(),
        repo_head: outcome.head,
        changed_files: outcome.changed_files,
    })
}
