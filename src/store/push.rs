//! The rules a `git push` obeys, checked on every commit it brings before the branch
//! moves: the same paths and sizes an update obeys (binary files are kept, within the
//! per-file cap), the repo's quota, plus git's own shape of a push (one branch,
//! forward only).
//!
//! git's receive-pack keeps a push's objects in a quarantine directory until its
//! pre-receive hook passes; the hook calls [`check_push`] with that directory, so a
//! refused push never adds an object to the repo, let alone moves the branch.
//!
//! The same check ([`HistoryCheck`]) runs on the commits a fetch of a git source brings
//! (see `history`), under [`HistoryRules::fetch`].

use std::collections::HashSet;
use std::path::Path;

use git2::{Delta, DiffOptions, ObjectType, Oid, Repository, Sort};

use super::git::BRANCH_REF;
use crate::paths::RepoPath;
use crate::rules::Limits;

/// One ref update a push asks for, as receive-pack hands it to the pre-receive hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefUpdate {
    /// The ref's commit before the push (all zeros: the ref is created).
    pub old: Oid,
    /// The commit the ref is to point to (all zeros: the ref is deleted).
    pub new: Oid,
    /// The ref's full name.
    pub name: String,
}

impl RefUpdate {
    /// Parse receive-pack's `<old> <new> <ref>` lines.
    pub fn parse_lines(input: &str) -> Result<Vec<RefUpdate>, PushRefused> {
        input
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|line| {
                let mut parts = line.splitn(3, ' ');
                let (Some(old), Some(new), Some(name)) = (parts.next(), parts.next(), parts.next())
                else {
                    return Err(PushRefused::new(format!("unexpected ref update `{line}`")));
                };
                let oid = |s: &str| {
                    Oid::from_str(s)
                        .map_err(|_| PushRefused::new(format!("unexpected ref update `{line}`")))
                };
                Ok(RefUpdate {
                    old: oid(old)?,
                    new: oid(new)?,
                    name: name.to_string(),
                })
            })
            .collect()
    }
}

/// Why a push was refused, in words git prints to the pusher as `remote: …` lines.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PushRefused(String);

impl PushRefused {
    fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }

    fn at(commit: Oid, path: &str, why: impl std::fmt::Display) -> Self {
        Self(format!(
            "commit {} adds `{}`: {why}",
            short(commit),
            crate::text::one_line(path)
        ))
    }
}

const ALLOWED: &str = "only a fast-forward of `main` (refs/heads/main) can be pushed here: no other branches, no tags, no deletions, no forced updates";

fn short(oid: Oid) -> String {
    oid.to_string()[..12].to_string()
}

fn git_err(e: git2::Error) -> PushRefused {
    PushRefused::new(format!(
        "the push could not be checked: {}; nothing changed",
        e.message()
    ))
}

/// A file's mode, exactly as its tree records it: only the modes git and libgit2 both
/// read as a regular file pass.
fn file_mode(commit_id: Oid, path: &str, mode: i32) -> Result<(), PushRefused> {
    let why = match mode {
        0o100644 | 0o100755 | 0o100664 => return Ok(()),
        0o120000 => "symbolic links are not accepted; commit the file itself".to_string(),
        0o160000 => "submodules are not accepted; commit the files instead".to_string(),
        other => format!("only regular files are accepted (its mode is {other:o})"),
    };
    Err(PushRefused::at(commit_id, path, why))
}

/// Refuse a push to any ref but `main`: no other branches, no tags.
pub fn ref_refusal(name: &str) -> Result<(), PushRefused> {
    if name == BRANCH_REF {
        return Ok(());
    }
    let what = if name.starts_with("refs/tags/") {
        "tags cannot be pushed"
    } else {
        "only `main` can be pushed"
    };
    Err(PushRefused::new(format!(
        "`{}` refused: {what}; {ALLOWED}",
        crate::text::one_line(name)
    )))
}

