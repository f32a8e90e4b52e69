//! Repos made from git history: a fetch lands in a quarantine repository of its own,
//! every commit it brings is checked as a push's are ([`super::push::HistoryCheck`]),
//! and only then do its objects join the repo and `main` move (a fast-forward or a merge
//! commit), under the repo's one-writer lock and by compare-and-swap, as an update.
//!
//! The fetch itself (the `git` program, the network rules) belongs to the caller: these
//! functions hand it the quarantine's git directory and expect the fetched commit at
//! [`FETCHED_REF`] there. A fetch, a check or a merge that fails removes the quarantine
//! and leaves the repo exactly as it was.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use git2::{Oid, Repository};

use super::push::{HistoryCheck, HistoryRules, PushRefused};
use super::{BRANCH_REF, RepoRow, Store, StoreError, git, lock};
use crate::model::{RepoId, UpdateOutcome};

/// The ref a fetch into a quarantine leaves the fetched commit at.
pub const FETCHED_REF: &str = "refs/fetched/tip";

/// The prefix of quarantine directories under `repos/`: `.fetch-<pid>-<random>`.
pub(super) const QUARANTINE_PREFIX: &str = ".fetch-";

/// How a fetched history joined `main`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joined {
    /// `main` already held every fetched commit: nothing changed.
    UpToDate,
    /// `main` moved forward to the fetched commit.
    FastForward,
    /// A merge commit of `main` and the fetched commit.
    Merged,
}

/// How a fetched history is merged into a repo's `main`.
#[derive(Debug, Clone)]
pub struct MergeSpec {
    /// The merge commit's message, when one is needed.
    pub message: String,
    /// Who the merge commit is attributed to.
    pub author: String,
    /// Refuse (as a conflict) unless `main` is still this commit.
    pub expected_head: Option<String>,
}

/// A quarantine repository, removed when dropped.
struct Quarantine {
    path: PathBuf,
    /// Held while the quarantine is in use (see [`super::WorkLock`]); dropped after
    /// the directory is removed, fields dropping in order.
    _work: super::WorkLock,
}

impl Drop for Quarantine {
    fn drop(&mut self) {
        if self.path.exists()
            && let Err(e) = std::fs::remove_dir_all(&self.path)
        {
            tracing::warn!(dir = %self.path.display(), cause = %e, "a fetch's quarantine could not be removed");
        }
    }
}

fn refused(e: PushRefused) -> StoreError {
    let message = e.to_string();
    if message.contains("bytes of new content") {
        StoreError::TooLarge(format!(
            "the fetched history is refused, nothing changed: {message}"
        ))
    } else {
        StoreError::Invalid(format!(
            "the fetched history is refused, nothing changed: {message}"
        ))
    }
}

