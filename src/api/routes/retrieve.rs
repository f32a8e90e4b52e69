//! `POST /repo/{id}/retrieve`: ranked retrieval, and `GET /repo/{id}/embedding_status`,
//! its index's state.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};

use super::search::check_query;
use super::{body_json, readable_repo};
use crate::api::auth::Caller;
use crate::api::{ApiError, ApiState, blocking};
use crate::model::RankedQuery;

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
pub(super) struct RetrieveAnswer {
    results: Vec<RetrieveResult>,
    hash: String,
    pending_embeddings: u64,
}

#[derive(Serialize)]
pub(super) struct EmbeddingStatus {
    completed_embeddings: usize,
    pending_embeddings: usize,
    hash: String,
}

/// `POST /repo/{id}/retrieve`: ranked retrieval.
pub(super) async fn retrieve(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<RetrieveAnswer>, ApiError> {
    let id = readable_repo(&caller, &id)?;
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
    // While the index is being built the results come from line search: the files not
    // yet indexed are reported pending, as the hosted service reports embeddings.
    let pending = ranked
        .partial
        .map_or(0, |b| b.files_pending.unwrap_or(1).max(1));
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
        pending_embeddings: pending,
    }))
}

pub(super) async fn embedding_status(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<EmbeddingStatus>, ApiError> {
    let id = readable_repo(&caller, &id)?;
    // Ranked retrieval here reads the head directly: nothing is ever pending.
    let (head, files) = blocking(&state, move |s| s.snapshot(&id, None)).await?;
    Ok(Json(EmbeddingStatus {
        completed_embeddings: files.len(),
        pending_embeddings: 0,
        hash: head,
    }))
}
