//! The read-only tools: `list_repos`, `search_repo`, `read_file`, `list_files`.

use rmcp::RoleServer;
use rmcp::handler::server::tool::schema_for_output;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ProgressNotificationParam};
use rmcp::schemars::{self, JsonSchema};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, tool, tool_router};
use serde::{Deserialize, Serialize};

use crate::scope::Right;

use super::{RepoServer, ToolAnswer, ToolFailure, ToolSpec, respond};
use crate::backend::{ProgressSender, SearchOutcome};
use crate::model::{LineQuery, RankedHit, RankedQuery, RepoId, RepoSummary, SearchHit};
use crate::paths::RepoPath;
use crate::rules::PathGlob;
use crate::text::one_line;

/// Most bytes of file content one `read_file` answer carries.
pub const MAX_READ_BYTES: usize = 256 * 1024;
/// Default budget of snippet text in a ranked answer, in tokens (about 4 bytes each).
pub const DEFAULT_TOKEN_LIMIT: u32 = 8000;
/// Most paths one `list_files` answer carries.
pub const MAX_LIST_LIMIT: u32 = 10_000;

fn yes() -> bool {
    true
}
fn fifty() -> u32 {
    50
}
fn thousand() -> u32 {
    1000
}
fn default_token_limit() -> u32 {
    DEFAULT_TOKEN_LIMIT
}

fn short(head: &str) -> &str {
    &head[..head.len().min(12)]
}

/// The repos in scope.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct ListReposOutput {
    /// Each repo this session may use.
    pub repos: Vec<RepoSummary>,
    /// Repos in scope still being imported (or whose import failed): not usable yet;
    /// a call naming one waits for its import, for a bounded time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub importing: Vec<super::importing::ImportingRepo>,
}

/// How `search_repo` matches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SearchMode {
    /// `ranked` for a question in words (three or more words, no code syntax); else
    /// `regex` when the query is a regular expression with metacharacters; else `literal`.
    #[default]
    Auto,
    /// The query is matched as exact text.
    Literal,
    /// The query is a regular expression (Rust `regex` syntax, as ripgrep uses).
    Regex,
    /// Ranked natural-language retrieval of the most relevant files.
    Ranked,
    /// In answers only: the hosted Relace service ran its agentic search (an agent
    /// explored the repo); `report` holds its final report. As input, the same as `auto`.
    Agentic,
}

/// Arguments of `search_repo`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct SearchRepoRequest {
    /// The repo to search (a UUID from list_repos).
    pub repo_id: String,
    /// Text, regex or question to search for (at most 4 KiB).
    pub query: String,
    /// `literal`, `regex`, `ranked` or `auto` (the default).
    #[serde(default)]
    pub mode: SearchMode,
    /// Only search files whose path matches this glob, e.g. `*.rs` or `src/**/*.py`.
    /// Empty: every file.
    #[serde(default)]
    pub path_glob: String,
    /// Match case exactly (default true).
    #[serde(default = "yes")]
    pub case_sensitive: bool,
    /// Stop after this many matching lines, or in ranked mode this many files
    /// (default 50, at most 1000).
    #[serde(default = "fifty")]
    pub max_results: u32,
    /// Lines of context before and after each match (default 0, at most 10).
    #[serde(default)]
    pub context_lines: u32,
    /// Ranked mode: most tokens of snippet text in the answer, about 4 bytes each
    /// (default 8000, at most 100000). Results stop when it is spent.
    #[serde(default = "default_token_limit")]
    pub token_limit: u32,
}

