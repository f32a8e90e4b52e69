//! The audit trail: one record for every MCP tool call, REST request, token mint and
//! revocation, in the store's database.
//!
//! A record says who called (a token's name and short id, an account key's name,
//! `operator` or `anonymous`), where (the surface), what (the tool, the route template
//! or the command), on which repo, with what outcome and how long it took; for writes,
//! the paths touched and the heads before and after. It never holds a secret, a file's
//! content or a query: only words this module builds from known fields are written.
//!
//! Writing stays off every call's path: a call hands its record to a bounded channel,
//! and one thread per process writes batches in a transaction. When the channel is
//! full, or the database cannot be written (a full disk, a lock held too long), records
//! are dropped and counted, a warning is logged once, and the call goes on unharmed;
//! once writing works again a record says how many went missing.
//!
//! What a call learns while it runs (the credential the REST API resolved, a failure's
//! kind, an update's heads, a minted token's id) reaches its record through a task-local
//! [`Note`]-taking scope that the call's entry point sets up: the handlers deep inside
//! call the `note_*` functions, which do nothing outside such a scope.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rmcp::ErrorData as McpError;
use rmcp::model::{CallToolRequestParams, CallToolResponse};
use serde_json::Value;

use crate::backend::BackendError;
use crate::model::{RepoId, UpdateOutcome};
use crate::scope::{Credential, Scope};
use crate::store::secrets::{self, ACCOUNT_KEY_PREFIX, REPO_TOKEN_PREFIX};
use crate::store::{AuditRow, AuditSink, StoreError};

/// Records waiting to be written, at most; past this they are dropped and counted.
const CHANNEL_CAPACITY: usize = 4096;
/// Records written in one transaction, at most.
const BATCH_MAX: usize = 256;
/// How long a batch gathers records after its first one.
const BATCH_WAIT: Duration = Duration::from_millis(100);
/// How often records past the retention are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// The longest text written in any column, in bytes: every column is cut to it, so no
/// caller can make a record larger than a few kilobytes, whatever it sends.
const MAX_TEXT_BYTES: usize = 400;
/// Repo ids written in a record, at most; past them the column says how many more.
const MAX_REPO_IDS: usize = 8;
/// What the trail writes for a tool call naming no registered tool: the name is the
/// caller's, of any size and content.
const UNKNOWN_TOOL: &str = "(unknown tool)";

/// Where a call came in. More surfaces (git over HTTP) will come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Surface {
    /// An MCP tool call over stdio.
    Stdio,
    /// An MCP tool call over HTTP (streamable or legacy SSE).
    Http,
    /// A request to the REST API of `scoped-repo-mcp api`.
    Api,
    /// An administration command.
    Cli,
    /// A git fetch or push through `api`'s smart HTTP routes.
    Git,
}

impl Surface {
    /// The surface as the trail spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Surface::Stdio => "stdio",
            Surface::Http => "http",
            Surface::Api => "api",
            Surface::Cli => "cli",
            Surface::Git => "git",
        }
    }
}

/// Who made a call, in words safe to write down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    /// The operator's own settings or command line.
    Operator,
    /// No credential.
    Anonymous,
    /// A credential was presented and not accepted.
    Unrecognized,
    /// A repo token.
    Token {
        /// Its name.
        name: String,
        /// Its short id.
        id: String,
    },
    /// An account key.
    AccountKey {
        /// Its name.
        name: String,
        /// Its short id.
        id: String,
    },
}

impl Who {
    /// Who is behind `scope`.
    pub fn of_scope(scope: &Scope) -> Self {
        match scope.credential() {
            Credential::RepoToken(token) => Who::Token {
                name: scope.actor().to_string(),
                id: short_id(token),
            },
            Credential::Anonymous => Who::Anonymous,
            Credential::Operator | Credential::AccountKey => match scope.account_key() {
                Some((name, id)) => Who::AccountKey {
                    name: name.to_string(),
                    id: id.to_string(),
                },
                None => Who::Operator,
            },
        }
    }

