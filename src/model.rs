//! Domain types shared by the MCP layer and the backends: repo IDs, file operations,
//! search hits, token descriptions. No wire format of any backend lives here.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rmcp::schemars::{self, JsonSchema};
use serde::{Deserialize, Serialize};

use crate::paths::RepoPath;
use crate::rules::{
    Limits, MAX_CONTEXT_LINES, MAX_SEARCH_RESULTS, MAX_TOKEN_LIMIT, PathGlob, PathSet, RuleError,
};

/// A repository ID: a UUID, always written in its lowercase hyphenated form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RepoId(uuid::Uuid);

/// A repo ID that is not a UUID.
#[derive(Debug, thiserror::Error)]
#[error("repo ID `{0}` is not a UUID (expected the form 3f2a6c1e-8b0d-4c5e-9a7f-1d2e3c4b5a69)")]
pub struct BadRepoId(pub String);

impl RepoId {
    /// A fresh random ID.
    pub fn new_random() -> Self {
        Self(uuid::Uuid::new_v4())
    }
}

impl FromStr for RepoId {
    type Err = BadRepoId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let shown: String = s.chars().take(80).collect();
        // Only the hyphenated 36-character form: `simple`, `urn:` and braced forms are
        // refused so that one repo has exactly one spelling in logs and scopes.
        if s.len() != 36 {
            return Err(BadRepoId(shown));
        }
        uuid::Uuid::parse_str(s)
            .map(Self)
            .map_err(|_| BadRepoId(shown))
    }
}

impl fmt::Display for RepoId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// Seconds since the Unix epoch, the store's clock.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Format Unix seconds as an RFC 3339 / ISO 8601 UTC timestamp. Times past the last
/// second RFC 3339 can write (9999-12-31T23:59:59Z) are shown as that second, so a
/// stored row can never make formatting fail.
pub fn rfc3339(unix_seconds: i64) -> String {
    let secs = unix_seconds.clamp(0, crate::rules::MAX_EXPIRY_UNIX) as u64;
    let t = UNIX_EPOCH + Duration::from_secs(secs);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Parse an RFC 3339 timestamp (as the Relace API writes them) into Unix seconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(s.trim_end_matches('Z').split('.').next()?)
        .or_else(|_| humantime::parse_rfc3339(s))
        .ok()?;
    Some(t.duration_since(UNIX_EPOCH).ok()?.as_secs() as i64)
}

/// A repository as `list_repos` describes it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RepoSummary {
    /// The repo's ID (a UUID).
    pub repo_id: String,
    /// The commit id of the repo's current head.
    pub head: String,
    /// Free-form key/value metadata set when the repo was created.
    pub metadata: BTreeMap<String, String>,
    /// When the repo was created (RFC 3339).
    pub created_at: String,
    /// When the repo last changed (RFC 3339).
    pub updated_at: String,
}

/// One change in an update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileOp {
    /// Create or overwrite a file.
    Write {
        /// Where.
        path: RepoPath,
        /// The new text.
        content: String,
    },
    /// Create or overwrite a file with raw bytes, text or binary: the REST API's file
    /// PUT, which takes any bytes within the size limits. The MCP tools never make one:
    /// what they write is text.
    WriteBytes {
        /// Where.
        path: RepoPath,
        /// The new content.
        content: Vec<u8>,
    },
    /// Delete a file, or a directory with everything below it.
    Delete {
        /// What.
        path: RepoPath,
    },
    /// Move a file or directory.
    Rename {
        /// From.
        path: RepoPath,
        /// To.
        new_path: RepoPath,
    },
}

/// What an update does to the tree.
#[derive(Debug, Clone)]
pub enum Change {
    /// Apply these operations in order, on top of the head.
    Operations(Vec<FileOp>),
    /// Make these files the whole tree; everything else is deleted.
    ReplaceAll(Vec<(RepoPath, String)>),
}

/// An update as the backends take it.
#[derive(Debug, Clone)]
pub struct UpdateSpec {
    /// The change.
    pub change: Change,
    /// Refuse the update unless the repo's head is this commit.
    pub expected_head: Option<String>,
    /// The commit message; a summary is written when absent.
    pub message: Option<String>,
    /// Cancellation and progress reporting while the update runs.
    pub control: UpdateControl,
    /// Only paths in this set exist for the update (a path-limited token's view).
    pub visible: Option<Arc<PathSet>>,
}