/// The answer of `search_repo`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct SearchRepoOutput {
    /// The repo searched.
    pub repo_id: String,
    /// The commit the results were computed at.
    pub head: String,
    /// The mode that ran (`ranked`, `literal` or `regex` when `auto` was asked).
    pub mode: SearchMode,
    /// Matching lines, in path order then line order (line modes; empty in ranked mode).
    pub hits: Vec<SearchHit>,
    /// Files that best answer the query, best first, each with the line range that
    /// matches best (ranked mode; empty in line modes).
    #[serde(default)]
    pub ranked: Vec<RankedHit>,
    /// True when more matches exist than were returned, or in ranked mode when
    /// `token_limit` cut the answer.
    pub truncated: bool,
    /// How many files were searched (ranked mode: indexed).
    pub files_searched: u64,
    /// With mode `agentic`: the search's final report (relevant files and line ranges),
    /// as the service sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<serde_json::Value>,
    /// Ranked mode only: true when the ranked index was still being built, so `ranked`
    /// holds the files containing the most of the query's words (line search), not a
    /// ranking. Ask again once it is built.
    #[serde(default)]
    pub partial: bool,
    /// With `partial`: how far the ranked index's build is, in percent, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_built_percent: Option<u32>,
}

/// Arguments of `read_file`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct ReadFileRequest {
    /// The repo (a UUID from list_repos).
    pub repo_id: String,
    /// The file's path from the repo root, e.g. `src/main.rs`.
    pub path: String,
    /// First line to return, 1-based (default 0: from the start).
    #[serde(default)]
    pub start_line: u64,
    /// Last line to return, inclusive (default 0: to the end).
    #[serde(default)]
    pub end_line: u64,
    /// Read the file as it was at this commit: its id (full, or at least 4 hex
    /// digits), or `main~N` / `HEAD~N`. Empty: the head.
    #[serde(default, rename = "ref")]
    pub git_ref: String,
}

/// The answer of `read_file`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct ReadFileOutput {
    /// The repo.
    pub repo_id: String,
    /// The file.
    pub path: String,
    /// The commit the text was read at.
    pub head: String,
    /// True when the file is binary (not UTF-8 text, or holding a NUL byte): `content`
    /// is then empty and `size` says how large it is; binary files are never returned
    /// as text.
    pub binary: bool,
    /// The whole file's size in bytes.
    pub size: u64,
    /// The text of lines `start_line..=end_line`, line endings kept.
    pub content: String,
    /// First line returned (1-based).
    pub start_line: u64,
    /// Last line returned (0 for an empty file).
    pub end_line: u64,
    /// Lines in the whole file.
    pub total_lines: u64,
    /// True when the answer stopped before the requested end (256 KiB per answer); read
    /// on from `end_line + 1`.
    pub truncated: bool,
}

/// Arguments of `list_files`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct ListFilesRequest {
    /// The repo (a UUID from list_repos).
    pub repo_id: String,
    /// Only paths under this directory, e.g. `src/`. Empty: the whole repo.
    #[serde(default)]
    pub prefix: String,
    /// Only paths matching this glob, e.g. `*.rs` (any directory) or `src/**/test_*.py`.
    #[serde(default)]
    pub glob: String,
    /// Most paths to return (default 1000, at most 10000).
    #[serde(default = "thousand")]
    pub limit: u32,
    /// List the paths as they were at this commit: its id (full, or at least 4 hex
    /// digits), or `main~N` / `HEAD~N`. Empty: the head.
    #[serde(default, rename = "ref")]
    pub git_ref: String,
}

/// The answer of `list_files`.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
pub struct ListFilesOutput {
    /// The repo.
    pub repo_id: String,
    /// The commit listed.
    pub head: String,
    /// Matching paths, sorted.
    pub paths: Vec<String>,
    /// The returned paths that are binary files, sorted (read_file gives their size,
    /// not their content; search skips them).
    pub binary_paths: Vec<String>,
    /// How many paths matched in all.
    pub total_matching: u64,
    /// True when more paths matched than were returned.
    pub truncated: bool,
}

/// Words that open a line of code far more often than a question: a query starting
/// with one is a literal search for that code (`let mut count`, `import numpy as np`).
const CODE_OPENERS: &[&str] = &[
    "async", "await", "class", "const", "def", "else", "enum", "export", "fn", "from", "func",
    "function", "impl", "import", "let", "mut", "package", "pub", "raise", "return", "static",
    "struct", "throw", "type", "use", "var",
];