    /// The credential column and the short id column.
    fn columns(&self) -> (String, Option<String>) {
        match self {
            Who::Operator => ("operator".into(), None),
            Who::Anonymous => ("anonymous".into(), None),
            Who::Unrecognized => ("unrecognized credential".into(), None),
            Who::Token { name, id } => (format!("token {name}"), Some(id.clone())),
            Who::AccountKey { name, id } => (format!("account key {name}"), Some(id.clone())),
        }
    }
}

/// The short id of a secret, as `token list` and `key list` show it: the first 12 hex
/// digits of its hash, which reveal nothing of it.
pub fn short_id(secret: &str) -> String {
    secrets::hash(secret)[..12].to_string()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

// ---- the writer ----

enum Message {
    /// Boxed, so the channel's slots stay small.
    Record(Box<AuditRow>),
    Flush(mpsc::Sender<()>),
}

struct Shared {
    /// Records lost, since the process started.
    dropped: AtomicU64,
    /// Whether the full channel has been reported in the log.
    warned_full: AtomicBool,
}

struct Writer {
    tx: Option<SyncSender<Message>>,
    thread: Option<std::thread::JoinHandle<()>>,
    shared: Arc<Shared>,
    /// A connection of its own for the records of writes, written by the caller at
    /// once (see [`Trail::record_durable`]); `None` when it could not be opened, and
    /// such records then go through the batch writer.
    durable: Option<Mutex<AuditSink>>,
}

impl Drop for Writer {
    /// Closing the channel lets the thread write what it holds and end.
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let dropped = self.shared.dropped.load(Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(dropped, "audit records were dropped during this run");
        }
    }
}

/// A process's audit trail: cheap to clone, and off when the trail is turned off.
/// The last clone to go writes what is pending before it returns.
#[derive(Clone, Default)]
pub struct Trail {
    writer: Option<Arc<Writer>>,
}

impl std::fmt::Debug for Trail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trail").field("on", &self.is_on()).finish()
    }
}

impl Trail {
    /// A trail that records nothing.
    pub fn off() -> Self {
        Self::default()
    }

    /// The trail of the data directory `data_dir`, keeping records for `retention`
    /// (zero: no trail at all). Records older than that are deleted now and about
    /// every hour. When the database cannot be opened, the server runs without a trail
    /// and says so in its log.
    pub fn open(data_dir: &Path, retention: Duration, surface: Surface) -> Self {
        if retention.is_zero() {
            tracing::info!("the audit trail is off (--audit-retention 0)");
            return Self::off();
        }
        let durable = match AuditSink::open(data_dir) {
            Ok(s) => Some(Mutex::new(s)),
            Err(e) => {
                tracing::warn!(cause = %e, "the audit trail's second connection cannot be opened; records of writes are batched like the rest");
                None
            }
        };
        let sink = match AuditSink::open(data_dir) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(cause = %e, dir = %data_dir.display(), "the audit trail cannot be opened; running without one");
                return Self::off();
            }
        };
        let (tx, rx) = mpsc::sync_channel(CHANNEL_CAPACITY);
        let shared = Arc::new(Shared {
            dropped: AtomicU64::new(0),
            warned_full: AtomicBool::new(false),
        });
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || write_loop(sink, rx, thread_shared, retention, surface));
        match thread {
            Ok(thread) => Self {
                writer: Some(Arc::new(Writer {
                    tx: Some(tx),
                    thread: Some(thread),
                    shared,
                    durable,
                })),
            },
            Err(e) => {
                tracing::warn!(cause = %e, "no thread for the audit trail; running without one");
                Self::off()
            }
        }
    }

    /// Whether records are kept.
    pub fn is_on(&self) -> bool {
        self.writer.is_some()
    }

    /// Hand `row` to the writer, every text column cut to [`MAX_TEXT_BYTES`], or drop
    /// and count it when the writer is behind.
    pub fn record(&self, mut row: AuditRow) {
        let Some(w) = &self.writer else { return };
        let Some(tx) = &w.tx else { return };
        cap_columns(&mut row);
        match tx.try_send(Message::Record(Box::new(row))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                w.shared.dropped.fetch_add(1, Ordering::Relaxed);
                if !w.shared.warned_full.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "the audit trail's writer is behind; records are dropped and counted until it catches up"
                    );
                }
            }
        }
    }

    /// Write `row` to the database now, before the call answers, for the record of a
    /// write: a server killed right after answering a mint, revocation or commit must
    /// not lose its record, which the batch written about every 100 ms would. Costs
    /// the call one small transaction; reads do not wait.
    pub async fn record_durable(&self, mut row: AuditRow) {
        let Some(w) = &self.writer else { return };
        if w.durable.is_none() {
            return self.record(row);
        }
        cap_columns(&mut row);
        let this = self.clone();
        let written = tokio::task::spawn_blocking(move || {
            let w = this.writer.as_ref().expect("checked above");
            let sink = w.durable.as_ref().expect("checked above");
            let mut sink = sink.lock().unwrap_or_else(|p| p.into_inner());
            sink.write(std::slice::from_ref(&row))
                .map_err(|e| (e, Box::new(row)))
        })
        .await;
        match written {
            Ok(Ok(())) => {}
            // Not written (database busy past its timeout, disk full): the batch
            // writer tries again, and counts it as dropped if it fails too.
            Ok(Err((e, row))) => {
                tracing::warn!(cause = %e, "a write's audit record could not be written at once; handed to the batch writer");
                self.record(*row);
            }
            Err(e) => tracing::warn!(cause = %e, "a write's audit record was lost"),
        }
    }

    /// Write every record handed over so far, waiting at most a few seconds (for an
    /// orderly shutdown, so the records outlive the process).
    pub fn flush(&self) {
        let Some(w) = &self.writer else { return };
        let Some(tx) = &w.tx else { return };
        let (ack, done) = mpsc::channel();
        if tx.send(Message::Flush(ack)).is_ok() {
            let _ = done.recv_timeout(Duration::from_secs(5));
        }
    }

    /// Records lost since the process started (channel full or database unwritable).
    pub fn dropped(&self) -> u64 {
        self.writer
            .as_ref()
            .map(|w| w.shared.dropped.load(Ordering::Relaxed))
            .unwrap_or(0)
    }
}

