//! `/repo/{id}/file/{path}`: read, write and delete one file.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::wire::{RepoInfo, info};
use super::{path, readable_repo, repo_with_right};
use crate::api::auth::Caller;
use crate::api::{ApiError, ApiState, REPO_HEAD_HEADER, blocking};
use crate::model::{Change, FileOp, RepoId, UpdateSpec};
use crate::scope::Right;
use crate::store::StoreError;
use crate::text::is_text;

pub(super) async fn get_file(
    State(state): State<ApiState>,
    caller: Caller,
    Path((id, raw)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let id = readable_repo(&caller, &id)?;
    let path = path(&raw)?;
    let hidden = !caller.scope().sees(path.as_str());
    let (head, bytes) = blocking(&state, move |s| match s.read_file(&id, &path, None) {
        // Outside a path-limited token's view: the same answer as a missing file.
        _ if hidden => Err(StoreError::FileNotFound(format!(
            "`{path}` does not exist at {}",
            s.head(&id)?
        ))),
        // Binary files are served as bytes too; only the MCP tools insist on text.
        Ok(f) if f.binary.is_some() => Ok((f.head, s.read_bytes(&id, &path)?)),
        Ok(f) => Ok((f.head, f.content.into_bytes())),
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

pub(super) async fn put_file(
    State(state): State<ApiState>,
    caller: Caller,
    Path((id, raw)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<RepoInfo>, ApiError> {
    let id = repo_with_right(&caller, Right::Write, &id)?;
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
    // Any bytes, as the hosted API's PUT takes them: a binary file is kept within the
    // same limits as a text one (the file cap above, the repo's quota in the store).
    let op = if is_text(&bytes) {
        match String::from_utf8(bytes.to_vec()) {
            Ok(content) => FileOp::Write { path, content },
            Err(e) => FileOp::WriteBytes {
                path,
                content: e.into_bytes(),
            },
        }
    } else {
        FileOp::WriteBytes {
            path,
            content: bytes.to_vec(),
        }
    };
    commit_one(&state, &caller, id, op).await
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

pub(super) async fn delete_file(
    State(state): State<ApiState>,
    caller: Caller,
    Path((id, raw)): Path<(String, String)>,
) -> Result<Json<RepoInfo>, ApiError> {
    let id = repo_with_right(&caller, Right::Write, &id)?;
    let path = path(&raw)?;
    commit_one(&state, &caller, id, FileOp::Delete { path }).await
}