/// Whether a query reads as a question in words rather than code or a pattern: three
/// or more words, most of them plain words, not opening like a line of code, and none
/// of the syntax code and regexes are made of (a trailing `?` or `.` is prose).
fn is_natural_language(query: &str) -> bool {
    let words: Vec<&str> = query.split_whitespace().collect();
    if words.first().is_some_and(|w| CODE_OPENERS.contains(w)) {
        return false;
    }
    if words.len() < 3
        || query.contains([
            '\\', '(', ')', '[', ']', '{', '}', '|', '^', '$', '*', '+', '=', ';', '<', '>',
        ])
    {
        return false;
    }
    let plain = words
        .iter()
        .filter(|w| {
            let w = w.trim_matches(|c: char| "?.,!:'\"`".contains(c));
            !w.is_empty()
                && w.chars()
                    .all(|c| c.is_alphanumeric() || c == '-' || c == '\'')
        })
        .count();
    plain * 3 >= words.len() * 2
}

/// What `auto` runs: ranked retrieval for a question in words; a regex when the query
/// has regex syntax and compiles; else a literal.
fn resolve_mode(mode: SearchMode, query: &str) -> SearchMode {
    match mode {
        SearchMode::Auto if is_natural_language(query) => SearchMode::Ranked,
        SearchMode::Auto if regex::escape(query) != query && regex::Regex::new(query).is_ok() => {
            SearchMode::Regex
        }
        SearchMode::Auto | SearchMode::Agentic => SearchMode::Literal,
        m => m,
    }
}

/// This group's tools, each declared beside its `#[tool]` below: the registry
/// ([`super::registry`]) is the groups' lists joined.
pub(super) const TOOLS: &[ToolSpec] = &[
    RepoServer::LIST_REPOS,
    RepoServer::SEARCH_REPO,
    RepoServer::READ_FILE,
    RepoServer::LIST_FILES,
];

#[tool_router(router = read_tools, vis = "pub(crate)")]
impl RepoServer {
    /// `list_repos`: needs the read right.
    pub(crate) const LIST_REPOS: ToolSpec = ToolSpec {
        name: "list_repos",
        right: Right::Read,
        guide: "Start with list_repos (IDs, metadata, head commit).",
    };

    /// `search_repo`: needs the read right.
    pub(crate) const SEARCH_REPO: ToolSpec = ToolSpec {
        name: "search_repo",
        right: Right::Read,
        guide: "Find code with search_repo (mode literal or regex for exact lines, ranked for a question in words; auto picks one).",
    };

    /// `read_file`: needs the read right.
    pub(crate) const READ_FILE: ToolSpec = ToolSpec {
        name: "read_file",
        right: Right::Read,
        guide: "Read with read_file (use start_line/end_line for large files); files are also resources: repo://{repo_id}/{path}.",
    };

    /// `list_files`: needs the read right.
    pub(crate) const LIST_FILES: ToolSpec = ToolSpec {
        name: "list_files",
        right: Right::Read,
        guide: "Browse with list_files.",
    };

