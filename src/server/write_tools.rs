//! The write tool: `update_repo_files`.

use rmcp::handler::server::tool::schema_for_output;
use rmcp::handler::server::wrapper::Parameters;

use rmcp::model::CallToolResult;
use rmcp::schemars::{self, JsonSchema};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, tool, tool_router};
use serde::{Deserialize, Serialize};

use crate::scope::Right;

use super::{RepoServer, ToolAnswer, ToolFailure, ToolSpec, respond};
use crate::model::{Change, FileOp, UpdateControl, UpdateSpec};

/// The control of a write for the request behind `ctx`: progress notifications, each
/// as `describe` words it, when the client asked for them.
pub(super) fn update_control(
    ctx: &RequestContext<RoleServer>,
    describe: super::progress::Describe,
) -> UpdateControl {
    match super::progress::reporter(ctx, describe) {
        Some(report) => UpdateControl::with_progress(report),
        None => UpdateControl::default(),
    }
}

/// Run a write until it answers, telling it to stop when the request behind `ctx` is
/// cancelled: it stops at its next check, and never after its commit is published.
pub(super) async fn until_cancelled<T>(
    ctx: &RequestContext<RoleServer>,
    control: &UpdateControl,
    write: impl std::future::Future<Output = T>,
) -> T {
    let watcher = {
        let (ct, control) = (ctx.ct.clone(), control.clone());
        tokio::spawn(async move {
            ct.cancelled().await;
            control.cancel();
        })
    };
    let answer = write.await;
    watcher.abort();
    answer
}

use crate::paths::RepoPath;

/// One change in `update_repo_files`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum FileOperation {
    /// Create or overwrite a text file.
    Write {
        /// The file's path from the repo root.
        path: String,
        /// The complete new text (UTF-8).
        content: String,
    },
    /// Delete a file, or a directory and everything below it.
    Delete {
        /// The path to delete.
        path: String,
    },
    /// Move a file or directory to a path that does not exist yet.
    Rename {
        /// The current path.
        path: String,
        /// The new path.
        new_path: String,
    },
}

/// A file of a whole-tree replacement.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct FileContent {
    /// The file's path from the repo root.
    pub path: String,
    /// Its complete text (UTF-8).
    pub content: String,
}

/// Arguments of `update_repo_files`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct UpdateRepoFilesRequest {
    /// The repo (a UUID from list_repos).
    pub repo_id: String,
    /// Changes applied in order as one commit; if any fails, none is applied.
    #[serde(default)]
    pub operations: Vec<FileOperation>,
    /// Replace the whole tree with exactly these files, deleting every other file. Only
    /// when you mean it; give either this or `operations`, not both.
    #[serde(default)]
    pub replace_all: Option<Vec<FileContent>>,
    /// Refuse the update unless the repo's head is still this commit (the `head` of your
    /// last read). Empty: no check.
    #[serde(default)]
    pub expected_head: String,
    /// The commit message. Empty: a summary of the change.
    #[serde(default)]
    pub message: String,
}

/// The answer of `update_repo_files`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct UpdateRepoFilesOutput {
    /// The repo.
    pub repo_id: String,
    /// The repo's head after the update.
    pub head: String,
    /// Whether a commit was made (false when the change left every file as it was).
    pub committed: bool,
    /// Paths added, changed or removed, sorted.
    pub changed_files: Vec<String>,
}

fn parse(field: &str, raw: &str) -> Result<RepoPath, ToolFailure> {
    RepoPath::parse(raw).map_err(|e| ToolFailure::Refused(format!("{field}: {e}")))
}

