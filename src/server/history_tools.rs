//! The history tools: `list_commits`, `get_commit`, `compare`, `blame_file`,
//! `search_history` (read-only), and `revert_commit` (write). A path-limited token's view travels to the backend
//! with every query, so commits, diffs and blame are cut to its paths where they are
//! computed.

use rmcp::handler::server::tool::schema_for_output;

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::CallToolResult;
use rmcp::schemars::{self, JsonSchema};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, tool, tool_router};
use serde::{Deserialize, Serialize};

use super::write_tools::{until_cancelled, update_control};
use super::{RepoServer, ToolAnswer, ToolFailure, ToolSpec, respond};
use crate::backend::BackendError;
use crate::model::{
    BlameQuery, BlameRange, ChangeStatus, CommitInfo, CommitPage, CommitQuery, DiffDetail,
    DiffQuery, DiffResult, FileDiff, HistoryMatch, HistoryMode, MAX_DIFF_CONTEXT, RevSpec,
    RevertSpec, UpdateControl, WalkControl, commit_page_size, format_commit_cursor,
    parse_commit_cursor, parse_rev, parse_time_bound,
};
use crate::paths::RepoPath;
use crate::rules::PathGlob;
use crate::scope::Right;
use crate::text::one_line;

fn thirty() -> u32 {
    30
}
fn three() -> u32 {
    3
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// Arguments of `list_commits`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct ListCommitsRequest {
    /// The repo (a UUID from list_repos).
    pub repo_id: String,
    /// Only commits changing this file, or anything under this directory; their change
    /// lists then hold only the changes under it, as `git log --name-status -- PATH`.
    /// Empty: all.
    #[serde(default)]
    pub path: String,
    /// Only commits whose author (the token name that made them) contains this,
    /// ignoring case. Empty: any author.
    #[serde(default)]
    pub author: String,
    /// Only commits made at or after this time (RFC 3339, e.g. `2026-01-31T00:00:00Z`,
    /// or a date `2026-01-31`). Empty: no bound.
    #[serde(default)]
    pub since: String,
    /// Only commits made at or before this time (same forms). Empty: no bound.
    #[serde(default)]
    pub until: String,
    /// Most commits to return (default 30, at most 200).
    #[serde(default = "thirty")]
    pub max_results: u32,
    /// The `next_cursor` of the previous answer, to read the next page. Empty: the
    /// first page.
    #[serde(default)]
    pub cursor: String,
}

/// A page of commits, as `list_commits` and `search_history` answer.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct CommitsOutput {
    /// The repo.
    pub repo_id: String,
    /// The head the history was read from (pages of one listing share it).
    pub head: String,
    /// The commits, newest first.
    pub commits: Vec<CommitInfo>,
    /// Pass as `cursor` for the next page; absent on the last one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
    /// True when the walk stopped at its time budget (10 seconds) before the page was
    /// full: the commits are those found so far, and `next_cursor` looks further back.
    #[serde(default)]
    pub time_budget_spent: bool,
}

/// Arguments of `get_commit`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct GetCommitRequest {
    /// The repo (a UUID from list_repos).
    pub repo_id: String,
    /// The commit: its id (full, or at least 4 hex digits), or `main~N` / `HEAD~N`.
    pub commit: String,
    /// `none` (paths only), `stats` (the default: lines added and removed per file)
    /// or `patch` (also each file's unified diff).
    #[serde(default)]
    pub detail: DiffDetail,
    /// Only files matching this glob, e.g. `*.rs` or `src/**`. Empty: every file.
    #[serde(default)]
    pub path_glob: String,
    /// Lines of context around each change in a patch (default 3, at most 20).
    #[serde(default = "three")]
    pub context_lines: u32,
    /// The `next_file_cursor` of a cut answer, to read on. Default 0: from the first
    /// file.
    #[serde(default)]
    pub file_cursor: u64,
}

/// The answer of `get_commit`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct GetCommitOutput {
    /// The repo.
    pub repo_id: String,
    /// The commit, with every changed path.
    pub commit: CommitInfo,
    /// The parent diffed against (absent for the first commit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The files of this page, sorted by path.
    pub files: Vec<FileDiff>,
    /// How many files matched in all.
    pub total_files: u64,
    /// True when the patches reached the 256 KiB cap before the last file.
    pub truncated: bool,
    /// Pass as `file_cursor` to read on from the next file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_file_cursor: Option<u64>,
}