    /// List the repositories this session may use, with their metadata and head commit.
    #[tool(
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false),
        output_schema = schema_for_output::<ListReposOutput>()
    )]
    async fn list_repos(&self) -> Result<CallToolResult, McpError> {
        respond(Self::LIST_REPOS.name, self.list_repos_impl().await)
    }

    /// Search one repository's files. `literal` and `regex` return matching lines
    /// (path, line number, text, match offsets), like ripgrep. `ranked` answers a
    /// question in words ("where is the retry backoff computed") with the most relevant
    /// files, best first, each with a score and the line range and snippet that match
    /// best, within `token_limit`. `auto` picks `ranked` for questions in words, else
    /// `regex` or `literal`. Binary files are skipped.
    #[tool(
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false),
        output_schema = schema_for_output::<SearchRepoOutput>()
    )]
    async fn search_repo(
        &self,
        Parameters(req): Parameters<SearchRepoRequest>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        // Events of a long search (an agentic one, or a ranked one that builds its index
        // first) become progress notifications when the client asked for progress.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let relay = ctx.meta.get_progress_token().map(|token| {
            let peer = ctx.peer.clone();
            tokio::spawn(async move {
                let mut n = 0.0;
                while let Some(message) = rx.recv().await {
                    n += 1.0;
                    let mut p = ProgressNotificationParam::new(token.clone(), n);
                    p.message = Some(message);
                    let _ = peer.notify_progress(p).await;
                }
            })
        });
        let answer = tokio::select! {
            a = self.search_repo_impl(req, relay.is_some().then_some(tx)) => a,
            _ = ctx.ct.cancelled() => Err(ToolFailure::Refused("the search was cancelled".into())),
        };
        if let Some(relay) = relay {
            // The sender is gone with the search; the relay ends once it has sent all.
            let _ = relay.await;
        }
        respond(Self::SEARCH_REPO.name, answer)
    }

    /// Read a text file, whole or a range of lines (1-based, inclusive). A binary file
    /// is answered with `binary: true` and its size, never its content.
    #[tool(
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false),
        output_schema = schema_for_output::<ReadFileOutput>()
    )]
    async fn read_file(
        &self,
        Parameters(req): Parameters<ReadFileRequest>,
    ) -> Result<CallToolResult, McpError> {
        respond(Self::READ_FILE.name, self.read_file_impl(req).await)
    }

    /// List a repository's file paths, optionally under a directory or matching a glob;
    /// binary files are listed and named again in `binary_paths`.
    #[tool(
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false),
        output_schema = schema_for_output::<ListFilesOutput>()
    )]
    async fn list_files(
        &self,
        Parameters(req): Parameters<ListFilesRequest>,
    ) -> Result<CallToolResult, McpError> {
        respond(Self::LIST_FILES.name, self.list_files_impl(req).await)
    }
}

impl RepoServer {
    async fn list_repos_impl(&self) -> ToolAnswer<ListReposOutput> {
        self.admit_all(&Self::LIST_REPOS, &[]).await?;
        // Each repo's import state is read once: read twice, an import ending between
        // the reads left its repo out of both lists.
        let mut importing = Vec::new();
        let mut ids = Vec::new();
        for id in self.scope.repos() {
            match self.imports.listed(id) {
                Some(unfinished) => importing.push(unfinished),
                None => ids.push(*id),
            }
        }
        let repos = self.backend.list_repos(&ids).await?;
        let mut text = format!("{} repo(s) in scope:", repos.len() + importing.len());
        for r in &repos {
            let meta: Vec<String> = r
                .metadata
                .iter()
                .map(|(k, v)| format!("{}={}", one_line(k), one_line(v)))
                .collect();
            text.push_str(&format!(
                "\n- {} head {} {}",
                r.repo_id,
                short(&r.head),
                meta.join(" ")
            ));
        }
        for r in &importing {
            text.push_str(&format!(
                "\n- {} {} name={}: {}",
                r.repo_id,
                r.state,
                one_line(&r.name),
                r.message
            ));
        }
        Ok((ListReposOutput { repos, importing }, text))
    }