/// Cut every text column of `row` to [`MAX_TEXT_BYTES`].
fn cap_columns(row: &mut AuditRow) {
    for column in [
        &mut row.surface,
        &mut row.credential,
        &mut row.action,
        &mut row.outcome,
    ] {
        cut(column, MAX_TEXT_BYTES);
    }
    for column in [
        &mut row.credential_id,
        &mut row.repo,
        &mut row.reason,
        &mut row.head_before,
        &mut row.head_after,
        &mut row.subject,
        &mut row.subject_id,
    ]
    .into_iter()
    .flatten()
    {
        cut(column, MAX_TEXT_BYTES);
    }
}

/// Cut `text` to at most `max` bytes, at a character boundary.
fn cut(text: &mut String, max: usize) {
    if text.len() <= max {
        return;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
}

/// The repo column: the first [`MAX_REPO_IDS`] of `ids`, then how many more the call
/// named (`total` in all), so a call naming thousands of repos leaves a short record.
fn repo_column(total: usize, ids: impl Iterator<Item = String>) -> Option<String> {
    let shown: Vec<String> = ids.take(MAX_REPO_IDS).collect();
    if total == 0 {
        return None;
    }
    let mut column = shown.join(",");
    let more = total.saturating_sub(shown.len());
    if more > 0 {
        if !column.is_empty() {
            column.push(' ');
        }
        column.push_str(&format!("+{more} more"));
    }
    Some(column)
}

fn prune(sink: &AuditSink, retention: Duration) {
    let before = now_ms().saturating_sub(retention.as_millis().min(i64::MAX as u128) as i64);
    match sink.prune(before) {
        Ok(0) => {}
        Ok(n) => tracing::info!(deleted = n, "audit records past the retention deleted"),
        Err(e) => tracing::warn!(cause = %e, "old audit records could not be deleted"),
    }
}

/// The writer thread: wait for a record, let more gather for [`BATCH_WAIT`], write
/// what came in transactions of at most [`BATCH_MAX`] records, repeat; prune every
/// [`PRUNE_EVERY`].
///
/// While a batch gathers the thread sleeps rather than waiting on the channel: a
/// thread waiting there is woken by every record sent, which would cost each call a
/// wake-up and a context switch.
fn write_loop(
    mut sink: AuditSink,
    rx: Receiver<Message>,
    shared: Arc<Shared>,
    retention: Duration,
    surface: Surface,
) {
    let mut state = WriteState {
        shared,
        surface,
        warned: false,
        reported: 0,
    };
    prune(&sink, retention);
    let mut last_prune = Instant::now();
    let mut batch = Vec::with_capacity(BATCH_MAX);
    loop {
        if last_prune.elapsed() >= PRUNE_EVERY {
            prune(&sink, retention);
            last_prune = Instant::now();
        }
        let mut acks = Vec::new();
        let mut closed = false;
        match rx.recv_timeout(PRUNE_EVERY) {
            Ok(Message::Record(r)) => batch.push(*r),
            Ok(Message::Flush(ack)) => acks.push(ack),
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => closed = true,
        }
        if !closed && acks.is_empty() {
            std::thread::sleep(BATCH_WAIT);
        }
        while !closed {
            match rx.try_recv() {
                Ok(Message::Record(r)) => {
                    batch.push(*r);
                    if batch.len() == BATCH_MAX {
                        state.write(&mut sink, &mut batch);
                    }
                }
                Ok(Message::Flush(ack)) => acks.push(ack),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => closed = true,
            }
        }
        state.write(&mut sink, &mut batch);
        for ack in acks {
            let _ = ack.send(());
        }
        if closed {
            return;
        }
    }
}

struct WriteState {
    shared: Arc<Shared>,
    surface: Surface,
    /// Whether a failed write has been reported in the log.
    warned: bool,
    /// Dropped records already written down as such.
    reported: u64,
}

impl WriteState {
    fn write(&mut self, sink: &mut AuditSink, batch: &mut Vec<AuditRow>) {
        if batch.is_empty() {
            return;
        }
        if let Err(e) = sink.write(batch) {
            self.failed(&e, batch.len());
        } else {
            self.report_drops(sink);
        }
        batch.clear();
    }

    fn failed(&mut self, e: &StoreError, lost: usize) {
        self.shared
            .dropped
            .fetch_add(lost as u64, Ordering::Relaxed);
        if !self.warned {
            self.warned = true;
            tracing::warn!(cause = %e, "the audit trail cannot be written; records are dropped and counted until it can");
        }
    }

    /// Once writing works, a record of how many records were lost before.
    fn report_drops(&mut self, sink: &mut AuditSink) {
        let dropped = self.shared.dropped.load(Ordering::Relaxed);
        if dropped <= self.reported {
            return;
        }
        let row = AuditRow {
            at_ms: now_ms(),
            pid: std::process::id() as i64,
            surface: self.surface.as_str().into(),
            credential: "operator".into(),
            action: "audit-trail".into(),
            outcome: "error".into(),
            reason: Some(format!(
                "{} record(s) dropped (writer behind or database unwritable)",
                dropped - self.reported
            )),
            ..Default::default()
        };
        if sink.write(std::slice::from_ref(&row)).is_ok() {
            self.reported = dropped;
        }
    }
}

// ---- what a call notes while it runs ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    Refused,
    Error,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Refused => "refused",
            Outcome::Error => "error",
        }
    }
}