/// Check a push into the bare repository at `git_dir`, whose incoming objects wait in
/// `quarantine` (receive-pack's `GIT_QUARANTINE_PATH`; `None` when they are already in
/// the repo). `Ok` only when every ref update is a fast-forward of `main` from its
/// current head and every commit it brings obeys the store's rules.
pub fn check_push(
    git_dir: &Path,
    quarantine: Option<&Path>,
    updates: &[RefUpdate],
    limits: &Limits,
) -> Result<(), PushRefused> {
    let permanent = Repository::open_bare(git_dir).map_err(git_err)?;
    let repo = Repository::open_bare(git_dir).map_err(git_err)?;
    if let Some(q) = quarantine {
        repo.odb()
            .and_then(|odb| odb.add_disk_alternate(&q.to_string_lossy()))
            .map_err(git_err)?;
    }
    let head = permanent.refname_to_id(BRANCH_REF).map_err(git_err)?;
    let permanent_odb = permanent.odb().map_err(git_err)?;
    let mut check = HistoryCheck::new(&repo, Some(permanent_odb), HistoryRules::push(limits))?;
    for update in updates {
        ref_refusal(&update.name)?;
        if update.new.is_zero() {
            return Err(PushRefused::new(format!(
                "deleting `main` is not allowed; {ALLOWED}"
            )));
        }
        if update.old != head {
            return Err(PushRefused::new(format!(
                "`main` is at {} now, not {}: it moved since you fetched; pull and push again",
                short(head),
                short(update.old)
            )));
        }
        if update.new != head
            && !repo
                .graph_descendant_of(update.new, update.old)
                .map_err(git_err)?
        {
            return Err(PushRefused::new(format!(
                "non-fast-forward push refused: {} does not build on `main` ({}); pull (or rebase onto it) and push again; {ALLOWED}",
                short(update.new),
                short(update.old)
            )));
        }
        check.history(update.new, Some(update.old))?;
    }
    if let Some(q) = quarantine {
        check.unreferenced(q)?;
        let used = super::objects_bytes(&git_dir.join("objects"));
        limits
            .check_quota(used, super::disk_bytes(q))
            .map_err(|e| PushRefused::new(e.to_string()))?;
    }
    Ok(())
}

/// The rules every commit entering a repo from git obeys, whether a push brings it or
/// a fetch of a git source: the paths and file kinds an update may write, a size a
/// file, and a cap on the new content the whole intake brings.
#[derive(Debug, Clone, Copy)]
pub struct HistoryRules {
    /// Largest file, in bytes.
    pub max_file_bytes: usize,
    /// Most bytes of new file content (blobs the repo does not hold yet) in all.
    pub max_new_bytes: usize,
    /// Most paths one commit may change; `None`: no limit.
    pub max_paths_per_commit: Option<usize>,
    /// What brings the commits, as the refusals name it: a push or a fetch.
    pub intake: Intake,
}

/// What brings commits into a repo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intake {
    /// A `git push` through `api`.
    Push,
    /// A fetch of a git source (`source: {type: "git"}`, `--from-git`, `--import`).
    Fetch,
}

impl HistoryRules {
    /// The rules of a push: an update's limits, applied to every commit it brings.
    pub fn push(limits: &Limits) -> Self {
        Self {
            max_file_bytes: limits.max_file_bytes,
            max_new_bytes: limits.max_update_bytes,
            max_paths_per_commit: Some(limits.max_operations),
            intake: Intake::Push,
        }
    }

    /// The rules of a git source's fetch: the same paths, kinds and file size as a push,
    /// but a whole history may bring far more than one push: up to
    /// [`MAX_FETCHED_CONTENT_BYTES`] of new content, and a commit may change any number
    /// of paths (a project's first commit often adds more than an update may).
    pub fn fetch(limits: &Limits) -> Self {
        Self {
            max_file_bytes: limits.max_file_bytes,
            max_new_bytes: MAX_FETCHED_CONTENT_BYTES,
            max_paths_per_commit: None,
            intake: Intake::Fetch,
        }
    }
}