    async fn search_repo_impl(
        &self,
        req: SearchRepoRequest,
        progress: Option<ProgressSender>,
    ) -> ToolAnswer<SearchRepoOutput> {
        let id = self.guard_repo(&Self::SEARCH_REPO, &req.repo_id).await?;
        let checked = LineQuery::new(
            "the query",
            req.query.clone(),
            req.max_results as usize,
            req.context_lines as usize,
        )?;
        let mode = resolve_mode(req.mode, &req.query);
        if mode == SearchMode::Ranked {
            return self.search_ranked_impl(id, req, progress).await;
        }
        let query = LineQuery {
            regex: mode == SearchMode::Regex,
            case_sensitive: req.case_sensitive,
            path_glob: (!req.path_glob.is_empty()).then(|| req.path_glob.clone()),
            visible: self.scope.visible(),
            ..checked
        };
        let results = match self.backend.search(&id, &query, progress).await? {
            // A backend that cannot filter by the view (the Relace API) is filtered here.
            SearchOutcome::Lines(mut results) => {
                results.hits.retain(|h| self.scope.sees(&h.path));
                results
            }
            SearchOutcome::Agentic(report) => {
                let text = format!(
                    "Agentic search of {id} for `{}` ({} event(s)); final report ({}):\n{}",
                    req.query,
                    report.events,
                    report.event,
                    match &report.report {
                        serde_json::Value::String(s) => s.clone(),
                        v => serde_json::to_string_pretty(v).unwrap_or_default(),
                    }
                );
                return Ok((
                    SearchRepoOutput {
                        repo_id: id.to_string(),
                        head: String::new(),
                        mode: SearchMode::Agentic,
                        hits: Vec::new(),
                        truncated: false,
                        files_searched: 0,
                        report: Some(report.report),
                        ranked: Vec::new(),
                        partial: false,
                        index_built_percent: None,
                    },
                    text,
                ));
            }
        };
        let kind = if mode == SearchMode::Regex {
            "regex"
        } else {
            "literal"
        };
        let mut text = format!(
            "{} matching line(s) for {kind} `{}` in {id} at {}{}",
            results.hits.len(),
            req.query,
            short(&results.head),
            if results.truncated {
                " (truncated: more matches exist; narrow the query or raise max_results)"
            } else {
                ""
            }
        );
        for h in &results.hits {
            let first = h.line as usize - h.before.len();
            let path = one_line(&h.path);
            for (i, l) in h.before.iter().enumerate() {
                text.push_str(&format!("\n{path}-{}- {l}", first + i));
            }
            text.push_str(&format!("\n{path}:{}: {}", h.line, h.text));
            for (i, l) in h.after.iter().enumerate() {
                text.push_str(&format!("\n{path}-{}- {l}", h.line as usize + 1 + i));
            }
        }
        Ok((
            SearchRepoOutput {
                repo_id: id.to_string(),
                head: results.head,
                mode,
                hits: results.hits,
                ranked: Vec::new(),
                truncated: results.truncated,
                files_searched: results.files_searched as u64,
                report: None,
                partial: false,
                index_built_percent: None,
            },
            text,
        ))
    }

    async fn search_ranked_impl(
        &self,
        id: RepoId,
        req: SearchRepoRequest,
        progress: Option<ProgressSender>,
    ) -> ToolAnswer<SearchRepoOutput> {
        let query = RankedQuery {
            visible: self.scope.visible(),
            ..RankedQuery::new(
                "the query",
                req.query.clone(),
                (!req.path_glob.is_empty()).then(|| req.path_glob.clone()),
                req.max_results as usize,
                req.token_limit as usize,
            )?
        };
        let mut results = self.backend.search_ranked(&id, &query, progress).await?;
        results.hits.retain(|h| self.scope.sees(&h.path));
        let mut text = match &results.partial {
            None => format!(
                "{} ranked file(s) for `{}` in {id} at {}{}",
                results.hits.len(),
                req.query,
                short(&results.head),
                if results.truncated {
                    " (truncated at token_limit: raise it for more)"
                } else {
                    ""
                }
            ),
            Some(b) => format!(
                "PARTIAL ANSWER, NOT RANKED: the ranked index of {id} is being built ({}{}); \
                 ask again for ranked results. Meanwhile, {} file(s) holding the most of the \
                 words of `{}` (line search, case-insensitive) at {}{}",
                b.percent
                    .map_or("progress not known yet".to_string(), |p| format!(
                        "{p}% built"
                    )),
                if b.elsewhere {
                    ", by another process"
                } else {
                    ""
                },
                results.hits.len(),
                req.query,
                short(&results.head),
                if results.truncated {
                    " (truncated at token_limit: raise it for more)"
                } else {
                    ""
                }
            ),
        };
        for h in &results.hits {
            // Source is what ranking favours; any other role is said beside the score.
            let role = match h.role.as_str() {
                "" | "source" => String::new(),
                r => format!(", {r}"),
            };
            if results.partial.is_some() {
                text.push_str(&format!(
                    "\n\n{}:{}-{} ({} of the words{role})\n{}",
                    one_line(&h.path),
                    h.start_line,
                    h.end_line,
                    h.score.floor(),
                    h.snippet.trim_end()
                ));
            } else {
                text.push_str(&format!(
                    "\n\n{}:{}-{} (score {:.2}{role})\n{}",
                    one_line(&h.path),
                    h.start_line,
                    h.end_line,
                    h.score,
                    h.snippet.trim_end()
                ));
            }
        }
        Ok((
            SearchRepoOutput {
                repo_id: id.to_string(),
                head: results.head,
                mode: SearchMode::Ranked,
                hits: Vec::new(),
                ranked: results.hits,
                truncated: results.truncated,
                files_searched: results.files_indexed as u64,
                report: None,
                partial: results.partial.is_some(),
                index_built_percent: results.partial.and_then(|b| b.percent),
            },
            text,
        ))
    }