impl UpdateSpec {
    /// Check the update against `limits`, and every written content for being text.
    pub fn check(&self, limits: &Limits) -> Result<(), RuleError> {
        if self.message.as_deref().is_some_and(|m| m.contains('\0')) {
            return Err(RuleError::Invalid(
                "the commit message contains a NUL byte; remove it".into(),
            ));
        }
        match &self.change {
            Change::ReplaceAll(files) => limits.check_files(files),
            Change::Operations(ops) => {
                limits.check_count(ops.len(), "operations")?;
                let mut total = 0usize;
                for op in ops {
                    match op {
                        FileOp::Write { path, content } => {
                            limits.check_content(path, content)?;
                            total = total.saturating_add(content.len());
                        }
                        FileOp::WriteBytes { path, content } => {
                            limits.check_size(path, content.len())?;
                            total = total.saturating_add(content.len());
                        }
                        FileOp::Delete { .. } | FileOp::Rename { .. } => {}
                    }
                }
                limits.check_total(total)
            }
        }
    }

    /// Bytes of content the update writes (what it may add to the repo's quota).
    pub fn written_bytes(&self) -> u64 {
        match &self.change {
            Change::ReplaceAll(files) => files.iter().map(|(_, c)| c.len() as u64).sum(),
            Change::Operations(ops) => ops
                .iter()
                .map(|op| match op {
                    FileOp::Write { content, .. } => content.len() as u64,
                    FileOp::WriteBytes { content, .. } => content.len() as u64,
                    FileOp::Delete { .. } | FileOp::Rename { .. } => 0,
                })
                .sum(),
        }
    }
}

/// Reports progress of `done` out of `total` steps.
pub type ProgressFn = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// Cancellation and progress of one long-running update. A cancelled update stops
/// before its commit is published; once published, it stands.
#[derive(Clone, Default)]
pub struct UpdateControl {
    cancelled: Arc<AtomicBool>,
    progress: Option<ProgressFn>,
}

impl fmt::Debug for UpdateControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpdateControl")
            .field("cancelled", &self.is_cancelled())
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

impl UpdateControl {
    /// A control that reports progress to `progress`.
    pub fn with_progress(progress: ProgressFn) -> Self {
        Self {
            cancelled: Arc::default(),
            progress: Some(progress),
        }
    }

    /// Ask the update to stop.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
    }

    /// Whether the update was asked to stop.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// Report `done` of `total` steps.
    pub fn report(&self, done: u64, total: u64) {
        if let Some(p) = &self.progress {
            p(done, total);
        }
    }
}

/// How long one history walk (`list_commits`, `search_history`) may run before it
/// answers with what it found so far and a cursor to go on from.
pub const HISTORY_WALK_BUDGET: Duration = Duration::from_secs(10);

/// Reports a history walk's progress: commits walked, commits found.
pub type WalkProgressFn = Arc<dyn Fn(u64, u64) + Send + Sync>;

/// Cancellation, progress and time budget of one history walk. A cancelled walk stops
/// at its next commit and answers nothing; one past its budget answers the commits it
/// found, with a cursor.
#[derive(Clone)]
pub struct WalkControl {
    cancelled: Arc<AtomicBool>,
    progress: Option<WalkProgressFn>,
    budget: Duration,
}

impl Default for WalkControl {
    fn default() -> Self {
        Self {
            cancelled: Arc::default(),
            progress: None,
            budget: HISTORY_WALK_BUDGET,
        }
    }
}

impl fmt::Debug for WalkControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WalkControl")
            .field("cancelled", &self.is_cancelled())
            .field("progress", &self.progress.is_some())
            .field("budget", &self.budget)
            .finish()
    }
}

impl WalkControl {
    /// A control that reports progress to `progress`.
    pub fn with_progress(mut self, progress: WalkProgressFn) -> Self {
        self.progress = Some(progress);
        self
    }

    /// A control whose walk answers once it has run for `budget`.
    pub fn with_budget(mut self, budget: Duration) -> Self {
        self.budget = budget;
        self
    }

    /// How long the walk may run.
    pub fn budget(&self) -> Duration {
        self.budget
    }

    /// Ask the walk to stop.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
    }

    /// Whether the walk was asked to stop.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// Report `walked` commits walked and `found` found.
    pub fn report(&self, walked: u64, found: u64) {
        if let Some(p) = &self.progress {
            p(walked, found);
        }
    }
}

