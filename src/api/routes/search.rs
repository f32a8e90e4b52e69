//! `POST /repo/{id}/search`, and `POST /repo/{id}/agent` where the TypeScript SDK sends
//! its search: line search, answered as JSON or as the hosted event stream.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::{body_json, readable_repo};
use crate::api::auth::Caller;
use crate::api::{ApiError, ApiState, blocking};
use crate::model::{LineQuery, RepoId, SearchHit};
use crate::rules::RuleError;

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

/// The rule of a query ([`crate::rules::search_query`]), after the API's own: a query
/// of only white space is empty here.
pub(super) fn check_query(q: &str) -> Result<(), ApiError> {
    refuse_blank(q)?;
    crate::rules::search_query("query", q).map_err(unprocessable)
}

fn refuse_blank(q: &str) -> Result<(), ApiError> {
    if q.trim().is_empty() {
        return Err(ApiError::unprocessable("query is empty"));
    }
    Ok(())
}

/// A query over the shared limits answers 422, as the API answers every bad body.
fn unprocessable(e: RuleError) -> ApiError {
    ApiError::unprocessable(e.to_string())
}

pub(super) async fn search(
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
    let id = readable_repo(&caller, &id)?;
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
pub(super) async fn agent(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let id = readable_repo(&caller, &id)?;
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
    refuse_blank(&body.query)?;
    let checked = LineQuery::new("query", body.query, body.max_results, body.context_lines)
        .map_err(unprocessable)?;
    let q = LineQuery {
        regex: body.regex,
        case_sensitive: body.case_sensitive,
        path_glob: body.path_glob.filter(|g| !g.is_empty()),
        visible: caller.scope().visible(),
        ..checked
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