    async fn read_file_impl(&self, req: ReadFileRequest) -> ToolAnswer<ReadFileOutput> {
        let id = self.guard_repo(&Self::READ_FILE, &req.repo_id).await?;
        let path = RepoPath::parse(&req.path)?;
        let file = if req.git_ref.is_empty() {
            self.read_visible(&id, &path).await?
        } else {
            let rev = super::history_tools::revision("ref", &req.git_ref)?;
            if !self.scope.sees(path.as_str()) {
                return Err(ToolFailure::Backend(
                    crate::backend::BackendError::NotFound(format!(
                        "`{path}` does not exist at {rev}"
                    )),
                ));
            }
            self.backend.read_file_at(&id, &path, &rev).await?
        };
        if let Some(size) = file.binary {
            let text = format!(
                "{} at {} is a binary file of {size} bytes; its content is not returned as text",
                one_line(path.as_str()),
                short(&file.head),
            );
            return Ok((
                ReadFileOutput {
                    repo_id: id.to_string(),
                    path: path.to_string(),
                    head: file.head,
                    binary: true,
                    size,
                    content: String::new(),
                    start_line: 0,
                    end_line: 0,
                    total_lines: 0,
                    truncated: false,
                },
                text,
            ));
        }
        let size = file.content.len() as u64;
        let lines: Vec<&str> = file.content.split_inclusive('\n').collect();
        let total = lines.len() as u64;
        let start = req.start_line.max(1);
        if req.end_line != 0 && req.end_line < start {
            return Err(ToolFailure::Refused(format!(
                "end_line {} is before start_line {start}",
                req.end_line
            )));
        }
        if start > total.max(1) {
            return Err(ToolFailure::Refused(format!(
                "start_line {start} is past the end of `{path}`, which has {total} line(s)"
            )));
        }
        let wanted_end = if req.end_line == 0 {
            total
        } else {
            req.end_line.min(total)
        };
        let mut content = String::new();
        let mut end = start - 1;
        let mut truncated = false;
        for line in lines
            .iter()
            .take(wanted_end as usize)
            .skip(start as usize - 1)
        {
            if !content.is_empty() && content.len() + line.len() > MAX_READ_BYTES {
                truncated = true;
                break;
            }
            content.push_str(line);
            end += 1;
        }
        let text = format!(
            "{} lines {start}-{end} of {total} at {}{}:\n{content}",
            one_line(path.as_str()),
            short(&file.head),
            if truncated {
                " (truncated: read on from the next line)"
            } else {
                ""
            }
        );
        Ok((
            ReadFileOutput {
                repo_id: id.to_string(),
                path: path.to_string(),
                head: file.head,
                binary: false,
                size,
                content,
                start_line: start,
                end_line: end,
                total_lines: total,
                truncated,
            },
            text,
        ))
    }

    /// Read a file the session sees; a file outside a path-limited token's view answers
    /// exactly as a missing one.
    pub(crate) async fn read_visible(
        &self,
        id: &RepoId,
        path: &RepoPath,
    ) -> Result<crate::model::FileText, ToolFailure> {
        if !self.scope.sees(path.as_str()) {
            let head = self
                .backend
                .list_repos(std::slice::from_ref(id))
                .await?
                .into_iter()
                .next()
                .map(|r| r.head)
                .unwrap_or_default();
            return Err(ToolFailure::Backend(
                crate::backend::BackendError::NotFound(format!(
                    "`{path}` does not exist at {head}"
                )),
            ));
        }
        Ok(self.backend.read_file(id, path).await?)
    }