/// What an update did.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct UpdateOutcome {
    /// The head after the update (unchanged when the update changed nothing).
    pub head: String,
    /// The head the update was applied on, when the backend knows it.
    pub previous_head: Option<String>,
    /// The paths whose content changed, was added or was removed, sorted.
    pub changed_files: Vec<String>,
}

/// A file's text at a head, or the size of a binary file, whose bytes are never
/// returned as text.
#[derive(Debug, Clone)]
pub struct FileText {
    /// The commit the text was read at.
    pub head: String,
    /// The whole text (empty for a binary file).
    pub content: String,
    /// `Some(size in bytes)` when the file is binary (not UTF-8 text, or holding a NUL
    /// byte): `content` is then empty.
    pub binary: Option<u64>,
}

/// Every tracked path of a repo at a head.
#[derive(Debug, Clone)]
pub struct FileList {
    /// The commit the list was read at.
    pub head: String,
    /// Sorted paths.
    pub paths: Vec<String>,
    /// The paths among `paths` that are binary files, sorted (empty when the backend
    /// lists text files only).
    pub binary: Vec<String>,
}

/// A line search, already validated.
#[derive(Debug, Clone)]
pub struct LineQuery {
    /// The pattern as given.
    pub pattern: String,
    /// Whether `pattern` is a regular expression (else a literal).
    pub regex: bool,
    /// Match case exactly.
    pub case_sensitive: bool,
    /// Only search paths matching this glob.
    pub path_glob: Option<String>,
    /// Only paths in this set exist for the search (a path-limited token's view):
    /// others are neither searched nor counted.
    pub visible: Option<Arc<PathSet>>,
    /// Stop after this many matching lines.
    pub max_results: usize,
    /// Lines of context to return before and after each match.
    pub context_lines: usize,
}

impl LineQuery {
    /// A literal, case-sensitive search for `pattern` in every file, refused unless it
    /// keeps the limits every surface keeps: the pattern's ([`crate::rules::search_query`],
    /// `what` naming it), `max_results` from 1 to [`MAX_SEARCH_RESULTS`], and
    /// `context_lines` at most [`MAX_CONTEXT_LINES`]. The other fields are the caller's
    /// to set.
    pub fn new(
        what: &str,
        pattern: String,
        max_results: usize,
        context_lines: usize,
    ) -> Result<Self, RuleError> {
        crate::rules::search_query(what, &pattern)?;
        if max_results == 0 || max_results > MAX_SEARCH_RESULTS {
            return Err(RuleError::Invalid(format!(
                "max_results must be between 1 and {MAX_SEARCH_RESULTS}"
            )));
        }
        if context_lines > MAX_CONTEXT_LINES {
            return Err(RuleError::Invalid(format!(
                "context_lines must be at most {MAX_CONTEXT_LINES}"
            )));
        }
        Ok(Self {
            pattern,
            regex: false,
            case_sensitive: true,
            path_glob: None,
            visible: None,
            max_results,
            context_lines,
        })
    }
}

/// One matching line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SearchHit {
    /// The file.
    pub path: String,
    /// 1-based line number.
    pub line: u64,
    /// The line's text (without its line ending; cut at 1,000 bytes).
    pub text: String,
    /// Byte ranges `[start, end)` of each match within `text`.
    pub matches: Vec<MatchRange>,
    /// Up to `context_lines` lines before the match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub before: Vec<String>,
    /// Up to `context_lines` lines after the match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
}

/// A match's byte range within a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MatchRange {
    /// Byte offset of the match's start.
    pub start: usize,
    /// Byte offset just past the match's end.
    pub end: usize,
}

/// The answer to a line search.
#[derive(Debug, Clone)]
pub struct LineResults {
    /// The commit searched.
    pub head: String,
    /// Matching lines in path order, then line order.
    pub hits: Vec<SearchHit>,
    /// Whether the search stopped early (at `max_results` or its time budget).
    pub truncated: bool,
    /// Files searched.
    pub files_searched: usize,
}

/// A ranked (natural-language) search, already validated.
#[derive(Debug, Clone)]
pub struct RankedQuery {
    /// The question or keywords.
    pub text: String,
    /// Only rank paths matching this glob.
    pub path_glob: Option<String>,
    /// Only paths in this set exist for the ranking (a path-limited token's view).
    pub visible: Option<Arc<PathSet>>,
    /// Most files to return.
    pub max_results: usize,
    /// Most tokens of snippet text in the whole answer (about 4 bytes a token).
    pub token_limit: usize,
}

