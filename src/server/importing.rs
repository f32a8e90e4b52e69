//! Repos in scope whose import is still running in the background: their progress,
//! what `list_repos` shows of them, and the bounded wait of a tool call that names one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::RoleServer;
use rmcp::model::ProgressNotificationParam;
use rmcp::schemars::{self, JsonSchema};
use rmcp::service::RequestContext;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::model::RepoId;

/// How long a tool call naming a repo still being imported waits for the import before
/// it answers a tool error saying how far the import has got.
pub const DEFAULT_IMPORT_WAIT: Duration = Duration::from_secs(30);

/// How often a waiting call is sent a progress notification.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// How far an import has got.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// What it is doing: `scanning`, `reading`, `indexing`, `fetching git history`.
    pub stage: String,
    /// Files done.
    pub files_done: u64,
    /// Files in all (0 while unknown).
    pub files_total: u64,
    /// Bytes done.
    pub bytes_done: u64,
    /// Bytes in all (0 while unknown).
    pub bytes_total: u64,
}

impl Progress {
    /// One line: the stage, files and bytes done of total.
    pub fn describe(&self) -> String {
        let mut s = self.stage.clone();
        if self.files_total > 0 {
            s.push_str(&format!(
                ": {} of {} files",
                self.files_done, self.files_total
            ));
            if self.bytes_total > 0 {
                s.push_str(&format!(
                    ", {} of {}",
                    mib(self.bytes_done),
                    mib(self.bytes_total)
                ));
            }
        } else if self.files_done > 0 {
            s.push_str(&format!(": {} files found", self.files_done));
        }
        s
    }

    /// Done as a fraction, when the total is known.
    fn fraction(&self) -> Option<f64> {
        (self.files_total > 0).then(|| self.files_done as f64 / self.files_total as f64)
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Where a background import stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportState {
    /// Still running.
    Running(Progress),
    /// The repo is whole and served.
    Done,
    /// It failed; the repo does not exist.
    Failed(String),
}

/// One repo being imported: the directory it comes from and its state.
struct Pending {
    name: String,
    state: watch::Receiver<ImportState>,
}

/// The repos of a server whose import runs in the background (shared by every clone
/// of the server, and by the thread doing the import).
#[derive(Clone, Default)]
pub struct Imports {
    pending: Arc<Mutex<HashMap<RepoId, Pending>>>,
    wait: Option<Duration>,
}

impl std::fmt::Debug for Imports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Imports").finish_non_exhaustive()
    }
}

/// The import thread's end: it reports progress and the outcome through this.
pub struct ImportHandle {
    state: watch::Sender<ImportState>,
}

impl ImportHandle {
    /// Report progress.
    pub fn progress(&self, p: Progress) {
        self.state.send_replace(ImportState::Running(p));
    }

    /// The repo is whole.
    pub fn done(&self) {
        self.state.send_replace(ImportState::Done);
    }

    /// The import failed, for this reason.
    pub fn failed(&self, cause: String) {
        self.state.send_replace(ImportState::Failed(cause));
    }

    /// Where it stands now.
    pub fn state(&self) -> ImportState {
        self.state.borrow().clone()
    }
}

impl Drop for ImportHandle {
    fn drop(&mut self) {
        // A thread that ended (or panicked) without a word must not leave callers
        // waiting for ever.
        self.state.send_if_modified(|s| {
            if matches!(s, ImportState::Running(_)) {
                *s = ImportState::Failed(
                    "the import stopped unexpectedly (see the server's log)".into(),
                );
                true
            } else {
                false
            }
        });
    }
}

/// A repo still being imported, as `list_repos` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ImportingRepo {
    /// The repo's ID: usable once the import is done.
    pub repo_id: String,
    /// The imported directory's name.
    pub name: String,
    /// `importing`, or `failed` (the repo will not exist; the message says why).
    pub state: String,
    /// Files done (of `files_total`).
    pub files_done: u64,
    /// Files in all (0 while the directory is still being scanned).
    pub files_total: u64,
    /// How far it has got, or why it failed, in words.
    pub message: String,
}

/// Why a call naming a repo being imported was not run.
pub enum Held {
    /// The bound passed first.
    StillImporting(String),
    /// The import failed.
    Failed(String),
    /// The client cancelled the call.
    Cancelled,
}

impl Held {
    /// The tool error's text.
    pub fn message(self) -> String {
        match self {
            Held::StillImporting(m) | Held::Failed(m) => m,
            Held::Cancelled => "the call was cancelled while the repo was being imported".into(),
        }
    }
}