fn to_change(req: &UpdateRepoFilesRequest) -> Result<Change, ToolFailure> {
    match (&req.replace_all, req.operations.is_empty()) {
        (Some(_), false) => Err(ToolFailure::Refused(
            "give either `operations` or `replace_all`, not both".into(),
        )),
        (None, true) => Err(ToolFailure::Refused(
            "nothing to do: give `operations` (write/delete/rename) or, to replace the whole tree, `replace_all`".into(),
        )),
        (Some(files), true) => files
            .iter()
            .enumerate()
            .map(|(i, f)| Ok((parse(&format!("replace_all[{i}].path"), &f.path)?, f.content.clone())))
            .collect::<Result<_, _>>()
            .map(Change::ReplaceAll),
        (None, false) => req
            .operations
            .iter()
            .enumerate()
            .map(|(i, op)| {
                let at = |f: &str| format!("operations[{i}].{f}");
                Ok(match op {
                    FileOperation::Write { path, content } => FileOp::Write {
                        path: parse(&at("path"), path)?,
                        content: content.clone(),
                    },
                    FileOperation::Delete { path } => FileOp::Delete {
                        path: parse(&at("path"), path)?,
                    },
                    FileOperation::Rename { path, new_path } => FileOp::Rename {
                        path: parse(&at("path"), path)?,
                        new_path: parse(&at("new_path"), new_path)?,
                    },
                })
            })
            .collect::<Result<_, _>>()
            .map(Change::Operations),
    }
}

/// This group's tools, each declared beside its `#[tool]` below: the registry
/// ([`super::registry`]) is the groups' lists joined.
pub(super) const TOOLS: &[ToolSpec] = &[RepoServer::UPDATE_REPO_FILES];

#[tool_router(router = write_tools, vis = "pub(crate)")]
impl RepoServer {
    /// `update_repo_files`: needs the write right.
    pub(crate) const UPDATE_REPO_FILES: ToolSpec = ToolSpec {
        name: "update_repo_files",
        right: Right::Write,
        guide: "Change files with update_repo_files: all operations land as one commit or none do; pass the head you last read as expected_head so you never overwrite work you have not seen.",
    };

    /// Write, delete and rename files as one atomic commit: every operation applies or
    /// none does. Pass `expected_head` (the head you last read) so the update is refused
    /// if someone else changed the repo meanwhile. `replace_all` replaces the whole tree.
    #[tool(
        annotations(read_only_hint = false, destructive_hint = true, idempotent_hint = false, open_world_hint = false),
        output_schema = schema_for_output::<UpdateRepoFilesOutput>()
    )]
    async fn update_repo_files(
        &self,
        Parameters(req): Parameters<UpdateRepoFilesRequest>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let control = update_control(&ctx, |done, total| {
            (Some(total), format!("applied {done} of {total} operations"))
        });
        let answer = until_cancelled(&ctx, &control, self.update_impl(req, control.clone())).await;
        respond(Self::UPDATE_REPO_FILES.name, answer)
    }
}

impl RepoServer {
    async fn update_impl(
        &self,
        req: UpdateRepoFilesRequest,
        control: UpdateControl,
    ) -> ToolAnswer<UpdateRepoFilesOutput> {
        let id = self
            .guard_repo(&Self::UPDATE_REPO_FILES, &req.repo_id)
            .await?;
        let spec = UpdateSpec {
            change: to_change(&req)?,
            expected_head: (!req.expected_head.is_empty()).then(|| req.expected_head.clone()),
            message: (!req.message.is_empty()).then(|| req.message.clone()),
            control,
            visible: self.scope.visible(),
        };
        // The same rules the store applies, checked here so that no backend (the
        // Relace API included) receives an update the product refuses.
        spec.check(&self.settings.limits)?;
        let outcome = self.backend.update(&id, &spec, self.scope.actor()).await?;
        crate::audit::note_update(&outcome);
        let committed = !outcome.changed_files.is_empty();
        let text = if committed {
            format!(
                "Committed {} to {id}: {} file(s) changed: {}",
                outcome.head,
                outcome.changed_files.len(),
                outcome.changed_files.join(", ")
            )
        } else {
            format!(
                "No change: every file already had this content; head stays {}",
                outcome.head
            )
        };
        tracing::info!(repo = %id, head = %outcome.head, files = outcome.changed_files.len(), "update applied");
        Ok((
            UpdateRepoFilesOutput {
                repo_id: id.to_string(),
                head: outcome.head,
                committed,
                changed_files: outcome.changed_files,
            },
            text,
        ))
    }
}
