//! The work-tree import of `serve --import DIR`: the repo linked to DIR, or a new import
//! of its git history (or of its files, as a snapshot); on later start-ups, the
//! directory's new commits merged into the repo's `main`.

use std::collections::BTreeMap;
use std::path::Path;

use crate::git_source::{FetchLimits, GitProgram, GitSource, SourceError};
use crate::model::RepoId;
use crate::run::config::ConfigError;
use crate::store::{MergeSpec, Store, StoreError};

/// The metadata key that versions before the `imports` table used to record which
/// directory a repo was imported from. Any repo token could write it, so it no longer
/// decides anything; a repo that still carries it for a directory with no link stops
/// `--import` with a sentence saying how to adopt it.
pub const LEGACY_IMPORTED_FROM: &str = "imported_from";

/// The repo `--import DIR` serves: the one linked to DIR in the store's `imports`
/// table (written only by the operator's own commands), or a new import linked there.
pub fn import_or_reuse(store: &Store, dir: &Path, no_ignore: bool) -> Result<RepoId, ConfigError> {
    let abs = dir.canonicalize().map_err(|e| {
        ConfigError(format!(
            "--import {}: {e}; give an existing directory",
            dir.display()
        ))
    })?;
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
            return Ok(*one);
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
    if work_tree_head(&abs).is_some() {
        match import_history(store, &abs, metadata.clone()) {
            Ok((id, files)) => {
                store.link_import(&id, &key).map_err(|e| {
                    ConfigError(format!("--import {key}: imported, but not linked: {e}"))
                })?;
                tracing::info!(repo = %id, files, dir = %key, "imported the directory's git history");
                return Ok(id);
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
    let report = store
        .import_dir_with(&abs, metadata, &|_| {}, !no_ignore)
        .map_err(|e| ConfigError(format!("--import {key}: {e}")))?;
    store
        .link_import(&report.repo_id, &key)
        .map_err(|e| ConfigError(format!("--import {key}: imported, but not linked: {e}")))?;
    tracing::info!(repo = %report.repo_id, files = report.files, dir = %key, "imported directory");
    let skipped = report.skipped_binary + report.skipped_large + report.skipped_path;
    if skipped > 0 {
        tracing::warn!(
            repo = %report.repo_id,
            "the import left out {skipped} file(s): {} binary or not UTF-8, {} over the size limit, {} with unusable paths; `scoped-repo-mcp repo skipped {}` lists them, and reading one says why it is absent",
            report.skipped_binary,
            report.skipped_large,
            report.skipped_path,
            report.repo_id
        );
    }
    Ok(report.repo_id)
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

/// Make a repo from the history of the branch checked out in the work tree `dir`:
/// its ID and how many files its head holds.
fn import_history(
    store: &Store,
    dir: &Path,
    metadata: BTreeMap<String, String>,
) -> Result<(RepoId, usize), SourceError> {
    let git = GitProgram::find((2, 32)).map_err(SourceError::Fetch)?;
    let source = GitSource::local(dir, None)?;
    let (row, outcome) = store.create_from_history(metadata, |q| {
        source.fetch_into(&git, q, &FetchLimits::default())
    })?;
    Ok((row.id, outcome.changed_files.len()))
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