/// Arguments of `compare`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct CompareRequest {
    /// The repo (a UUID from list_repos).
    pub repo_id: String,
    /// The older commit (an id, or `main~N` / `HEAD~N`).
    pub from: String,
    /// The newer commit (same forms; `main` for the head).
    pub to: String,
    /// `none`, `stats` (the default) or `patch`.
    #[serde(default)]
    pub detail: DiffDetail,
    /// Only files matching this glob. Empty: every file.
    #[serde(default)]
    pub path_glob: String,
    /// Lines of context around each change in a patch (default 3, at most 20).
    #[serde(default = "three")]
    pub context_lines: u32,
    /// The `next_file_cursor` of a cut answer. Default 0.
    #[serde(default)]
    pub file_cursor: u64,
}

/// The answer of `compare`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct CompareOutput {
    /// The repo.
    pub repo_id: String,
    /// The commit diffed from.
    pub from: String,
    /// The commit diffed to.
    pub to: String,
    /// The files of this page, sorted by path.
    pub files: Vec<FileDiff>,
    /// How many files matched in all.
    pub total_files: u64,
    /// True when the patches reached the 256 KiB cap before the last file.
    pub truncated: bool,
    /// Pass as `file_cursor` to read on from the next file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_file_cursor: Option<u64>,
}

/// Arguments of `blame_file`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct BlameFileRequest {
    /// The repo (a UUID from list_repos).
    pub repo_id: String,
    /// The file's path from the repo root.
    pub path: String,
    /// First line to blame, 1-based (default 0: from the start).
    #[serde(default)]
    pub start_line: u64,
    /// Last line, inclusive (default 0: to the end).
    #[serde(default)]
    pub end_line: u64,
    /// Blame the file as of this commit (an id, or `main~N` / `HEAD~N`). Empty: the
    /// head.
    #[serde(default)]
    pub commit: String,
}

/// The answer of `blame_file`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct BlameFileOutput {
    /// The repo.
    pub repo_id: String,
    /// The file.
    pub path: String,
    /// The commit blamed at.
    pub commit: String,
    /// Lines in the whole file.
    pub total_lines: u64,
    /// Runs of lines, each last changed by one commit, in line order (at most 1,000).
    pub ranges: Vec<BlameRange>,
    /// True when the answer stopped at 1,000 ranges.
    pub truncated: bool,
    /// Pass as `start_line` to read on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_start_line: Option<u64>,
}

/// Arguments of `search_history`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct SearchHistoryRequest {
    /// The repo (a UUID from list_repos).
    pub repo_id: String,
    /// The text to look for (a literal, at most 4 KiB).
    pub query: String,
    /// `message` (the default: in commit messages, ignoring case, like `git log
    /// --grep -i`), `added` (commits after which the text occurs more often in some
    /// file, like `git log -S`), or `removed` (less often).
    #[serde(default)]
    pub mode: HistoryMode,
    /// Only changes to files matching this glob count. Empty: every file.
    #[serde(default)]
    pub path_glob: String,
    /// Only commits made at or after this time (RFC 3339 or a date). Empty: no bound.
    #[serde(default)]
    pub since: String,
    /// Only commits made at or before this time. Empty: no bound.
    #[serde(default)]
    pub until: String,
    /// Most commits to return (default 30, at most 200).
    #[serde(default = "thirty")]
    pub max_results: u32,
    /// The `next_cursor` of the previous answer. Empty: the first page.
    #[serde(default)]
    pub cursor: String,
}

/// Arguments of `revert_commit`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct RevertCommitRequest {
    /// The repo (a UUID from list_repos).
    pub repo_id: String,
    /// The commit to undo: its id (full, or at least 4 hex digits), or `main~N` /
    /// `HEAD~N`.
    pub commit: String,
    /// Refuse unless the repo's head is still this commit (the `head` of your last
    /// read). Empty: no check.
    #[serde(default)]
    pub expected_head: String,
    /// The new commit's message. Empty: `Revert "<subject>"`.
    #[serde(default)]
    pub message: String,
}

/// The answer of `revert_commit`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct RevertCommitOutput {
    /// The repo.
    pub repo_id: String,
    /// The commit undone, as given.
    pub reverted: String,
    /// The repo's head after the revert.
    pub head: String,
    /// Whether a commit was made (false when the head already lacked the change).
    pub committed: bool,
    /// Paths the revert changed, sorted.
    pub changed_files: Vec<String>,
}

