//! Git operations on one bare repository: reading trees at a head and building the
//! commit of an update.
//!
//! git2 (libgit2) rather than gix: the store writes commits through an in-memory
//! index and moves a ref with compare-and-swap, which libgit2 does in a few calls with a
//! mature, lock-file-based ref update; gix's write side would cost more code and a much
//! larger compile for the same result.

use std::collections::BTreeSet;
use std::path::Path;

use git2::{Index, IndexEntry, IndexTime, Oid, Repository, Signature, Tree};

use super::StoreError;
use crate::model::{FileOp, UpdateControl};
use crate::paths::RepoPath;

/// The branch every store repo keeps its history on.
pub const BRANCH_REF: &str = "refs/heads/main";

/// Operations between two progress reports and cancellation checks.
const PROGRESS_EVERY: usize = 250;

const MODE_FILE: u32 = 0o100644;
const MODE_EXEC: u32 = 0o100755;

pub(crate) fn git_err(e: git2::Error) -> StoreError {
    StoreError::Git(e.message().to_string()).or_no_space()
}

/// Create a bare repository at `path` whose HEAD names `main`.
pub(crate) fn init_bare(path: &Path) -> Result<Repository, StoreError> {
    let mut opts = git2::RepositoryInitOptions::new();
    opts.bare(true).initial_head("main").mkpath(true);
    Repository::init_opts(path, &opts).map_err(git_err)
}

/// The head commit's id.
pub(crate) fn head(repo: &Repository) -> Result<Oid, StoreError> {
    repo.refname_to_id(BRANCH_REF).map_err(git_err)
}

/// The tree of commit `commit`.
pub(crate) fn tree_at(repo: &Repository, commit: Oid) -> Result<Tree<'_>, StoreError> {
    repo.find_commit(commit)
        .and_then(|c| c.tree())
        .map_err(git_err)
}

/// Every regular file of `tree` (symlinks and submodules left out), in path order,
/// with its blob id.
pub(crate) fn files(repo: &Repository, tree: &Tree<'_>) -> Result<Vec<(String, Oid)>, StoreError> {
    let mut index = Index::new().map_err(git_err)?;
    index.read_tree(tree).map_err(git_err)?;
    let _ = repo;
    Ok(index
        .iter()
        .filter(|e| e.mode == MODE_FILE || e.mode == MODE_EXEC)
        .filter_map(|e| String::from_utf8(e.path).ok().map(|p| (p, e.id)))
        .collect())
}

fn entry(path: &str, id: Oid, mode: u32, size: usize) -> IndexEntry {
    IndexEntry {
        ctime: IndexTime::new(0, 0),
        mtime: IndexTime::new(0, 0),
        dev: 0,
        ino: 0,
        mode,
        uid: 0,
        gid: 0,
        file_size: size.min(u32::MAX as usize) as u32,
        id,
        flags: path.len().min(0xfff) as u16,
        flags_extended: 0,
        path: path.as_bytes().to_vec(),
    }
}

/// The index entries at or under `dir/`, as (path, entry).
fn entries_under(index: &Index, dir: &str) -> Vec<IndexEntry> {
    let prefix = format!("{dir}/");
    let Ok(start) = index.find_prefix(prefix.as_str()) else {
        return Vec::new();
    };
    (start..index.len())
        .map_while(|i| {
            index
                .get(i)
                .filter(|e| e.path.starts_with(prefix.as_bytes()))
        })
        .collect()
}

fn file_entry(index: &Index, path: &str) -> Option<IndexEntry> {
    index.get_path(Path::new(path), 0)
}

/// Refuse a new file at `path` when a parent is a file or `path` is a directory.
fn check_free_for_file(index: &Index, path: &RepoPath) -> Result<(), StoreError> {
    let s = path.as_str();
    for (i, b) in s.bytes().enumerate() {
        if b == b'/' && file_entry(index, &s[..i]).is_some() {
            return Err(StoreError::Invalid(format!(
                "cannot create `{s}`: `{}` is a file, not a directory",
                &s[..i]
            )));
        }
    }
    if !entries_under(index, s).is_empty() {
        return Err(StoreError::Invalid(format!(
            "cannot write `{s}`: it is a directory; delete it first or choose another path"
        )));
    }
    Ok(())
}

fn add_blob(
    index: &mut Index,
    path: &str,
    id: Oid,
    mode: u32,
    size: usize,
) -> Result<(), StoreError> {
    index.add(&entry(path, id, mode, size)).map_err(git_err)
}