impl RankedQuery {
    /// Ranked retrieval for `text` in every file (or those `path_glob` matches), refused
    /// unless it keeps the limits: the text's ([`crate::rules::search_query`], `what`
    /// naming it), `max_results` from 1 to [`MAX_SEARCH_RESULTS`], `token_limit` from 1
    /// to [`MAX_TOKEN_LIMIT`], and a glob that compiles. `visible` is the caller's to
    /// set.
    pub fn new(
        what: &str,
        text: String,
        path_glob: Option<String>,
        max_results: usize,
        token_limit: usize,
    ) -> Result<Self, RuleError> {
        crate::rules::search_query(what, &text)?;
        if max_results == 0 || max_results > MAX_SEARCH_RESULTS {
            return Err(RuleError::Invalid(format!(
                "max_results must be between 1 and {MAX_SEARCH_RESULTS}"
            )));
        }
        if token_limit == 0 || token_limit > MAX_TOKEN_LIMIT {
            return Err(RuleError::Invalid(format!(
                "token_limit must be between 1 and {MAX_TOKEN_LIMIT}"
            )));
        }
        if let Some(glob) = &path_glob {
            PathGlob::new("path_glob", glob)?;
        }
        Ok(Self {
            text,
            path_glob,
            visible: None,
            max_results,
            token_limit,
        })
    }
}

/// One ranked result: a file and the line range in it that best answers the query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RankedHit {
    /// The file.
    pub path: String,
    /// Relevance (higher is better; comparable only within one answer).
    pub score: f32,
    /// First line of the snippet (1-based).
    pub start_line: u64,
    /// Last line of the snippet (inclusive).
    pub end_line: u64,
    /// The text of lines `start_line..=end_line`.
    pub snippet: String,
    /// The part the file plays, read from its path: `source`, `test`, `docs`, `bench`,
    /// `example`, `generated` or `other`. Ranking weighs source above the rest.
    #[serde(default)]
    pub role: String,
}

/// The answer to a ranked search.
#[derive(Debug, Clone)]
pub struct RankedResults {
    /// The commit the ranking reflects.
    pub head: String,
    /// Best first.
    pub hits: Vec<RankedHit>,
    /// Whether `token_limit` cut the answer short (fewer hits or shorter snippets).
    pub truncated: bool,
    /// Files in the index.
    pub files_indexed: usize,
    /// Set when the ranked index was still being built: the hits are then the line
    /// index's files holding the most of the question's words, not a ranking.
    pub partial: Option<IndexBuilding>,
}

/// How far a build of a ranked index has come, as a partial answer reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IndexBuilding {
    /// Percent built, when known (another process's build tells it through its lock
    /// file; unknown before its first report).
    pub percent: Option<u32>,
    /// Files of the tree not yet indexed, when known.
    pub files_pending: Option<u64>,
    /// Whether another process builds it (this one answers from the line index until
    /// the stored copy appears).
    pub elsewhere: bool,
}

/// What an agentic search (the hosted service's event stream) ended with.
#[derive(Debug, Clone)]
pub struct AgenticReport {
    /// The last event's name (e.g. `result`).
    pub event: String,
    /// The final report: the last event's data, as JSON when it parses.
    pub report: serde_json::Value,
    /// How many events were received.
    pub events: usize,
}

/// A repo token as it may be shown: never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TokenInfo {
    /// The name given at creation.
    pub name: String,
    /// The repos it reaches.
    pub repo_ids: Vec<RepoId>,
    /// When it stops working (Unix seconds), if ever.
    pub expires_at: Option<i64>,
    /// Read tools and routes only.
    pub read_only: bool,
    /// Path globs (ripgrep syntax, from the repo root) the token sees and changes;
    /// empty: every path.
    pub paths: Vec<String>,
    /// Whether it may mint children narrower than itself.
    pub can_delegate: bool,
    /// Its own rate limit (the embedded store only); the server's `--rate-limit`
    /// applies too, and the stricter wins.
    pub rate: Option<crate::rules::Rate>,
    /// The hashes of the tokens it was minted from, nearest first (the embedded store
    /// only; never shown).
    pub lineage: Vec<String>,
    /// The resource (an MCP endpoint's URL) the token was issued for by OAuth; it is
    /// refused everywhere else. `None`: every surface.
    pub audience: Option<String>,
}