impl HistoryRules {
    /// The rules `repo check` holds a stored history to: a push's paths, kinds and
    /// file size, with no cap on the whole or a commit's paths.
    pub fn audit(limits: &Limits) -> Self {
        Self {
            max_new_bytes: usize::MAX,
            ..Self::fetch(limits)
        }
    }
}

/// The most new file content (uncompressed) one fetch of a git source may bring: 2 GiB.
pub const MAX_FETCHED_CONTENT_BYTES: usize = 2 * 1024 * 1024 * 1024;

/// The check of the commits one intake brings, keeping the count of new content across
/// them.
pub(crate) struct HistoryCheck<'r> {
    repo: &'r Repository,
    odb: git2::Odb<'r>,
    /// The objects the repo held before the intake; `None`: a new repo, all is new.
    permanent: Option<git2::Odb<'r>>,
    rules: HistoryRules,
    counted: HashSet<Oid>,
    total: usize,
    /// New trees whose entries were checked already.
    trees: HashSet<Oid>,
    /// Every object the intake's new commits reference that their first parents do
    /// not: what the intake may leave in the repo (see [`HistoryCheck::unreferenced`]).
    seen: HashSet<Oid>,
}

impl<'r> HistoryCheck<'r> {
    /// A check reading objects through `repo` (which sees the incoming objects), with
    /// `permanent` the objects already in the repo.
    pub(crate) fn new(
        repo: &'r Repository,
        permanent: Option<git2::Odb<'r>>,
        rules: HistoryRules,
    ) -> Result<Self, PushRefused> {
        Ok(Self {
            repo,
            odb: repo.odb().map_err(git_err)?,
            permanent,
            rules,
            counted: HashSet::new(),
            total: 0,
            trees: HashSet::new(),
            seen: HashSet::new(),
        })
    }

    /// Check every commit reachable from `new` and not from `hide`, oldest first, so
    /// the first one named is the first that broke a rule.
    ///
    /// Each commit is compared with its first parent: by induction over the history
    /// every path of every tree is then checked once, whether it came with the commit, a
    /// merged branch or an unrelated root (compared with the empty tree).
    pub(crate) fn history(&mut self, new: Oid, hide: Option<Oid>) -> Result<(), PushRefused> {
        let mut walk = self.repo.revwalk().map_err(git_err)?;
        walk.set_sorting(Sort::TOPOLOGICAL | Sort::REVERSE)
            .map_err(git_err)?;
        walk.push(new).map_err(git_err)?;
        if let Some(hide) = hide {
            walk.hide(hide).map_err(git_err)?;
        }
        for commit_id in walk {
            self.commit(commit_id.map_err(git_err)?)?;
        }
        Ok(())
    }