/// Write `content` at `path` in `index`, keeping the mode of a file it replaces.
fn write_file(
    repo: &Repository,
    index: &mut Index,
    path: &RepoPath,
    content: &[u8],
    sees: &dyn Fn(&str) -> bool,
    outside: &dyn Fn(&str) -> StoreError,
) -> Result<(), StoreError> {
    if !sees(path.as_str()) {
        return Err(outside(path.as_str()));
    }
    let existing = file_entry(index, path.as_str());
    if existing.is_none() {
        check_free_for_file(index, path)?;
    }
    let mode = existing.map(|e| e.mode).unwrap_or(MODE_FILE);
    let id = repo.blob(content).map_err(git_err)?;
    add_blob(index, path.as_str(), id, mode, content.len())
}

/// Apply `ops` in order to `index` (a copy of the head tree).
///
/// With `visible` (a path-limited token's view), files outside it behave as if they did
/// not exist: a delete or rename of a directory takes only the visible files under it,
/// a hidden file is "not found", and a write or a rename landing outside the view
/// refuses the whole update.
pub(crate) fn apply_ops(
    repo: &Repository,
    index: &mut Index,
    ops: &[FileOp],
    control: &UpdateControl,
    visible: Option<&crate::rules::PathSet>,
) -> Result<(), StoreError> {
    let sees = |p: &str| visible.is_none_or(|v| v.sees(p));
    let outside = |p: &str| {
        StoreError::Invalid(format!(
            "`{p}` is outside the paths this token may touch; nothing was changed"
        ))
    };
    let visible_file = |index: &Index, p: &str| file_entry(index, p).filter(|_| sees(p));
    let visible_under = |index: &Index, p: &str| -> Vec<IndexEntry> {
        entries_under(index, p)
            .into_iter()
            .filter(|e| sees(&String::from_utf8_lossy(&e.path)))
            .collect()
    };
    let total = ops.len() as u64;
    for (done, op) in ops.iter().enumerate() {
        if done % PROGRESS_EVERY == 0 {
            if control.is_cancelled() {
                return Err(StoreError::Cancelled);
            }
            control.report(done as u64, total);
        }
        match op {
            FileOp::Write { path, content } => {
                write_file(repo, index, path, content.as_bytes(), &sees, &outside)?
            }
            FileOp::WriteBytes { path, content } => {
                write_file(repo, index, path, content, &sees, &outside)?
            }
            FileOp::Delete { path } => {
                let under = visible_under(index, path.as_str());
                if visible_file(index, path.as_str()).is_some() {
                    index
                        .remove_path(Path::new(path.as_str()))
                        .map_err(git_err)?;
                } else if visible.is_none() && !under.is_empty() {
                    index
                        .remove_dir(Path::new(path.as_str()), 0)
                        .map_err(git_err)?;
                } else if !under.is_empty() {
                    for e in under {
                        index
                            .remove_path(Path::new(&*String::from_utf8_lossy(&e.path)))
                            .map_err(git_err)?;
                    }
                } else {
                    return Err(StoreError::FileNotFound(format!(
                        "cannot delete `{path}`: no such file or directory"
                    )));
                }
            }
            FileOp::Rename { path, new_path } => {
                if path == new_path {
                    continue;
                }
                let moving: Vec<(String, IndexEntry)> = if let Some(e) =
                    visible_file(index, path.as_str())
                {
                    vec![(new_path.as_str().to_string(), e)]
                } else {
                    if path.contains(new_path.as_str()) {
                        return Err(StoreError::Invalid(format!(
                            "cannot rename `{path}` to `{new_path}`: a directory cannot move into itself"
                        )));
                    }
                    visible_under(index, path.as_str())
                        .into_iter()
                        .map(|e| {
                            let rest = &e.path[path.as_str().len()..];
                            let mut to = new_path.as_str().as_bytes().to_vec();
                            to.extend_from_slice(rest);
                            (String::from_utf8_lossy(&to).into_owned(), e)
                        })
                        .collect()
                };
                if moving.is_empty() {
                    return Err(StoreError::FileNotFound(format!(
                        "cannot rename `{path}`: no such file or directory"
                    )));
                }
                if let Some((to, _)) = moving.iter().find(|(to, _)| !sees(to)) {
                    return Err(outside(to));
                }
                if file_entry(index, new_path.as_str()).is_some()
                    || !entries_under(index, new_path.as_str()).is_empty()
                {
                    return Err(StoreError::Invalid(format!(
                        "cannot rename `{path}` to `{new_path}`: the destination exists; delete it first"
                    )));
                }
                if visible.is_some() {
                    for (_, e) in &moving {
                        index
                            .remove_path(Path::new(&*String::from_utf8_lossy(&e.path)))
                            .map_err(git_err)?;
                    }
                } else if file_entry(index, path.as_str()).is_some() {
                    index
                        .remove_path(Path::new(path.as_str()))
                        .map_err(git_err)?;
                } else {
                    index
                        .remove_dir(Path::new(path.as_str()), 0)
                        .map_err(git_err)?;
                }
                check_free_for_file(index, new_path)?;
                for (to, e) in moving {
                    add_blob(index, &to, e.id, e.mode, e.file_size as usize)?;
                }
            }
        }
    }
    Ok(())
}

