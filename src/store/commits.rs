//! Reading a repo's history: revisions resolved only within the repo's own `main`,
//! commits walked newest first with their changed paths, diffs of a commit or between
//! two, each held to a path-limited token's view.
//!
//! The readers are functions of a `git2::Repository` whose history is on
//! `refs/heads/main`: the store's own repos (through the [`Store`] methods below) and a
//! cache of a remote repo fetched over git answer alike. Every walk opens its own
//! handle on the repository rather than the store's shared reader: a long walk must not
//! hold up the reads of other calls.

use std::path::Path;

use git2::{Commit, Delta, DiffFindOptions, DiffOptions, Oid, Patch, Repository, Tree};

use super::{Store, StoreError, git};
use crate::model::{
    BlameQuery, ChangeStatus, ChangedPath, CommitInfo, CommitPage, CommitQuery, DiffDetail,
    DiffQuery, DiffResult, FileDiff, FileList, HistoryMatch, HistoryMode, MAX_BODY_BYTES,
    MAX_PATCH_BYTES, RepoId, RevSpec, RevertSpec, UpdateOutcome, rfc3339,
};
use crate::rules::PathSet;

mod raw_objects;
use raw_objects::CommitHeader;

/// The refusal of a revision that is not in this repo's history, whether it names
/// nothing, another repo's commit, or a commit a path-limited token may not see: all
/// answer alike.
fn no_such_commit(rev: &dyn std::fmt::Display) -> StoreError {
    StoreError::FileNotFound(format!(
        "no commit `{}` in this repo's history",
        crate::text::one_line(&rev.to_string())
    ))
}

/// Resolve `rev` to a commit reachable from `main`: an object that merely exists in
/// the object database (another repo's, through shared objects) is not found.
pub(super) fn resolve_in(repo: &Repository, rev: &RevSpec) -> Result<Oid, StoreError> {
    let head = git::head(repo)?;
    let object = match repo.revparse_single(&rev.git_expression()) {
        Ok(o) => o,
        Err(e) if e.code() == git2::ErrorCode::Ambiguous => {
            return Err(StoreError::Invalid(format!(
                "commit id prefix `{rev}` is ambiguous: give more of its digits"
            )));
        }
        Err(_) => return Err(no_such_commit(rev)),
    };
    if object.kind() != Some(git2::ObjectType::Commit) {
        return Err(no_such_commit(rev));
    }
    let id = object.id();
    if id != head && !repo.graph_descendant_of(head, id).map_err(git::git_err)? {
        return Err(no_such_commit(rev));
    }
    Ok(id)
}

fn status_of(delta: Delta) -> ChangeStatus {
    match delta {
        Delta::Added | Delta::Copied | Delta::Untracked => ChangeStatus::Added,
        Delta::Deleted => ChangeStatus::Deleted,
        Delta::Renamed => ChangeStatus::Renamed,
        _ => ChangeStatus::Modified,
    }
}

fn path_str(p: Option<&Path>) -> Option<String> {
    p.map(|p| p.to_string_lossy().into_owned())
}

/// Whether the set sees `path` (every path, with no set).
fn sees(visible: Option<&PathSet>, path: &str) -> bool {
    visible.is_none_or(|v| v.sees(path))
}

/// The first parent's tree of `commit`, or `None` for a first commit.
fn parent_tree<'r>(commit: &Commit<'r>) -> Result<Option<Tree<'r>>, StoreError> {
    match commit.parent(0) {
        Ok(p) => Ok(Some(p.tree().map_err(git::git_err)?)),
        Err(_) => Ok(None),
    }
}

/// The diff of two trees, no renames found.
fn plain_diff<'r>(
    repo: &'r Repository,
    old: Option<&Tree<'r>>,
    new: &Tree<'r>,
    context_lines: u32,
) -> Result<git2::Diff<'r>, StoreError> {
    let mut opts = DiffOptions::new();
    opts.context_lines(context_lines);
    repo.diff_tree_to_tree(old, Some(new), Some(&mut opts))
        .map_err(git::git_err)
}

/// The diff of two trees, renames found only when every path is visible: a rename
/// across the edge of a token's view would name a path the token may not see, so
/// under a view a move is a deletion and an addition, each shown only where visible.
fn tree_diff<'r>(
    repo: &'r Repository,
    old: Option<&Tree<'r>>,
    new: &Tree<'r>,
    visible: Option<&PathSet>,
    context_lines: u32,
) -> Result<git2::Diff<'r>, StoreError> {
    let mut diff = plain_diff(repo, old, new, context_lines)?;
    if visible.is_none() {
        diff.find_similar(Some(DiffFindOptions::new().renames(true)))
            .map_err(git::git_err)?;
    }
    Ok(diff)
}

/// A delta as a changed path, when the view sees it.
fn visible_change(delta: &git2::DiffDelta<'_>, visible: Option<&PathSet>) -> Option<ChangedPath> {
    let new = path_str(delta.new_file().path());
    let old = path_str(delta.old_file().path());
    let status = status_of(delta.status());
    let path = match status {
        ChangeStatus::Deleted => old.clone()?,
        _ => new.clone()?,
    };
    if !sees(visible, &path) {
        return None;
    }
    let old_path = (status == ChangeStatus::Renamed).then_some(old).flatten();
    Some(ChangedPath {
        path,
        status,
        old_path,
    })
}

fn changes_of(diff: &git2::Diff<'_>, visible: Option<&PathSet>) -> Vec<ChangedPath> {
    let mut out: Vec<ChangedPath> = diff
        .deltas()
        .filter_map(|d| visible_change(&d, visible))
        .collect();
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

/// One changed path between two trees, with the blobs on each side (zero where absent).
struct Changed {
    status: ChangeStatus,
    /// The path it has after the commit (before it, for a deleted one).
    path: String,
    /// The path before a rename.
    old_path: Option<String>,
    old: Oid,
    new: Oid,
    /// The type bits of its mode (a file, a symlink, a submodule) on the side it has.
    mode_type: u32,
}

impl Changed {
    /// As a changed path, when the view sees it.
    fn visible(&self, visible: Option<&PathSet>) -> Option<ChangedPath> {
        sees(visible, &self.path).then(|| ChangedPath {
            path: self.path.clone(),
            status: self.status,
            old_path: self.old_path.clone(),
        })
    }
}

/// The changes of a libgit2 diff.
fn changed_in(diff: &git2::Diff<'_>) -> Vec<Changed> {
    diff.deltas()
        .filter_map(|d| {
            let status = status_of(d.status());
            let new = path_str(d.new_file().path());
            let old = path_str(d.old_file().path());
            let path = match status {
                ChangeStatus::Deleted => old.clone()?,
                _ => new?,
            };
            Some(Changed {
                status,
                path,
                old_path: (status == ChangeStatus::Renamed).then_some(old).flatten(),
                old: d.old_file().id(),
                new: d.new_file().id(),
                mode_type: u32::from(match status {
                    ChangeStatus::Deleted => d.old_file().mode(),
                    _ => d.new_file().mode(),
                }) & 0o170000,
            })
        })
        .collect()
}

/// The changes between the trees `old` and `new` without renames, as
/// `diff_tree_to_tree` finds them (a file whose type changes is a deletion and an
/// addition), from comparing the trees' entries: subtrees that are the same object on
/// both sides are never read. libgit2's diff reads and sorts every entry of each
/// differing tree through its iterators, several times the cost.
fn plain_changes(
    repo: &Repository,
    old: Option<Oid>,
    new: Oid,
    out: &mut Vec<Changed>,
) -> Result<(), StoreError> {
    if old == Some(new) {
        return Ok(());
    }
    walk(repo, old, Some(new), "", out)
}

fn load<'r>(repo: &'r Repository, id: Option<Oid>) -> Result<Option<Tree<'r>>, StoreError> {
    id.map(|id| repo.find_tree(id))
        .transpose()
        .map_err(git::git_err)
}
fn is_tree(e: &git2::TreeEntry<'_>) -> bool {
    e.filemode() & 0o170000 == 0o040000
}
fn join(prefix: &str, name: &[u8]) -> String {
    let name = String::from_utf8_lossy(name);
    if prefix.is_empty() {
        name.into_owned()
    } else {
        format!("{prefix}/{name}")
    }
}
/// Git's order of tree entries: a directory sorts as if its name ended in `/`.
fn order(a: &git2::TreeEntry<'_>, b: &git2::TreeEntry<'_>) -> std::cmp::Ordering {
    let end = |e: &git2::TreeEntry<'_>| -> &'static [u8] { if is_tree(e) { b"/" } else { b"" } };
    let (ae, be) = (end(a), end(b));
    a.name_bytes()
        .iter()
        .chain(ae)
        .cmp(b.name_bytes().iter().chain(be))
}
/// Every file below `tree` (or `tree` itself, a file) as added or deleted.
fn whole(
    repo: &Repository,
    e: &git2::TreeEntry<'_>,
    path: String,
    status: ChangeStatus,
    out: &mut Vec<Changed>,
) -> Result<(), StoreError> {
    if is_tree(e) {
        let tree = repo.find_tree(e.id()).map_err(git::git_err)?;
        for child in tree.iter() {
            let p = join(&path, child.name_bytes());
            whole(repo, &child, p, status, out)?;
        }
        return Ok(());
    }
    let (old, new) = match status {
        ChangeStatus::Deleted => (e.id(), Oid::zero()),
        _ => (Oid::zero(), e.id()),
    };
    out.push(Changed {
        status,
        path,
        old_path: None,
        old,
        new,
        mode_type: e.filemode() as u32 & 0o170000,
    });
    Ok(())
}
fn walk(
    repo: &Repository,
    old: Option<Oid>,
    new: Option<Oid>,
    prefix: &str,
    out: &mut Vec<Changed>,
) -> Result<(), StoreError> {
    let (a, b) = (load(repo, old)?, load(repo, new)?);
    let mut a = a.iter().flat_map(|t| t.iter()).peekable();
    let mut b = b.iter().flat_map(|t| t.iter()).peekable();
    loop {
        let step = match (a.peek(), b.peek()) {
            (None, None) => return Ok(()),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (Some(x), Some(y)) => order(x, y),
        };
        match step {
            std::cmp::Ordering::Less => {
                let x = a.next().expect("peeked");
                let p = join(prefix, x.name_bytes());
                whole(repo, &x, p, ChangeStatus::Deleted, out)?;
            }
            std::cmp::Ordering::Greater => {
                let y = b.next().expect("peeked");
                let p = join(prefix, y.name_bytes());
                whole(repo, &y, p, ChangeStatus::Added, out)?;
            }
            std::cmp::Ordering::Equal => {
                let (x, y) = (a.next().expect("peeked"), b.next().expect("peeked"));
                let p = join(prefix, x.name_bytes());
                entry_changes(repo, Some(&x), Some(&y), p, out)?;
            }
        }
    }
}