    /// Check every entry of a new tree, and of the new trees under it, as git reads
    /// them: each name once, in git's order, a path the store takes, and a mode of a
    /// directory or a regular file. The diff of a commit against its parent does not
    /// see everything a hand-written tree can hold (a second entry of one name, an
    /// empty directory), so the trees themselves are read. A subtree is passed over
    /// only when the first parent's tree holds it alike at the same place, never because
    /// the repo holds it: an object can sit in the repo without any checked commit
    /// referencing it.
    fn tree(
        &mut self,
        commit_id: Oid,
        tree: &git2::Tree<'_>,
        parent: Option<&git2::Tree<'_>>,
        prefix: &str,
    ) -> Result<(), PushRefused> {
        self.seen.insert(tree.id());
        if parent.is_some_and(|p| p.id() == tree.id()) || !self.trees.insert(tree.id()) {
            return Ok(());
        }
        let mut names: HashSet<Vec<u8>> = HashSet::new();
        let mut last: Option<Vec<u8>> = None;
        for entry in tree.iter() {
            let name = entry.name_bytes();
            let path = format!("{prefix}{}", String::from_utf8_lossy(name));
            if std::str::from_utf8(name).is_err() {
                return Err(PushRefused::at(
                    commit_id,
                    &path,
                    "the path is not UTF-8; rename it",
                ));
            }
            if let Err(e) = RepoPath::parse(&path) {
                return Err(PushRefused::at(commit_id, &path, e));
            }
            let mode = entry.filemode_raw();
            // git sorts a directory as if its name ended in `/`.
            let mut key = name.to_vec();
            if mode == 0o40000 {
                key.push(b'/');
            }
            if !names.insert(name.to_vec()) || last.as_ref().is_some_and(|l| *l >= key) {
                return Err(PushRefused::at(
                    commit_id,
                    &path,
                    "its tree lists it twice or out of git's order; write the tree with git",
                ));
            }
            last = Some(key);
            // An entry the first parent holds alike was checked with the parent (or
            // came with the repo's checked history); only what differs is new here.
            let before = parent.and_then(|p| p.get_name_bytes(name));
            if before
                .as_ref()
                .is_some_and(|b| b.id() == entry.id() && b.filemode_raw() == mode)
            {
                continue;
            }
            self.seen.insert(entry.id());
            match mode {
                0o40000 => {
                    let sub = entry
                        .to_object(self.repo)
                        .and_then(|o| o.peel_to_tree())
                        .map_err(|_| PushRefused::at(commit_id, &path, "not a directory"))?;
                    let before = before
                        .filter(|b| b.filemode_raw() == 0o40000)
                        .and_then(|b| b.to_object(self.repo).ok())
                        .and_then(|o| o.peel_to_tree().ok());
                    self.tree(commit_id, &sub, before.as_ref(), &format!("{path}/"))?;
                }
                other => file_mode(commit_id, &path, other)?,
            }
        }
        Ok(())
    }

    /// Refuse an intake whose quarantine (the objects directory `objects`) holds an
    /// object that none of its checked commits references and that the repo did not
    /// hold before: such an object escaped every rule (a 2 GiB blob, a tree with a
    /// `.git` entry) and a later commit could bring it into `main`
    /// unchecked, or a fetch by id could serve it. Objects the repo holds already are
    /// let pass: git completes a thin pack with copies of them.
    pub(crate) fn unreferenced(&self, objects: &Path) -> Result<(), PushRefused> {
        let stray = self.stray(objects)?;
        let Some(first) = stray.first() else {
            return Ok(());
        };
        Err(PushRefused::new(match self.rules.intake {
            Intake::Push => format!(
                "the push carries {} object(s) that no pushed commit references (the first: {first}); objects outside the pushed history are not kept: push commits only, as a plain `git push` does",
                stray.len()
            ),
            Intake::Fetch => format!(
                "the git source sent {} object(s) that no fetched commit references (the first: {first}); objects outside the fetched history are not kept",
                stray.len()
            ),
        }))
    }

    /// How many objects of `objects` (an objects directory) this check's commits do
    /// not reference and the repo did not hold before.
    pub(crate) fn count_unreferenced(&self, objects: &Path) -> Result<usize, PushRefused> {
        self.stray(objects).map(|s| s.len())
    }

    fn stray(&self, objects: &Path) -> Result<Vec<Oid>, PushRefused> {
        let odb = git2::Odb::new().map_err(git_err)?;
        odb.add_disk_alternate(&objects.to_string_lossy())
            .map_err(git_err)?;
        let mut stray: Vec<Oid> = Vec::new();
        odb.foreach(|oid| {
            if !self.seen.contains(oid) && !self.permanent.as_ref().is_some_and(|p| p.exists(*oid))
            {
                stray.push(*oid);
            }
            true
        })
        .map_err(git_err)?;
        Ok(stray)
    }