/// What a new token should grant.
#[derive(Debug, Clone, Default)]
pub struct MintSpec {
    /// A name saying who or what it is for.
    pub name: String,
    /// The repos it reaches.
    pub repo_ids: Vec<RepoId>,
    /// Its lifetime; `None`: it never expires.
    pub ttl_seconds: Option<u64>,
    /// Read tools and routes only.
    pub read_only: bool,
    /// Path globs it is limited to; empty: every path.
    pub paths: Vec<String>,
    /// Whether it may mint children.
    pub can_delegate: bool,
    /// Its rate limit; `None`: none of its own (a child inherits its parent's).
    pub rate: Option<crate::rules::Rate>,
    /// The token it is minted from (its secret), when a token mints it.
    pub parent: Option<String>,
}

/// A freshly minted token: the one place a secret is returned.
#[derive(Debug, Clone)]
pub struct MintedToken {
    /// The secret, shown once.
    pub token: String,
    /// What it grants.
    pub info: TokenInfo,
}

/// Most bytes of a commit message body an answer carries.
pub const MAX_BODY_BYTES: usize = 4096;
/// Most commits one `list_commits` answer carries.
pub const MAX_COMMITS_PER_PAGE: usize = 200;
/// Most blame ranges one answer carries.
pub const MAX_BLAME_RANGES: usize = 1000;
/// Most bytes of patch text one diff answer carries.
pub const MAX_PATCH_BYTES: usize = 256 * 1024;
/// Most lines of context around a change in a patch.
pub const MAX_DIFF_CONTEXT: u32 = 20;

/// A revision as a caller may name one: a commit id (full or abbreviated hex), or the
/// `N`th first-parent ancestor of the branch's head (`main~N`, `HEAD~N`, `main`, `HEAD`).
/// Nothing else is accepted, so no other syntax of git's revision parser (`@{...}`,
/// `:/text`, `^{...}`, ranges, options) can be reached through it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevSpec {
    /// A commit id or a unique prefix of one (4 to 40 lowercase hex digits).
    Commit(String),
    /// The head's `N`th first-parent ancestor (0: the head itself).
    HeadAncestor(u32),
}

impl RevSpec {
    /// The expression handed to git's revision parser: a hex prefix, or
    /// `refs/heads/main~N`.
    pub fn git_expression(&self) -> String {
        match self {
            RevSpec::Commit(hex) => hex.clone(),
            RevSpec::HeadAncestor(n) => format!("refs/heads/main~{n}"),
        }
    }
}

impl fmt::Display for RevSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RevSpec::Commit(hex) => f.write_str(hex),
            RevSpec::HeadAncestor(0) => f.write_str("main"),
            RevSpec::HeadAncestor(n) => write!(f, "main~{n}"),
        }
    }
}

/// The refusal of a revision in none of the accepted forms.
fn bad_rev(raw: &str) -> RuleError {
    RuleError::Invalid(format!(
        "`{}` is not a revision this server accepts: give a commit id (4 to 40 hex digits), \
         or `main~N` / `HEAD~N` (N up to 1000000)",
        crate::text::one_line(&raw.chars().take(80).collect::<String>())
    ))
}

/// Parse a revision as a caller gave it (see [`RevSpec`]). Pure: no repository is
/// consulted; whether the commit exists is the store's question.
pub fn parse_rev(raw: &str) -> Result<RevSpec, RuleError> {
    let s = raw.trim();
    if s.is_empty() || s.len() > 64 {
        return Err(bad_rev(raw));
    }
    for base in ["main", "HEAD"] {
        if let Some(rest) = s.strip_prefix(base) {
            if rest.is_empty() {
                return Ok(RevSpec::HeadAncestor(0));
            }
            let Some(n) = rest.strip_prefix('~') else {
                return Err(bad_rev(raw));
            };
            // `main~` is git's `main~1`; digits only, no sign, at most a million.
            if n.is_empty() {
                return Ok(RevSpec::HeadAncestor(1));
            }
            if n.len() > 7 || !n.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad_rev(raw));
            }
            let n: u32 = n.parse().map_err(|_| bad_rev(raw))?;
            if n > 1_000_000 {
                return Err(bad_rev(raw));
            }
            return Ok(RevSpec::HeadAncestor(n));
        }
    }
    if (4..=40).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(RevSpec::Commit(s.to_ascii_lowercase()));
    }
    Err(bad_rev(raw))
}