impl Store {
    /// A fresh quarantine repository under `repos/`, seeing the objects of
    /// `alternate` (a repo's `objects` directory) when given. Quarantines left by
    /// processes that died are removed first.
    fn quarantine(&self, alternate: Option<&Path>) -> Result<Quarantine, StoreError> {
        let repos = self.root.join("repos");
        super::sweep_interrupted(&repos);
        let path = repos.join(format!(
            "{QUARANTINE_PREFIX}{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        let work = super::WorkLock::take(&path)?;
        let q = Quarantine { path, _work: work };
        git::init_bare(&q.path)?;
        if let Some(objects) = alternate {
            let objects = objects.canonicalize()?;
            std::fs::write(
                q.path.join("objects/info/alternates"),
                format!("{}\n", objects.display()),
            )?;
        }
        Ok(q)
    }

    /// Create a repo from a git history: `fetch` fills a new repository (its argument
    /// is the git directory) and leaves the fetched commit at [`FETCHED_REF`]; every
    /// commit is checked under [`HistoryRules::fetch`], and the repo's `main` is that
    /// commit. A failure at any step leaves no repo behind.
    pub fn create_from_history<E: From<StoreError>>(
        &self,
        metadata: BTreeMap<String, String>,
        fetch: impl FnOnce(&Path) -> Result<(), E>,
    ) -> Result<(RepoRow, UpdateOutcome), E> {
        self.create_from_history_as(RepoId::new_random(), metadata, fetch)
    }

    /// [`Store::create_from_history`] under an ID chosen beforehand; the repo appears
    /// under `id` only once whole.
    pub fn create_from_history_as<E: From<StoreError>>(
        &self,
        id: RepoId,
        metadata: BTreeMap<String, String>,
        fetch: impl FnOnce(&Path) -> Result<(), E>,
    ) -> Result<(RepoRow, UpdateOutcome), E> {
        let q = self.quarantine(None)?;
        fetch(&q.path)?;
        let outcome = (|| {
            let repo = Repository::open_bare(&q.path).map_err(git::git_err)?;
            let tip = fetched_tip(&repo)?;
            HistoryCheck::new(&repo, None, HistoryRules::fetch(&self.limits))
                .and_then(|mut c| {
                    c.history(tip, None)?;
                    c.unreferenced(&q.path.join("objects"))
                })
                .map_err(refused)?;
            self.limits
                .check_quota(0, super::disk_bytes(&q.path.join("objects")))
                .map_err(|e| {
                    StoreError::TooLarge(format!(
                        "the fetched history is refused, nothing changed: {e}"
                    ))
                })?;
            repo.reference(BRANCH_REF, tip, true, "created from a git source")
                .map_err(git::git_err)?;
            repo.find_reference(FETCHED_REF)
                .and_then(|mut r| r.delete())
                .map_err(git::git_err)?;
            let tree = git::tree_at(&repo, tip)?;
            Ok::<_, StoreError>(UpdateOutcome {
                head: tip.to_string(),
                previous_head: None,
                changed_files: git::changed_paths(&repo, None, &tree)?,
            })
        })()
        .map_err(|e| self.explain(e))?;
        let row = self.register_repo(id, &q.path, metadata)?;
        if let Err(e) = self.line_index(&id) {
            tracing::warn!(repo = %id, cause = %e, "created from git, but the search index was not built; the first search builds it");
        }
        Ok((row, outcome))
    }

    /// Fetch a git history and join it to `main` of repo `id`: nothing when `main`
    /// holds it already, a fast-forward when `main` is behind it, else a merge commit.
    /// `fetch` fills a quarantine that sees the repo's objects (its argument is the
    /// quarantine's git directory) and leaves the fetched commit at [`FETCHED_REF`].
    ///
    /// Every fetched commit is checked under [`HistoryRules::fetch`] before anything
    /// joins the repo. A merge with conflicts ([`StoreError::MergeConflict`]), a
    /// history unrelated to the repo's, or a refused commit changes nothing; on success
    /// the objects move into the repo and `main` moves by compare-and-swap under the
    /// repo's writer lock, and the indexes follow as after an update.
    pub fn merge_history<E: From<StoreError>>(
        &self,
        id: &RepoId,
        spec: &MergeSpec,
        fetch: impl FnOnce(&Path) -> Result<(), E>,
    ) -> Result<(UpdateOutcome, Joined), E> {
        let h = self.handle(id)?;
        let q = self.quarantine(Some(&h.dir.join("objects")))?;
        fetch(&q.path)?;
        Ok(self
            .join_fetched(id, &q, spec)
            .map_err(|e| self.explain(e))?)
    }

    fn join_fetched(
        &self,
        id: &RepoId,
        q: &Quarantine,
        spec: &MergeSpec,
    ) -> Result<(UpdateOutcome, Joined), StoreError> {
        let h = self.handle(id)?;
        let incoming = Repository::open_bare(&q.path).map_err(git::git_err)?;
        let tip = fetched_tip(&incoming)?;
        let permanent = Repository::open_bare(&h.dir).map_err(git::git_err)?;
        let rules = HistoryRules::fetch(&self.limits);
        // Checked before the lock is taken (a long history takes a while), against
        // the head of the moment: a head that moves meanwhile only adds the repo's own
        // commits, which obeyed the rules when they landed.
        let seen_head = git::head(&permanent)?;
        let mut check = HistoryCheck::new(
            &incoming,
            Some(permanent.odb().map_err(git::git_err)?),
            rules,
        )
        .map_err(refused)?;
        check.history(tip, Some(seen_head)).map_err(refused)?;

        let _in_process = lock(&h.writer);
        let lock_file = Self::lock_writer(id, &h)?;
        let head = git::head(&permanent)?;
        if let Some(expected) = &spec.expected_head
            && !expected.eq_ignore_ascii_case(&head.to_string())
        {
            return Err(StoreError::Conflict {
                expected: expected.clone(),
                actual: head.to_string(),
            });
        }
        let unchanged = || UpdateOutcome {
            head: head.to_string(),
            previous_head: Some(head.to_string()),
            changed_files: Vec::new(),
        };
        if tip == head
            || incoming
                .graph_descendant_of(head, tip)
                .map_err(git::git_err)?
        {
            return Ok((unchanged(), Joined::UpToDate));
        }
        let (new, joined) = if incoming
            .graph_descendant_of(tip, head)
            .map_err(git::git_err)?
        {
            (tip, Joined::FastForward)
        } else {
            if let Err(e) = incoming.merge_base(head, tip) {
                if e.code() == git2::ErrorCode::NotFound {
                    return Err(StoreError::Invalid(format!(
                        "the fetched history shares no commit with this repo's `main` ({}); an unrelated history is not merged, nothing changed",
                        &head.to_string()[..12]
                    )));
                }
                return Err(git::git_err(e));
            }
            let ours = incoming.find_commit(head).map_err(git::git_err)?;
            let theirs = incoming.find_commit(tip).map_err(git::git_err)?;
            let mut index = incoming
                .merge_commits(&ours, &theirs, None)
                .map_err(git::git_err)?;
            if index.has_conflicts() {
                let mut paths = BTreeSet::new();
                for conflict in index.conflicts().map_err(git::git_err)? {
                    let conflict = conflict.map_err(git::git_err)?;
                    for entry in [conflict.ancestor, conflict.our, conflict.their]
                        .into_iter()
                        .flatten()
                    {
                        paths.insert(String::from_utf8_lossy(&entry.path).into_owned());
                    }
                }
                return Err(StoreError::MergeConflict(paths.into_iter().collect()));
            }
            let tree = index.write_tree_to(&incoming).map_err(git::git_err)?;
            let merge = git::commit_with_parents(
                &incoming,
                tree,
                &[head, tip],
                &spec.message,
                &spec.author,
            )?;
            // What the merge itself wrote (files both sides changed, merged) obeys the
            // same rules.
            check.commit(merge).map_err(refused)?;
            (merge, Joined::Merged)
        };
        let changed_files = {
            let old_tree = git::tree_at(&incoming, head)?;
            let new_tree = git::tree_at(&incoming, new)?;
            git::changed_paths(&incoming, Some(&old_tree), &new_tree)?
        };
        // Only what the history references joins the repo.
        check
            .unreferenced(&q.path.join("objects"))
            .map_err(refused)?;
        drop(check);
        drop(incoming);
        self.limits
            .check_quota(
                super::objects_bytes(&h.dir.join("objects")),
                super::disk_bytes(&q.path.join("objects")),
            )
            .map_err(|e| {
                StoreError::TooLarge(format!(
                    "the fetched history is refused, nothing changed: {e}"
                ))
            })?;
        migrate_objects(&q.path.join("objects"), &h.dir.join("objects"))?;
        let message = match joined {
            Joined::FastForward => "fast-forward to a git source",
            _ => "merge a git source",
        };
        permanent
            .reference_matching(BRANCH_REF, new, true, head, message)
            .map_err(|e| StoreError::Conflict {
                expected: head.to_string(),
                actual: format!("(moved by another writer: {})", e.message()),
            })?;
        drop(lock_file);
        self.landed(id, &permanent, new);
        Ok((
            UpdateOutcome {
                head: new.to_string(),
                previous_head: Some(head.to_string()),
                changed_files,
            },
            joined,
        ))
    }
}

fn fetched_tip(repo: &Repository) -> Result<Oid, StoreError> {
    // A history with its oldest commits cut off (a shallow source) is never taken:
    // no clone of the store could be made from it.
    if repo.path().join("shallow").exists() {
        return Err(StoreError::Invalid(
            "the source's history is shallow (incomplete); run `git fetch --unshallow` in it first"
                .into(),
        ));
    }
    let tip = repo.refname_to_id(FETCHED_REF).map_err(|_| {
        StoreError::Invalid("the fetch brought no commit (an empty repository or branch?)".into())
    })?;
    repo.find_commit(tip)
        .map(|c| c.id())
        .map_err(|_| StoreError::Invalid("the fetched ref does not name a commit".into()))
}

/// Move the objects a quarantine holds into a repo's object directory, as git's own
/// quarantine does when a push is accepted: loose objects one by one, and each pack
/// with its index last, so no reader ever sees an index whose pack is missing.
/// Objects the repo holds already are left where they were.
fn migrate_objects(from: &Path, to: &Path) -> Result<(), StoreError> {
    let mut packs: Vec<PathBuf> = Vec::new();
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "pack" {
            packs.extend(std::fs::read_dir(entry.path())?.flatten().map(|e| e.path()));
        } else if name.len() == 2 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
            let dir = to.join(&name);
            std::fs::create_dir_all(&dir)?;
            for object in std::fs::read_dir(entry.path())? {
                let object = object?;
                let target = dir.join(object.file_name());
                if !target.exists() {
                    std::fs::rename(object.path(), target)?;
                }
            }
        }
    }
    let rank = |p: &PathBuf| match p.extension().and_then(|e| e.to_str()) {
        Some("pack") => 0,
        Some("idx") => 2,
        _ => 1,
    };
    packs.retain(|p| {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        !name.starts_with("tmp_") && !name.ends_with(".keep")
    });
    packs.sort_by_key(|p| (rank(p), p.clone()));
    if !packs.is_empty() {
        std::fs::create_dir_all(to.join("pack"))?;
    }
    for pack in packs {
        let target = to.join("pack").join(pack.file_name().unwrap_or_default());
        if !target.exists() {
            std::fs::rename(&pack, target)?;
        }
    }
    Ok(())
}
