//! The rules a `git push` obeys, checked on every commit it brings before the branch
//! moves: the same rules an update obeys (paths, sizes, text only), plus git's own
//! shape of a push (one branch, forward only).
//!
//! git's receive-pack keeps a push's objects in a quarantine directory until its
//! pre-receive hook passes; the hook calls [`check_push`] with that directory, so a
//! refused push never adds an object to the repo, let alone moves the branch.

use std::collections::HashSet;
use std::path::Path;

use git2::{Delta, DiffOptions, FileMode, ObjectType, Oid, Repository, Sort};

use super::git::{BRANCH_REF, is_binary};
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
            crate::escape::one_line(path)
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
    for update in updates {
        if update.name != BRANCH_REF {
            let what = if update.name.starts_with("refs/tags/") {
                "tags cannot be pushed"
            } else {
                "only `main` can be pushed"
            };
            return Err(PushRefused::new(format!(
                "`{}` refused: {what}; {ALLOWED}",
                crate::escape::one_line(&update.name)
            )));
        }
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
        check_commits(&repo, &permanent, update.old, update.new, limits)?;
    }
    Ok(())
}

/// Check every commit reachable from `new` and not from `old`, oldest first, so the
/// first one named is the first that broke a rule.
///
/// Each commit is compared with its first parent: by induction over the history every
/// path of every tree is then checked once, whether it came with the commit, a merged
/// branch or an unrelated root (compared with the empty tree).
fn check_commits(
    repo: &Repository,
    permanent: &Repository,
    old: Oid,
    new: Oid,
    limits: &Limits,
) -> Result<(), PushRefused> {
    let mut walk = repo.revwalk().map_err(git_err)?;
    walk.set_sorting(Sort::TOPOLOGICAL | Sort::REVERSE)
        .map_err(git_err)?;
    walk.push(new).map_err(git_err)?;
    walk.hide(old).map_err(git_err)?;
    let permanent_odb = permanent.odb().map_err(git_err)?;
    let odb = repo.odb().map_err(git_err)?;
    let mut counted: HashSet<Oid> = HashSet::new();
    let mut total: usize = 0;
    for commit_id in walk {
        let commit_id = commit_id.map_err(git_err)?;
        let commit = repo.find_commit(commit_id).map_err(git_err)?;
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
        if diff.deltas().len() > limits.max_operations {
            return Err(PushRefused::new(format!(
                "commit {} changes {} paths, over the limit of {} a commit; split it",
                short(commit_id),
                diff.deltas().len(),
                limits.max_operations
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
            match file.mode() {
                FileMode::Blob | FileMode::BlobExecutable => {}
                FileMode::Link => {
                    return Err(PushRefused::at(
                        commit_id,
                        &path,
                        "symbolic links are not accepted; commit the file itself",
                    ));
                }
                FileMode::Commit => {
                    return Err(PushRefused::at(
                        commit_id,
                        &path,
                        "submodules are not accepted; commit the files instead",
                    ));
                }
                _ => {
                    return Err(PushRefused::at(
                        commit_id,
                        &path,
                        "only regular files are accepted",
                    ));
                }
            }
            let blob_id = file.id();
            let (size, kind) = odb.read_header(blob_id).map_err(git_err)?;
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
            if !counted.insert(blob_id) || permanent_odb.exists(blob_id) {
                // Checked already in this push, or already in the repo.
                continue;
            }
            total = total.saturating_add(size);
            if total > limits.max_update_bytes {
                return Err(PushRefused::at(
                    commit_id,
                    &path,
                    format!(
                        "the push brings over {} bytes of new content, the limit a push; push in several parts",
                        limits.max_update_bytes
                    ),
                ));
            }
            let blob = repo.find_blob(blob_id).map_err(git_err)?;
            let content = blob.content();
            if is_binary(content) || content.contains(&0) || std::str::from_utf8(content).is_err() {
                return Err(PushRefused::at(
                    commit_id,
                    &path,
                    "not UTF-8 text; the store holds text files only (binary files are not accepted)",
                ));
            }
        }
    }
    Ok(())
}