/// A `since`/`until` bound as callers give it: RFC 3339, or a date (`2026-01-31`,
/// which as an upper bound means the whole day). Empty: no bound.
pub fn parse_time_bound(
    field: &str,
    raw: &str,
    end_of_day: bool,
) -> Result<Option<i64>, RuleError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    let is_date = raw.len() == 10 && raw.as_bytes()[4] == b'-' && raw.as_bytes()[7] == b'-';
    let parsed = if is_date {
        parse_rfc3339(&format!("{raw}T00:00:00Z")).map(|t| if end_of_day { t + 86_399 } else { t })
    } else {
        parse_rfc3339(raw)
    };
    parsed.map(Some).ok_or_else(|| {
        RuleError::Invalid(format!(
            "{field} `{}` is not a time: give RFC 3339 (2026-01-31T12:00:00Z) or a date (2026-01-31)",
            crate::text::one_line(&raw.chars().take(80).collect::<String>())
        ))
    })
}

/// The size of a page of commits, checked: 1 to [`MAX_COMMITS_PER_PAGE`].
pub fn commit_page_size(max_results: u32) -> Result<usize, RuleError> {
    if max_results == 0 || max_results as usize > MAX_COMMITS_PER_PAGE {
        return Err(RuleError::Invalid(format!(
            "max_results must be between 1 and {MAX_COMMITS_PER_PAGE}"
        )));
    }
    Ok(max_results as usize)
}

/// A page cursor of the history as written in answers: `<head>:<commits walked>`.
pub fn format_commit_cursor(cursor: &(String, usize)) -> String {
    format!("{}:{}", cursor.0, cursor.1)
}

/// Parse a cursor [`format_commit_cursor`] wrote. Empty: the first page.
pub fn parse_commit_cursor(raw: &str) -> Result<Option<(String, usize)>, RuleError> {
    if raw.is_empty() {
        return Ok(None);
    }
    let bad = || {
        RuleError::Invalid(
            "cursor: not a cursor this server gave; pass `next_cursor` as it came, or leave it empty"
                .into(),
        )
    };
    let (head, n) = raw.split_once(':').ok_or_else(bad)?;
    if head.len() != 40 || !head.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    Ok(Some((head.to_string(), n.parse().map_err(|_| bad())?)))
}

/// How a path changed in a commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChangeStatus {
    /// The path is new.
    Added,
    /// The path's content or mode changed.
    Modified,
    /// The path is gone.
    Deleted,
    /// The file moved from `old_path` (its content may also have changed).
    Renamed,
}

/// A path a commit changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ChangedPath {
    /// The path after the change (before it, for a deletion).
    pub path: String,
    /// How it changed.
    pub status: ChangeStatus,
    /// For a rename: where the file was before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_path: Option<String>,
}

/// One commit of a repo's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CommitInfo {
    /// The commit id (40 hex digits).
    pub id: String,
    /// Its parents' ids (none for the first commit, two for a merge).
    pub parents: Vec<String>,
    /// Who made it: the name of the token (or the operator) that wrote it.
    pub author: String,
    /// When it was made (RFC 3339, UTC).
    pub time: String,
    /// The message's first line.
    pub subject: String,
    /// The rest of the message (at most 4 KiB).
    pub body: String,
    /// True when `body` was cut at 4 KiB.
    #[serde(default)]
    pub body_truncated: bool,
    /// The paths it changed against its first parent, sorted (empty when not asked for).
    pub changes: Vec<ChangedPath>,
}

/// A search of the history, already validated.
#[derive(Debug, Clone, Default)]
pub struct CommitQuery {
    /// Only commits changing this path (a file, or a directory and what is under it).
    pub path: Option<String>,
    /// Only commits whose author name contains this (ignoring case).
    pub author: Option<String>,
    /// Only commits made at or after this time (Unix seconds).
    pub since: Option<i64>,
    /// Only commits made at or before this time (Unix seconds).
    pub until: Option<i64>,
    /// Most commits in the answer.
    pub max_results: usize,
    /// Where the previous page stopped: the head it was read at and how many commits it
    /// had passed.
    pub cursor: Option<(String, usize)>,
    /// Only paths in this set exist for the history (a path-limited token's view).
    pub visible: Option<Arc<PathSet>>,
    /// With `Some`, only commits whose message (or added/removed text) matches.
    pub matching: Option<HistoryMatch>,
    /// Cancellation, progress and time budget of the walk.
    pub control: WalkControl,
}

