//! The record of an MCP tool call: begun from the request under the session's scope,
//! finished with the tool's answer and what the call noted.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use rmcp::ErrorData as McpError;
use rmcp::model::{CallToolRequestParams, CallToolResponse};
use serde_json::Value;

use super::note::{NOTE, Note, Outcome, safe_reason};
use super::{Surface, Trail, Who, now_ms, repo_column, short_id};
use crate::credentials::secrets;
use crate::model::RepoId;
use crate::scope::Scope;
use crate::store::AuditRow;

/// What the trail writes for a tool call naming no registered tool: the name is the
/// caller's, of any size and content.
const UNKNOWN_TOOL: &str = "(unknown tool)";

/// The trail of one MCP server, and the surface its calls come in on.
#[derive(Debug, Clone)]
pub struct Recorder {
    trail: Trail,
    surface: Surface,
}

impl Default for Recorder {
    fn default() -> Self {
        Self {
            trail: Trail::off(),
            surface: Surface::Stdio,
        }
    }
}

impl Recorder {
    /// Record calls arriving on `surface` in `trail`.
    pub fn new(trail: Trail, surface: Surface) -> Self {
        Self { trail, surface }
    }

    /// The trail.
    pub fn trail(&self) -> &Trail {
        &self.trail
    }
}

/// A tool call being recorded; begun before the call runs, finished with its answer.
pub(crate) struct ToolCall {
    pending: Option<Pending>,
}

struct Pending {
    trail: Trail,
    surface: Surface,
    started: Instant,
    at_ms: i64,
    who: Who,
    /// The tool's name when it is a registered tool, else [`UNKNOWN_TOOL`].
    tool: String,
    /// The repo column, from the tool's own repo fields only.
    repos: Option<String>,
    requested_paths: Option<i64>,
    /// Argument values a reason must not quote.
    withheld: Vec<String>,
    /// For `revoke_token`: the short id of the token named.
    revoking: Option<String>,
}

/// The repo column of a call's arguments: only the fields the tool's own schema declares
/// (`fields`), so an argument the tool ignores cannot fill the record.
fn repo_ids_in(fields: &[&str], args: &serde_json::Map<String, Value>) -> Option<String> {
    let named = || {
        fields
            .iter()
            .filter_map(|f| args.get(*f))
            .flat_map(|v| match v {
                Value::Array(many) => many.as_slice(),
                one => std::slice::from_ref(one),
            })
    };
    let total = named().count();
    let ids = named()
        .filter_map(Value::as_str)
        .filter_map(|s| s.trim().parse::<RepoId>().ok())
        .map(|id| id.to_string());
    repo_column(total, ids)
}

impl ToolCall {
    /// Begin the record of `request`, made under `scope`.
    ///
    /// `fields` are the tool's own schema fields that name repos (`repo_id`,
    /// `repo_ids`), `None` when no registered tool has the request's name: only those
    /// fields are read, so a caller cannot fill the record with arguments of its own.
    pub(crate) fn begin(
        recorder: &Recorder,
        scope: &Scope,
        request: &CallToolRequestParams,
        fields: Option<&'static [&'static str]>,
    ) -> Self {
        if !recorder.trail.is_on() {
            return Self { pending: None };
        }
        let empty = serde_json::Map::new();
        let args = request.arguments.as_ref().unwrap_or(&empty);
        let count = |key: &str| args.get(key).and_then(Value::as_array).map(|a| a.len());
        let requested_paths = (request.name == "update_repo_files")
            .then(|| count("operations").unwrap_or(0) + count("replace_all").unwrap_or(0))
            .map(|n| n as i64);
        let withheld = ["query", "glob", "token"]
            .iter()
            .filter_map(|k| args.get(*k).and_then(Value::as_str))
            .map(str::to_string)
            .collect();
        let revoking = (request.name == "revoke_token")
            .then(|| args.get("token").and_then(Value::as_str))
            .flatten()
            .map(str::trim)
            .filter(|t| secrets::looks_like_repo_token(t))
            .map(short_id);
        Self {
            pending: Some(Pending {
                trail: recorder.trail.clone(),
                surface: recorder.surface,
                started: Instant::now(),
                at_ms: now_ms(),
                who: Who::of_scope(scope),
                tool: match fields {
                    Some(_) => request.name.to_string(),
                    None => UNKNOWN_TOOL.to_string(),
                },
                repos: fields.and_then(|f| repo_ids_in(f, args)),
                requested_paths,
                withheld,
                revoking,
            }),
        }
    }

    /// Run the call and record how it went.
    pub(crate) async fn run(
        self,
        work: impl std::future::Future<Output = Result<CallToolResponse, McpError>>,
    ) -> Result<CallToolResponse, McpError> {
        let Some(p) = self.pending else {
            return work.await;
        };
        let cell = Arc::new(Mutex::new(Note::default()));
        let result = NOTE.scope(cell.clone(), work).await;
        let note = std::mem::take(&mut *cell.lock().unwrap_or_else(|e| e.into_inner()));
        let trail = p.trail.clone();
        let writes = WRITE_TOOLS.contains(&p.tool.as_str());
        let row = p.finish(note, &result);
        if writes {
            trail.record_durable(row).await;
        } else {
            trail.record(row);
        }
        result
    }
}