/// This group's tools, each declared beside its `#[tool]` below.
pub(super) const TOOLS: &[ToolSpec] = &[
    RepoServer::LIST_COMMITS,
    RepoServer::GET_COMMIT,
    RepoServer::COMPARE,
    RepoServer::BLAME_FILE,
    RepoServer::SEARCH_HISTORY,
    RepoServer::REVERT_COMMIT,
];

/// A revision argument, checked by the one parser of revisions.
pub(super) fn revision(field: &str, raw: &str) -> Result<RevSpec, ToolFailure> {
    parse_rev(raw).map_err(|e| ToolFailure::Refused(format!("{field}: {e}")))
}

fn glob(field: &str, raw: &str) -> Result<Option<PathGlob>, ToolFailure> {
    if raw.is_empty() {
        return Ok(None);
    }
    PathGlob::new(field, raw)
        .map(Some)
        .map_err(|e| ToolFailure::Refused(e.to_string()))
}

fn diff_query(
    server: &RepoServer,
    detail: DiffDetail,
    path_glob: &str,
    context_lines: u32,
    file_cursor: u64,
) -> Result<DiffQuery, ToolFailure> {
    if context_lines > MAX_DIFF_CONTEXT {
        return Err(ToolFailure::Refused(format!(
            "context_lines must be at most {MAX_DIFF_CONTEXT}"
        )));
    }
    Ok(DiffQuery {
        detail,
        path_glob: glob("path_glob", path_glob)?,
        context_lines,
        first_file: usize::try_from(file_cursor).unwrap_or(usize::MAX),
        visible: server.scope.visible(),
    })
}

fn status_letter(s: ChangeStatus) -> char {
    match s {
        ChangeStatus::Added => 'A',
        ChangeStatus::Modified => 'M',
        ChangeStatus::Deleted => 'D',
        ChangeStatus::Renamed => 'R',
    }
}

fn render_commits(id: &str, page: &CommitPage) -> String {
    let mut text = format!(
        "{} commit(s) in {id} from {}{}",
        page.commits.len(),
        short(&page.head),
        if page.budget_spent {
            format!(
                " (the walk stopped at its time budget of {} s with the page not full; older commits were not looked at yet: pass next_cursor to go on)",
                crate::model::HISTORY_WALK_BUDGET.as_secs()
            )
        } else if page.next_cursor.is_some() {
            " (more: pass next_cursor)".to_string()
        } else {
            String::new()
        }
    );
    for c in &page.commits {
        text.push_str(&format!(
            "\n{} {} {} {} ({} path(s))",
            short(&c.id),
            c.time,
            one_line(&c.author),
            one_line(&c.subject),
            c.changes.len()
        ));
    }
    text
}

fn render_files(files: &[FileDiff]) -> String {
    let mut text = String::new();
    for f in files {
        text.push_str(&format!(
            "\n{} {} +{} -{}{}",
            status_letter(f.status),
            one_line(&f.path),
            f.additions,
            f.deletions,
            if f.binary { " (binary)" } else { "" }
        ));
    }
    for f in files {
        if let Some(p) = &f.patch {
            text.push('\n');
            text.push_str(p);
        }
    }
    text
}

fn commits_output(id: String, page: CommitPage) -> (CommitsOutput, String) {
    let text = render_commits(&id, &page);
    (
        CommitsOutput {
            repo_id: id,
            head: page.head,
            commits: page.commits,
            next_cursor: page.next_cursor.as_ref().map(format_commit_cursor),
            time_budget_spent: page.budget_spent,
        },
        text,
    )
}

/// The control of a history walk for the request behind `ctx`: progress notifications
/// when the client asked for them.
fn walk_control(ctx: &RequestContext<RoleServer>) -> WalkControl {
    let report = super::progress::reporter(ctx, |walked, found| {
        (None, format!("walked {walked} commits, found {found}"))
    });
    match report {
        Some(report) => WalkControl::default().with_progress(report),
        None => WalkControl::default(),
    }
}

/// Run a history walk until it answers or the request is cancelled; a cancelled walk is
/// told to stop, and does at its next commit.
async fn unless_cancelled(
    ctx: &RequestContext<RoleServer>,
    control: WalkControl,
    walk: impl Future<Output = ToolAnswer<CommitsOutput>>,
) -> ToolAnswer<CommitsOutput> {
    tokio::select! {
        answer = walk => answer,
        _ = ctx.ct.cancelled() => {
            control.cancel();
            Err(ToolFailure::Refused("the history walk was cancelled".into()))
        }
    }
}