/// Fill an empty index with exactly `files`, refusing duplicates and file/directory clashes.
pub(crate) fn fill_index<C: AsRef<[u8]>>(
    repo: &Repository,
    index: &mut Index,
    files: &[(RepoPath, C)],
) -> Result<(), StoreError> {
    fill_index_with(repo, index, files, &|_| {})
}

/// [`fill_index`], calling `written` with the count of files written every 256.
pub(crate) fn fill_index_with<C: AsRef<[u8]>>(
    repo: &Repository,
    index: &mut Index,
    files: &[(RepoPath, C)],
    written: &dyn Fn(usize),
) -> Result<(), StoreError> {
    let mut seen = BTreeSet::new();
    for (i, (path, content)) in files.iter().enumerate() {
        if i % 256 == 0 {
            written(i);
        }
        if !seen.insert(path.as_str()) {
            return Err(StoreError::Invalid(format!(
                "`{path}` appears twice in the file list"
            )));
        }
        check_free_for_file(index, path)?;
        let content = content.as_ref();
        let id = {
            let _step = super::scratch_step();
            repo.blob(content).map_err(git_err)?
        };
        add_blob(index, path.as_str(), id, MODE_FILE, content.len())?;
    }
    Ok(())
}

/// Paths that differ between two trees, sorted.
pub(crate) fn changed_paths(
    repo: &Repository,
    old: Option<&Tree<'_>>,
    new: &Tree<'_>,
) -> Result<Vec<String>, StoreError> {
    let diff = repo
        .diff_tree_to_tree(old, Some(new), None)
        .map_err(git_err)?;
    let mut paths = BTreeSet::new();
    for delta in diff.deltas() {
        for file in [delta.old_file(), delta.new_file()] {
            if let Some(p) = file.path().and_then(|p| p.to_str())
                && !file.id().is_zero()
            {
                paths.insert(p.to_string());
            }
        }
    }
    Ok(paths.into_iter().collect())
}

/// The name a commit is attributed to, derived from an actor (a token's name): a valid
/// git identity whatever the name holds. Control characters and the angle brackets
/// that delimit the email become spaces, runs of spaces collapse, and an empty result
/// becomes the product's name. Names are checked when tokens are minted; this also
/// covers names stored before that check existed.
pub(crate) fn author_name(actor: &str) -> String {
    let cleaned: String = actor
        .chars()
        .map(|c| {
            if c.is_control() || matches!(c, '<' | '>' | '\u{2028}' | '\u{2029}') {
                ' '
            } else {
                c
            }
        })
        .collect();
    let name = cleaned.split_whitespace().collect::<Vec<_>>().join(" ");
    if name.is_empty() {
        "scoped-repo-mcp".to_string()
    } else {
        name
    }
}

/// The email on every commit the store writes: fixed, so no actor can shape it.
pub(crate) const AUTHOR_EMAIL: &str = "scoped-repo-mcp@localhost";

/// Write a commit of `tree_id` on top of `parent` (none for the first commit).
pub(crate) fn commit(
    repo: &Repository,
    tree_id: Oid,
    parent: Option<Oid>,
    message: &str,
    author: &str,
) -> Result<Oid, StoreError> {
    commit_with_parents(repo, tree_id, parent.as_slice(), message, author)
}

/// Write a commit of `tree_id` with `parents` (two for a merge).
pub(crate) fn commit_with_parents(
    repo: &Repository,
    tree_id: Oid,
    parents: &[Oid],
    message: &str,
    author: &str,
) -> Result<Oid, StoreError> {
    let tree = repo.find_tree(tree_id).map_err(git_err)?;
    let sig = Signature::now(&author_name(author), AUTHOR_EMAIL).map_err(git_err)?;
    let parents = parents
        .iter()
        .map(|p| repo.find_commit(*p).map_err(git_err))
        .collect::<Result<Vec<_>, _>>()?;
    let parent_refs: Vec<&git2::Commit<'_>> = parents.iter().collect();
    repo.commit(None, &sig, &sig, message, &tree, &parent_refs)
        .map_err(git_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn author_names_are_always_valid_git_identities() {
        assert_eq!(author_name("agent-42"), "agent-42");
        assert_eq!(author_name("ci\nencoding x"), "ci encoding x");
        assert_eq!(author_name("x <a@b>"), "x a@b");
        assert_eq!(author_name(" \t<>\r\n"), "scoped-repo-mcp");
        for raw in ["ci\nencoding x", "x <a@b>", "<>", "a\u{2028}b"] {
            assert!(
                Signature::now(&author_name(raw), AUTHOR_EMAIL).is_ok(),
                "{raw:?}"
            );
        }
    }
}