impl Imports {
    /// No import yet; calls wait up to `wait` for one.
    pub fn new(wait: Duration) -> Self {
        Self {
            pending: Default::default(),
            wait: Some(wait),
        }
    }

    /// How long a call waits for an import.
    pub fn wait(&self) -> Duration {
        self.wait.unwrap_or(DEFAULT_IMPORT_WAIT)
    }

    /// Record that repo `id` is being imported from the directory called `name`.
    pub fn begin(&self, id: RepoId, name: String) -> ImportHandle {
        let (tx, rx) = watch::channel(ImportState::Running(Progress {
            stage: "starting".into(),
            ..Progress::default()
        }));
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, Pending { name, state: rx });
        ImportHandle { state: tx }
    }

    fn state_of(&self, id: &RepoId) -> Option<(String, watch::Receiver<ImportState>)> {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .map(|p| (p.name.clone(), p.state.clone()))
    }

    /// Whether `id` is not (yet) a whole repo because of its import.
    pub fn unfinished(&self, id: &RepoId) -> bool {
        self.state_of(id)
            .is_some_and(|(_, s)| *s.borrow() != ImportState::Done)
    }

    /// `id` as `list_repos` shows it while its import is unfinished.
    pub fn listed(&self, id: &RepoId) -> Option<ImportingRepo> {
        let (name, state) = self.state_of(id)?;
        let state = state.borrow().clone();
        let (word, p, message) = match state {
            ImportState::Done => return None,
            ImportState::Running(p) => {
                let m = format!("importing ({}); tool calls on it wait for it", p.describe());
                ("importing", p, m)
            }
            ImportState::Failed(cause) => (
                "failed",
                Progress::default(),
                format!("the import failed: {cause}"),
            ),
        };
        Some(ImportingRepo {
            repo_id: id.to_string(),
            name,
            state: word.into(),
            files_done: p.files_done,
            files_total: p.files_total,
            message,
        })
    }

    /// Wait until the imports of `ids` (those still running) are done, up to the
    /// server's bound, sending `ctx` progress notifications (when it asked for them)
    /// every second meanwhile.
    pub async fn wait_for(
        &self,
        ids: &[RepoId],
        ctx: &RequestContext<RoleServer>,
    ) -> Result<(), Held> {
        let deadline = Instant::now() + self.wait();
        let token = ctx.meta.get_progress_token();
        let mut sent = 0.0_f64;
        for id in ids {
            let Some((name, mut state)) = self.state_of(id) else {
                continue;
            };
            let mut next_note = Instant::now();
            loop {
                let now = state.borrow_and_update().clone();
                let p = match now {
                    ImportState::Done => break,
                    ImportState::Failed(cause) => {
                        return Err(Held::Failed(format!(
                            "repo {id} could not be imported from `{name}`: {cause}; the repo does not exist (the server's log says more; fix the cause and start the server again)"
                        )));
                    }
                    ImportState::Running(p) => p,
                };
                if Instant::now() >= deadline {
                    return Err(Held::StillImporting(format!(
                        "repo {id} is still being imported from `{name}` ({}); try again in a moment",
                        p.describe()
                    )));
                }
                if let Some(token) = &token
                    && Instant::now() >= next_note
                {
                    // Progress must grow with every notification.
                    let value = p
                        .fraction()
                        .map_or(sent + 1.0, |f| (f * 100.0).max(sent + 0.001));
                    sent = value;
                    let mut note = ProgressNotificationParam::new(token.clone(), value);
                    if p.fraction().is_some() {
                        note = note.with_total(100.0_f64.max(value));
                    }
                    note.message = Some(format!(
                        "waiting for the import of `{name}`: {}",
                        p.describe()
                    ));
                    let _ = ctx.peer.notify_progress(note).await;
                    next_note = Instant::now() + PROGRESS_EVERY;
                }
                let wake = next_note
                    .min(deadline)
                    .max(Instant::now() + Duration::from_millis(20));
                tokio::select! {
                    changed = state.changed() => {
                        if changed.is_err() {
                            // The import thread is gone: its last word stands.
                            let last = state.borrow().clone();
                            if matches!(last, ImportState::Running(_)) {
                                return Err(Held::Failed(format!(
                                    "repo {id} could not be imported from `{name}`: the import stopped unexpectedly"
                                )));
                            }
                        }
                    }
                    _ = tokio::time::sleep_until(wake.into()) => {}
                    _ = ctx.ct.cancelled() => return Err(Held::Cancelled),
                }
            }
        }
        Ok(())
    }
}