/// A commit the session may not see answers exactly as one that does not exist.
fn file_not_found(path: &RepoPath) -> ToolFailure {
    ToolFailure::Backend(BackendError::NotFound(format!("`{path}` does not exist")))
}

#[tool_router(router = history_tools, vis = "pub(crate)")]
impl RepoServer {
    /// `list_commits`: needs the read right.
    pub(crate) const LIST_COMMITS: ToolSpec = ToolSpec {
        name: "list_commits",
        right: Right::Read,
        guide: "See the history with list_commits (by path, author, time).",
    };

    /// `get_commit`: needs the read right.
    pub(crate) const GET_COMMIT: ToolSpec = ToolSpec {
        name: "get_commit",
        right: Right::Read,
        guide: "Read a commit's diff with get_commit; read_file and list_files take a `ref` (a commit id or main~N) to read the past.",
    };

    /// `compare`: needs the read right.
    pub(crate) const COMPARE: ToolSpec = ToolSpec {
        name: "compare",
        right: Right::Read,
        guide: "Diff any two commits with compare.",
    };

    /// `blame_file`: needs the read right.
    pub(crate) const BLAME_FILE: ToolSpec = ToolSpec {
        name: "blame_file",
        right: Right::Read,
        guide: "Find who last changed each line with blame_file.",
    };

    /// `search_history`: needs the read right.
    pub(crate) const SEARCH_HISTORY: ToolSpec = ToolSpec {
        name: "search_history",
        right: Right::Read,
        guide: "Find the commits whose message mentions something, or that added or removed a piece of text, with search_history.",
    };

    /// `revert_commit`: needs the write right.
    pub(crate) const REVERT_COMMIT: ToolSpec = ToolSpec {
        name: "revert_commit",
        right: Right::Write,
        guide: "Undo a commit with revert_commit (one new commit on top; a conflict changes nothing).",
    };

    /// Undo a commit: one new commit on top of the head that reverses its changes
    /// against its parent. Refused, changing nothing, when later changes conflict with
    /// it. Pass `expected_head` to be sure the repo has not moved since you looked.
    #[tool(
        annotations(read_only_hint = false, destructive_hint = true, idempotent_hint = false, open_world_hint = false),
        output_schema = schema_for_output::<RevertCommitOutput>()
    )]
    async fn revert_commit(
        &self,
        Parameters(req): Parameters<RevertCommitRequest>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let control = update_control(&ctx, |done, total| {
            let step = match done {
                0 => "working out the revert",
                1 => "committing the revert",
                _ => "reverted",
            };
            (Some(total), format!("{step} ({done} of {total})"))
        });
        let answer = until_cancelled(
            &ctx,
            &control,
            self.revert_commit_impl(req, control.clone()),
        )
        .await;
        respond(Self::REVERT_COMMIT.name, answer)
    }

    /// List a repository's commits, newest first: each with its id, parents, author
    /// (the token name that made it), time, subject, body and changed paths (added,
    /// modified, deleted, renamed). Filter by path, author and time; page with
    /// `cursor`.
    #[tool(
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false),
        output_schema = schema_for_output::<CommitsOutput>()
    )]
    async fn list_commits(
        &self,
        Parameters(req): Parameters<ListCommitsRequest>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let control = walk_control(&ctx);
        let walk = self.list_commits_impl(req, control.clone());
        respond(
            Self::LIST_COMMITS.name,
            unless_cancelled(&ctx, control, walk).await,
        )
    }

    /// One commit: its message and changed paths, and its diff against its first
    /// parent (`detail`: `none`, `stats` or `patch`, unified diffs with `context_lines`).
    /// Patches stop at 256 KiB an answer; read on with `file_cursor`.
    #[tool(
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false),
        output_schema = schema_for_output::<GetCommitOutput>()
    )]
    async fn get_commit(
        &self,
        Parameters(req): Parameters<GetCommitRequest>,
    ) -> Result<CallToolResult, McpError> {
        respond(Self::GET_COMMIT.name, self.get_commit_impl(req).await)
    }

    /// The diff between any two commits of the repository (`from` to `to`), with
    /// stats or patches as `get_commit` gives them.
    #[tool(
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false),
        output_schema = schema_for_output::<CompareOutput>()
    )]
    async fn compare(
        &self,
        Parameters(req): Parameters<CompareRequest>,
    ) -> Result<CallToolResult, McpError> {
        respond(Self::COMPARE.name, self.compare_impl(req).await)
    }

    /// Who last changed each line of a file: runs of lines, each with the commit,
    /// author, time and subject. At most 1,000 runs an answer; read on from
    /// `next_start_line`.
    #[tool(
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false),
        output_schema = schema_for_output::<BlameFileOutput>()
    )]
    async fn blame_file(
        &self,
        Parameters(req): Parameters<BlameFileRequest>,
    ) -> Result<CallToolResult, McpError> {
        respond(Self::BLAME_FILE.name, self.blame_file_impl(req).await)
    }

    /// Commits whose message contains some text (`message`), or that added or removed
    /// it in a file (`added`, `removed`, like `git log -S`), newest first.
    #[tool(
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false),
        output_schema = schema_for_output::<CommitsOutput>()
    )]
    async fn search_history(
        &self,
        Parameters(req): Parameters<SearchHistoryRequest>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let control = walk_control(&ctx);
        let walk = self.search_history_impl(req, control.clone());
        respond(
            Self::SEARCH_HISTORY.name,
            unless_cancelled(&ctx, control, walk).await,
        )
    }
}