/// What a call learned about itself while it ran.
#[derive(Debug, Default)]
struct Note {
    who: Option<Who>,
    failure: Option<(Outcome, String)>,
    /// The repo column, already capped.
    repos: Option<String>,
    paths: Option<i64>,
    head_before: Option<String>,
    head_after: Option<String>,
    subject: Option<(String, String)>,
}

tokio::task_local! {
    static NOTE: Arc<Mutex<Note>>;
}

fn note(f: impl FnOnce(&mut Note)) {
    let _ = NOTE.try_with(|n| f(&mut n.lock().unwrap_or_else(|p| p.into_inner())));
}

/// The credential the call turned out to carry (the REST API learns it in its
/// extractor, after the record was begun).
pub(crate) fn note_credential(who: Who) {
    note(|n| n.who = Some(who));
}

/// A refusal of the call, with its reason.
pub(crate) fn note_refusal(reason: &str) {
    note(|n| n.failure = Some((Outcome::Refused, reason.to_string())));
}

/// A failure of the backend, written down by its kind only (see [`backend_kind`]),
/// since its message may quote what the caller sent.
pub(crate) fn note_backend_error(e: &BackendError) {
    note(|n| n.failure = Some((Outcome::Error, backend_kind(e))));
}

/// A failure of the server itself (a panic).
pub(crate) fn note_internal_error() {
    note(|n| n.failure = Some((Outcome::Error, "internal".into())));
}