    async fn list_files_impl(&self, req: ListFilesRequest) -> ToolAnswer<ListFilesOutput> {
        let id = self.guard_repo(&Self::LIST_FILES, &req.repo_id).await?;
        let prefix = if req.prefix.is_empty() {
            None
        } else {
            Some(RepoPath::parse_prefix(&req.prefix)?)
        };
        let glob = if req.glob.is_empty() {
            None
        } else {
            Some(
                PathGlob::new("glob", &req.glob)
                    .map_err(|e| ToolFailure::Refused(e.to_string()))?,
            )
        };
        if req.limit == 0 || req.limit > MAX_LIST_LIMIT {
            return Err(ToolFailure::Refused(format!(
                "limit must be between 1 and {MAX_LIST_LIMIT}"
            )));
        }
        let list = if req.git_ref.is_empty() {
            self.backend.list_files(&id).await?
        } else {
            let rev = super::history_tools::revision("ref", &req.git_ref)?;
            self.backend.list_files_at(&id, &rev).await?
        };
        let matching: Vec<String> = list
            .paths
            .into_iter()
            .filter(|p| self.scope.sees(p))
            .filter(|p| prefix.as_ref().is_none_or(|d| d.contains(p)))
            .filter(|p| glob.as_ref().is_none_or(|g| g.is_match(p)))
            .collect();
        let total = matching.len() as u64;
        let paths: Vec<String> = matching.into_iter().take(req.limit as usize).collect();
        let truncated = (paths.len() as u64) < total;
        // Both lists are sorted: one pass picks the returned paths that are binary.
        let mut marked = list.binary.iter().peekable();
        let binary_paths: Vec<String> = paths
            .iter()
            .filter(|p| {
                while marked.next_if(|b| b.as_str() < p.as_str()).is_some() {}
                marked.peek().is_some_and(|b| b == p)
            })
            .cloned()
            .collect();
        let text = format!(
            "{} of {total} path(s) in {id} at {}{}\n{}",
            paths.len(),
            short(&list.head),
            if truncated {
                " (truncated: raise limit or narrow prefix/glob)"
            } else {
                ":"
            },
            paths
                .iter()
                .map(|p| if binary_paths.binary_search(p).is_ok() {
                    format!("{} (binary)", one_line(p))
                } else {
                    one_line(p).into_owned()
                })
                .collect::<Vec<_>>()
                .join("\n")
        );
        Ok((
            ListFilesOutput {
                repo_id: id.to_string(),
                head: list.head,
                paths,
                binary_paths,
                total_matching: total,
                truncated,
            },
            text,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_mode_picks_regex_only_for_compiling_patterns_with_syntax() {
        assert_eq!(
            resolve_mode(SearchMode::Auto, "fn main"),
            SearchMode::Literal
        );
        assert_eq!(
            resolve_mode(SearchMode::Auto, "fn (main"),
            SearchMode::Literal
        );
        assert_eq!(
            resolve_mode(SearchMode::Auto, r"fn \w+\("),
            SearchMode::Regex
        );
        assert_eq!(
            resolve_mode(SearchMode::Literal, r"\w"),
            SearchMode::Literal
        );
    }

    #[test]
    fn auto_mode_picks_ranked_for_questions_in_words() {
        for q in [
            "where is the retry backoff computed?",
            "authentication logic for API tokens",
            "how does the store serialize concurrent updates",
        ] {
            assert_eq!(resolve_mode(SearchMode::Auto, q), SearchMode::Ranked, "{q}");
        }
        for q in [
            "fn main",
            "retry_backoff",
            "let x = compute(a, b);",
            r"fn \w+ \( x",
            "foo.*bar baz qux",
            "let mut count",
            "import numpy as np",
        ] {
            assert_ne!(resolve_mode(SearchMode::Auto, q), SearchMode::Ranked, "{q}");
        }
        assert_eq!(resolve_mode(SearchMode::Ranked, "x"), SearchMode::Ranked);
    }
}
