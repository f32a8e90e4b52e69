//! The work-tree import of `serve --import DIR`: the repo linked to DIR, or a new import
//! of its git history (or of its files, as a snapshot); on later start-ups, the
//! directory's new commits merged into the repo's `main`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use crate::git_source::{FetchLimits, GitProgram, GitSource, SourceError};
use crate::model::RepoId;
use crate::run::config::ConfigError;
use crate::server::importing::{ImportHandle, ImportState, Progress};
use crate::store::{ImportProgress, MergeSpec, Store, StoreError};

/// The metadata key that versions before the `imports` table used to record which
/// directory a repo was imported from. Any repo token could write it, so it no longer
/// decides anything; a repo that still carries it for a directory with no link stops
/// `--import` with a sentence saying how to adopt it.
pub const LEGACY_IMPORTED_FROM: &str = "imported_from";

/// What `--import DIR` serves, as known before anything is imported.
pub enum Planned {
    /// The repo linked to DIR (its new commits merged already).
    Linked(RepoId),
    /// A first import, under an ID chosen now; it runs with [`FreshImport::run`].
    Fresh(FreshImport),
}

/// A first import of a directory, not yet run: the repo's ID is known, the repo is not.
pub struct FreshImport {
    /// The ID the repo will have.
    pub id: RepoId,
    /// The directory, absolute.
    pub dir: PathBuf,
    metadata: BTreeMap<String, String>,
    no_ignore: bool,
}

/// The repo `--import DIR` serves: the one linked to DIR in the store's `imports`
/// table (written only by the operator's own commands), or a new import to be linked
/// there, planned but not run.
pub fn plan(store: &Store, dir: &Path, no_ignore: bool) -> Result<Planned, ConfigError> {
    let abs = dir.canonicalize().map_err(|e| {
        ConfigError(format!(
            "--import {}: {e}; give an existing directory",
            dir.display()
        ))
    })?;
    if !abs.is_dir() {
        return Err(ConfigError(format!(
            "--import {}: not a directory; give a directory",
            dir.display()
        )));
    }
    let key = abs.display().to_string();
    let linked = store
        .imports_of(&key)
        .map_err(|e| ConfigError(e.to_string()))?;
    match linked.as_slice() {
        [one] => {
            tracing::info!(repo = %one, dir = %key, "serving the repo imported from this directory before");
            if let Some(dir_head) = work_tree_head(&abs) {
                merge_work_tree(store, one, &abs, dir_head);
            }
            return Ok(Planned::Linked(*one));
        }
        [] => {}
        many => {
            let ids: Vec<String> = many.iter().map(ToString::to_string).collect();
            return Err(ConfigError(format!(
                "--import {key}: {} repos are linked to this directory ({}); keep one with                  `scoped-repo-mcp repo unlink ID` on the others, or serve one with --repo ID",
                ids.len(),
                ids.join(", ")
            )));
        }
    }
    let rows = store.repo_rows().map_err(|e| ConfigError(e.to_string()))?;
    let legacy: Vec<String> = rows
        .iter()
        .filter(|r| r.metadata.get(LEGACY_IMPORTED_FROM) == Some(&key))
        .map(|r| r.id.to_string())
        .collect();
    if !legacy.is_empty() {
        return Err(ConfigError(format!(
            "--import {key}: repo {} claims this directory through its `{LEGACY_IMPORTED_FROM}` metadata,              which any token on that repo could have written, so it is not trusted. If it is the repo              you imported, link it with `scoped-repo-mcp repo link ID {key}`; to import afresh,              `scoped-repo-mcp repo create --from-dir {key} --link`",
            legacy.join(", ")
        )));
    }
    let mut metadata = BTreeMap::new();
    if let Some(name) = abs.file_name().and_then(|n| n.to_str()) {
        metadata.insert("name".to_string(), name.to_string());
    }
    Ok(Planned::Fresh(FreshImport {
        id: RepoId::new_random(),
        dir: abs,
        metadata,
        no_ignore,
    }))
}