/// An update that landed: its paths and heads.
pub fn note_update(outcome: &UpdateOutcome) {
    note(|n| {
        n.paths = Some(outcome.changed_files.len() as i64);
        n.head_before = outcome.previous_head.clone();
        n.head_after = Some(outcome.head.clone());
    });
}

/// The token a call minted or revoked, by its name and the secret itself (only its
/// short id is kept).
pub fn note_token(name: &str, token: &str) {
    let id = short_id(token);
    note(|n| n.subject = Some((name.to_string(), id)));
}

/// The repos a call reaches, when its route does not name one.
pub fn note_repos(ids: &[RepoId]) {
    let column = repo_column(ids.len(), ids.iter().map(ToString::to_string));
    note(|n| n.repos = column);
}

/// A backend failure as logs may show it: its message, unless that may quote what the
/// caller sent (a pattern that does not compile, an upstream answer echoing a request),
/// in which case only its kind.
pub(crate) fn loggable(e: &BackendError) -> std::borrow::Cow<'static, str> {
    match e {
        // A refusal may quote the pattern or glob; an upstream failure may echo the
        // request.
        BackendError::Refused(_) | BackendError::Unavailable(_) => backend_kind(e).into(),
        _ => e.to_string().into(),
    }
}

fn backend_kind(e: &BackendError) -> String {
    match e {
        BackendError::NotFound(_) => "not found",
        BackendError::Binary(_) => "binary file",
        // Not the message: it quotes the head the caller expected.
        BackendError::Conflict(_) => "conflict: the head moved",
        BackendError::Refused(_) => "refused input",
        BackendError::Unavailable(_) => "the backend could not answer",
        BackendError::Internal(_) => "internal",
    }
    .to_string()
}

/// `reason`, cut to [`MAX_TEXT_BYTES`], or withheld when it quotes any of
/// `withheld` (the call's query, glob or token) or holds something shaped like a
/// secret.
fn safe_reason(reason: &str, withheld: &[String]) -> String {
    let quotes = |w: &String| {
        let w = w.trim();
        !w.is_empty()
            && (reason.contains(w)
                || w.lines()
                    .map(str::trim)
                    .any(|l| !l.is_empty() && reason.contains(l))
                || reason.contains(format!("{w:?}").trim_matches('"')))
    };
    if withheld.iter().any(quotes) || holds_secret(reason) {
        return "refused; the reason is not recorded because it quotes the call's query, glob or a credential".into();
    }
    let mut end = reason.len().min(MAX_TEXT_BYTES);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_string()
}

/// Whether `text` holds something shaped like a token or an account key.
fn holds_secret(text: &str) -> bool {
    [REPO_TOKEN_PREFIX, ACCOUNT_KEY_PREFIX].iter().any(|p| {
        text.match_indices(p).any(|(i, _)| {
            text[i + p.len()..]
                .bytes()
                .take_while(u8::is_ascii_hexdigit)
                .count()
                >= 8
        })
    })
}

// ---- MCP tool calls ----

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
        }
    }
}

// ---- REST requests ----

/// A refusal's reason, carried on an error response for the audit layer.
#[derive(Debug, Clone)]
pub struct Refusal(pub String);