/// The changes between two entries at one path (`None`: no entry there), each a file
/// or a directory.
fn entry_changes(
    repo: &Repository,
    x: Option<&git2::TreeEntry<'_>>,
    y: Option<&git2::TreeEntry<'_>>,
    path: String,
    out: &mut Vec<Changed>,
) -> Result<(), StoreError> {
    match (x, y) {
        (None, None) => Ok(()),
        (Some(x), None) => whole(repo, x, path, ChangeStatus::Deleted, out),
        (None, Some(y)) => whole(repo, y, path, ChangeStatus::Added, out),
        (Some(x), Some(y)) => {
            if x.id() == y.id() && x.filemode() == y.filemode() {
                return Ok(());
            }
            if is_tree(x) && is_tree(y) {
                walk(repo, Some(x.id()), Some(y.id()), &path, out)
            } else if x.filemode() & 0o170000 != y.filemode() & 0o170000 {
                whole(repo, x, path.clone(), ChangeStatus::Deleted, out)?;
                whole(repo, y, path, ChangeStatus::Added, out)
            } else {
                out.push(Changed {
                    status: ChangeStatus::Modified,
                    path,
                    old_path: None,
                    old: x.id(),
                    new: y.id(),
                    mode_type: y.filemode() as u32 & 0o170000,
                });
                Ok(())
            }
        }
    }
}

/// The changes between two trees as the answer shows them: renames found (as
/// [`tree_diff`] does) only when every path is visible, and only when the commit both
/// added and deleted a file, the one case they change anything. As `git diff -M`
/// does (see [`with_renames`]), a deleted file whose exact content an added file of the same type has is
/// paired first, with no similarity measured; libgit2's rename detection then runs on
/// the added and deleted files left alone (the rest of the trees is never read again),
/// which spares it measuring every pair of a commit that moves many files.
fn tree_changes(
    repo: &Repository,
    old: Option<Oid>,
    new: Oid,
    visible: Option<&PathSet>,
) -> Result<Vec<Changed>, StoreError> {
    let mut out = Vec::new();
    plain_changes(repo, old, new, &mut out)?;
    if visible.is_some() {
        return Ok(out);
    }
    with_renames(repo, old, new, out)
}

/// The changes under `path` (a file or a directory) between the trees `old` and
/// `new`, renames found among them alone, as `git log --name-status -- PATH` lists
/// them: a file moved in from elsewhere is added, one moved out deleted. Only the
/// subtrees on the path are read.
fn changes_under(
    repo: &Repository,
    old: Option<Oid>,
    new: Oid,
    path: &str,
    visible: Option<&PathSet>,
) -> Result<Vec<Changed>, StoreError> {
    let at = |tree: Option<Oid>| -> Result<Option<git2::TreeEntry<'static>>, StoreError> {
        let Some(tree) = tree else { return Ok(None) };
        let tree = repo.find_tree(tree).map_err(git::git_err)?;
        Ok(tree.get_path(Path::new(path)).ok().map(|e| e.to_owned()))
    };
    let (x, y) = (at(old)?, at(Some(new))?);
    let mut out = Vec::new();
    entry_changes(repo, x.as_ref(), y.as_ref(), path.to_string(), &mut out)?;
    if visible.is_some() {
        return Ok(out);
    }
    let mut out = with_renames(repo, old, new, out)?;
    // The whole diff decides where a file took a directory's place (see
    // `with_renames`); what it found elsewhere is not this path's.
    out.retain(|c| under(path, &c.path));
    Ok(out)
}

/// `out`, the changes between the trees `old` and `new` without renames (all of
/// them, or those under one path), with renames found among them.
fn with_renames(
    repo: &Repository,
    old: Option<Oid>,
    new: Oid,
    out: Vec<Changed>,
) -> Result<Vec<Changed>, StoreError> {
    if !has_add_and_delete(&out) {
        return Ok(out);
    }
    let (paired, mut kept): (Vec<Changed>, Vec<Changed>) = out
        .into_iter()
        .partition(|c| matches!(c.status, ChangeStatus::Added | ChangeStatus::Deleted));
    let (mut added, mut deleted): (Vec<Changed>, Vec<Changed>) = paired
        .into_iter()
        .partition(|c| c.status == ChangeStatus::Added);
    let mut left_added = Vec::new();
    for a in added.drain(..) {
        // Of the deleted files with the same content and type, one with the same
        // file name first, as git prefers.
        let same = |d: &Changed| d.old == a.new && d.mode_type == a.mode_type;
        let name = |p: &str| p.rsplit('/').next().map(str::to_owned);
        let at = deleted
            .iter()
            .position(|d| same(d) && name(&d.path) == name(&a.path))
            .or_else(|| deleted.iter().position(same));
        match at {
            Some(i) => {
                let d = deleted.remove(i);
                kept.push(Changed {
                    status: ChangeStatus::Renamed,
                    path: a.path,
                    old_path: Some(d.path),
                    old: d.old,
                    new: a.new,
                    mode_type: a.mode_type,
                });
            }
            None => left_added.push(a),
        }
    }
    if left_added.is_empty() || deleted.is_empty() {
        kept.extend(left_added);
        kept.extend(deleted);
        return Ok(kept);
    }
    let old_tree = old
        .map(|id| repo.find_tree(id))
        .transpose()
        .map_err(git::git_err)?;
    let new_tree = repo.find_tree(new).map_err(git::git_err)?;
    // libgit2 takes a path given as a directory too: where a file that is left took
    // the place of a directory (or the reverse), the files paired above would be found
    // again, so the whole diff decides, as before any pairing.
    let left: std::collections::HashSet<&str> = left_added
        .iter()
        .chain(&deleted)
        .map(|c| c.path.as_str())
        .collect();
    let clash = left_added.iter().chain(&deleted).chain(&kept).any(|c| {
        std::iter::once(c.path.as_str())
            .chain(c.old_path.as_deref())
            .any(|p| p.match_indices('/').any(|(i, _)| left.contains(&p[..i])))
    });
    if clash {
        return Ok(changed_in(&tree_diff(
            repo,
            old_tree.as_ref(),
            &new_tree,
            None,
            0,
        )?));
    }
    let mut opts = DiffOptions::new();
    opts.context_lines(0).disable_pathspec_match(true);
    for c in left_added.iter().chain(&deleted) {
        opts.pathspec(c.path.as_str());
    }
    let mut diff = repo
        .diff_tree_to_tree(old_tree.as_ref(), Some(&new_tree), Some(&mut opts))
        .map_err(git::git_err)?;
    diff.find_similar(Some(DiffFindOptions::new().renames(true)))
        .map_err(git::git_err)?;
    kept.extend(changed_in(&diff));
    Ok(kept)
}

