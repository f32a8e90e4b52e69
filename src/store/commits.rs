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

use git2::{Commit, Delta, DiffFindOptions, DiffOptions, Oid, Patch, Repository, Sort, Tree};

use super::{Store, StoreError, git};
use crate::model::{
    BlameQuery, ChangeStatus, ChangedPath, CommitInfo, CommitPage, CommitQuery, DiffDetail,
    DiffQuery, DiffResult, FileDiff, FileList, HistoryMode, MAX_BODY_BYTES, MAX_PATCH_BYTES,
    RepoId, RevSpec, UpdateControl, UpdateOutcome, rfc3339,
};
use crate::rules::PathSet;

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
    let mut opts = DiffOptions::new();
    opts.context_lines(context_lines);
    let mut diff = repo
        .diff_tree_to_tree(old, Some(new), Some(&mut opts))
        .map_err(git::git_err)?;
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
    let message = String::from_utf8_lossy(commit.message_bytes()).into_owned();
    let mut lines = message.splitn(2, '\n');
    let subject = lines.next().unwrap_or("").trim_end().to_string();
    let rest = lines.next().unwrap_or("").trim();
    let (body, body_truncated) = cut(rest, MAX_BODY_BYTES);
    CommitInfo {
        id: commit.id().to_string(),
        parents: commit.parent_ids().map(|p| p.to_string()).collect(),
        author: String::from_utf8_lossy(commit.author().name_bytes()).into_owned(),
        time: rfc3339(commit.time().seconds()),
        subject,
        body: body.to_string(),
        body_truncated,
        changes,
    }
}

/// Whether the entry at `path` (a file or a directory) differs between two trees: the
/// cheap test `git log -- PATH` makes before any diff.
fn path_differs(old: Option<&Tree<'_>>, new: &Tree<'_>, path: &str) -> bool {
    let at = |t: &Tree<'_>| t.get_path(Path::new(path)).ok().map(|e| e.id());
    at(new) != old.and_then(at)
}

/// Whether `path` is `dir` or lies below it.
fn under(dir: &str, path: &str) -> bool {
    path == dir || (path.starts_with(dir) && path.as_bytes().get(dir.len()) == Some(&b'/'))
}

/// How often `needle` occurs in a blob (0 for a missing or binary one).
fn occurrences(repo: &Repository, blob: Oid, needle: &[u8]) -> usize {
    if blob.is_zero() {
        return 0;
    }
    match repo.find_blob(blob) {
        Ok(b) if !b.is_binary() => memchr::memmem::find_iter(b.content(), needle).count(),
        _ => 0,
    }
}

/// Whether `commit`'s diff adds or removes `needle` in a file of `changes` (the
/// visible ones), as `git log -S` counts: occurrences before against after.
fn pickaxe(
    repo: &Repository,
    diff: &git2::Diff<'_>,
    needle: &str,
    mode: HistoryMode,
    glob: Option<&crate::rules::PathGlob>,
    visible: Option<&PathSet>,
) -> bool {
    diff.deltas().any(|d| {
        let Some(change) = visible_change(&d, visible) else {
            return false;
        };
        if glob.is_some_and(|g| !g.is_match(&change.path)) {
            return false;
        }
        let before = occurrences(repo, d.old_file().id(), needle.as_bytes());
        let after = occurrences(repo, d.new_file().id(), needle.as_bytes());
        match mode {
            HistoryMode::Added => after > before,
            HistoryMode::Removed => before > after,
            HistoryMode::Message => false,
        }
    })
}

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

/// A page of the repo's commits, newest first (parents always after their
/// children), filtered by `q`. A commit counts as changing what it changes against
/// its first parent; a path-limited view sees only commits changing one of its
/// paths, and only those paths in their change lists.
pub fn list_commits(repo: &Repository, q: &CommitQuery) -> Result<CommitPage, StoreError> {
    let head = git::head(repo)?;
    let (start, skip) = match &q.cursor {
        None => (head, 0),
        Some((at, skip)) => {
            let at = Oid::from_str(at)
                .ok()
                .filter(|at| *at == head || repo.graph_descendant_of(head, *at).unwrap_or(false))
                .ok_or_else(|| {
                    StoreError::Invalid(
                        "the cursor is not one this repo's history gave: start again without it"
                            .into(),
                    )
                })?;
            (at, *skip)
        }
    };
    let mut walk = repo.revwalk().map_err(git::git_err)?;
    walk.set_sorting(Sort::TOPOLOGICAL | Sort::TIME)
        .map_err(git::git_err)?;
    walk.push(start).map_err(git::git_err)?;
    let visible = q.visible.as_deref();
    let author = q.author.as_ref().map(|a| a.to_lowercase());
    let message_needle = q
        .matching
        .as_ref()
        .filter(|m| m.mode == HistoryMode::Message)
        .map(|m| m.text.to_lowercase());
    let mut commits = Vec::new();
    let mut walked = 0usize;
    let mut more = false;
    for oid in walk {
        let oid = oid.map_err(git::git_err)?;
        walked += 1;
        if walked <= skip {
            continue;
        }
        if commits.len() == q.max_results {
            more = true;
            walked -= 1;
            break;
        }
        let commit = repo.find_commit(oid).map_err(git::git_err)?;
        let time = commit.time().seconds();
        if q.since.is_some_and(|s| time < s) || q.until.is_some_and(|u| time > u) {
            continue;
        }
        if let Some(a) = &author
            && !String::from_utf8_lossy(commit.author().name_bytes())
                .to_lowercase()
                .contains(a.as_str())
        {
            continue;
        }
        if let Some(needle) = &message_needle
            && !String::from_utf8_lossy(commit.message_bytes())
                .to_lowercase()
                .contains(needle.as_str())
        {
            continue;
        }
        let tree = commit.tree().map_err(git::git_err)?;
        let old = parent_tree(&commit)?;
        if let Some(path) = &q.path
            && !path_differs(old.as_ref(), &tree, path)
        {
            continue;
        }
        let diff = tree_diff(repo, old.as_ref(), &tree, visible, 0)?;
        let changes = changes_of(&diff, visible);
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
        if let Some(m) = &q.matching
            && m.mode != HistoryMode::Message
            && !pickaxe(repo, &diff, &m.text, m.mode, m.path_glob.as_ref(), visible)
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
        commits.push(info_of(&commit, changes));
    }
    Ok(CommitPage {
        head: start.to_string(),
        commits,
        next_cursor: more.then(|| (start.to_string(), walked)),
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
    let listing = tree_diff(repo, old.as_ref(), &tree, visible, 0)?;
    let changes = changes_of(&listing, visible);
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

    /// A page of repo `id`'s commits, newest first (parents always after their
    /// children), filtered by `q`. A commit counts as changing what it changes against
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

    /// One new commit on `main` undoing commit `rev` (against its parent), through the
    /// same writer path as an update ([`Store::commit_on_head`]). A revert that
    /// conflicts with later changes, of a merge commit, or (under a view) touching a
    /// path the view does not see, is refused and changes nothing; a commit the view
    /// sees nothing of is not found.
    pub fn revert(
        &self,
        id: &RepoId,
        rev: &RevSpec,
        expected_head: Option<&str>,
        message: Option<&str>,
        author: &str,
        visible: Option<&PathSet>,
    ) -> Result<UpdateOutcome, StoreError> {
        self.commit_on_head(
            id,
            expected_head,
            message,
            author,
            &UpdateControl::default(),
            // A revert brings back blobs the repo already holds.
            0,
            |repo, head, old_tree| revert_tree(repo, rev, head, old_tree, visible),
        )
        .map_err(|e| self.explain(e))
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