/// The axum middleware that records every request of `scoped-repo-mcp api`: the
/// route's template (never the concrete path, which may hold a token), the repo of a
/// `/repo/{id}/…` route, the credential the handler resolved, the status's outcome.
pub async fn rest_request(
    axum::extract::State(trail): axum::extract::State<Trail>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if !trail.is_on() {
        return next.run(request).await;
    }
    let started = Instant::now();
    let at_ms = now_ms();
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "(no route)".into());
    let action = format!("{} {route}", request.method());
    // Every route that is not a GET writes, but for the searches and git's fetch.
    let writes = !matches!(
        *request.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    ) && !["/retrieve", "/search", "/git-upload-pack"]
        .iter()
        .any(|r| route.ends_with(r));
    let mut segments = request.uri().path().split('/').skip(1);
    let repo = match (segments.next(), segments.next(), segments.next()) {
        (Some("v1"), Some("repo"), Some(id)) => id
            .strip_suffix(".git")
            .unwrap_or(id)
            .parse::<RepoId>()
            .ok()
            .map(|id| id.to_string()),
        _ => None,
    };
    // git's smart HTTP routes are their own surface: fetches and pushes.
    let surface = if ["/info/refs", "/git-upload-pack", "/git-receive-pack"]
        .iter()
        .any(|r| route.ends_with(r))
    {
        Surface::Git
    } else {
        Surface::Api
    };
    let presented = request
        .headers()
        .contains_key(axum::http::header::AUTHORIZATION);
    let cell = Arc::new(Mutex::new(Note::default()));
    let response = NOTE.scope(cell.clone(), next.run(request)).await;
    let note = std::mem::take(&mut *cell.lock().unwrap_or_else(|e| e.into_inner()));
    let status = response.status();
    let (outcome, reason) = if status.is_success() || status.is_redirection() {
        (Outcome::Ok, None)
    } else if status == axum::http::StatusCode::UNAUTHORIZED
        || status == axum::http::StatusCode::FORBIDDEN
        || status == axum::http::StatusCode::TOO_MANY_REQUESTS
    {
        let why = response
            .extensions()
            .get::<Refusal>()
            .map(|r| safe_reason(&r.0, &[]))
            .unwrap_or_else(|| status.to_string());
        (Outcome::Refused, Some(why))
    } else {
        (Outcome::Error, Some(status.to_string()))
    };
    let who = note.who.clone().unwrap_or(if presented {
        Who::Unrecognized
    } else {
        Who::Anonymous
    });
    let (credential, credential_id) = who.columns();
    let repo = repo.or(note.repos);
    let row = AuditRow {
        at_ms,
        pid: std::process::id() as i64,
        surface: surface.as_str().into(),
        credential,
        credential_id,
        action,
        repo,
        paths: note.paths,
        outcome: outcome.as_str().into(),
        reason,
        duration_us: started.elapsed().as_micros() as i64,
        head_before: note.head_before,
        head_after: note.head_after,
        subject: note.subject.as_ref().map(|s| s.0.clone()),
        subject_id: note.subject.map(|s| s.1),
    };
    if writes {
        trail.record_durable(row).await;
    } else {
        trail.record(row);
    }
    response
}

// ---- administration commands ----