fn has_add_and_delete(changes: &[Changed]) -> bool {
    changes.iter().any(|c| c.status == ChangeStatus::Added)
        && changes.iter().any(|c| c.status == ChangeStatus::Deleted)
}

/// The visible ones of `changes`, sorted by path.
fn visible_changes(changes: &[Changed], visible: Option<&PathSet>) -> Vec<ChangedPath> {
    let mut out: Vec<ChangedPath> = changes.iter().filter_map(|c| c.visible(visible)).collect();
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out
}

fn cut(text: &str, max: usize) -> (&str, bool) {
    if text.len() <= max {
        return (text, false);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (&text[..end], true)
}

fn info_of(commit: &Commit<'_>, changes: Vec<ChangedPath>) -> CommitInfo {
    let header = CommitHeader {
        tree: commit.tree_id(),
        parents: commit.parent_ids().collect(),
        time: commit.time().seconds(),
        author: commit.author().name_bytes().to_vec(),
        message: commit.message_bytes().to_vec(),
    };
    info_from(commit.id(), &header, changes)
}

/// A commit as answered, from what a walk read of it.
fn info_from(id: Oid, header: &CommitHeader, changes: Vec<ChangedPath>) -> CommitInfo {
    let message = String::from_utf8_lossy(&header.message).into_owned();
    let mut lines = message.splitn(2, '\n');
    let subject = lines.next().unwrap_or("").trim_end().to_string();
    let rest = lines.next().unwrap_or("").trim();
    let (body, body_truncated) = cut(rest, MAX_BODY_BYTES);
    CommitInfo {
        id: id.to_string(),
        parents: header.parents.iter().map(|p| p.to_string()).collect(),
        author: String::from_utf8_lossy(&header.author).into_owned(),
        time: rfc3339(header.time),
        subject,
        body: body.to_string(),
        body_truncated,
        changes,
    }
}

/// The `path` test of one walk: whether the entry at a path (a file or a directory)
/// differs between a commit's tree and its first parent's, the test `git log -- PATH`
/// makes before any diff. It descends one component at a time on both sides and stops
/// at the first that is the same object on both, so a commit that left the path's top
/// directory alone costs one entry lookup in each root tree. Each tree's entry is
/// looked up once a walk: walking newest first, a commit's tree is the old side of its
/// child and the new side of its own test.
struct PathProbe<'p> {
    names: Vec<&'p str>,
    /// The entry (its id, and whether it is a directory) for a component's depth and
    /// the tree it is looked up in.
    entries: std::collections::HashMap<(usize, Oid), Option<(Oid, bool)>>,
}

/// Most tree entries one [`PathProbe`] keeps (about 70 bytes each).
const MAX_PROBED_TREES: usize = 1 << 16;

impl<'p> PathProbe<'p> {
    fn new(path: &'p str) -> Self {
        Self {
            names: path.split('/').collect(),
            entries: std::collections::HashMap::new(),
        }
    }

    fn entry(
        &mut self,
        repo: &Repository,
        odb: &git2::Odb<'_>,
        depth: usize,
        tree: Oid,
    ) -> Result<Option<(Oid, bool)>, StoreError> {
        if let Some(e) = self.entries.get(&(depth, tree)) {
            return Ok(*e);
        }
        let e = raw_objects::tree_entry(repo, odb, tree, self.names[depth])?
            .map(|(id, mode)| (id, raw_objects::is_dir_mode(mode)));
        if self.entries.len() >= MAX_PROBED_TREES {
            self.entries.clear();
        }
        self.entries.insert((depth, tree), e);
        Ok(e)
    }

    /// Whether the path differs between the trees `old` and `new`.
    fn differs(
        &mut self,
        repo: &Repository,
        odb: &git2::Odb<'_>,
        old: Option<Oid>,
        new: Oid,
    ) -> Result<bool, StoreError> {
        let mut sides = [old, Some(new)];
        for depth in 0..self.names.len() {
            if sides[0] == sides[1] {
                return Ok(false);
            }
            let mut entries = [None, None];
            for (entry, side) in entries.iter_mut().zip(sides) {
                if let Some(tree) = side {
                    *entry = self.entry(repo, odb, depth, tree)?;
                }
            }
            if entries[0].map(|e| e.0) == entries[1].map(|e| e.0) {
                return Ok(false);
            }
            // Only a directory has something below it: a file (or nothing) on one
            // side means the path is absent there.
            sides = entries.map(|e| e.filter(|(_, dir)| *dir).map(|(id, _)| id));
        }
        Ok(true)
    }
}

/// Whether `path` is `dir` or lies below it.
fn under(dir: &str, path: &str) -> bool {
    path == dir || (path.starts_with(dir) && path.as_bytes().get(dir.len()) == Some(&b'/'))
}

/// Most blobs whose counts one walk keeps (about 40 bytes each).
const MAX_COUNTED_BLOBS: usize = 1 << 16;

/// How often the text looked for occurs in each blob one walk has read. Walking newest
/// first, a file's old blob in one commit is its new blob in the next commit changing
/// it, so each blob is read and inflated once rather than twice.
struct BlobCounts<'n> {
    needle: memchr::memmem::Finder<'n>,
    counts: std::collections::HashMap<Oid, usize>,
}

impl<'n> BlobCounts<'n> {
    fn new(needle: &'n str) -> Self {
        Self {
            needle: memchr::memmem::Finder::new(needle.as_bytes()),
            counts: std::collections::HashMap::new(),
        }
    }

    /// How often the text occurs in a blob (0 for a missing or binary one).
    fn of(&mut self, repo: &Repository, blob: Oid) -> usize {
        if blob.is_zero() {
            return 0;
        }
        if let Some(n) = self.counts.get(&blob) {
            return *n;
        }
        let n = match repo.find_blob(blob) {
            Ok(b) if !b.is_binary() => self.needle.find_iter(b.content()).count(),
            _ => 0,
        };
        if self.counts.len() >= MAX_COUNTED_BLOBS {
            self.counts.clear();
        }
        self.counts.insert(blob, n);
        n
    }
}

/// What a diff found without rename detection says of a pickaxe match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Yes,
    No,
    /// Only the diff with renames found can tell.
    Maybe,
}