impl ToolCall {
    /// Record the call as refused before it ran, for `reason` (the HTTP guard's scope
    /// challenge): the record a refused call would have had.
    pub(crate) async fn refused_at_the_door(self, reason: &str) {
        let reason = reason.to_string();
        let _ = self
            .run(async move {
                super::note::note_refusal(&reason);
                Ok(CallToolResponse::Complete(
                    rmcp::model::CallToolResult::error(vec![]),
                ))
            })
            .await;
    }
}

/// The tools that change something: their records are in the database before the
/// answer leaves (see [`Trail::record_durable`]).
const WRITE_TOOLS: &[&str] = &[
    "update_repo_files",
    "create_scoped_token",
    "revoke_token",
    "revert_commit",
];

impl Pending {
    fn finish(self, note: Note, result: &Result<CallToolResponse, McpError>) -> AuditRow {
        let (outcome, reason) = match result {
            Err(e) => (
                Outcome::Error,
                Some(match e.code {
                    rmcp::model::ErrorCode::INVALID_PARAMS => "malformed call".to_string(),
                    rmcp::model::ErrorCode::METHOD_NOT_FOUND => "no such tool".to_string(),
                    code => format!("protocol error {}", code.0),
                }),
            ),
            Ok(CallToolResponse::Complete(r)) if r.is_error == Some(true) => {
                match note.failure.clone() {
                    Some((Outcome::Refused, m)) => {
                        (Outcome::Refused, Some(safe_reason(&m, &self.withheld)))
                    }
                    Some((o, m)) => (o, Some(m)),
                    None => (Outcome::Error, Some("failed".into())),
                }
            }
            Ok(_) => (Outcome::Ok, None),
        };
        let output = match result {
            Ok(CallToolResponse::Complete(r)) if outcome == Outcome::Ok => {
                r.structured_content.as_ref()
            }
            _ => None,
        };
        let field = |k: &str| output.and_then(|o| o.get(k)).and_then(Value::as_str);
        let subject = match self.tool.as_str() {
            "create_scoped_token" => {
                field("token").map(|t| (field("name").unwrap_or_default().to_string(), short_id(t)))
            }
            "revoke_token" => self
                .revoking
                .clone()
                .map(|id| (field("name").unwrap_or_default().to_string(), id)),
            _ => None,
        }
        .or(note.subject);
        let (credential, credential_id) = self.who.columns();
        let paths = note.paths.or(self.requested_paths);
        let repos = self.repos.or(note.repos);
        AuditRow {
            at_ms: self.at_ms,
            pid: std::process::id() as i64,
            surface: self.surface.as_str().into(),
            credential,
            credential_id,
            action: self.tool,
            repo: repos,
            paths,
            outcome: outcome.as_str().into(),
            reason,
            duration_us: self.started.elapsed().as_micros() as i64,
            head_before: note.head_before,
            head_after: note.head_after,
            subject: subject.as_ref().map(|s| s.0.clone()),
            subject_id: subject.map(|s| s.1),
            refs: None,
            changed_paths: note.changed_paths,
        }
    }
}