/// The record of an administration command, written at once (the command exits
/// right after). `subject` is the token's name and its secret or short id.
pub fn command_row(
    action: &str,
    repos: &[RepoId],
    ok: Result<(), &str>,
    subject: Option<(&str, &str)>,
) -> AuditRow {
    let subject = subject.map(|(name, token)| {
        let id = if token.starts_with(REPO_TOKEN_PREFIX) || token.starts_with(ACCOUNT_KEY_PREFIX) {
            short_id(token)
        } else {
            // The short id (or its start) as `token list` shows it.
            token
                .chars()
                .take(12)
                .filter(char::is_ascii_hexdigit)
                .collect::<String>()
                .to_ascii_lowercase()
        };
        (name.to_string(), id)
    });
    let (outcome, reason) = match ok {
        Ok(()) => (Outcome::Ok, None),
        Err(why) => (Outcome::Error, Some(safe_reason(why, &[]))),
    };
    AuditRow {
        at_ms: now_ms(),
        pid: std::process::id() as i64,
        surface: Surface::Cli.as_str().into(),
        credential: "operator".into(),
        action: action.into(),
        repo: repo_column(repos.len(), repos.iter().map(ToString::to_string)),
        outcome: outcome.as_str().into(),
        reason,
        subject: subject.as_ref().map(|s| s.0.clone()),
        subject_id: subject.map(|s| s.1),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_that_quote_the_query_or_a_secret_are_withheld() {
        let q = vec!["zebra(unclosed".to_string()];
        assert!(
            safe_reason("the regex does not compile: zebra(unclosed", &q).contains("not recorded")
        );
        assert!(safe_reason("bad \"a\\nb\"", &["a\nb".to_string()]).contains("not recorded"));
        let t = format!("{REPO_TOKEN_PREFIX}{}", "ab12".repeat(10));
        assert!(safe_reason(&format!("token {t} is bad"), &[]).contains("not recorded"));
        let kept = "repo 3f2a6c1e is outside this session's scope";
        assert_eq!(safe_reason(kept, &q), kept);
        assert!(safe_reason(&"é".repeat(400), &[]).len() <= MAX_TEXT_BYTES);
    }

    #[test]
    fn the_repo_column_names_a_few_and_counts_the_rest() {
        let ids = || (0..20).map(|i| format!("id{i}"));
        assert_eq!(repo_column(0, ids().take(0)), None);
        assert_eq!(repo_column(2, ids().take(2)).unwrap(), "id0,id1");
        assert_eq!(
            repo_column(20, ids()).unwrap(),
            "id0,id1,id2,id3,id4,id5,id6,id7 +12 more"
        );
        // Named but none of them a repo id.
        assert_eq!(repo_column(3, ids().take(0)).unwrap(), "+3 more");
        let mut long = "é".repeat(1000);
        cut(&mut long, MAX_TEXT_BYTES);
        assert!(long.len() <= MAX_TEXT_BYTES && long.len() > MAX_TEXT_BYTES - 2);
    }

    fn row(n: i64) -> AuditRow {
        AuditRow {
            at_ms: n,
            surface: "stdio".into(),
            credential: "operator".into(),
            action: "read_file".into(),
            outcome: "ok".into(),
            ..Default::default()
        }
    }

    #[test]
    fn records_are_written_in_batches_and_flushed_on_the_last_drop() {
        let dir = tempfile::tempdir().unwrap();
        let trail = Trail::open(dir.path(), Duration::from_secs(3600), Surface::Stdio);
        let now = now_ms();
        for i in 0..300 {
            trail.record(row(now + i));
        }
        trail.flush();
        let store = crate::store::Store::open(dir.path(), Default::default()).unwrap();
        let q = crate::store::AuditQuery {
            limit: 1000,
            ..Default::default()
        };
        assert_eq!(store.audit(&q).unwrap().len(), 300);
        trail.record(row(now + 1000));
        drop(trail);
        assert_eq!(store.audit(&q).unwrap().len(), 301);
    }

    #[test]
    fn an_unwritable_database_drops_and_counts_and_says_so_later() {
        let dir = tempfile::tempdir().unwrap();
        let trail = Trail::open(dir.path(), Duration::from_secs(3600), Surface::Api);
        let store = crate::store::Store::open(dir.path(), Default::default()).unwrap();
        // Another connection holds the write lock past the writer's busy timeout.
        let blocker = rusqlite::Connection::open(dir.path().join("store.db")).unwrap();
        blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
        trail.record(row(now_ms()));
        trail.flush();
        assert_eq!(trail.dropped(), 1);
        blocker.execute_batch("ROLLBACK").unwrap();
        trail.record(row(now_ms()));
        trail.flush();
        let rows = store
            .audit(&crate::store::AuditQuery {
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert!(rows.iter().any(|r| {
            r.action == "audit-trail"
                && r.reason
                    .as_deref()
                    .is_some_and(|m| m.starts_with("1 record"))
        }));
    }

    #[test]
    fn retention_prunes_old_records_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(dir.path(), Default::default()).unwrap();
        store
            .record_audit(&[row(now_ms() - 2 * 3_600_000), row(now_ms())])
            .unwrap();
        let trail = Trail::open(dir.path(), Duration::from_secs(3600), Surface::Api);
        trail.flush();
        let q = crate::store::AuditQuery {
            limit: 10,
            ..Default::default()
        };
        assert_eq!(store.audit(&q).unwrap().len(), 1);
        assert!(!Trail::open(dir.path(), Duration::ZERO, Surface::Api).is_on());
    }
}