/// Whether a diff adds (or removes) the text in a file the view sees and the glob
/// takes, as `git log -S` counts: occurrences before against after.
///
/// With `renames_pending`, `diff` has no renames found yet, though the answer's diff
/// will: a rename pairs a deleted file with an added one, and changes nothing else.
/// A modified file decides alone. A pair matching `added` has its new side added with
/// the text in it, one matching `removed` its old side deleted with the text in it; a
/// diff without such a side cannot match, and one with it needs the renames found.
fn pickaxe(
    repo: &Repository,
    counts: &mut BlobCounts<'_>,
    changes: &[Changed],
    m: &HistoryMatch,
    visible: Option<&PathSet>,
    renames_pending: bool,
) -> Verdict {
    let mut maybe = false;
    for c in changes {
        if renames_pending {
            match (c.status, m.mode) {
                (ChangeStatus::Added, HistoryMode::Added) => {
                    maybe = maybe || counts.of(repo, c.new) > 0;
                    continue;
                }
                (ChangeStatus::Deleted, HistoryMode::Removed) => {
                    maybe = maybe || counts.of(repo, c.old) > 0;
                    continue;
                }
                (ChangeStatus::Added | ChangeStatus::Deleted, _) => continue,
                _ => {}
            }
        }
        if c.old == c.new || !sees(visible, &c.path) {
            continue;
        }
        if m.path_glob.as_ref().is_some_and(|g| !g.is_match(&c.path)) {
            continue;
        }
        let before = counts.of(repo, c.old);
        let after = counts.of(repo, c.new);
        let hit = match m.mode {
            HistoryMode::Added => after > before,
            HistoryMode::Removed => before > after,
            HistoryMode::Message => false,
        };
        if hit {
            return Verdict::Yes;
        }
    }
    if maybe { Verdict::Maybe } else { Verdict::No }
}

/// A commit waiting in a [`Walk`]: the newest commit date comes out first, and of
/// equal dates the one found first, as in `git log`'s own queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Queued {
    time: i64,
    found: u64,
    id: Oid,
}

impl Ord for Queued {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.time
            .cmp(&other.time)
            .then_with(|| other.found.cmp(&self.found))
    }
}

impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// The history from `head`, newest first by commit date in `git log`'s default order:
/// a commit dated before its parent (clock skew) may come out before that parent's
/// other children; each commit comes out once. It streams: the first commit comes out
/// at once, where an order that puts every child before its parents reads the whole
/// history first. Its state (the queue and the commits found) is what a later page
/// goes on from.
#[derive(Debug)]
struct Walk {
    head: Oid,
    queue: std::collections::BinaryHeap<Queued>,
    /// Every commit queued so far, taken or not.
    found: std::collections::HashSet<Oid>,
    /// The headers of the commits queued and not yet taken, each read once: the
    /// queue's order needs a commit's time when it is found, and its tree and parents
    /// are what the walk goes on with when it comes out.
    headers: std::collections::HashMap<Oid, CommitHeader>,
    /// How many commits came out.
    taken: usize,
}

/// A commit as it comes out of a [`Walk`].
struct Walked {
    id: Oid,
    header: CommitHeader,
    /// The first parent's tree, `None` for a first commit.
    parent_tree: Option<Oid>,
}

impl Walk {
    fn new(repo: &Repository, odb: &git2::Odb<'_>, head: Oid) -> Result<Self, StoreError> {
        let mut walk = Walk {
            head,
            queue: std::collections::BinaryHeap::new(),
            found: std::collections::HashSet::new(),
            headers: std::collections::HashMap::new(),
            taken: 0,
        };
        walk.enqueue(repo, odb, head)?;
        Ok(walk)
    }

    fn enqueue(
        &mut self,
        repo: &Repository,
        odb: &git2::Odb<'_>,
        id: Oid,
    ) -> Result<(), StoreError> {
        if !self.found.insert(id) {
            return Ok(());
        }
        let header = raw_objects::commit_header(repo, odb, id)?;
        self.queue.push(Queued {
            time: header.time,
            found: self.found.len() as u64,
            id,
        });
        self.headers.insert(id, header);
        Ok(())
    }

    fn is_done(&self) -> bool {
        self.queue.is_empty()
    }

    /// The next commit, its parents queued.
    fn next(
        &mut self,
        repo: &Repository,
        odb: &git2::Odb<'_>,
    ) -> Result<Option<Walked>, StoreError> {
        let Some(next) = self.queue.pop() else {
            return Ok(None);
        };
        let header = match self.headers.remove(&next.id) {
            Some(h) => h,
            None => raw_objects::commit_header(repo, odb, next.id)?,
        };
        for parent in &header.parents {
            self.enqueue(repo, odb, *parent)?;
        }
        // The first parent is queued now, unless it came out already (a clock's skew).
        let parent_tree = match header.parents.first() {
            None => None,
            Some(p) => Some(match self.headers.get(p) {
                Some(h) => h.tree,
                None => raw_objects::commit_header(repo, odb, *p)?.tree,
            }),
        };
        self.taken += 1;
        Ok(Some(Walked {
            id: next.id,
            header,
            parent_tree,
        }))
    }

    /// The walk from `head` after `taken` commits came out, walked again: what a page
    /// goes on from when its walk is not among the [`SAVED_WALKS`] (another process
    /// gave the cursor, or the walk was let go). `None` when the history has fewer
    /// commits.
    fn replay(
        repo: &Repository,
        odb: &git2::Odb<'_>,
        head: Oid,
        taken: usize,
        control: &crate::model::WalkControl,
    ) -> Result<Option<Self>, StoreError> {
        let mut walk = Walk::new(repo, odb, head)?;
        while walk.taken < taken {
            if control.is_cancelled() {
                return Err(StoreError::Invalid("the history walk was cancelled".into()));
            }
            if walk.next(repo, odb)?.is_none() {
                return Ok(None);
            }
        }
        Ok(Some(walk))
    }
}

/// Walks that stopped at a full page (or their time budget) in this process, by the
/// repository's git directory, so that the next page goes on without walking again
/// from the head. Only the walk's own state is kept (the commits queued and found),
/// never what it answered: a page under another view or filter goes on from the same
/// state. Bounded by [`MAX_SAVED_WALKS`] and [`MAX_SAVED_COMMITS`], the oldest let go
/// first; a walk let go is walked again ([`Walk::replay`]), with the same answer.
static SAVED_WALKS: std::sync::Mutex<std::collections::VecDeque<(std::path::PathBuf, Walk)>> =
    std::sync::Mutex::new(std::collections::VecDeque::new());

/// Most walks kept for a next page.
const MAX_SAVED_WALKS: usize = 16;

/// Most commits found by all the walks kept (about 60 bytes each).
const MAX_SAVED_COMMITS: usize = 1 << 20;

/// The saved walk of the git directory `dir` from `head` after `taken` commits, taken
/// out of the saved ones.
fn take_saved_walk(dir: &Path, head: Oid, taken: usize) -> Option<Walk> {
    let mut saved = SAVED_WALKS.lock().unwrap_or_else(|e| e.into_inner());
    let at = saved
        .iter()
        .position(|(d, w)| d == dir && w.head == head && w.taken == taken)?;
    saved.remove(at).map(|(_, w)| w)
}

fn save_walk(dir: &Path, walk: Walk) {
    if walk.found.len() > MAX_SAVED_COMMITS {
        return;
    }
    let mut saved = SAVED_WALKS.lock().unwrap_or_else(|e| e.into_inner());
    let mut held: usize = saved.iter().map(|(_, w)| w.found.len()).sum();
    while saved.len() >= MAX_SAVED_WALKS || held + walk.found.len() > MAX_SAVED_COMMITS {
        match saved.pop_front() {
            Some((_, w)) => held -= w.found.len(),
            None => break,
        }
    }
    saved.push_back((dir.to_path_buf(), walk));
}

/// Commits a walk looks at between two progress reports.
const PROGRESS_EVERY: u64 = 256;

/// The full id of the commit `rev` names in the repo's history.
pub fn resolve(repo: &Repository, rev: &RevSpec) -> Result<String, StoreError> {
    Ok(resolve_in(repo, rev)?.to_string())
}

/// Every tracked file path at `rev`, binary ones named apart.
pub fn files_at(repo: &Repository, rev: &RevSpec) -> Result<FileList, StoreError> {
    let at = resolve_in(repo, rev)?;
    let tree = git::tree_at(repo, at)?;
    let mut paths = Vec::new();
    let mut binary = Vec::new();
    for (path, oid) in git::files(repo, &tree)? {
        let blob = repo.find_blob(oid).map_err(git::git_err)?;
        if !crate::text::is_text(blob.content()) {
            binary.push(path.clone());
        }
        paths.push(path);
    }
    Ok(FileList {
        head: at.to_string(),
        paths,
        binary,
    })
}