fn progress_of(p: ImportProgress) -> Progress {
    match p {
        ImportProgress::Scanning(found) => Progress {
            stage: "scanning".into(),
            files_done: found,
            ..Progress::default()
        },
        ImportProgress::Reading {
            done,
            total,
            bytes,
            total_bytes,
        } => Progress {
            stage: "reading".into(),
            files_done: done,
            files_total: total,
            bytes_done: bytes,
            bytes_total: total_bytes,
        },
        ImportProgress::Writing { done, total } => Progress {
            stage: "writing git objects".into(),
            files_done: done,
            files_total: total,
            ..Progress::default()
        },
        ImportProgress::Indexing { stage, done, total } => Progress {
            stage: stage.into(),
            files_done: done,
            files_total: total,
            ..Progress::default()
        },
    }
}

impl FreshImport {
    /// Run the import, link the repo to the directory, and say how it went on stderr
    /// and through `handle` (progress as it goes, then done or the cause of failure).
    pub fn run(self, store: &Store, handle: &ImportHandle) {
        let key = self.dir.display().to_string();
        let started = Instant::now();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let outcome = std::thread::scope(|scope| {
            // A line a second on stderr, whatever the log filter, from the latest
            // progress: steady even through stages that report none.
            let key = &key;
            scope.spawn(move || {
                while let Err(RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(Duration::from_secs(1))
                {
                    if let ImportState::Running(p) = handle.state() {
                        eprintln!(
                            "scoped-repo-mcp: importing {key} ({:.0} s): {}",
                            started.elapsed().as_secs_f64(),
                            p.describe()
                        );
                    }
                }
            });
            let outcome = self.import(store, &|p| handle.progress(p));
            drop(stop);
            outcome
        });
        match outcome {
            Ok(summary) => {
                eprintln!(
                    "scoped-repo-mcp: imported {key} into repo {} in {:.1} s: {summary}",
                    self.id,
                    started.elapsed().as_secs_f64()
                );
                handle.done();
                self.index(store, &key);
            }
            Err(cause) => {
                eprintln!("scoped-repo-mcp: the import of {key} failed: {cause}");
                tracing::error!(dir = %key, repo = %self.id, cause = %cause, "the import failed");
                handle.failed(cause);
            }
        }
    }

    /// Build the imported repo's ranked index (and its line index, if the import made
    /// none), once the repo is served: a ranked question meanwhile is answered
    /// partially, every other call as usual. A line a second on stderr says how it goes.
    fn index(&self, store: &Store, key: &str) {
        let started = Instant::now();
        let last = std::cell::Cell::new(started);
        let built = store.index_import(&self.id, &|p| {
            if let ImportProgress::Indexing { stage, done, total } = p
                && last.get().elapsed() >= Duration::from_secs(1)
            {
                last.set(Instant::now());
                eprintln!(
                    "scoped-repo-mcp: indexing {key} ({:.0} s): {stage} {done}/{total}",
                    started.elapsed().as_secs_f64()
                );
            }
        });
        if built == Some(crate::store::RankedBuild::Built) {
            eprintln!(
                "scoped-repo-mcp: built and stored the ranked index of repo {} in {:.1} s",
                self.id,
                started.elapsed().as_secs_f64()
            );
        }
    }

    /// The import itself: its summary line, or why it failed.
    fn import(&self, store: &Store, report: &dyn Fn(Progress)) -> Result<String, String> {
        let key = self.dir.display().to_string();
        let abs = &self.dir;
        if work_tree_head(abs).is_some() {
            report(Progress {
                stage: "fetching git history".into(),
                ..Progress::default()
            });
            match import_history(store, self.id, abs, self.metadata.clone()) {
                Ok(files) => {
                    store
                        .link_import(&self.id, &key)
                        .map_err(|e| format!("imported, but not linked: {e}"))?;
                    return Ok(format!(
                        "{files} file(s) at the head of its checked-out branch, with its history (committed files only)"
                    ));
                }
                Err(e) => {
                    tracing::warn!(
                        dir = %key,
                        cause = %e,
                        "the directory's git history cannot be imported; importing its files as a snapshot instead (without history; later start-ups will not merge its new commits)"
                    );
                }
            }
        }
        let imported = store
            .import_dir_as(
                self.id,
                abs,
                self.metadata.clone(),
                &|p| report(progress_of(p)),
                !self.no_ignore,
            )
            .map_err(|e| e.to_string())?;
        store
            .link_import(&imported.repo_id, &key)
            .map_err(|e| format!("imported, but not linked: {e}"))?;
        let mut summary = imported.summary();
        if imported.skipped_total() > 0 {
            summary.push_str(&format!(
                "; `scoped-repo-mcp repo skipped {}` lists the files left out, and reading one says why it is absent",
                imported.repo_id
            ));
        }
        Ok(summary)
    }
}

/// The commit checked out in `dir` when `dir` is the top of a git work tree whose HEAD
/// names a commit; `None` for any other directory (which is imported as a snapshot).
fn work_tree_head(dir: &Path) -> Option<git2::Oid> {
    let repo = git2::Repository::open(dir).ok()?;
    let top = repo.workdir()?.canonicalize().ok()?;
    if top != dir {
        return None;
    }
    repo.head().ok()?.peel_to_commit().ok().map(|c| c.id())
}

/// Make repo `id` from the history of the branch checked out in the work tree `dir`:
/// how many files its head holds.
fn import_history(
    store: &Store,
    id: RepoId,
    dir: &Path,
    metadata: BTreeMap<String, String>,
) -> Result<usize, SourceError> {
    let git = GitProgram::find((2, 32)).map_err(SourceError::Fetch)?;
    let source = GitSource::local(dir, None)?;
    let (_, outcome) = store.create_from_history_as(id, metadata, |q| {
        source.fetch_into(&git, q, &FetchLimits::default())
    })?;
    Ok(outcome.changed_files.len())
}

/// How a repo's history stands to the work tree it was imported from.
enum Relation {
    /// `main` holds the work tree's commit already.
    Holds,
    /// They share history, and the work tree has commits `main` lacks.
    Related,
}

/// On a later start-up, merge the commits of the branch checked out in `dir` (at
/// `dir_head`) into the repo's `main`: a fast-forward or a merge commit. Nothing is
/// done when `main` holds them already, or when the repo was imported as a snapshot
/// (its history shares no commit with the directory's). A conflict, or any failure,
/// leaves the store as it was and is logged as a warning; the server starts either
/// way.
fn merge_work_tree(store: &Store, id: &RepoId, dir: &Path, dir_head: git2::Oid) {
    let key = dir.display().to_string();
    let related = (|| {
        let store_head = git2::Oid::from_str(&store.head(id).ok()?).ok()?;
        let local = git2::Repository::open(dir).ok()?;
        // The store's objects seen beside the directory's, in memory only.
        local
            .odb()
            .ok()?
            .add_disk_alternate(&store.git_dir(id).join("objects").to_string_lossy())
            .ok()?;
        if store_head == dir_head || local.graph_descendant_of(store_head, dir_head).ok()? {
            return Some(Relation::Holds);
        }
        match local.merge_base(store_head, dir_head) {
            Ok(_) => Some(Relation::Related),
            Err(_) => None,
        }
    })();
    match related {
        Some(Relation::Related) => {}
        Some(Relation::Holds) => {
            tracing::info!(repo = %id, dir = %key, "the store holds the directory's commits already");
            return;
        }
        None => {
            tracing::info!(repo = %id, dir = %key, "the repo was not imported from this directory's git history (it was imported as a snapshot); its commits are not merged");
            return;
        }
    }
    let merged = (|| {
        let git = GitProgram::find((2, 32)).map_err(SourceError::Fetch)?;
        let source = GitSource::local(dir, None)?;
        let spec = MergeSpec {
            message: format!("Merge {} into main", source.describe()),
            author: "scoped-repo-mcp".into(),
            expected_head: None,
        };
        store.merge_history(id, &spec, |q| {
            source.fetch_into(&git, q, &FetchLimits::default())
        })
    })();
    match merged {
        Ok((outcome, joined)) => {
            tracing::info!(repo = %id, dir = %key, joined = ?joined, head = %outcome.head, files = outcome.changed_files.len(), "merged the directory's new commits into the store's main");
        }
        Err(SourceError::Store(StoreError::MergeConflict(paths))) => {
            let paths: Vec<String> = paths
                .iter()
                .map(|p| crate::text::one_line(p).into_owned())
                .collect();
            tracing::warn!(
                repo = %id,
                dir = %key,
                paths = %paths.join(", "),
                "the directory's new commits conflict with the store's main in {} path(s): {}; the store is unchanged. Pull the store's main into the directory (`git pull {} main`), resolve, commit, and start again",
                paths.len(),
                paths.join(", "),
                store.git_dir(id).display()
            );
        }
        Err(e) => {
            tracing::warn!(repo = %id, dir = %key, cause = %e, "the directory's new commits were not merged; the store is unchanged");
        }
    }
}