/// What `search_history` looks for.
#[derive(Debug, Clone)]
pub struct HistoryMatch {
    /// The text looked for (a literal, matched ignoring case in messages and exactly in
    /// diffs).
    pub text: String,
    /// Where it is looked for.
    pub mode: HistoryMode,
    /// Only files matching this glob count for `added`/`removed`.
    pub path_glob: Option<PathGlob>,
}

/// Where `search_history` looks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum HistoryMode {
    /// In commit messages (like `git log --grep`, ignoring case).
    #[default]
    Message,
    /// In lines a commit added (a commit where the text occurs more often after it
    /// than before, in some file, like `git log -S`).
    Added,
    /// In lines a commit removed (the text occurs less often after it, in some file).
    Removed,
}

/// A page of commits.
#[derive(Debug, Clone)]
pub struct CommitPage {
    /// The head the walk started at.
    pub head: String,
    /// The commits, newest first.
    pub commits: Vec<CommitInfo>,
    /// Where the next page starts, when there is one.
    pub next_cursor: Option<(String, usize)>,
    /// True when the walk stopped at its time budget before the page was full: the
    /// history past `next_cursor` was not looked at yet.
    pub budget_spent: bool,
}

/// How much of a diff to return.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DiffDetail {
    /// Only the changed paths.
    None,
    /// The changed paths with lines added and removed.
    #[default]
    Stats,
    /// Also each file's unified diff.
    Patch,
}

/// A diff asked for, already validated.
#[derive(Debug, Clone)]
pub struct DiffQuery {
    /// How much to return.
    pub detail: DiffDetail,
    /// Only files matching this glob.
    pub path_glob: Option<PathGlob>,
    /// Lines of context around each change.
    pub context_lines: u32,
    /// Skip this many files of the (filtered) list: the `next_file` of a cut answer.
    pub first_file: usize,
    /// Only paths in this set exist for the diff.
    pub visible: Option<Arc<PathSet>>,
}

/// One file of a diff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FileDiff {
    /// The path after the change (before it, for a deletion).
    pub path: String,
    /// How it changed.
    pub status: ChangeStatus,
    /// For a rename: where the file was before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_path: Option<String>,
    /// Lines added (0 with detail `none`, and for binary files).
    pub additions: u64,
    /// Lines removed.
    pub deletions: u64,
    /// True for a binary file: no lines and no patch.
    #[serde(default)]
    pub binary: bool,
    /// With detail `patch`: the unified diff of this file (`diff --git` header included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<String>,
}

/// A diff between two commits.
#[derive(Debug, Clone)]
pub struct DiffResult {
    /// The commit diffed from (`None`: the empty tree, for a first commit).
    pub from: Option<String>,
    /// The commit diffed to.
    pub to: String,
    /// The files, sorted by path.
    pub files: Vec<FileDiff>,
    /// How many files changed in all (after the view and `path_glob`).
    pub total_files: usize,
    /// When the answer stopped at the byte cap: the `first_file` that continues it.
    pub next_file: Option<usize>,
}

/// A revert asked for, already validated.
#[derive(Debug, Clone)]
pub struct RevertSpec {
    /// The commit to undo.
    pub commit: RevSpec,
    /// Refuse unless the repo's head is this commit.
    pub expected_head: Option<String>,
    /// The commit message; `Revert "<subject>"` when absent.
    pub message: Option<String>,
    /// Only paths in this set exist for the revert (a path-limited token's view).
    pub visible: Option<Arc<PathSet>>,
    /// Progress, and cancellation: a cancelled revert stops before its commit lands.
    pub control: UpdateControl,
}

/// A blame asked for, already validated.
#[derive(Debug, Clone)]
pub struct BlameQuery {
    /// The file.
    pub path: RepoPath,
    /// First line (1-based).
    pub start_line: u64,
    /// Last line (inclusive; 0: to the end).
    pub end_line: u64,
    /// The revision blamed at (`None`: the head).
    pub at: Option<RevSpec>,
}