impl RepoServer {
    async fn revert_commit_impl(
        &self,
        req: RevertCommitRequest,
        control: UpdateControl,
    ) -> ToolAnswer<RevertCommitOutput> {
        let id = self.guard_repo(&Self::REVERT_COMMIT, &req.repo_id).await?;
        let commit = revision("commit", &req.commit)?;
        if req.message.contains('\0') {
            return Err(ToolFailure::Refused(
                "the commit message contains a NUL byte; remove it".into(),
            ));
        }
        let spec = RevertSpec {
            commit,
            expected_head: (!req.expected_head.is_empty()).then(|| req.expected_head.clone()),
            message: (!req.message.is_empty()).then(|| req.message.clone()),
            visible: self.scope.visible(),
            control,
        };
        let outcome = self.backend.revert(&id, &spec, self.scope.actor()).await?;
        crate::audit::note_update(&outcome);
        let committed = !outcome.changed_files.is_empty();
        let text = if committed {
            format!(
                "Reverted {} in {id} as {}: {} file(s) changed: {}",
                req.commit,
                outcome.head,
                outcome.changed_files.len(),
                outcome
                    .changed_files
                    .iter()
                    .map(|p| one_line(p).into_owned())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else {
            format!(
                "No change: the head already lacks what {} changed; head stays {}",
                req.commit, outcome.head
            )
        };
        Ok((
            RevertCommitOutput {
                repo_id: id.to_string(),
                reverted: req.commit.clone(),
                head: outcome.head,
                committed,
                changed_files: outcome.changed_files,
            },
            text,
        ))
    }

    async fn list_commits_impl(
        &self,
        req: ListCommitsRequest,
        control: WalkControl,
    ) -> ToolAnswer<CommitsOutput> {
        let id = self.guard_repo(&Self::LIST_COMMITS, &req.repo_id).await?;
        let path = if req.path.is_empty() {
            None
        } else {
            Some(RepoPath::parse_prefix(&req.path)?.to_string())
        };
        crate::rules::query_length("author", &req.author)?;
        let query = CommitQuery {
            path,
            author: (!req.author.is_empty()).then(|| req.author.clone()),
            since: parse_time_bound("since", &req.since, false)?,
            until: parse_time_bound("until", &req.until, true)?,
            max_results: commit_page_size(req.max_results)?,
            cursor: parse_commit_cursor(&req.cursor)?,
            visible: self.scope.visible(),
            matching: None,
            control,
        };
        let page = self.backend.list_commits(&id, &query).await?;
        Ok(commits_output(id.to_string(), page))
    }

    async fn search_history_impl(
        &self,
        req: SearchHistoryRequest,
        control: WalkControl,
    ) -> ToolAnswer<CommitsOutput> {
        let id = self.guard_repo(&Self::SEARCH_HISTORY, &req.repo_id).await?;
        crate::rules::search_query("the query", &req.query)?;
        let query = CommitQuery {
            path: None,
            author: None,
            since: parse_time_bound("since", &req.since, false)?,
            until: parse_time_bound("until", &req.until, true)?,
            max_results: commit_page_size(req.max_results)?,
            cursor: parse_commit_cursor(&req.cursor)?,
            visible: self.scope.visible(),
            matching: Some(HistoryMatch {
                text: req.query.clone(),
                mode: req.mode,
                path_glob: glob("path_glob", &req.path_glob)?,
            }),
            control,
        };
        let page = self.backend.list_commits(&id, &query).await?;
        Ok(commits_output(id.to_string(), page))
    }

    async fn get_commit_impl(&self, req: GetCommitRequest) -> ToolAnswer<GetCommitOutput> {
        let id = self.guard_repo(&Self::GET_COMMIT, &req.repo_id).await?;
        let rev = revision("commit", &req.commit)?;
        let query = diff_query(
            self,
            req.detail,
            &req.path_glob,
            req.context_lines,
            req.file_cursor,
        )?;
        let (commit, diff) = self.backend.get_commit(&id, &rev, &query).await?;
        let DiffResult {
            from,
            files,
            total_files,
            next_file,
            ..
        } = diff;
        let text = format!(
            "commit {} by {} at {}\n{}\n{}\n{} of {total_files} file(s){}{}",
            commit.id,
            one_line(&commit.author),
            commit.time,
            one_line(&commit.subject),
            commit.body,
            files.len(),
            if next_file.is_some() {
                " (truncated: pass next_file_cursor)"
            } else {
                ""
            },
            render_files(&files)
        );
        Ok((
            GetCommitOutput {
                repo_id: id.to_string(),
                commit,
                from,
                files,
                total_files: total_files as u64,
                truncated: next_file.is_some(),
                next_file_cursor: next_file.map(|n| n as u64),
            },
            text,
        ))
    }

    async fn compare_impl(&self, req: CompareRequest) -> ToolAnswer<CompareOutput> {
        let id = self.guard_repo(&Self::COMPARE, &req.repo_id).await?;
        let from = revision("from", &req.from)?;
        let to = revision("to", &req.to)?;
        let query = diff_query(
            self,
            req.detail,
            &req.path_glob,
            req.context_lines,
            req.file_cursor,
        )?;
        let diff = self.backend.compare(&id, &from, &to, &query).await?;
        let from = diff.from.unwrap_or_default();
        let text = format!(
            "{} .. {}: {} of {} file(s){}{}",
            short(&from),
            short(&diff.to),
            diff.files.len(),
            diff.total_files,
            if diff.next_file.is_some() {
                " (truncated: pass next_file_cursor)"
            } else {
                ""
            },
            render_files(&diff.files)
        );
        Ok((
            CompareOutput {
                repo_id: id.to_string(),
                from,
                to: diff.to,
                files: diff.files,
                total_files: diff.total_files as u64,
                truncated: diff.next_file.is_some(),
                next_file_cursor: diff.next_file.map(|n| n as u64),
            },
            text,
        ))
    }

    async fn blame_file_impl(&self, req: BlameFileRequest) -> ToolAnswer<BlameFileOutput> {
        let id = self.guard_repo(&Self::BLAME_FILE, &req.repo_id).await?;
        let path = RepoPath::parse(&req.path)?;
        let at = if req.commit.is_empty() {
            None
        } else {
            Some(revision("commit", &req.commit)?)
        };
        if !self.scope.sees(path.as_str()) {
            return Err(file_not_found(&path));
        }
        let query = BlameQuery {
            path: path.clone(),
            start_line: req.start_line,
            end_line: req.end_line,
            at,
        };
        let blame = self.backend.blame(&id, &query).await?;
        let mut text = format!(
            "blame of {} at {}: {} run(s) over {} line(s){}",
            one_line(path.as_str()),
            short(&blame.commit),
            blame.ranges.len(),
            blame.total_lines,
            if blame.next_line.is_some() {
                " (truncated: read on from next_start_line)"
            } else {
                ""
            }
        );
        for r in &blame.ranges {
            text.push_str(&format!(
                "\n{}-{} {} {} {} {}",
                r.start_line,
                r.end_line,
                short(&r.commit),
                r.time,
                one_line(&r.author),
                one_line(&r.subject)
            ));
        }
        Ok((
            BlameFileOutput {
                repo_id: id.to_string(),
                path: path.to_string(),
                commit: blame.commit,
                total_lines: blame.total_lines,
                truncated: blame.next_line.is_some(),
                next_start_line: blame.next_line,
                ranges: blame.ranges,
            },
            text,
        ))
    }
}