    /// Check what one commit changes against its first parent.
    pub(crate) fn commit(&mut self, commit_id: Oid) -> Result<(), PushRefused> {
        let repo = self.repo;
        let limits = self.rules;
        let commit = repo.find_commit(commit_id).map_err(git_err)?;
        self.seen.insert(commit_id);
        if commit.message_raw_bytes().contains(&0) {
            return Err(PushRefused::new(format!(
                "commit {}: its message contains a NUL byte; remove it",
                short(commit_id)
            )));
        }
        let tree = commit.tree().map_err(git_err)?;
        let parent_tree = match commit.parent(0) {
            Ok(p) => Some(p.tree().map_err(git_err)?),
            Err(_) => None,
        };
        let mut opts = DiffOptions::new();
        opts.include_typechange(true);
        let diff = repo
            .diff_tree_to_tree(parent_tree.as_ref(), Some(&tree), Some(&mut opts))
            .map_err(git_err)?;
        if let Some(max) = limits.max_paths_per_commit
            && diff.deltas().len() > max
        {
            return Err(PushRefused::new(format!(
                "commit {} changes {} paths, over the limit of {} a commit; split it",
                short(commit_id),
                diff.deltas().len(),
                max
            )));
        }
        for delta in diff.deltas() {
            if delta.status() == Delta::Deleted {
                continue;
            }
            let file = delta.new_file();
            let path = String::from_utf8_lossy(file.path_bytes().unwrap_or_default()).into_owned();
            if std::str::from_utf8(file.path_bytes().unwrap_or_default()).is_err() {
                return Err(PushRefused::at(
                    commit_id,
                    &path,
                    "the path is not UTF-8; rename it",
                ));
            }
            if let Err(e) = RepoPath::parse(&path) {
                return Err(PushRefused::at(commit_id, &path, e));
            }
            // The mode exactly as the tree records it. Not git2's `DiffFile::mode`, which
            // panics on a mode it does not know, nor libgit2's normalized one: libgit2
            // reads a hand-written `644` as a file where git reads it as a submodule, so
            // only the modes both read alike as a file pass (`100664` is what old git
            // wrote for one).
            let mode = tree
                .get_path(Path::new(&path))
                .map(|e| e.filemode_raw())
                .unwrap_or(0);
            file_mode(commit_id, &path, mode)?;
            let blob_id = file.id();
            let (size, kind) = self.odb.read_header(blob_id).map_err(git_err)?;
            if kind != ObjectType::Blob {
                return Err(PushRefused::at(commit_id, &path, "not a file"));
            }
            if size > limits.max_file_bytes {
                return Err(PushRefused::at(
                    commit_id,
                    &path,
                    format!(
                        "{size} bytes, over the limit of {} bytes a file",
                        limits.max_file_bytes
                    ),
                ));
            }
            self.seen.insert(blob_id);
            if !self.counted.insert(blob_id) {
                // Checked already in this intake.
                continue;
            }
            // A blob the repo holds already is checked all the same: holding it says
            // nothing of how it came (an object pushed once and referenced by nothing,
            // or kept from before these rules); it only adds no new bytes.
            if !self.permanent.as_ref().is_some_and(|p| p.exists(blob_id)) {
                self.total = self.total.saturating_add(size);
            }
            if self.total > limits.max_new_bytes {
                let why = match limits.intake {
                    Intake::Push => format!(
                        "the push brings over {} bytes of new content, the limit a push; push in several parts",
                        limits.max_new_bytes
                    ),
                    Intake::Fetch => format!(
                        "the fetched history brings over {} bytes of new content, the limit of one fetch of a git source",
                        limits.max_new_bytes
                    ),
                };
                return Err(PushRefused::at(commit_id, &path, why));
            }
            // Binary files are kept as they are (the indexes skip them, and the tools
            // never return them as text): only their size is checked, above.
        }
        // What the diff cannot show: entries a hand-written tree holds beyond it.
        self.tree(commit_id, &tree, parent_tree.as_ref(), "")
    }
}