/// A page of the repo's commits, newest first by commit date in `git log`'s default
/// order (a commit dated before its parent, as a skewed clock makes, may come before
/// that parent's other children; each commit of the history is on exactly one page of
/// a walk), filtered by `q`. A commit counts as changing what it changes against its
/// first parent; a path-limited view sees only commits changing one of its paths, and
/// only those paths in their change lists. The walk reports progress to `q.control`,
/// stops with an error once it is cancelled, and past its time budget answers what it
/// found with a cursor (`budget_spent`).
pub fn list_commits(repo: &Repository, q: &CommitQuery) -> Result<CommitPage, StoreError> {
    let head = git::head(repo)?;
    let foreign = || {
        StoreError::Invalid(
            "the cursor is not one this repo's history gave: start again without it".into(),
        )
    };
    let dir = repo.path().to_path_buf();
    let odb = repo.odb().map_err(git::git_err)?;
    let mut walk = match &q.cursor {
        None => Walk::new(repo, &odb, head)?,
        Some((at, taken)) => {
            let at = Oid::from_str(at)
                .ok()
                .filter(|at| *at == head || repo.graph_descendant_of(head, *at).unwrap_or(false))
                .ok_or_else(foreign)?;
            match take_saved_walk(&dir, at, *taken) {
                Some(walk) => walk,
                None => Walk::replay(repo, &odb, at, *taken, &q.control)?.ok_or_else(foreign)?,
            }
        }
    };
    let start = walk.head;
    let visible = q.visible.as_deref();
    let author = q.author.as_ref().map(|a| a.to_lowercase());
    let message_needle = q
        .matching
        .as_ref()
        .filter(|m| m.mode == HistoryMode::Message)
        .map(|m| m.text.to_lowercase());
    let pickaxe_match = q
        .matching
        .as_ref()
        .filter(|m| m.mode != HistoryMode::Message);
    let mut counts = BlobCounts::new(pickaxe_match.map_or("", |m| m.text.as_str()));
    let control = &q.control;
    let began = std::time::Instant::now();
    let mut commits = Vec::new();
    let mut probe = q.path.as_deref().map(PathProbe::new);
    let mut looked_at = 0u64;
    let mut more = false;
    let mut budget_spent = false;
    while !walk.is_done() {
        if commits.len() == q.max_results {
            more = true;
            break;
        }
        if control.is_cancelled() {
            return Err(StoreError::Invalid("the history walk was cancelled".into()));
        }
        // At least one commit a call, so that a cursor always moves on.
        if looked_at > 0 && began.elapsed() > control.budget() {
            more = true;
            budget_spent = true;
            break;
        }
        looked_at += 1;
        if looked_at.is_multiple_of(PROGRESS_EVERY) {
            control.report(looked_at, commits.len() as u64);
        }
        let Some(walked) = walk.next(repo, &odb)? else {
            break;
        };
        let time = walked.header.time;
        if q.since.is_some_and(|s| time < s) || q.until.is_some_and(|u| time > u) {
            continue;
        }
        if let Some(a) = &author
            && !String::from_utf8_lossy(&walked.header.author)
                .to_lowercase()
                .contains(a.as_str())
        {
            continue;
        }
        if let Some(needle) = &message_needle
            && !String::from_utf8_lossy(&walked.header.message)
                .to_lowercase()
                .contains(needle.as_str())
        {
            continue;
        }
        let old_id = walked.parent_tree;
        let new_id = walked.header.tree;
        if let Some(probe) = probe.as_mut()
            && !probe.differs(repo, &odb, old_id, new_id)?
        {
            continue;
        }
        // The pickaxe is settled on the changes without renames when it can be:
        // finding renames reads every added and deleted file, which most commits
        // walked by a search never need.
        let mut verdict = Verdict::Yes;
        let mut plain = None;
        if let Some(m) = pickaxe_match {
            let mut found = Vec::new();
            plain_changes(repo, old_id, new_id, &mut found)?;
            verdict = pickaxe(repo, &mut counts, &found, m, visible, visible.is_none());
            if verdict == Verdict::No {
                continue;
            }
            plain = Some(found);
        }
        // With a path, as `git log --name-status -- PATH`: the changes under it
        // alone, renames found among them; the rest of the tree is never read.
        let all = match (plain, &q.path) {
            (_, Some(path)) => changes_under(repo, old_id, new_id, path, visible)?,
            (Some(found), None) if visible.is_some() || !has_add_and_delete(&found) => found,
            _ => tree_changes(repo, old_id, new_id, visible)?,
        };
        let changes = visible_changes(&all, visible);
        if visible.is_some() && changes.is_empty() {
            continue;
        }
        // Under a view, the path must be changed in a path the view sees: a commit
        // is never picked out by a change the token cannot see.
        if let Some(path) = &q.path
            && visible.is_some()
            && !changes.iter().any(|c| {
                under(path, &c.path) || c.old_path.as_deref().is_some_and(|o| under(path, o))
            })
        {
            continue;
        }
        if let Some(m) = pickaxe_match
            && verdict == Verdict::Maybe
            && pickaxe(repo, &mut counts, &all, m, visible, false) != Verdict::Yes
        {
            continue;
        }
        if let Some(m) = &q.matching
            && m.mode == HistoryMode::Message
            && let Some(g) = &m.path_glob
            && !changes.iter().any(|c| g.is_match(&c.path))
        {
            continue;
        }
        commits.push(info_from(walked.id, &walked.header, changes));
    }
    control.report(looked_at, commits.len() as u64);
    let next_cursor = more.then(|| (start.to_string(), walk.taken));
    if more {
        save_walk(&dir, walk);
    }
    Ok(CommitPage {
        head: start.to_string(),
        commits,
        next_cursor,
        budget_spent,
    })
}

/// One commit of the repo, with its diff against its first parent. A commit that
/// changes none of a path-limited view's paths is not found, as a missing one.
pub fn commit_diff(
    repo: &Repository,
    rev: &RevSpec,
    q: &DiffQuery,
) -> Result<(CommitInfo, DiffResult), StoreError> {
    let oid = resolve_in(repo, rev)?;
    let commit = repo.find_commit(oid).map_err(git::git_err)?;
    let tree = commit.tree().map_err(git::git_err)?;
    let old = parent_tree(&commit)?;
    let visible = q.visible.as_deref();
    let listing = tree_changes(repo, old.as_ref().map(Tree::id), tree.id(), visible)?;
    let changes = visible_changes(&listing, visible);
    if visible.is_some() && changes.is_empty() {
        return Err(no_such_commit(rev));
    }
    let from = commit.parent_id(0).ok().map(|p| p.to_string());
    let diff = diff_files(repo, old.as_ref(), &tree, q)?;
    Ok((
        info_of(&commit, changes),
        DiffResult {
            from,
            to: oid.to_string(),
            ..diff
        },
    ))
}

/// The diff between two commits of the repo's history.
pub fn compare(
    repo: &Repository,
    from: &RevSpec,
    to: &RevSpec,
    q: &DiffQuery,
) -> Result<DiffResult, StoreError> {
    let a = resolve_in(repo, from)?;
    let b = resolve_in(repo, to)?;
    let old = git::tree_at(repo, a)?;
    let new = git::tree_at(repo, b)?;
    let diff = diff_files(repo, Some(&old), &new, q)?;
    Ok(DiffResult {
        from: Some(a.to_string()),
        to: b.to_string(),
        ..diff
    })
}

/// The commit `at` resolves to (the head when `None`), and the number of lines of
/// `q.path` there: the checks a blame makes before it runs.
pub fn blame_target(repo: &Repository, q: &BlameQuery) -> Result<(String, u64), StoreError> {
    let at = match &q.at {
        Some(rev) => resolve_in(repo, rev)?,
        None => git::head(repo)?,
    };
    let tree = git::tree_at(repo, at)?;
    let entry = tree
        .get_path(Path::new(q.path.as_str()))
        .ok()
        .filter(|e| e.kind() == Some(git2::ObjectType::Blob))
        .ok_or_else(|| StoreError::FileNotFound(format!("`{}` does not exist at {at}", q.path)))?;
    let blob = repo.find_blob(entry.id()).map_err(git::git_err)?;
    let content = blob.content();
    let mut lines = memchr::memchr_iter(b'\n', content).count() as u64;
    if !content.is_empty() && !content.ends_with(b"\n") {
        lines += 1;
    }
    Ok((at.to_string(), lines))
}