/// A run of lines last changed by one commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct BlameRange {
    /// First line of the run (1-based, in the file as blamed).
    pub start_line: u64,
    /// Last line of the run (inclusive).
    pub end_line: u64,
    /// The commit that last changed these lines.
    pub commit: String,
    /// Its author.
    pub author: String,
    /// Its time (RFC 3339, UTC).
    pub time: String,
    /// Its message's first line.
    pub subject: String,
}

/// Who last changed each line of a file.
#[derive(Debug, Clone)]
pub struct BlameResult {
    /// The commit blamed at.
    pub commit: String,
    /// Lines in the whole file.
    pub total_lines: u64,
    /// The runs, in line order (at most [`MAX_BLAME_RANGES`]).
    pub ranges: Vec<BlameRange>,
    /// When cut at [`MAX_BLAME_RANGES`]: the line the next page starts at.
    pub next_line: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_queries_are_refused_in_the_words_of_the_surface_asking() {
        let refused = |r: Result<LineQuery, RuleError>| r.unwrap_err().to_string();
        assert_eq!(
            refused(LineQuery::new("the query", String::new(), 50, 0)),
            "the query is empty"
        );
        assert_eq!(
            refused(LineQuery::new("query", "x".repeat(4097), 50, 0)),
            "query is 4097 bytes; the limit is 4096"
        );
        assert_eq!(
            refused(LineQuery::new("query", "x".into(), 1001, 0)),
            "max_results must be between 1 and 1000"
        );
        assert_eq!(
            refused(LineQuery::new("query", "x".into(), 1, 11)),
            "context_lines must be at most 10"
        );
        let ranked = |glob: Option<&str>, tokens| {
            RankedQuery::new("the query", "x".into(), glob.map(Into::into), 50, tokens)
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        assert_eq!(
            ranked(None, 0),
            Err("token_limit must be between 1 and 100000".into())
        );
        assert!(
            ranked(Some("[z-a]"), 10)
                .unwrap_err()
                .starts_with("path_glob `[z-a]`")
        );
        assert_eq!(ranked(Some("*.rs"), 100_000), Ok(()));
    }

    #[test]
    fn repo_id_is_canonical_hyphenated_uuid() {
        let id: RepoId = "3F2A6C1E-8B0D-4C5E-9A7F-1D2E3C4B5A69".parse().unwrap();
        assert_eq!(id.to_string(), "3f2a6c1e-8b0d-4c5e-9a7f-1d2e3c4b5a69");
        assert!(
            "3f2a6c1e8b0d4c5e9a7f1d2e3c4b5a69"
                .parse::<RepoId>()
                .is_err()
        );
        assert!("../etc".parse::<RepoId>().is_err());
    }

    #[test]
    fn revisions_take_only_the_documented_forms() {
        let ok = |s: &str| parse_rev(s).unwrap();
        assert_eq!(ok("main"), RevSpec::HeadAncestor(0));
        assert_eq!(ok("HEAD~3"), RevSpec::HeadAncestor(3));
        assert_eq!(ok("main~"), RevSpec::HeadAncestor(1));
        assert_eq!(ok("main~1000000"), RevSpec::HeadAncestor(1_000_000));
        assert_eq!(ok("ABCD"), RevSpec::Commit("abcd".into()));
        let full = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(ok(full), RevSpec::Commit(full.into()));
        assert_eq!(ok("HEAD~2").git_expression(), "refs/heads/main~2");
        for bad in [
            "",
            "abc",
            "-n",
            "--all",
            "main@{1}",
            "@{-1}",
            "HEAD@{yesterday}",
            ":/fix",
            "main^",
            "main^2",
            "main~-1",
            "main~+1",
            "main~1~1",
            "main~1000001",
            "main~99999999",
            "HEAD~1x",
            "head~1",
            "origin/main",
            "main..HEAD",
            "a..b",
            "abc^{tree}",
            "abcd:path",
            "0123456789abcdef0123456789abcdef012345678",
            "ghij",
            "main~ 1",
            "refs/heads/main",
            "FETCH_HEAD",
            "@",
        ] {
            let e = parse_rev(bad).unwrap_err().to_string();
            assert!(e.contains("not a revision"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn timestamps_round_trip() {
        let s = rfc3339(1_700_000_000);
        assert_eq!(s, "2023-11-14T22:13:20Z");
        assert_eq!(parse_rfc3339(&s), Some(1_700_000_000));
        assert_eq!(
            parse_rfc3339("2023-11-14T22:13:20.123456Z"),
            Some(1_700_000_000)
        );
    }
}