impl Store {
    /// A handle of its own on repo `id`'s git directory, for one history call.
    fn history_repo(&self, id: &RepoId) -> Result<Repository, StoreError> {
        let h = self.handle(id)?;
        Repository::open_bare(&h.dir).map_err(git::git_err)
    }

    /// The full id of the commit `rev` names in repo `id`'s history.
    pub fn resolve_rev(&self, id: &RepoId, rev: &RevSpec) -> Result<String, StoreError> {
        resolve(&self.history_repo(id)?, rev)
    }

    /// Every tracked file path at `rev` (the head when `None`).
    pub fn list_files_at(
        &self,
        id: &RepoId,
        rev: Option<&RevSpec>,
    ) -> Result<FileList, StoreError> {
        match rev {
            None => self.list_files(id),
            Some(rev) => files_at(&self.history_repo(id)?, rev),
        }
    }

    /// A page of repo `id`'s commits, newest first by commit date as `git log` lists
    /// them, filtered by `q`. A commit counts as changing what it changes against
    /// its first parent; a path-limited view sees only commits changing one of its
    /// paths, and only those paths in their change lists.
    pub fn list_commits(&self, id: &RepoId, q: &CommitQuery) -> Result<CommitPage, StoreError> {
        list_commits(&self.history_repo(id)?, q)
    }

    /// One commit of repo `id`, with its diff against its first parent. A commit that
    /// changes none of a path-limited view's paths is not found, as a missing one.
    pub fn commit_diff(
        &self,
        id: &RepoId,
        rev: &RevSpec,
        q: &DiffQuery,
    ) -> Result<(CommitInfo, DiffResult), StoreError> {
        commit_diff(&self.history_repo(id)?, rev, q)
    }

    /// The diff between two commits of repo `id`'s history.
    pub fn compare(
        &self,
        id: &RepoId,
        from: &RevSpec,
        to: &RevSpec,
        q: &DiffQuery,
    ) -> Result<DiffResult, StoreError> {
        compare(&self.history_repo(id)?, from, to, q)
    }

    /// One new commit on `main` undoing commit `spec.commit` (against its parent),
    /// through the same writer path as an update ([`Store::commit_on_head`]), reporting
    /// to and stopped by `spec.control` as an update is. A revert that
    /// conflicts with later changes, of a merge commit, or (under a view) touching a
    /// path the view does not see, is refused and changes nothing; a commit the view
    /// sees nothing of is not found.
    pub fn revert(
        &self,
        id: &RepoId,
        spec: &RevertSpec,
        author: &str,
    ) -> Result<UpdateOutcome, StoreError> {
        // Two steps: the revert's tree worked out, then the commit landed.
        spec.control.report(0, 2);
        let outcome = self
            .commit_on_head(
                id,
                spec.expected_head.as_deref(),
                spec.message.as_deref(),
                author,
                &spec.control,
                // A revert brings back blobs the repo already holds.
                0,
                |repo, head, old_tree| {
                    let tree =
                        revert_tree(repo, &spec.commit, head, old_tree, spec.visible.as_deref())?;
                    spec.control.report(1, 2);
                    Ok(tree)
                },
            )
            .map_err(|e| self.explain(e))?;
        spec.control.report(2, 2);
        Ok(outcome)
    }

    /// The commit `at` resolves to (the head when `None`), and the number of lines of
    /// `q.path` there: the checks a blame makes before it runs.
    pub fn blame_target(&self, id: &RepoId, q: &BlameQuery) -> Result<(String, u64), StoreError> {
        blame_target(&self.history_repo(id)?, q)
    }
}

/// The tree of one new commit on `head` (whose tree is `old_tree`) undoing commit `rev`
/// against its parent, and the commit's default message. A revert that conflicts with
/// later changes, of a merge commit, or (under a view) touching a path the view does
/// not see, is refused; a commit the view sees nothing of is not found.
pub fn revert_tree(
    repo: &Repository,
    rev: &RevSpec,
    head: Oid,
    old_tree: &Tree<'_>,
    visible: Option<&PathSet>,
) -> Result<(Oid, String), StoreError> {
    let target = resolve_in(repo, rev)?;
    let commit = repo.find_commit(target).map_err(git::git_err)?;
    if visible.is_some() {
        let tree = commit.tree().map_err(git::git_err)?;
        let before = parent_tree(&commit)?;
        let own = tree_diff(repo, before.as_ref(), &tree, visible, 0)?;
        let seen = changes_of(&own, visible);
        if seen.is_empty() {
            return Err(no_such_commit(rev));
        }
        if seen.len() < changes_of(&own, None).len() {
            return Err(StoreError::Invalid(format!(
                "commit {target} also changed paths outside this token's paths, so it cannot be reverted whole; nothing changed"
            )));
        }
    }
    if commit.parent_count() > 1 {
        return Err(StoreError::Invalid(format!(
            "commit {target} is a merge; reverting a merge is not offered: revert the commits it brought one by one, or write the change with update_repo_files"
        )));
    }
    let ours = repo.find_commit(head).map_err(git::git_err)?;
    let mut index = repo
        .revert_commit(&commit, &ours, 0, None)
        .map_err(git::git_err)?;
    if index.has_conflicts() {
        let mut paths: Vec<String> = index
            .conflicts()
            .map_err(git::git_err)?
            .filter_map(Result::ok)
            .filter_map(|c| c.our.or(c.their).or(c.ancestor))
            .filter_map(|e| String::from_utf8(e.path).ok())
            .filter(|p| sees(visible, p))
            .collect();
        paths.dedup();
        return Err(StoreError::Invalid(format!(
            "reverting commit {target} conflicts with later changes{}; nothing changed: make the change by hand with update_repo_files",
            if paths.is_empty() {
                String::new()
            } else {
                format!(
                    " in {}",
                    paths
                        .iter()
                        .map(|p| format!("`{}`", crate::text::one_line(p)))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        )));
    }
    let tree_id = index.write_tree_to(repo).map_err(git::git_err)?;
    if visible.is_some() {
        let new_tree = repo.find_tree(tree_id).map_err(git::git_err)?;
        let touched = git::changed_paths(repo, Some(old_tree), &new_tree)?;
        if touched.iter().any(|p| !sees(visible, p)) {
            return Err(StoreError::Invalid(format!(
                "reverting commit {target} would change paths outside this token's paths; nothing changed"
            )));
        }
    }
    let subject = String::from_utf8_lossy(commit.message_bytes())
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    Ok((
        tree_id,
        format!("Revert \"{subject}\"\n\nThis reverts commit {target}.\n"),
    ))
}

/// The files of a diff between two trees, filtered by the view and `q.path_glob`, with
/// stats and patches as `q.detail` asks, from file `q.first_file` on, until the patch
/// text reaches [`MAX_PATCH_BYTES`].
fn diff_files<'r>(
    repo: &'r Repository,
    old: Option<&Tree<'r>>,
    new: &Tree<'r>,
    q: &DiffQuery,
) -> Result<DiffResult, StoreError> {
    let visible = q.visible.as_deref();
    let diff = tree_diff(repo, old, new, visible, q.context_lines)?;
    let mut wanted: Vec<(usize, ChangedPath)> = diff
        .deltas()
        .enumerate()
        .filter_map(|(i, d)| visible_change(&d, visible).map(|c| (i, c)))
        .filter(|(_, c)| {
            q.path_glob.as_ref().is_none_or(|g| {
                g.is_match(&c.path) || c.old_path.as_deref().is_some_and(|o| g.is_match(o))
            })
        })
        .collect();
    wanted.sort_by(|a, b| a.1.path.cmp(&b.1.path));
    let total_files = wanted.len();
    let mut files = Vec::new();
    let mut bytes = 0usize;
    let mut next_file = None;
    for (k, (i, change)) in wanted.into_iter().enumerate().skip(q.first_file) {
        let mut file = FileDiff {
            path: change.path,
            status: change.status,
            old_path: change.old_path,
            additions: 0,
            deletions: 0,
            binary: false,
            patch: None,
        };
        if q.detail != DiffDetail::None {
            let patch = Patch::from_diff(&diff, i).map_err(git::git_err)?;
            file.binary = patch.as_ref().is_none_or(|p| p.delta().flags().is_binary());
            if let Some(patch) = patch.filter(|_| !file.binary) {
                let (_, adds, dels) = patch.line_stats().map_err(git::git_err)?;
                file.additions = adds as u64;
                file.deletions = dels as u64;
                if q.detail == DiffDetail::Patch {
                    let mut patch = patch;
                    let buf = patch.to_buf().map_err(git::git_err)?;
                    let text = String::from_utf8_lossy(&buf).into_owned();
                    if bytes + text.len() > MAX_PATCH_BYTES {
                        if !files.is_empty() {
                            next_file = Some(k);
                            break;
                        }
                        // One file's patch alone over the cap: cut at a line, and
                        // continue with the next file.
                        let (head, _) = cut(&text, MAX_PATCH_BYTES);
                        let head = &head[..head.rfind('\n').map_or(0, |n| n + 1)];
                        file.patch = Some(format!(
                            "{head}\\ (patch cut at {} KiB; read the file at both commits for the rest)\n",
                            MAX_PATCH_BYTES / 1024
                        ));
                        files.push(file);
                        if k + 1 < total_files {
                            next_file = Some(k + 1);
                        }
                        break;
                    }
                    bytes += text.len();
                    file.patch = Some(text);
                }
            }
        }
        files.push(file);
    }
    Ok(DiffResult {
        from: None,
        to: String::new(),
        files,
        total_files,
        next_file,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use git2::{Oid, Repository, Signature, Time};

    use super::*;
    use crate::model::WalkControl;

    /// A bare repo whose `main` is a line of commits, each writing `files` (path,
    /// content, mode) over an empty tree, one second apart.
    /// `n` commits, each writing its number into `n.txt`.
    fn counting_history(n: usize) -> (tempfile::TempDir, Repository) {
        let texts: Vec<String> = (0..n).map(|i| format!("{i}\n")).collect();
        let files: Vec<[(&str, &str, i32); 1]> =
            texts.iter().map(|t| [("n.txt", t.as_str(), F)]).collect();
        let commits: Vec<&[(&str, &str, i32)]> = files.iter().map(|f| f.as_slice()).collect();
        history(&commits)
    }

    fn history(commits: &[&[(&str, &str, i32)]]) -> (tempfile::TempDir, Repository) {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let mut parent: Option<Oid> = None;
        for (i, files) in commits.iter().enumerate() {
            let mut index = git2::Index::new().unwrap();
            for (path, content, mode) in files.iter() {
                let blob = repo.blob(content.as_bytes()).unwrap();
                let mut entry = git2::IndexEntry {
                    ctime: git2::IndexTime::new(0, 0),
                    mtime: git2::IndexTime::new(0, 0),
                    dev: 0,
                    ino: 0,
                    mode: *mode as u32,
                    uid: 0,
                    gid: 0,
                    file_size: 0,
                    id: blob,
                    flags: 0,
                    flags_extended: 0,
                    path: path.as_bytes().to_vec(),
                };
                entry.flags = (path.len() as u16) & 0xfff;
                index.add(&entry).unwrap();
            }
            let tree = repo.find_tree(index.write_tree_to(&repo).unwrap()).unwrap();
            let sig = Signature::new(
                "t",
                "t@example.com",
                &Time::new(1_700_000_000 + i as i64, 0),
            )
            .unwrap();
            let parents: Vec<_> = parent
                .iter()
                .map(|p| repo.find_commit(*p).unwrap())
                .collect();
            let refs: Vec<_> = parents.iter().collect();
            parent = Some(
                repo.commit(None, &sig, &sig, &format!("c{i}"), &tree, &refs)
                    .unwrap(),
            );
        }
        repo.reference("refs/heads/main", parent.unwrap(), true, "")
            .unwrap();
        (dir, repo)
    }

    const F: i32 = 0o100644;
    const X: i32 = 0o100755;
    const L: i32 = 0o120000;

    /// A bare repo of the commits `(parents by index, commit time)`, each writing
    /// `n.txt` and `d{i % 3}/f`; `main` is the last one.
    fn graph(commits: &[(&[usize], i64)]) -> (tempfile::TempDir, Repository, Vec<Oid>) {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let mut ids: Vec<Oid> = Vec::new();
        for (i, (parents, time)) in commits.iter().enumerate() {
            let mut tb = repo.treebuilder(None).unwrap();
            let blob = repo.blob(format!("{i}\n").as_bytes()).unwrap();
            tb.insert("n.txt", blob, F).unwrap();
            let mut sub = repo.treebuilder(None).unwrap();
            sub.insert("f", blob, F).unwrap();
            tb.insert(format!("d{}", i % 3), sub.write().unwrap(), 0o040000)
                .unwrap();
            let tree = repo.find_tree(tb.write().unwrap()).unwrap();
            let sig = Signature::new("t", "t@example.com", &Time::new(*time, 0)).unwrap();
            let parents: Vec<_> = parents
                .iter()
                .map(|p| repo.find_commit(ids[*p]).unwrap())
                .collect();
            let refs: Vec<_> = parents.iter().collect();
            ids.push(
                repo.commit(None, &sig, &sig, &format!("c{i}"), &tree, &refs)
                    .unwrap(),
            );
        }
        repo.reference("refs/heads/main", *ids.last().unwrap(), true, "")
            .unwrap();
        (dir, repo, ids)
    }

    /// Merges, equal dates, and commits dated before their parents (a skewed clock):
    /// c4 is dated before its parent c3 and before c2, the merge c6 before both its
    /// parents, c8 equal to c5 and c6.
    const SKEWED: &[(&[usize], i64)] = &[
        (&[], 100),
        (&[0], 200),
        (&[1], 300),
        (&[1], 250),
        (&[3], 90),
        (&[2], 300),
        (&[5, 4], 80),
        (&[6], 400),
        (&[7, 2], 300),
        (&[8], 300),
        (&[9, 3], 500),
    ];

    /// Every page of a walk of `q`, `forget` letting the saved walk go between pages.
    fn pages(repo: &Repository, q: &CommitQuery, forget: bool) -> Vec<Vec<String>> {
        let mut q = q.clone();
        let mut out = Vec::new();
        loop {
            if forget {
                while take_saved_walk(repo.path(), git::head(repo).unwrap(), {
                    q.cursor.as_ref().map_or(0, |c| c.1)
                })
                .is_some()
                {}
            }
            let page = list_commits(repo, &q).unwrap();
            out.push(page.commits.iter().map(|c| c.id.clone()).collect());
            match page.next_cursor {
                Some(c) => q.cursor = Some(c),
                None => return out,
            }
        }
    }

    #[test]
    fn a_skewed_history_lists_every_commit_once_in_git_logs_order_on_any_page_size() {
        let (_d, repo, ids) = graph(SKEWED);
        // `git log`'s default order for this graph: by commit date, newest first,
        // equal dates in the order found, parents queued in their order.
        let expected: Vec<String> = [10, 9, 8, 7, 2, 3, 1, 0, 6, 5, 4]
            .iter()
            .map(|i| ids[*i].to_string())
            .collect();
        let whole = pages(
            &repo,
            &CommitQuery {
                max_results: 200,
                ..CommitQuery::default()
            },
            false,
        );
        assert_eq!(whole, vec![expected.clone()]);
        for size in 1..=ids.len() {
            for forget in [false, true] {
                let q = CommitQuery {
                    max_results: size,
                    ..CommitQuery::default()
                };
                let all: Vec<String> = pages(&repo, &q, forget).concat();
                assert_eq!(all, expected, "pages of {size}, forget {forget}");
            }
        }
        // A path filter and a view keep the same order, each commit once.
        let q = CommitQuery {
            max_results: 2,
            path: Some("d1".into()),
            ..CommitQuery::default()
        };
        let by_path = pages(&repo, &q, false).concat();
        // Commit `i` holds `d{i % 3}` alone, each with its own file: it changes `d1`
        // when it or its first parent holds it. Commits 4 and 5 come out after their
        // first parents, whose headers are then read again.
        let changes_d1 = |i: usize| i % 3 == 1 || SKEWED[i].0.first().is_some_and(|p| p % 3 == 1);
        let expected_by_path: Vec<String> = [10, 9, 8, 7, 2, 3, 1, 0, 6, 5, 4]
            .into_iter()
            .filter(|i| changes_d1(*i))
            .map(|i| ids[i].to_string())
            .collect();
        assert_eq!(by_path, expected_by_path);
        let mut set = by_path.clone();
        set.sort();
        set.dedup();
        assert_eq!(set.len(), by_path.len());
        assert_eq!(
            by_path,
            pages(
                &repo,
                &CommitQuery {
                    max_results: 200,
                    ..q.clone()
                },
                true
            )
            .concat()
        );
    }

    #[test]
    fn a_cursor_past_the_end_of_the_history_is_refused() {
        let (_d, repo, ids) = graph(SKEWED);
        let q = CommitQuery {
            max_results: 3,
            cursor: Some((ids[10].to_string(), 50)),
            ..CommitQuery::default()
        };
        let err = list_commits(&repo, &q).unwrap_err();
        assert!(err.to_string().contains("cursor is not one"), "{err}");
    }

    #[test]
    fn renames_found_on_the_added_and_deleted_paths_alone_agree_with_the_whole_diff() {
        let long = "one\ntwo\nthree\nfour\nfive\nsix\n";
        let (_d, repo) = history(&[
            &[
                ("a/x.rs", long, F),
                ("a/y.rs", "y\n", F),
                ("b", "b\n", F),
                ("c/d/e", long, F),
                ("keep", "k\n", F),
            ],
            // A rename into another directory, a rename with an edit, a file
            // becoming a directory, an edit beside them, an addition and a deletion
            // that pair with nothing.
            &[
                ("z/x2.rs", long, F),
                ("a/y.rs", "y\n", F),
                ("b/inner", "b\n", F),
                ("c/e2", "one\ntwo\nthree\nfour\nfive\nsix!\n", F),
                ("keep", "k2\n", F),
                ("new", "fresh content here\n", F),
            ],
            &[("only", "o\n", F)],
        ]);
        let mut walk = repo.revwalk().unwrap();
        walk.push_ref("refs/heads/main").unwrap();
        for oid in walk {
            let commit = repo.find_commit(oid.unwrap()).unwrap();
            let old = commit.parent(0).ok().map(|p| p.tree().unwrap());
            let new = commit.tree().unwrap();
            let key = |c: Changed| (c.path, c.status, c.old_path, c.old, c.new);
            let mut theirs: Vec<_> =
                changed_in(&tree_diff(&repo, old.as_ref(), &new, None, 0).unwrap())
                    .into_iter()
                    .map(key)
                    .collect();
            let mut ours: Vec<_> = tree_changes(&repo, old.as_ref().map(Tree::id), new.id(), None)
                .unwrap()
                .into_iter()
                .map(key)
                .collect();
            let order =
                |a: &(String, ChangeStatus, Option<String>, Oid, Oid),
                 b: &(String, ChangeStatus, Option<String>, Oid, Oid)| {
                    a.0.cmp(&b.0).then(a.3.cmp(&b.3))
                };
            theirs.sort_by(order);
            ours.sort_by(order);
            assert_eq!(ours, theirs, "commit {}", commit.id());
        }
    }

    #[test]
    fn plain_changes_agree_with_libgit2s_diff() {
        let (_d, repo) = history(&[
            &[
                ("a.txt", "a\n", F),
                ("d/x", "x\n", F),
                ("d/y/z", "z\n", F),
                ("f", "f\n", F),
            ],
            // A mode change, a type change, a file becoming a directory, a directory
            // becoming a file, a deep edit, an addition beside a name that sorts
            // around `d/` (`d.txt`, `d0`).
            &[
                ("a.txt", "a\n", X),
                ("d", "now a file\n", F),
                ("d.txt", "new\n", F),
                ("d0", "new\n", L),
                ("f/inner", "f\n", F),
            ],
            &[
                ("a.txt", "a\n", L),
                ("d/y/z", "z2\n", F),
                ("d0", "new\n", F),
            ],
        ]);
        let mut walk = repo.revwalk().unwrap();
        walk.push_ref("refs/heads/main").unwrap();
        for oid in walk {
            let commit = repo.find_commit(oid.unwrap()).unwrap();
            let old = commit.parent(0).ok().map(|p| p.tree().unwrap());
            let new = commit.tree().unwrap();
            let theirs: Vec<_> = changed_in(&plain_diff(&repo, old.as_ref(), &new, 0).unwrap())
                .into_iter()
                .map(|c| (c.path, c.status, c.old, c.new))
                .collect();
            let mut ours = Vec::new();
            plain_changes(&repo, old.as_ref().map(Tree::id), new.id(), &mut ours).unwrap();
            let mut ours: Vec<_> = ours
                .into_iter()
                .map(|c| (c.path, c.status, c.old, c.new))
                .collect();
            let mut theirs_sorted = theirs.clone();
            theirs_sorted.sort_by(|a, b| a.0.cmp(&b.0));
            ours.sort_by(|a, b| a.0.cmp(&b.0));
            assert_eq!(ours, theirs_sorted, "commit {}", commit.id());
        }
    }

    #[test]
    fn a_walk_past_its_budget_answers_what_it_found_and_the_cursor_goes_on() {
        let (_d, repo) = counting_history(40);
        let whole = list_commits(
            &repo,
            &CommitQuery {
                max_results: 200,
                ..CommitQuery::default()
            },
        )
        .unwrap();
        assert_eq!(whole.commits.len(), 40);
        assert!(!whole.budget_spent);
        let mut q = CommitQuery {
            max_results: 200,
            control: WalkControl::default().with_budget(Duration::ZERO),
            ..CommitQuery::default()
        };
        let mut pieces = Vec::new();
        loop {
            let page = list_commits(&repo, &q).unwrap();
            // With no time at all, each call looks at one commit and says so.
            assert_eq!(page.commits.len(), 1);
            pieces.extend(page.commits);
            match page.next_cursor {
                Some(c) => {
                    assert!(page.budget_spent);
                    q.cursor = Some(c);
                }
                None => break,
            }
        }
        assert_eq!(pieces, whole.commits);
    }

    #[test]
    fn a_cancelled_walk_stops_and_reports_its_progress() {
        let (_d, repo) = counting_history(600);
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = seen.clone();
        let control = WalkControl::default().with_progress(std::sync::Arc::new(move |w, f| {
            sink.lock().unwrap().push((w, f));
        }));
        let q = CommitQuery {
            path: Some("nothing/here".into()),
            max_results: 30,
            control: control.clone(),
            ..CommitQuery::default()
        };
        let page = list_commits(&repo, &q).unwrap();
        assert!(page.commits.is_empty() && page.next_cursor.is_none());
        let reports = seen.lock().unwrap().clone();
        assert_eq!(reports, vec![(256, 0), (512, 0), (600, 0)]);
        control.cancel();
        let err = list_commits(&repo, &q).unwrap_err();
        assert!(err.to_string().contains("cancelled"), "{err}");
    }

    #[test]
    fn a_renamed_file_holding_the_text_neither_adds_nor_removes_it() {
        let (_d, repo) = history(&[
            &[("old.rs", "fn needle() {}\nmore\nlines\nhere\n", F)],
            &[("new.rs", "fn needle() {}\nmore\nlines\nhere\n", F)],
            &[
                ("new.rs", "fn needle() {}\nmore\nlines\nhere\n", F),
                ("b.rs", "needle\n", F),
            ],
        ]);
        for (mode, expected) in [
            (HistoryMode::Added, vec!["c2", "c0"]),
            (HistoryMode::Removed, vec![]),
        ] {
            let q = CommitQuery {
                max_results: 30,
                matching: Some(HistoryMatch {
                    text: "needle".into(),
                    mode,
                    path_glob: None,
                }),
                ..CommitQuery::default()
            };
            let page = list_commits(&repo, &q).unwrap();
            let subjects: Vec<_> = page.commits.iter().map(|c| c.subject.as_str()).collect();
            assert_eq!(subjects, expected, "{mode:?}");
        }
    }
}
