//! Ranked natural-language retrieval over one repository: which files (and which lines
//! in them) answer a question in words.
//!
//! Each file at a commit is a document with five fields, scored by BM25 each and mixed
//! linearly:
//! - `body`: its text, as identifier-split, lightly stemmed terms ([`terms`]);
//! - `path`: its path's words (`src/retry/backoff.rs` → `src`, `retry`, `backoff`, `rs`);
//! - `defs`: the names it defines, found by per-language patterns ([`symbols`]);
//! - `msgs`: the messages of earlier commits that changed it — only commits in the
//!   indexed commit's own ancestry, so an answer never draws on later history;
//! - `comments`: the words of its comments and docstrings ([`terms::for_each_comment`]),
//!   which count again, for questions asked in words only ([`Weights::comments`]).
//!
//! For a question asked in words, the best files are then read and raised by how much
//! of the question one chunk of each holds (proximity, [`Weights::proximity`]).
//! Optionally (off by default, see [`Weights`]) the best files then pass a share of
//! their score to files that often changed in the same commits (co-change). Each result
//! is cut to its best structure-aware chunk ([`chunks`]).
//!
//! Everything is learned from the repository itself: no model, nothing downloaded.
//! The index is incremental: [`RankedIndex::advance`] re-reads only the files whose
//! blobs changed between two trees and only the commits that differ between the two
//! ancestries (adding new ones, withdrawing ones the new head does not descend from).

pub mod backing;
mod build;
pub mod chunks;
pub mod dict;
pub mod disk;
pub mod field;
pub mod rerank;
pub mod resume;
pub mod role;
pub mod symbols;
pub mod terms;
mod workers;

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use git2::{Oid, Repository};

use dict::Dict;
use field::{Bm25, Field, count};

use crate::model::{RankedHit, RankedQuery};

/// What building or updating a ranked index can fail with.
#[derive(Debug, thiserror::Error)]
pub enum RankedError {
    /// libgit2 failed reading the repository.
    #[error("git error while indexing: {0}")]
    Git(String),
    /// A large build's files could not be written, or what was written did not read
    /// back.
    #[error("the ranked index could not be stored: {0}")]
    Store(String),
}

impl From<git2::Error> for RankedError {
    fn from(e: git2::Error) -> Self {
        RankedError::Git(e.message().to_string())
    }
}

/// Files larger than this are indexed by their path, definitions and history only:
/// generated data and vendored bundles would otherwise dominate the body field.
pub const MAX_INDEXED_BYTES: usize = 512 * 1024;

/// Where a build may find a file's text without inflating its blob (the line index at
/// the same head holds every text file uncompressed): called with a path, it hands the
/// file's bytes to the reader and returns true, or returns false and the blob is read.
/// It is called from every reading thread.
pub type StoredText<'a> = &'a (dyn Fn(&str, &mut dyn FnMut(&[u8])) -> bool + Sync);

/// A [`StoredText`] that holds nothing: every file is read from its blob.
pub fn no_stored_text(_path: &str, _read: &mut dyn FnMut(&[u8])) -> bool {
    false
}
/// A commit touching more files than this is a sweep (reformatting, a license header,
/// a rename of a directory); its message says little about any one file.
pub const MAX_FILES_PER_COMMIT: usize = 40;
/// The first build reads at most this many commits, newest first: enough history for
/// every file of a large project, without minutes of diffing on a decades-old one.
pub const MAX_HISTORY_COMMITS: usize = 50_000;
/// A first build to be stored spills its documents to files once they pass this many
/// bytes in memory ([`RankedIndex::build_stored`]): a repository whose index is larger
/// is built without ever holding all of it.
pub const SPILL_AFTER_BYTES: u64 = 64 << 20;
/// Commits touching more files than this count for co-change: pairs grow as its square.
const MAX_COCHANGE_FILES: usize = 12;

/// How much each signal counts. The defaults are round numbers set by hand and checked
/// on two repositories' histories and on questions in words over three others (see
/// `BENCHMARKS.md`), not fitted to them. Co-change and feedback are off by default:
/// their gains did not hold across sets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weights {
    /// The file's text.
    pub body: f32,
    /// The file's path.
    pub path: f32,
    /// The names the file defines.
    pub defs: f32,
    /// Messages of earlier commits that changed the file.
    pub msgs: f32,
    /// The file's comments and docstrings (also part of its text): prose, nearer a
    /// question's words than code is. Counts only for a query asking a question in
    /// words ([`terms::is_question`]): a description of a change (a commit message)
    /// names code, and documented files outranked the changed ones.
    pub comments: f32,
    /// Share of a top file's score passed to the files that change with it.
    pub cochange: f32,
    /// How much each file role counts before the question's words are matched.
    pub roles: role::RolePriors,
    /// Length normalization of the body field (BM25's `b`).
    pub body_b: f32,
    /// Weight of the terms the best first-pass files share, added to the query in a
    /// second pass (pseudo-relevance feedback); 0 for none.
    pub feedback: f32,
    /// Score factor (1 + scope) for a file a commit message's leading `word:` names
    /// ([`terms::scope_words`]): a directory on its path, its stem, or its stem's first
    /// part (`sync:` → `sync/`, `sync_mpsc.rs`).
    pub scope: f32,
    /// What the best few files pass on to the files related to them
    /// ([`rerank::lifts`]): by default a test named after one of the best 30 sources is
    /// raised to 0.7 of that source's score (a change is tested beside its source).
    /// Sibling, co-change and source-from-test lifts are measured options, off.
    pub related: rerank::Related,
    /// The queries the relations count for.
    pub related_for: RelatedFor,
    /// How much a file gains where the query's words meet: each of the best
    /// [`Weights::proximity_depth`] files' score is multiplied by `1 + proximity × c`,
    /// `c` the share of the query's weight (its terms' IDF) that the file's best chunk
    /// holds ([`chunks::coverage`]). It needs the files' text, so it counts in
    /// [`RankedIndex::rank_reading`] and [`RankedIndex::answer`], not in
    /// [`RankedIndex::rank`]; 0 for none.
    pub proximity: f32,
    /// How many of the best files [`Weights::proximity`] reads and reorders.
    pub proximity_depth: usize,
    /// Whether [`Weights::proximity`] counts for every query, or only for a question
    /// asked in words ([`terms::is_question`]).
    pub proximity_all: bool,
}

/// The queries [`Weights::related`] counts for. By default commit messages only: a
/// change names the code it changes and its test changes with it, where a question in
/// words asks where behaviour lives (tests lifted beside their sources cost the dev
/// questions R@10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelatedFor {
    /// Every query.
    All,
    /// Queries that do not ask a question in words ([`terms::is_question`]).
    Statements,
    /// Queries with a leading `word:` prefix ([`terms::scope_words`]): commit messages.
    Prefixed,
}

impl Weights {
    /// How many of the best files [`Weights::proximity`] reorders for `query`: 0 when
    /// it does not count for it.
    fn proximity_depth_for(&self, query: &str) -> usize {
        if self.proximity > 0.0 && (self.proximity_all || terms::is_question(query)) {
            self.proximity_depth
        } else {
            0
        }
    }
}

impl Default for Weights {
    fn default() -> Self {
        Self {
            body: 1.0,
            path: 1.0,
            defs: 0.5,
            msgs: 0.7,
            comments: 0.5,
            cochange: 0.0,
            roles: role::RolePriors::default(),
            body_b: 0.75,
            feedback: 0.0,
            scope: 0.1,
            related: rerank::Related {
                pair: 0.7,
                floor: true,
                ..rerank::Related::none()
            },
            related_for: RelatedFor::Prefixed,
            proximity: 0.5,
            proximity_depth: 20,
            proximity_all: false,
        }
    }
}

/// What one commit says: its message's terms and the paths it changed. Not kept: it is
/// read from git again when the commit leaves the history, which costs one diff then
/// and saves holding every kept commit's terms and paths in memory all along.
#[derive(Debug, Clone)]
struct CommitRecord {
    terms: Vec<(u32, u32)>,
    paths: Vec<String>,
}

/// What the repository's history says about each path.
#[derive(Debug, Default, Clone)]
struct History {
    /// The commits whose records are in the sums below, oldest first, each once: the
    /// oldest leave first once more than the cap are kept, so a long-running server's
    /// history stays bounded however many commits land. 20 bytes a commit: no set
    /// beside it, since only a head that does not descend from the last one asks
    /// which commits are kept, and one pass over this list answers that.
    kept: std::collections::VecDeque<Oid>,
    /// path → summed message term counts of the kept commits that changed it.
    per_file: HashMap<String, HashMap<u32, u32>>,
    /// path → how many kept commits changed it.
    touches: HashMap<String, u32>,
    /// path → path → how many small kept commits changed both.
    pairs: HashMap<String, HashMap<String, u32>>,
}

impl History {
    fn apply(&mut self, rec: &CommitRecord, sign: i64, dirty: &mut HashSet<String>) {
        let bump = |v: &mut u32, by: u32| {
            *v = if sign > 0 {
                v.saturating_add(by)
            } else {
                v.saturating_sub(by)
            }
        };
        // Entries that fall to zero leave their maps, and maps left empty leave theirs:
        // paths come and go, and a long-running index must not keep every path it saw.
        for p in &rec.paths {
            let m = self.per_file.entry(p.clone()).or_default();
            for &(t, c) in &rec.terms {
                let e = m.entry(t).or_default();
                bump(e, c);
                if *e == 0 {
                    m.remove(&t);
                }
            }
            if m.is_empty() {
                self.per_file.remove(p);
            }
            let n = self.touches.entry(p.clone()).or_default();
            bump(n, 1);
            if *n == 0 {
                self.touches.remove(p);
            }
            dirty.insert(p.clone());
        }
        if rec.paths.len() <= MAX_COCHANGE_FILES {
            for a in &rec.paths {
                let m = self.pairs.entry(a.clone()).or_default();
                for b in rec.paths.iter().filter(|b| *b != a) {
                    let e = m.entry(b.clone()).or_default();
                    bump(e, 1);
                    if *e == 0 {
                        m.remove(b);
                    }
                }
                if m.is_empty() {
                    self.pairs.remove(a);
                }
            }
        }
    }
}

/// How a build goes: files read, then commits read for the history fields, each out
/// of its total (told every few hundred, and at the end of each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RankedProgress {
    /// Files of the tree read and indexed.
    Files {
        /// Files done.
        done: u64,
        /// Files to do.
        total: u64,
    },
    /// A build gone on from a checkpoint an interrupted one left: the files before
    /// `from` were read then, not again.
    Resumed {
        /// Files taken from the checkpoint.
        from: u64,
        /// Files in all.
        total: u64,
    },
    /// Commits of the history read.
    Commits {
        /// Commits done.
        done: u64,
        /// Commits to do.
        total: u64,
    },
}

/// How often a build tells its progress, in files or commits.
const PROGRESS_EVERY: usize = 512;

/// How much an index update did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AdvanceStats {
    /// Files (re)read or dropped.
    pub files: usize,
    /// Commits added to or withdrawn from the history fields.
    pub commits: usize,
}

/// A ranked file: its path and score.
#[derive(Debug, Clone, PartialEq)]
pub struct RankedFile {
    /// The file.
    pub path: String,
    /// Its score (higher is better; comparable only within one answer).
    pub score: f32,
}

/// A ranked index of one repository at one commit.
#[derive(Debug, Clone)]
pub struct RankedIndex {
    head: Oid,
    dict: Dict,
    slot_of: HashMap<String, u32>,
    paths: Vec<Option<String>>,
    blobs: Vec<Oid>,
    /// Each slot's role, from its path ([`role::role`]); not stored, derived on load.
    roles: Vec<role::Role>,
    free: Vec<u32>,
    live: usize,
    body: Field,
    path: Field,
    defs: Field,
    msgs: Field,
    comments: Field,
    history: History,
    /// Most commits whose messages are kept ([`MAX_HISTORY_COMMITS`]).
    history_cap: usize,
}

/// Whether one of `words` names `path`: a directory on it or the file's stem, whole or
/// by its first part (`sync` names `tokio/src/sync/mutex.rs` and `tests/sync_mpsc.rs`,
/// `tokio` names `tokio-util/src/lib.rs`).
fn path_named(path: &str, words: &[String]) -> bool {
    // Called for every scored file of a prefixed query: no allocation.
    let names = |c: &str| {
        let first = c.split(['_', '-', '.']).next().unwrap_or("");
        words
            .iter()
            .any(|w| c.eq_ignore_ascii_case(w) || first.eq_ignore_ascii_case(w))
    };
    let (dirs, name) = path.rsplit_once('/').unwrap_or(("", path));
    names(name.split('.').next().unwrap_or("")) || (!dirs.is_empty() && dirs.split('/').any(names))
}

/// Drop trailer lines (`Signed-off-by:`, `Co-authored-by:` …): names, not meaning.
fn message_text(msg: &str) -> String {
    msg.lines()
        .filter(|l| {
            let l = l.trim_start();
            !l.split_once(':').is_some_and(|(k, _)| {
                k.ends_with("-by") && !k.contains(' ') || k.eq_ignore_ascii_case("Change-Id")
            })
        })
        .collect::<Vec<_>>()
        .join("\n")
}

impl RankedIndex {
    /// The five fields, in the stored order: body, path, defs, msgs, comments.
    fn fields(&self) -> [&Field; 5] {
        [
            &self.body,
            &self.path,
            &self.defs,
            &self.msgs,
            &self.comments,
        ]
    }

    /// The five fields, in the stored order, to change.
    fn fields_mut(&mut self) -> [&mut Field; 5] {
        [
            &mut self.body,
            &mut self.path,
            &mut self.defs,
            &mut self.msgs,
            &mut self.comments,
        ]
    }

    /// Index the tree and ancestry of `commit`.
    pub fn build(repo: &Repository, commit: Oid) -> Result<Self, RankedError> {
        Self::build_with(repo, commit, &|_| {})
    }

    /// [`RankedIndex::build`], telling `progress` how it goes.
    pub fn build_with(
        repo: &Repository,
        commit: Oid,
        progress: &dyn Fn(RankedProgress),
    ) -> Result<Self, RankedError> {
        Self::build_capped(repo, commit, progress, MAX_HISTORY_COMMITS)
    }

    /// [`RankedIndex::build_with`], for an index to be stored at `path`: a large
    /// build (its documents past [`SPILL_AFTER_BYTES`]) spills them to files beside
    /// `path` as it reads, stores itself at `path` (renamed over whatever is there),
    /// and is opened from it, mapped, so that it never holds its whole index in memory;
    /// the `bool` says so. A small one is built in memory as by
    /// [`RankedIndex::build_with`] (`false`), for the caller to store.
    pub fn build_stored(
        repo: &Repository,
        commit: Oid,
        progress: &dyn Fn(RankedProgress),
        path: &std::path::Path,
    ) -> Result<(Self, bool), RankedError> {
        Self::build_stored_after(repo, commit, progress, path, SPILL_AFTER_BYTES)
    }

    /// [`RankedIndex::build_stored`], spilling once the documents pass `after_bytes`.
    pub fn build_stored_after(
        repo: &Repository,
        commit: Oid,
        progress: &dyn Fn(RankedProgress),
        path: &std::path::Path,
        after_bytes: u64,
    ) -> Result<(Self, bool), RankedError> {
        Self::build_stored_resuming(
            repo,
            commit,
            progress,
            path,
            after_bytes,
            None,
            &no_stored_text,
        )
    }

    /// [`RankedIndex::build_stored_after`], keeping checkpoints under `resume` once
    /// the build spills, and going on from one of the same tree an interrupted build
    /// left there ([`resume`]); a build that ends (stored, or held for the caller to
    /// store) removes the checkpoint. Files' text is taken from `text` where it has
    /// it, from their blobs otherwise.
    pub fn build_stored_resuming(
        repo: &Repository,
        commit: Oid,
        progress: &dyn Fn(RankedProgress),
        path: &std::path::Path,
        after_bytes: u64,
        resume: Option<resume::ResumePlan>,
        text: StoredText<'_>,
    ) -> Result<(Self, bool), RankedError> {
        Self::build_spilling(
            repo,
            commit,
            progress,
            path,
            (after_bytes, disk::POSTINGS_PASS_BYTES),
            resume,
            text,
        )
    }

    /// [`RankedIndex::build_stored`] with the bounds given: documents spill past
    /// `after_bytes`, and postings are made in passes of `pass_bytes`.
    fn build_spilling(
        repo: &Repository,
        commit: Oid,
        progress: &dyn Fn(RankedProgress),
        path: &std::path::Path,
        (after_bytes, pass_bytes): (u64, usize),
        resume: Option<resume::ResumePlan>,
        text: StoredText<'_>,
    ) -> Result<(Self, bool), RankedError> {
        let dir = resume.as_ref().map(|r| r.dir.clone());
        let plan = build::SpillPlan {
            beside: path.to_path_buf(),
            after_bytes,
            resume,
        };
        let mut ix = Self::empty(commit, MAX_HISTORY_COMMITS);
        let mut spilled = None;
        ix.update(
            repo,
            None,
            commit,
            progress,
            (Some(plan), text),
            &mut spilled,
        )?;
        let Some(spilled) = spilled else {
            // Held in memory: nothing of it is in a checkpoint (one for another tree was
            // removed as the build began).
            if let Some(dir) = &dir {
                resume::discard(dir);
            }
            return Ok((ix, false));
        };
        let ix = ix
            .store_spilled(spilled, path, pass_bytes)
            .map_err(|e| RankedError::Store(e.to_string()))?;
        // Stored: the checkpoint has served.
        if let Some(dir) = &dir {
            resume::discard(dir);
        }
        Ok((ix, true))
    }

    fn empty(commit: Oid, history_cap: usize) -> Self {
        Self {
            head: commit,
            dict: Dict::default(),
            slot_of: HashMap::new(),
            paths: Vec::new(),
            blobs: Vec::new(),
            roles: Vec::new(),
            free: Vec::new(),
            live: 0,
            body: Field::default(),
            path: Field::default(),
            defs: Field::default(),
            msgs: Field::default(),
            comments: Field::default(),
            history: History::default(),
            history_cap,
        }
    }

    fn build_capped(
        repo: &Repository,
        commit: Oid,
        progress: &dyn Fn(RankedProgress),
        history_cap: usize,
    ) -> Result<Self, RankedError> {
        let mut ix = Self::empty(commit, history_cap);
        ix.update(
            repo,
            None,
            commit,
            progress,
            (None, &no_stored_text),
            &mut None,
        )?;
        Ok(ix)
    }

    /// The commit this index reflects.
    pub fn head(&self) -> Oid {
        self.head
    }

    /// How many files are indexed.
    pub fn len(&self) -> usize {
        self.live
    }

    /// How many indexed files pass `keep`.
    pub fn count(&self, keep: &dyn Fn(&str) -> bool) -> usize {
        self.paths.iter().flatten().filter(|p| keep(p)).count()
    }

    /// Whether no file is indexed.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Move the index to `commit`, re-reading only what differs.
    pub fn advance(&mut self, repo: &Repository, commit: Oid) -> Result<AdvanceStats, RankedError> {
        if commit == self.head {
            return Ok(AdvanceStats::default());
        }
        self.update(
            repo,
            Some(self.head),
            commit,
            &|_| {},
            (None, &no_stored_text),
            &mut None,
        )
    }

    fn intern_text(&mut self, text: &str, out: &mut Vec<u32>) {
        let dict = &mut self.dict;
        terms::for_each_term(text, |t| out.push(dict.intern(t)));
    }

    /// Forget the terms no file and no kept commit holds any more, once enough may
    /// have died (see [`Dict::sweep_due`]). Ids below `held_below` are held by files
    /// whatever the fields say: a spilled build's, whose documents are not in its
    /// fields.
    fn sweep_terms(&mut self, held_below: u32) {
        if !self.dict.sweep_due() {
            return;
        }
        let mut in_history = vec![false; self.dict.id_bound() as usize];
        // A kept commit changed at least one path, so its terms are in that path's sums.
        for m in self.history.per_file.values() {
            for &t in m.keys() {
                in_history[t as usize] = true;
            }
        }
        let fields = [
            &self.body,
            &self.path,
            &self.defs,
            &self.msgs,
            &self.comments,
        ];
        let forgotten = self.dict.sweep(&|t| {
            t < held_below || in_history[t as usize] || fields.iter().any(|f| f.df(t) > 0)
        });
        let bound = self.dict.id_bound();
        for f in self.fields_mut() {
            f.truncate_terms(bound);
        }
        tracing::debug!(forgotten, kept = self.dict.len(), "ranked terms swept");
    }

    /// Move from `old` (none: an empty index) to `new`. A first build given `spill`
    /// may spill its file fields' documents ([`build::SpillPlan`]): they are then left
    /// in `spilled` (body, path, definitions, comments), and those fields empty. A first
    /// build takes files' text from `text` where it has it.
    fn update(
        &mut self,
        repo: &Repository,
        old: Option<Oid>,
        new: Oid,
        progress: &dyn Fn(RankedProgress),
        (spill, text): (Option<build::SpillPlan>, StoredText<'_>),
        spilled: &mut Option<[field::SpilledDocuments; 4]>,
    ) -> Result<AdvanceStats, RankedError> {
        let new_tree = repo.find_commit(new)?.tree()?;
        let old_tree = match old {
            Some(o) => Some(repo.find_commit(o)?.tree()?),
            None => None,
        };
        let mut stats = AdvanceStats::default();
        let diff = repo.diff_tree_to_tree(old_tree.as_ref(), Some(&new_tree), None)?;
        // The mode as the tree records it (git2's `DiffFile::mode` panics on one it does
        // not know). A first build reads every tree once, for all its files, where
        // looking each path up would read its trees again for each file.
        let regular = |mode: u32| matches!(mode, 0o100644 | 0o100755);
        let first_modes = match &old_tree {
            None => {
                let mut index = git2::Index::new()?;
                index.read_tree(&new_tree)?;
                Some(
                    index
                        .iter()
                        .map(|e| (e.path, e.mode))
                        .collect::<HashMap<Vec<u8>, u32>>(),
                )
            }
            Some(_) => None,
        };
        let mut changed: Vec<(String, Option<Oid>)> = Vec::new();
        for d in diff.deltas() {
            if let Some(p) = d.old_file().path().and_then(|p| p.to_str())
                && !d.old_file().id().is_zero()
            {
                changed.push((p.to_string(), None));
            }
            let nf = d.new_file();
            if let Some(p) = nf.path().and_then(|p| p.to_str())
                && !nf.id().is_zero()
                && match &first_modes {
                    Some(modes) => modes.get(p.as_bytes()).is_some_and(|&m| regular(m)),
                    None => new_tree
                        .get_path(std::path::Path::new(p))
                        .is_ok_and(|e| regular(e.filemode() as u32)),
                }
            {
                changed.push((p.to_string(), Some(nf.id())));
            }
        }
        let total = changed.len();
        if old.is_none() && self.paths.is_empty() {
            // A first build: every file is new, read on every core.
            let files: Vec<(String, Oid)> = changed
                .into_iter()
                .filter_map(|(p, b)| Some((p, b?)))
                .collect();
            stats.files = files.len();
            *spilled = self.build_files(repo, &files, progress, (spill, text), new_tree.id())?;
            // Every term the files were read with is in one of their documents.
            let held_below = if spilled.is_some() {
                self.dict.id_bound()
            } else {
                0
            };
            stats.commits = self.update_history(repo, old, new, progress)?;
            self.head = new;
            self.sweep_terms(held_below);
            let packed = self.pack_paths();
            self.dict.compact();
            self.unpack_paths(packed);
            return Ok(stats);
        }
        for (i, (path, blob)) in changed.into_iter().enumerate() {
            stats.files += 1;
            match blob {
                None => self.remove_file(&path),
                Some(b) => self.put_file(repo, &path, b)?,
            }
            if (i + 1) % PROGRESS_EVERY == 0 || i + 1 == total {
                progress(RankedProgress::Files {
                    done: i as u64 + 1,
                    total: total as u64,
                });
            }
        }
        stats.commits = self.update_history(repo, old, new, progress)?;
        self.head = new;
        self.sweep_terms(0);
        if old.is_none() {
            // A build ends with every field in its flat base, the fastest to query, and
            // the terms in a sorted table, a fraction of the hash map's size.
            for f in self.fields_mut() {
                f.compact();
            }
            // The paths were allocated among the terms' millions of short strings; left
            // where they are once those are freed, each would pin a page of freed heap
            // that the allocator cannot give back. So they are moved out of the way
            // (into one buffer) while the terms are freed, and allocated anew after.
            let packed = self.pack_paths();
            self.dict.compact();
            self.unpack_paths(packed);
        }
        Ok(stats)
    }

    /// Index `files` (every one new) into an empty index: their documents are laid end
    /// to end as they are read, and each field's base made from them once. Documents
    /// spilled under `spill` are returned instead, those fields left empty.
    fn build_files(
        &mut self,
        repo: &Repository,
        files: &[(String, Oid)],
        progress: &dyn Fn(RankedProgress),
        (spill, text): (Option<build::SpillPlan>, StoredText<'_>),
        tree: Oid,
    ) -> Result<Option<[field::SpilledDocuments; 4]>, RankedError> {
        let total = files.len();
        let mut built = build::Built::new(spill, tree, total);
        let indexed = |ix: &mut Self, (path, blob): &(String, Oid)| {
            let s = ix.paths.len() as u32;
            ix.paths.push(Some(path.clone()));
            ix.blobs.push(*blob);
            ix.roles.push(role::role(path));
            ix.slot_of.insert(path.clone(), s);
            ix.live += 1;
        };
        let from = match built.take_up() {
            Some(text) => {
                for (file, _) in files.iter().zip(&text).filter(|(_, t)| **t) {
                    indexed(self, file);
                }
                tracing::info!(
                    from = text.len(),
                    total,
                    "ranked build resumed from a checkpoint"
                );
                progress(RankedProgress::Resumed {
                    from: text.len() as u64,
                    total: total as u64,
                });
                text.len()
            }
            None => 0,
        };
        build::read_files(repo, &files[from..], text, &mut built, &mut |i, f| {
            let i = from + i;
            if f.text {
                indexed(self, &files[i]);
            }
            if (i + 1) % PROGRESS_EVERY == 0 || i + 1 == total {
                progress(RankedProgress::Files {
                    done: i as u64 + 1,
                    total: total as u64,
                });
            }
        })?;
        let build::Built {
            terms,
            body,
            path,
            defs,
            comments,
            ..
        } = built;
        let bound = terms.len() as u32;
        // The terms first, sorted: their table is freed before the postings are made.
        self.dict = Dict::from_table(terms);
        if body.is_spilled() {
            let spilled = |d: field::Documents| {
                d.into_spilled()
                    .map_err(|e| RankedError::Store(format!("spilling the build: {e}")))
            };
            return Ok(Some([
                spilled(body)?,
                spilled(path)?,
                spilled(defs)?,
                spilled(comments)?,
            ]));
        }
        let too_large = || RankedError::Git("too many terms to index in one field".into());
        self.body = Field::from_flat(body, bound).ok_or_else(too_large)?;
        self.path = Field::from_flat(path, bound).ok_or_else(too_large)?;
        self.defs = Field::from_flat(defs, bound).ok_or_else(too_large)?;
        self.comments = Field::from_flat(comments, bound).ok_or_else(too_large)?;
        Ok(None)
    }

    /// The paths by slot in one buffer, `paths` and `slot_of` emptied.
    fn pack_paths(&mut self) -> (String, Vec<Option<(usize, usize)>>) {
        let mut buf = String::with_capacity(self.paths.iter().flatten().map(String::len).sum());
        let spans = self
            .paths
            .drain(..)
            .map(|p| {
                p.map(|p| {
                    buf.push_str(&p);
                    (buf.len() - p.len(), buf.len())
                })
            })
            .collect();
        self.paths = Vec::new();
        self.slot_of = HashMap::new();
        (buf, spans)
    }

    /// Undo [`RankedIndex::pack_paths`].
    fn unpack_paths(&mut self, (buf, spans): (String, Vec<Option<(usize, usize)>>)) {
        self.paths = Vec::with_capacity(spans.len());
        self.slot_of = HashMap::with_capacity(spans.len());
        for (slot, span) in spans.into_iter().enumerate() {
            let p = span.map(|(a, b)| buf[a..b].to_string());
            if let Some(p) = &p {
                self.slot_of.insert(p.clone(), slot as u32);
            }
            self.paths.push(p);
        }
    }

    fn remove_file(&mut self, path: &str) {
        if let Some(slot) = self.slot_of.remove(path) {
            for f in self.fields_mut() {
                f.clear(slot);
            }
            self.paths[slot as usize] = None;
            self.free.push(slot);
            self.live -= 1;
        }
    }

    fn put_file(&mut self, repo: &Repository, path: &str, blob: Oid) -> Result<(), RankedError> {
        let b = repo.find_blob(blob)?;
        let bytes = b.content();
        if !crate::text::is_text(bytes) {
            self.remove_file(path);
            return Ok(());
        }
        let text = String::from_utf8_lossy(bytes);
        let slot = match self.slot_of.get(path) {
            Some(&s) => s,
            None => {
                let s = self.free.pop().unwrap_or(self.paths.len() as u32);
                if s as usize == self.paths.len() {
                    self.paths.push(None);
                    self.blobs.push(Oid::zero());
                    self.roles.push(role::Role::Other);
                }
                self.paths[s as usize] = Some(path.to_string());
                self.roles[s as usize] = role::role(path);
                self.slot_of.insert(path.to_string(), s);
                self.live += 1;
                s
            }
        };
        self.blobs[slot as usize] = blob;
        let mut ids = Vec::new();
        if bytes.len() <= MAX_INDEXED_BYTES {
            let dict = &mut self.dict;
            terms::for_each_comment(path, &text, |c| {
                terms::for_each_term(c, |t| ids.push(dict.intern(t)));
            });
        }
        // A comment's words are also the body's: the field adds weight to prose
        // (measured against taking them out of the body, which lost on every set).
        let comments = count(ids.drain(..));
        if bytes.len() <= MAX_INDEXED_BYTES {
            self.intern_text(&text, &mut ids);
        }
        self.body.set(slot, count(ids.drain(..)));
        self.comments.set(slot, comments);
        self.intern_text(path, &mut ids);
        self.path.set(slot, count(ids.drain(..)));
        for d in symbols::definitions(path, &text) {
            self.intern_text(&d.name, &mut ids);
        }
        self.defs.set(slot, count(ids.drain(..)));
        let hist = self.history_terms(path);
        self.msgs.set(slot, hist);
        Ok(())
    }

    fn history_terms(&self, path: &str) -> Vec<(u32, u32)> {
        let mut v: Vec<(u32, u32)> = self
            .history
            .per_file
            .get(path)
            .map(|m| m.iter().map(|(&t, &c)| (t, c)).collect())
            .unwrap_or_default();
        v.sort_unstable();
        v
    }

    fn record(&mut self, repo: &Repository, oid: Oid) -> Result<Option<CommitRecord>, RankedError> {
        let c = repo.find_commit(oid)?;
        // A merge's diff against its first parent repeats the changes of the commits it
        // brings in, which are indexed on their own.
        if c.parent_count() > 1 {
            return Ok(None);
        }
        let tree = c.tree()?;
        let parent_tree = match c.parent_count() {
            0 => None,
            _ => Some(c.parent(0)?.tree()?),
        };
        let diff = repo.diff_tree_to_tree(parent_tree.as_ref(), Some(&tree), None)?;
        if diff.deltas().len() > MAX_FILES_PER_COMMIT {
            return Ok(None);
        }
        let mut paths: Vec<String> = diff
            .deltas()
            .filter_map(|d| {
                d.new_file()
                    .path()
                    .and_then(|p| p.to_str())
                    .map(String::from)
            })
            .collect();
        paths.sort();
        paths.dedup();
        // A commit that changed no path says nothing about any file.
        if paths.is_empty() {
            return Ok(None);
        }
        let mut ids = Vec::new();
        self.intern_text(
            &message_text(&String::from_utf8_lossy(c.message_bytes())),
            &mut ids,
        );
        Ok(Some(CommitRecord {
            terms: count(ids),
            paths,
        }))
    }

    /// Take kept commit `oid`'s record out of the sums, reading it from git again. A
    /// commit git no longer has is an error: the sums can no longer be made right, and
    /// the caller rebuilds.
    fn withdraw(
        &mut self,
        repo: &Repository,
        oid: Oid,
        dirty: &mut HashSet<String>,
    ) -> Result<(), RankedError> {
        if let Some(rec) = self.record(repo, oid)? {
            self.history.apply(&rec, -1, dirty);
        }
        Ok(())
    }

    fn update_history(
        &mut self,
        repo: &Repository,
        old: Option<Oid>,
        new: Oid,
        progress: &dyn Fn(RankedProgress),
    ) -> Result<usize, RankedError> {
        let mut dirty = HashSet::new();
        let mut n = 0;
        if let Some(old) = old {
            // Commits the new head does not descend from leave the history fields.
            let mut walk = repo.revwalk()?;
            walk.push(old)?;
            walk.hide(new)?;
            let gone: HashSet<Oid> = walk.collect::<Result<_, _>>()?;
            if !gone.is_empty() {
                let mut withdrawn = Vec::new();
                self.history.kept.retain(|o| {
                    let keep = !gone.contains(o);
                    if !keep {
                        withdrawn.push(*o);
                    }
                    keep
                });
                for oid in withdrawn {
                    self.withdraw(repo, oid, &mut dirty)?;
                    n += 1;
                }
            }
        }
        let mut walk = repo.revwalk()?;
        walk.set_sorting(git2::Sort::TIME)?;
        walk.push(new)?;
        if let Some(old) = old {
            walk.hide(old)?;
        }
        let fresh: Vec<Oid> = walk.take(self.history_cap).collect::<Result<_, _>>()?;
        // Oldest first, so that `order` stays oldest first.
        let total = fresh.len();
        for (i, oid) in fresh.into_iter().rev().enumerate() {
            if let Some(rec) = self.record(repo, oid)? {
                self.history.apply(&rec, 1, &mut dirty);
                // Not kept already: the new head's ancestors that are kept are the old
                // head's too, and the walk hides those.
                self.history.kept.push_back(oid);
                n += 1;
            }
            if (i + 1) % PROGRESS_EVERY == 0 || i + 1 == total {
                progress(RankedProgress::Commits {
                    done: i as u64 + 1,
                    total: total as u64,
                });
            }
        }
        while self.history.kept.len() > self.history_cap {
            let Some(oldest) = self.history.kept.pop_front() else {
                break;
            };
            self.withdraw(repo, oldest, &mut dirty)?;
        }
        if old.is_none() && self.msgs.term_bound() == 0 {
            // A first build: every file's history at once, made a base in one pass.
            let mut docs = field::Documents::with_capacity(self.paths.len(), 0);
            for p in &self.paths {
                let hist = p
                    .as_deref()
                    .map(|p| self.history_terms(p))
                    .unwrap_or_default();
                docs.push(&hist);
            }
            self.msgs = Field::from_flat(docs, self.dict.id_bound())
                .ok_or_else(|| RankedError::Git("too many terms to index in one field".into()))?;
        } else {
            for p in dirty {
                if let Some(&slot) = self.slot_of.get(&p) {
                    let hist = self.history_terms(&p);
                    self.msgs.set(slot, hist);
                }
            }
        }
        Ok(n)
    }

    /// The query's known terms with their weights (1 + ln of the repeat count).
    fn query_terms(&self, query: &str) -> Vec<(u32, f32)> {
        let mut counts: HashMap<u32, u32> = HashMap::new();
        terms::for_each_term(query, |t| {
            if let Some(id) = self.dict.get(t) {
                *counts.entry(id).or_default() += 1;
            }
        });
        let mut v: Vec<(u32, f32)> = counts
            .into_iter()
            .map(|(t, c)| (t, 1.0 + (c as f32).ln()))
            .collect();
        v.sort_unstable_by_key(|&(t, _)| t);
        v
    }

    /// The best `limit` files for `query`, best first, among those `keep` admits.
    pub fn rank(
        &self,
        query: &str,
        limit: usize,
        w: &Weights,
        keep: &dyn Fn(&str) -> bool,
    ) -> Vec<RankedFile> {
        let q = self.query_terms(query);
        let gated;
        let w = if !terms::is_question(query) {
            gated = Weights {
                comments: 0.0,
                ..*w
            };
            &gated
        } else {
            w
        };
        let priors = role::Priors::for_query(query, &w.roles);
        let n = self.live.max(1);
        let mut acc = vec![0.0f32; self.paths.len()];
        self.score_terms(&q, w, n, &mut acc);
        if w.feedback > 0.0 {
            let extra = self.feedback_terms(&acc, &q, &priors, n);
            let scaled: Vec<(u32, f32)> = extra
                .into_iter()
                .map(|(t, x)| (t, x * w.feedback))
                .collect();
            self.score_terms(&scaled, w, n, &mut acc);
        }
        if w.cochange > 0.0 {
            self.propagate(&mut acc, w.cochange);
        }
        if priors != role::Priors::none() {
            for (s, r) in acc.iter_mut().zip(&self.roles) {
                *s *= priors.factor(*r);
            }
        }
        if w.scope > 0.0 {
            self.scope_boost(query, w.scope, &mut acc);
        }
        let mut scored: Vec<(u32, f32)> = acc
            .iter()
            .enumerate()
            .filter(|&(_, &s)| s > 0.0)
            .map(|(i, &s)| (i as u32, s))
            .collect();
        let better = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if w.related.active()
            && match w.related_for {
                RelatedFor::All => true,
                RelatedFor::Statements => !terms::is_question(query),
                RelatedFor::Prefixed => !terms::scope_words(query).is_empty(),
            }
        {
            self.lift_related(&mut scored, &w.related, better);
        }
        let pick = |scored: &[(u32, f32)]| -> Vec<RankedFile> {
            scored
                .iter()
                .filter_map(|&(slot, score)| {
                    let path = self.paths[slot as usize].as_deref()?;
                    keep(path).then(|| RankedFile {
                        path: path.to_string(),
                        score,
                    })
                })
                .take(limit)
                .collect()
        };
        // A common word scores most files of a large repo: sort only the best few times
        // the limit (the order is total, so they are exactly a full sort's first), and
        // look further only when `keep` turns too many of them away.
        let mut k = limit.saturating_mul(4).max(64);
        while k < scored.len() {
            scored.select_nth_unstable_by(k, better);
            let head = &mut scored[..k];
            head.sort_unstable_by(better);
            let found = pick(head);
            if found.len() == limit {
                return found;
            }
            k = k.saturating_mul(8);
        }
        scored.sort_unstable_by(better);
        pick(&scored)
    }

    /// [`RankedIndex::rank`], then the best [`Weights::proximity_depth`] files raised by
    /// how much of the query one chunk of each holds ([`Weights::proximity`]); `text`
    /// gives a file's text at the index's head (`None`: the file keeps its score). The
    /// order [`RankedIndex::answer`] gives its files.
    pub fn rank_reading(
        &self,
        query: &str,
        limit: usize,
        w: &Weights,
        keep: &dyn Fn(&str) -> bool,
        text: &mut dyn FnMut(&str) -> Option<String>,
    ) -> Vec<RankedFile> {
        let depth = w.proximity_depth_for(query);
        let mut files = self.rank(query, limit.max(depth), w, keep);
        if depth == 0 {
            return files;
        }
        let terms = chunks::QueryTerms::new(&self.term_weights(query));
        for f in files.iter_mut().take(depth) {
            // A file too large to be indexed keeps its score, as its body counted for
            // nothing.
            if let Some(t) = text(&f.path).filter(|t| t.len() <= MAX_INDEXED_BYTES) {
                f.score *= 1.0 + w.proximity * chunks::coverage(&f.path, &t, &terms);
            }
        }
        // Only the first `depth` can move, and only up: stable, equal scores keep the
        // first pass's order.
        files.sort_by(|a, b| b.score.total_cmp(&a.score));
        files.truncate(limit);
        files
    }

    /// Lift the best `k.depth` of `scored` by what the files related to them score
    /// ([`rerank::lifts`]). Lifts only raise scores, so the files left out stay below.
    fn lift_related(
        &self,
        scored: &mut [(u32, f32)],
        k: &rerank::Related,
        better: impl Fn(&(u32, f32), &(u32, f32)) -> std::cmp::Ordering,
    ) {
        let depth = k.depth.min(scored.len());
        if depth < 2 {
            return;
        }
        if depth < scored.len() {
            scored.select_nth_unstable_by(depth, &better);
        }
        let head = &mut scored[..depth];
        head.sort_unstable_by(&better);
        let top: Vec<rerank::Candidate> = head
            .iter()
            .filter_map(|&(slot, score)| {
                Some(rerank::Candidate {
                    path: self.paths[slot as usize].as_deref()?,
                    role: self.roles[slot as usize],
                    score,
                })
            })
            .collect();
        if top.len() != head.len() {
            return;
        }
        let h = &self.history;
        let tie = |a: &str, b: &str| -> f32 {
            let c = h.pairs.get(a).and_then(|m| m.get(b)).copied().unwrap_or(0);
            if c == 0 {
                return 0.0;
            }
            let n = |p: &str| h.touches.get(p).copied().unwrap_or(0).max(1) as f32;
            c as f32 / (n(a) * n(b)).sqrt()
        };
        let lifts = rerank::lifts(&top, k, &tie);
        drop(top);
        for (x, l) in head.iter_mut().zip(lifts) {
            x.1 += l;
        }
    }

    /// Multiply by `1 + scope` the score of each file a commit message's `word:`
    /// prefix names: a directory on its path, its stem, or its stem's first part.
    fn scope_boost(&self, query: &str, scope: f32, acc: &mut [f32]) {
        let words = terms::scope_words(query);
        if words.is_empty() {
            return;
        }
        // Only files whose path field holds a word's first term can be named by it:
        // their postings narrow the check to a few files, where testing every scored
        // path tripled a query's time. A word with no known term is checked everywhere.
        let mut held = vec![0.0f32; acc.len()];
        for word in &words {
            let mut first = None;
            terms::for_each_term(word, |t| {
                if first.is_none() {
                    first = Some(self.dict.get(t));
                }
            });
            match first {
                Some(Some(t)) => {
                    self.path
                        .accumulate(t, 1.0, Bm25::default(), self.live.max(1), &mut held)
                }
                Some(None) => {}
                None => held.iter_mut().for_each(|h| *h = 1.0),
            }
        }
        for ((s, p), h) in acc.iter_mut().zip(&self.paths).zip(&held) {
            if *s > 0.0
                && *h > 0.0
                && let Some(p) = p
                && path_named(p, &words)
            {
                *s *= 1.0 + scope;
            }
        }
    }

    /// Add the BM25 scores of weighted query terms, every field, to `acc`.
    fn score_terms(&self, q: &[(u32, f32)], w: &Weights, n: usize, acc: &mut [f32]) {
        let p = Bm25::default();
        let body = Bm25 {
            k1: 1.2,
            b: w.body_b,
        };
        for &(t, qw) in q {
            self.body.accumulate(t, w.body * qw, body, n, acc);
            self.path
                .accumulate(t, w.path * qw, Bm25 { k1: 1.2, b: 0.3 }, n, acc);
            self.defs.accumulate(t, w.defs * qw, p, n, acc);
            self.msgs.accumulate(t, w.msgs * qw, p, n, acc);
            if w.comments > 0.0 {
                self.comments.accumulate(t, w.comments * qw, p, n, acc);
            }
        }
    }

    /// Terms the best few files of a first pass share (weighted by how rare they are
    /// and how many of those files hold them), not already in the query: the words
    /// the code uses for what the question says in its own words.
    fn feedback_terms(
        &self,
        acc: &[f32],
        q: &[(u32, f32)],
        priors: &role::Priors,
        n: usize,
    ) -> Vec<(u32, f32)> {
        const DOCS: usize = 5;
        const TERMS: usize = 10;
        let mut top: Vec<(usize, f32)> = acc
            .iter()
            .enumerate()
            .filter(|&(_, &s)| s > 0.0)
            .map(|(i, &s)| (i, s * priors.factor(self.roles[i])))
            .collect();
        if top.len() > DOCS {
            top.select_nth_unstable_by(DOCS, |a, b| b.1.total_cmp(&a.1));
            top.truncate(DOCS);
        }
        let Some(best) = top.iter().map(|x| x.1).reduce(f32::max) else {
            return Vec::new();
        };
        let mut weight: HashMap<u32, (f32, u32)> = HashMap::new();
        for &(slot, s) in &top {
            let terms = self.body.terms_of(slot as u32);
            let len: u32 = terms.iter().map(|&(_, c)| c).sum::<u32>().max(1);
            for &(t, c) in terms {
                let e = weight.entry(t).or_default();
                e.0 += (s / best) * c as f32 / len as f32;
                e.1 += 1;
            }
        }
        let mut v: Vec<(u32, f32)> = weight
            .into_iter()
            .filter(|&(t, (_, docs))| docs >= 2 && q.binary_search_by_key(&t, |x| x.0).is_err())
            .map(|(t, (x, _))| (t, x * self.body.idf(t, n)))
            .collect();
        v.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(TERMS);
        let Some(max) = v.first().map(|x| x.1) else {
            return Vec::new();
        };
        v.into_iter().map(|(t, x)| (t, x / max)).collect()
    }

    /// Pass a share of the top files' scores to the files that changed with them.
    fn propagate(&self, acc: &mut [f32], share: f32) {
        let mut top: Vec<(usize, f32)> = acc
            .iter()
            .enumerate()
            .filter(|&(_, &s)| s > 0.0)
            .map(|(i, &s)| (i, s))
            .collect();
        top.sort_unstable_by(|a, b| b.1.total_cmp(&a.1));
        top.truncate(10);
        for (slot, s) in top {
            let Some(path) = self.paths[slot].as_deref() else {
                continue;
            };
            let (Some(pairs), Some(&n)) =
                (self.history.pairs.get(path), self.history.touches.get(path))
            else {
                continue;
            };
            for (other, &c) in pairs {
                if let Some(&o) = self.slot_of.get(other) {
                    acc[o as usize] += share * s * c as f32 / (n as f32 + 2.0);
                }
            }
        }
    }

    /// Whether `commit`'s message is part of the history fields (it is in the indexed
    /// head's ancestry, is not a merge and touched few enough files).
    pub fn includes_commit(&self, commit: Oid) -> bool {
        self.history.kept.contains(&commit)
    }

    /// The blob a path has in the indexed tree.
    pub fn blob_of(&self, path: &str) -> Option<Oid> {
        self.slot_of.get(path).map(|&s| self.blobs[s as usize])
    }

    /// How informative each of `text`'s terms would be as a match for `query`: the
    /// query's terms with their body-field IDF, for scoring chunks.
    pub fn term_weights(&self, query: &str) -> HashMap<String, f32> {
        let n = self.live.max(1);
        let mut out = HashMap::new();
        terms::for_each_term(query, |t| {
            if let Some(id) = self.dict.get(t) {
                out.insert(t.to_string(), self.body.idf(id, n));
            }
        });
        out
    }

    /// About how many bytes of heap the index holds (capacities, not allocator
    /// overhead), to see which part grows.
    pub fn heap_bytes(&self) -> HeapBytes {
        let strings = |v: &mut dyn Iterator<Item = &String>| -> usize {
            v.map(|s| s.capacity() + size_of::<String>()).sum()
        };
        let fields = self.fields().iter().map(|f| f.heap_bytes()).sum();
        let files = map_bytes::<String, u32>(self.slot_of.capacity())
            + strings(&mut self.slot_of.keys())
            + self.paths.capacity() * size_of::<Option<String>>()
            + strings(&mut self.paths.iter().flatten())
            + self.blobs.capacity() * size_of::<Oid>()
            + self.roles.capacity() * size_of::<role::Role>()
            + self.free.capacity() * 4;
        let h = &self.history;
        let history = h.kept.capacity() * size_of::<Oid>()
            + map_bytes::<String, HashMap<u32, u32>>(h.per_file.capacity())
            + h.per_file
                .iter()
                .map(|(p, m)| p.capacity() + map_bytes::<u32, u32>(m.capacity()))
                .sum::<usize>()
            + map_bytes::<String, u32>(h.touches.capacity())
            + strings(&mut h.touches.keys())
            + map_bytes::<String, HashMap<String, u32>>(h.pairs.capacity())
            + h.pairs
                .iter()
                .map(|(p, m)| {
                    p.capacity() + map_bytes::<String, u32>(m.capacity()) + strings(&mut m.keys())
                })
                .sum::<usize>();
        HeapBytes {
            terms: self.dict.heap_bytes(),
            files,
            fields,
            history,
            mapped: self.dict.mapped_bytes()
                + self
                    .fields()
                    .iter()
                    .map(|f| f.mapped_bytes())
                    .sum::<usize>(),
        }
    }
}

/// Heap bytes of a hash map with this capacity: its entries and a control byte each.
fn map_bytes<K, V>(capacity: usize) -> usize {
    capacity * (size_of::<(K, V)>() + 1)
}

/// Where a ranked index's heap goes ([`RankedIndex::heap_bytes`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeapBytes {
    /// The term dictionary.
    pub terms: usize,
    /// Paths, blobs and slots.
    pub files: usize,
    /// The five fields' postings and documents.
    pub fields: usize,
    /// The kept commits' ids and the per-path sums drawn from their records.
    pub history: usize,
    /// Not heap: bytes of the stored file the terms and fields read in place (page
    /// cache, shared between processes mapping it).
    pub mapped: usize,
}

impl HeapBytes {
    /// All of it.
    pub fn total(&self) -> usize {
        self.terms + self.files + self.fields + self.history
    }
}

/// A file's text, its best chunk and its [`chunks::coverage`].
struct Cut {
    text: String,
    range: (usize, usize),
    coverage: f32,
}

/// A file of an answer waiting for its best chunk, cut by whichever of a snippet thread
/// and the answering thread takes its text first.
struct Pending {
    path: String,
    /// Whether its text is small enough to have been indexed (else its start is shown).
    indexed: bool,
    text: Mutex<Option<String>>,
}

impl Pending {
    fn take(&self) -> Option<String> {
        self.text.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    fn cut(&self, text: String, query: &chunks::QueryTerms) -> Cut {
        let (range, coverage) = if self.indexed {
            chunks::best_chunk_and_coverage(&self.path, &text, query)
        } else {
            ((0, chunks::MAX_CHUNK_LINES), 0.0)
        };
        Cut {
            text,
            range,
            coverage,
        }
    }
}

/// Rough token count of a text: about four bytes a token, as tokenizers of code and
/// English average.
pub fn approx_tokens(text: &str) -> usize {
    text.len().div_ceil(4)
}

impl RankedIndex {
    /// Answer `q`: the best files, each cut to its best chunk, until `q.token_limit`
    /// tokens of snippet are spent. Returns the hits and whether the limit cut them.
    /// `stored_text` gives a file's bytes at the index's head where they are at hand
    /// without inflating its blob (`None`: its blob is read from `repo`).
    pub fn answer(
        &self,
        repo: &Repository,
        q: &RankedQuery,
        weights: &Weights,
        keep: &dyn Fn(&str) -> bool,
        stored_text: &dyn Fn(&str) -> Option<Vec<u8>>,
    ) -> Result<(Vec<RankedHit>, bool), RankedError> {
        let depth = weights.proximity_depth_for(&q.text);
        let mut files: Vec<(RankedFile, Oid)> = self
            .rank(&q.text, q.max_results.max(depth), weights, keep)
            .into_iter()
            .filter_map(|f| {
                let blob = self.blob_of(&f.path)?;
                Some((f, blob))
            })
            .collect();
        let query = Arc::new(chunks::QueryTerms::new(&self.term_weights(&q.text)));
        // Each file's best chunk is chosen on the snippet threads, a few files ahead of
        // the one being added to the answer; the blobs are read here, in rank order.
        // When a file's turn comes and no snippet thread has taken it yet (they are busy
        // with other answers), this thread cuts it itself: an answer never waits behind
        // another's work.
        let ahead = 2 * workers::threads();
        let (done, cuts) = std::sync::mpsc::channel();
        let mut pending: Vec<Arc<Pending>> = Vec::with_capacity(files.len());
        let mut ready: Vec<Option<Cut>> = Vec::new();
        ready.resize_with(files.len(), || None);
        // Read the next file (its path and blob) and hand it to the snippet threads.
        let submit = |(path, blob): (&str, Oid),
                      pending: &mut Vec<Arc<Pending>>|
         -> Result<(), RankedError> {
            let at = pending.len();
            let bytes = match stored_text(path) {
                Some(b) => b,
                None => repo.find_blob(blob)?.content().to_vec(),
            };
            let indexed = bytes.len() <= MAX_INDEXED_BYTES;
            let text = match String::from_utf8(bytes) {
                Ok(t) => t,
                Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
            };
            let job = Arc::new(Pending {
                path: path.to_string(),
                indexed,
                text: Mutex::new(Some(text)),
            });
            pending.push(Arc::clone(&job));
            let (query, done) = (Arc::clone(&query), done.clone());
            workers::submit(move || {
                let Some(text) = job.take() else {
                    return; // the answer cut this one itself
                };
                let cut = std::panic::catch_unwind(AssertUnwindSafe(|| job.cut(text, &query)));
                // The answer may have ended without waiting for this one.
                let _ = done.send((at, cut));
            });
            Ok(())
        };
        let cut_of = |i: usize, pending: &[Arc<Pending>], ready: &mut [Option<Cut>]| -> Cut {
            match pending[i].take() {
                Some(text) => pending[i].cut(text, &query),
                None => loop {
                    if let Some(c) = ready[i].take() {
                        break c;
                    }
                    let (at, cut) = cuts.recv().expect("this answer holds a sender");
                    ready[at] = Some(cut.unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
                },
            }
        };
        // Proximity: the best `depth` files are read and cut first (their cuts serve the
        // snippets after), and reordered by how much of the query one chunk holds. Only
        // they move, and only up, so the files after them stay where they are.
        let depth = depth.min(files.len());
        if depth > 0 {
            for (f, blob) in &files[..depth] {
                submit((&f.path, *blob), &mut pending)?;
            }
            for i in 0..depth {
                let cut = cut_of(i, &pending, &mut ready);
                files[i].0.score *= 1.0 + weights.proximity * cut.coverage;
                ready[i] = Some(cut);
            }
            let mut head: Vec<_> = files.drain(..depth).zip(ready.drain(..depth)).collect();
            // Stable: equal scores keep the first pass's order.
            head.sort_by(|a, b| b.0.0.score.total_cmp(&a.0.0.score));
            let (moved, cut): (Vec<_>, Vec<_>) = head.into_iter().unzip();
            files.splice(0..0, moved);
            ready.splice(0..0, cut);
        }
        files.truncate(q.max_results);
        let mut budget = q.token_limit;
        let mut hits = Vec::new();
        let mut truncated = false;
        for (i, (f, _)) in files.iter().enumerate() {
            // Read ahead only as far as the budget left is likely to reach, judged by the
            // snippets so far: a file read and cut past the budget's end is wasted.
            let spent = q.token_limit - budget;
            let likely = match spent.checked_div(hits.len()) {
                Some(per_hit) => budget / per_hit.max(1) + 1,
                None => ahead,
            };
            while pending.len() < files.len() && pending.len() < i + likely.clamp(1, ahead) {
                let (f, blob) = &files[pending.len()];
                submit((&f.path, *blob), &mut pending)?;
            }
            let cut = cut_of(i, &pending, &mut ready);
            let (text, (s, e)) = (cut.text, cut.range);
            let mut snippet = String::new();
            let mut end = s;
            for line in text.split_inclusive('\n').skip(s).take(e.saturating_sub(s)) {
                if approx_tokens(&snippet) + approx_tokens(line) > budget {
                    truncated = true;
                    break;
                }
                snippet.push_str(line);
                end += 1;
            }
            if end == s && !text.is_empty() {
                truncated = true;
                break;
            }
            budget -= approx_tokens(&snippet);
            hits.push(RankedHit {
                path: f.path.clone(),
                score: f.score,
                start_line: s as u64 + 1,
                end_line: end as u64,
                snippet,
                role: role::role(&f.path).name().to_string(),
            });
            if truncated {
                break;
            }
        }
        Ok((hits, truncated))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn commit(
        repo: &Repository,
        parent: Option<Oid>,
        files: &[(&str, &str)],
        msg: &str,
    ) -> Oid {
        let mut index = git2::Index::new().unwrap();
        if let Some(p) = parent {
            index
                .read_tree(&repo.find_commit(p).unwrap().tree().unwrap())
                .unwrap();
        }
        for (path, text) in files {
            let id = repo.blob(text.as_bytes()).unwrap();
            index
                .add(&git2::IndexEntry {
                    ctime: git2::IndexTime::new(0, 0),
                    mtime: git2::IndexTime::new(0, 0),
                    dev: 0,
                    ino: 0,
                    mode: 0o100644,
                    uid: 0,
                    gid: 0,
                    file_size: text.len() as u32,
                    id,
                    flags: path.len() as u16,
                    flags_extended: 0,
                    path: path.as_bytes().to_vec(),
                })
                .unwrap();
        }
        let tree = repo.find_tree(index.write_tree_to(repo).unwrap()).unwrap();
        // One second apart, so that an ordering by time is the order they were made in.
        static CLOCK: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
        let at = 1_700_000_000 + CLOCK.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let sig = git2::Signature::new("t", "t@localhost", &git2::Time::new(at, 0)).unwrap();
        let parents: Vec<git2::Commit<'_>> = parent
            .map(|p| repo.find_commit(p).unwrap())
            .into_iter()
            .collect();
        let refs: Vec<&git2::Commit<'_>> = parents.iter().collect();
        repo.commit(None, &sig, &sig, msg, &tree, &refs).unwrap()
    }

    /// A commit on `parent` that deletes `path`.
    pub(super) fn delete(repo: &Repository, parent: Oid, path: &str, msg: &str) -> Oid {
        let parent = repo.find_commit(parent).unwrap();
        let mut idx = git2::Index::new().unwrap();
        idx.read_tree(&parent.tree().unwrap()).unwrap();
        idx.remove_path(std::path::Path::new(path)).unwrap();
        let tree = repo.find_tree(idx.write_tree_to(repo).unwrap()).unwrap();
        let sig = git2::Signature::now("t", "t@localhost").unwrap();
        repo.commit(None, &sig, &sig, msg, &tree, &[&parent])
            .unwrap()
    }

    /// The index of one commit holding `texts` (path, text).
    fn built_from(repo: &Repository, texts: &[(String, String)]) -> RankedIndex {
        let files: Vec<(&str, &str)> = texts
            .iter()
            .map(|(p, t)| (p.as_str(), t.as_str()))
            .collect();
        let head = commit(repo, None, &files, "Start");
        RankedIndex::build(repo, head).unwrap()
    }

    fn top(ix: &RankedIndex, q: &str) -> Option<String> {
        ix.rank(q, 1, &Weights::default(), &|_| true)
            .into_iter()
            .next()
            .map(|f| f.path)
    }

    // A first build reads its files on every core and lays their documents end to end:
    // it must give the index reading them one by one gives (the same term ids, slots,
    // documents and scores), text, binary, oversized and definition-bearing files alike.
    #[test]
    fn a_build_on_every_core_equals_reading_files_one_by_one() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let mut texts: Vec<(String, String)> = (0..300)
            .map(|i| {
                let ext = ["rs", "py", "c", "md", "txt"][i % 5];
                // Comments whose words come before the code's own (in a file's first
                // terms) and also in the middle of it, so the ids depend on the
                // comments being read first, as one by one reads them.
                let body = format!(
                    "// Explains why token{} waits\nfn parse_header{i}() {{}}\ndef retry_{}(x): pass\n# Heading {} says why\n/* block note{} */\nstruct Word{} {{ count: u32 }}\n\"\"\"\nDocstring prose {}\n\"\"\"\nshared words across files {}\n",
                    i % 5,
                    i % 7,
                    i % 11,
                    i % 3,
                    i % 13,
                    i % 4,
                    i * 31 % 17
                );
                (format!("dir{}/file{i}.{ext}", i % 9), body)
            })
            .collect();
        texts.push(("big.txt".into(), "huge word ".repeat(MAX_INDEXED_BYTES / 8)));
        texts.push(("bin.dat".into(), "\0\u{1}binary".into()));
        let files: Vec<(&str, &str)> = texts
            .iter()
            .map(|(p, t)| (p.as_str(), t.as_str()))
            .collect();
        let empty = commit(&repo, None, &[], "Empty start");
        let first = commit(&repo, Some(empty), &files[..150], "Add retry logic");
        let head = commit(&repo, Some(first), &files[150..], "More parsing of headers");
        let built = RankedIndex::build(&repo, head).unwrap();
        let mut one_by_one = RankedIndex::build(&repo, empty).unwrap();
        one_by_one.advance(&repo, head).unwrap();
        assert_eq!(built.paths, one_by_one.paths);
        assert_eq!(built.blobs, one_by_one.blobs);
        assert_eq!(built.len(), 301, "the binary file is left out");
        let ids = |ix: &RankedIndex| {
            let mut v = Vec::new();
            ix.dict
                .snapshot()
                .for_each_sorted(&mut |t, id| {
                    v.push((t.to_vec(), id));
                    Ok(())
                })
                .unwrap();
            v
        };
        assert_eq!(ids(&built), ids(&one_by_one));
        assert!(
            (0..built.paths.len() as u32).any(|s| !one_by_one.comments.terms_of(s).is_empty()),
            "the files have comments to compare"
        );
        for slot in 0..built.paths.len() as u32 {
            for (a, b) in [
                (&built.body, &one_by_one.body),
                (&built.path, &one_by_one.path),
                (&built.defs, &one_by_one.defs),
                (&built.msgs, &one_by_one.msgs),
                (&built.comments, &one_by_one.comments),
            ] {
                assert_eq!(a.terms_of(slot), b.terms_of(slot), "slot {slot}");
            }
        }
        for q in [
            "parse header",
            "retry logic",
            "word count",
            "big",
            "heading 3",
            "why does the token wait?",
        ] {
            let a = built.rank(q, 20, &Weights::default(), &|_| true);
            assert!(!a.is_empty(), "{q}");
            assert_eq!(a, one_by_one.rank(q, 20, &Weights::default(), &|_| true));
        }
    }

    // A build given files' text (as the line index at the head gives it) indexes that
    // text, and reads from its blob each file the source does not hold: given the
    // blobs' own text, it builds the index reading every blob builds.
    #[test]
    fn a_build_indexes_the_text_given_and_reads_the_rest_from_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let files = [
            ("a.rs", "fn retry_backoff() {}\n"),
            ("b.rs", "// throttle the rate\nfn limit() {}\n"),
            ("c.bin", "\0\u{1}binary"),
        ];
        let head = commit(&repo, None, &files, "Add files");
        let expected = RankedIndex::build(&repo, head).unwrap().to_bytes();
        let out = tempfile::tempdir().unwrap();
        let path = out.path().join("ranked.bin");
        let build = |text: StoredText<'_>| {
            let (ix, stored) =
                RankedIndex::build_spilling(&repo, head, &|_| {}, &path, (u64::MAX, 8), None, text)
                    .unwrap();
            assert!(!stored);
            ix
        };
        // Every file but b.rs given, as its blob holds it.
        let same = |path: &str, read: &mut dyn FnMut(&[u8])| {
            let Some((_, t)) = files.iter().find(|(p, _)| *p == path && *p != "b.rs") else {
                return false;
            };
            read(t.as_bytes());
            true
        };
        assert_eq!(build(&same).to_bytes(), expected);
        // Text unlike the blob's: what is given is what is indexed.
        let other = |path: &str, read: &mut dyn FnMut(&[u8])| {
            if path != "a.rs" {
                return false;
            }
            read(b"fn jitter_window() {}\n");
            true
        };
        let ix = build(&other);
        let rank = |q: &str| ix.rank(q, 20, &Weights::default(), &|_| true);
        assert!(!rank("jitter window").is_empty());
        assert!(rank("retry backoff").is_empty());
        assert!(!rank("throttle rate").is_empty(), "b.rs read from its blob");
    }

    // A large build spills its documents to files and makes the postings from them in
    // passes: what it stores must be, byte for byte, what a build in memory stores, in
    // one pass or in many, and it must leave no temporary file behind.
    #[test]
    fn a_spilled_build_stores_the_bytes_a_build_in_memory_stores() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let texts: Vec<(String, String)> = (0..200)
            .map(|i| {
                let body = format!(
                    "// Explains why token{} waits\nfn parse_header{i}() {{}}\n/* block note{} */\nshared words {}\n",
                    i % 5,
                    i % 13,
                    i * 31 % 17
                );
                (format!("dir{}/file{i}.rs", i % 9), body)
            })
            .collect();
        let files: Vec<(&str, &str)> = texts
            .iter()
            .map(|(p, t)| (p.as_str(), t.as_str()))
            .collect();
        let first = commit(&repo, None, &files[..100], "Add retry logic");
        let head = commit(&repo, Some(first), &files[100..], "More parsing of headers");
        let held = RankedIndex::build(&repo, head).unwrap();
        let expected = held.to_bytes();
        let out = tempfile::tempdir().unwrap();
        let path = out.path().join("ranked.bin");
        // Passes of one posting each, then of everything at once.
        for pass_bytes in [8, 1 << 30] {
            let (ix, stored) = RankedIndex::build_spilling(
                &repo,
                head,
                &|_| {},
                &path,
                (0, pass_bytes),
                None,
                &no_stored_text,
            )
            .unwrap();
            assert!(stored);
            assert!(ix.body.mapped_bytes() > 0, "opened from the stored file");
            assert!(
                std::fs::read(&path).unwrap() == expected,
                "passes of {pass_bytes} bytes"
            );
            let names: Vec<_> = std::fs::read_dir(out.path())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(names, ["ranked.bin"], "temporaries left behind");
            for q in ["parse header", "more parsing", "why does the token wait?"] {
                let a = ix.rank(q, 20, &Weights::default(), &|_| true);
                assert!(!a.is_empty(), "{q}");
                assert_eq!(a, held.rank(q, 20, &Weights::default(), &|_| true));
            }
        }
        // Under the bound, nothing spills: the index is held, for the caller to store.
        let small = out.path().join("small.bin");
        let (ix, stored) = RankedIndex::build_spilling(
            &repo,
            head,
            &|_| {},
            &small,
            (u64::MAX, 8),
            None,
            &no_stored_text,
        )
        .unwrap();
        assert!(!stored && !small.exists());
        assert_eq!(ix.to_bytes(), expected);
        // Nowhere to spill to: an error, and nothing written.
        let nowhere = out.path().join("missing").join("ranked.bin");
        let err = RankedIndex::build_spilling(
            &repo,
            head,
            &|_| {},
            &nowhere,
            (0, 8),
            None,
            &no_stored_text,
        )
        .unwrap_err();
        assert!(matches!(err, RankedError::Store(_)), "{err}");
        assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 1);
    }

    // A server taking commits for hours kept every commit's message in memory: the
    // oldest now leave once more than the cap are kept, and their terms with them.
    #[test]
    fn history_keeps_at_most_the_cap_newest_commits() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let mut head = commit(&repo, None, &[("a.py", "x = 0\n")], "Start zeppelin");
        let mut ix = RankedIndex::build(&repo, head).unwrap();
        ix.history_cap = 5;
        for i in 1..=20 {
            head = commit(
                &repo,
                Some(head),
                &[("a.py", &format!("x = {i}\n"))],
                &format!("Step {i} gyroscope"),
            );
            ix.advance(&repo, head).unwrap();
        }
        assert_eq!(ix.history.kept.len(), 5);
        // The first commit's words are gone with it; the newest are kept.
        assert_eq!(top(&ix, "zeppelin"), None);
        assert_eq!(top(&ix, "gyroscope").as_deref(), Some("a.py"));
        assert!(ix.includes_commit(head));
    }

    // The chunks are cut on the snippet threads or on the answering thread, whichever
    // comes first, a few files ahead: the answer must be the one cutting every file in
    // rank order, one after the other, gives, under the same token budget.
    #[test]
    fn an_answer_is_the_files_in_rank_order_each_cut_to_its_best_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let texts: Vec<(String, String)> = (0..60)
            .map(|i| {
                let mut t = String::new();
                for d in 0..(3 + i % 7) {
                    t.push_str(&format!("def helper_{d}():\n    return {d}\n\n"));
                }
                t.push_str(&format!(
                    "def retry_backoff_{i}(attempt):\n    # retry with backoff\n{}\n",
                    "    delay = attempt * 2\n".repeat(1 + i % 5)
                ));
                (format!("src/m{i:02}.py"), t)
            })
            .collect();
        let ix = built_from(&repo, &texts);
        for token_limit in [100_000, 700, 1] {
            let q = RankedQuery {
                text: "where is the retry backoff delay".into(),
                path_glob: None,
                visible: None,
                max_results: 50,
                token_limit,
            };
            let (hits, truncated) = ix
                .answer(&repo, &q, &Weights::default(), &|_| true, &|_| None)
                .unwrap();
            let terms = chunks::QueryTerms::new(&ix.term_weights(&q.text));
            let mut want = Vec::new();
            let mut budget = token_limit;
            let mut cut_short = false;
            for f in ix.rank(&q.text, 50, &Weights::default(), &|_| true) {
                let text = &texts.iter().find(|(p, _)| *p == f.path).unwrap().1;
                let (s, e) = chunks::best_chunk_scanning_every_line(&f.path, text, &terms);
                let lines: Vec<&str> = text.split_inclusive('\n').skip(s).take(e - s).collect();
                let mut snippet = String::new();
                for l in &lines {
                    if approx_tokens(&snippet) + approx_tokens(l) > budget {
                        cut_short = true;
                        break;
                    }
                    snippet.push_str(l);
                }
                if snippet.is_empty() {
                    cut_short = true;
                    break;
                }
                budget -= approx_tokens(&snippet);
                want.push((f.path.clone(), s as u64 + 1, snippet));
                if cut_short {
                    break;
                }
            }
            let got: Vec<(String, u64, String)> = hits
                .iter()
                .map(|h| (h.path.clone(), h.start_line, h.snippet.clone()))
                .collect();
            assert_eq!(got, want, "token_limit {token_limit}");
            assert_eq!(truncated, cut_short, "token_limit {token_limit}");
            if token_limit == 100_000 {
                assert_eq!(hits.len(), 50, "every file matches: the limit of 50 holds");
            }
        }
    }

    // Only the best few times the limit are sorted: the answer must be a full sort's
    // first, also when the filter turns most of them away.
    #[test]
    fn the_best_files_are_a_full_sorts_first_whatever_the_filter() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let texts: Vec<(String, String)> = (0..400)
            .map(|i| {
                (
                    format!("src/f{i:03}.rs"),
                    format!("{} other words\n", "gyroscope ".repeat(1 + i % 13)),
                )
            })
            .collect();
        let ix = built_from(&repo, &texts);
        let w = Weights::default();
        let filters: [&dyn Fn(&str) -> bool; 3] = [&|_| true, &|p| p.ends_with("7.rs"), &|p| {
            p == "src/f399.rs" || p == "src/f001.rs"
        }];
        for keep in filters {
            let all = ix.rank("gyroscope", usize::MAX, &w, keep);
            for limit in [1, 5, 40, 150] {
                let got = ix.rank("gyroscope", limit, &w, keep);
                assert_eq!(got, all[..limit.min(all.len())].to_vec(), "limit {limit}");
            }
        }
    }

    // Commit records are not kept but read from git again when a commit leaves the
    // history, by the cap or by a head that does not descend from it: the sums must
    // then be exactly those of an index built at the same head.
    #[test]
    fn history_read_again_from_git_matches_a_fresh_build() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let files = ["a.py", "b.py", "src/c.rs", "src/d.rs"];
        let mut head = commit(&repo, None, &[("a.py", "x = 0\n")], "Start zeppelin");
        let mut ix = RankedIndex::build_capped(&repo, head, &|_| {}, 6).unwrap();
        let mut fork = head;
        for i in 1..=30usize {
            let changed: Vec<(&str, String)> = (0..1 + i % 3)
                .map(|k| (files[(i + k) % 4], format!("v = {i}\n")))
                .collect();
            let changed: Vec<(&str, &str)> =
                changed.iter().map(|(p, t)| (*p, t.as_str())).collect();
            head = commit(
                &repo,
                Some(head),
                &changed,
                &format!("Step {i} word{}", i % 7),
            );
            if i == 20 {
                fork = head;
            }
            ix.advance(&repo, head).unwrap();
        }
        let same = |ix: &RankedIndex, at: Oid| {
            let fresh = RankedIndex::build_capped(&repo, at, &|_| {}, 6).unwrap();
            let words = |ix: &RankedIndex| -> Vec<(String, Vec<(String, u32)>)> {
                let mut names = HashMap::new();
                ix.dict
                    .snapshot()
                    .for_each_sorted(&mut |t, id| {
                        names.insert(id, String::from_utf8_lossy(t).into_owned());
                        Ok(())
                    })
                    .unwrap();
                let mut v: Vec<_> = ix
                    .history
                    .per_file
                    .iter()
                    .map(|(p, m)| {
                        let mut w: Vec<(String, u32)> =
                            m.iter().map(|(&t, &c)| (names[&t].clone(), c)).collect();
                        w.sort();
                        (p.clone(), w)
                    })
                    .collect();
                v.sort();
                v
            };
            assert_eq!(words(ix), words(&fresh));
            assert_eq!(ix.history.touches, fresh.history.touches);
            assert_eq!(ix.history.pairs, fresh.history.pairs);
            assert_eq!(ix.history.kept, fresh.history.kept);
        };
        same(&ix, head);
        // Back to an older commit and onto a branch from it: ten kept commits withdrawn.
        let mut branch = fork;
        for i in 0..3 {
            branch = commit(
                &repo,
                Some(branch),
                &[("b.py", &format!("w = {i}\n"))],
                "Side gyroscope",
            );
        }
        ix.advance(&repo, branch).unwrap();
        // Commits the cap dropped are not brought back, so a fresh build keeps more; the
        // sums must still be exactly those of the commits kept.
        let mut scratch = ix.clone();
        let mut sums = History::default();
        for oid in &ix.history.kept {
            let rec = scratch.record(&repo, *oid).unwrap().unwrap();
            sums.apply(&rec, 1, &mut HashSet::new());
        }
        assert_eq!(ix.history.kept.len(), 3);
        assert_eq!(ix.history.per_file, sums.per_file);
        assert_eq!(ix.history.touches, sums.touches);
        assert_eq!(ix.history.pairs, sums.pairs);
        assert_eq!(top(&ix, "zeppelin"), None);
        assert_eq!(top(&ix, "gyroscope").as_deref(), Some("b.py"));
    }

    // A file rewritten with a new number in it on every commit added a term each time,
    // and the dictionary kept them all: terms nothing holds are now forgotten, and
    // their ids reused, so the dictionary and the postings stay bounded.
    #[test]
    fn terms_no_file_or_kept_commit_holds_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let mut head = commit(&repo, None, &[("a.py", "x = 0\n")], "Start");
        let mut ix = RankedIndex::build(&repo, head).unwrap();
        ix.history_cap = 10;
        // One term each, which no stemming or splitting merges with another.
        let word = |mut i: usize| {
            let mut w = String::new();
            while i > 0 || w.is_empty() {
                w.push(b"bcfhjkmnpqrtvwxz"[i % 16] as char);
                i /= 16;
            }
            w
        };
        for i in 1..=800 {
            head = commit(
                &repo,
                Some(head),
                &[("a.py", &format!("x = z{}\n", word(i)))],
                &format!("Set m{}", word(i)),
            );
            ix.advance(&repo, head).unwrap();
        }
        // 1,600 terms came; the file and the last ten messages hold about a dozen.
        assert!(ix.dict.len() < 1100, "{} terms kept", ix.dict.len());
        assert!(
            ix.dict.id_bound() < 1100,
            "ids up to {}",
            ix.dict.id_bound()
        );
        let find = |ix: &RankedIndex, w: String| top(ix, &w);
        assert_eq!(
            find(&ix, format!("z{}", word(800))).as_deref(),
            Some("a.py")
        );
        assert_eq!(find(&ix, format!("z{}", word(799))), None);
        assert_eq!(
            find(&ix, format!("m{}", word(795))).as_deref(),
            Some("a.py")
        );
        assert_eq!(find(&ix, format!("m{}", word(500))), None);
        assert!(ix.dict.get(&format!("m{}", word(500))).is_none());
        // Paths that left every kept commit leave the per-path maps too.
        head = commit(&repo, Some(head), &[("b.py", "y = 1\n")], "Add b");
        ix.advance(&repo, head).unwrap();
        head = delete(&repo, head, "b.py", "Drop b");
        ix.advance(&repo, head).unwrap();
        for i in 0..12 {
            head = commit(
                &repo,
                Some(head),
                &[("a.py", &format!("x = {i}\n"))],
                "Tweak",
            );
            ix.advance(&repo, head).unwrap();
        }
        assert!(!ix.history.per_file.contains_key("b.py"));
        assert!(!ix.history.touches.contains_key("b.py"));
        assert!(!ix.history.pairs.contains_key("b.py"));
        assert_eq!(ix.history.per_file.len(), 1);
    }

    // Moving to a head that does not descend from the indexed one must withdraw the
    // messages of the commits left behind: otherwise a query would see history that the
    // searched tree never had (and an evaluation would see the answer's own commit).
    #[test]
    fn history_follows_the_ancestry_of_the_head_only() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let base = commit(
            &repo,
            None,
            &[("a.py", "x = 1\n"), ("b.py", "y = 2\n")],
            "Start",
        );
        let left = commit(
            &repo,
            Some(base),
            &[("a.py", "x = 3\n")],
            "Tune the zeppelin throttle",
        );
        let right = commit(
            &repo,
            Some(base),
            &[("b.py", "y = 4\n")],
            "Calibrate the gyroscope",
        );
        let mut ix = RankedIndex::build(&repo, left).unwrap();
        assert_eq!(top(&ix, "zeppelin throttle").as_deref(), Some("a.py"));
        assert!(ix.includes_commit(left));
        let stats = ix.advance(&repo, right).unwrap();
        assert_eq!(stats.commits, 2, "one withdrawn, one added");
        assert_eq!(ix.head(), right);
        assert!(!ix.includes_commit(left));
        assert_eq!(top(&ix, "zeppelin throttle"), None);
        assert_eq!(top(&ix, "gyroscope").as_deref(), Some("b.py"));
        // Only what differs is re-read: both files changed between the two tips.
        assert_eq!(ix.len(), 2);
    }

    // A question in words met the code's names as readily as the comment explaining
    // that code: the comments now count again for a question, and only for one (a
    // description of a change names code, and documented files outranked it).
    #[test]
    fn a_question_in_words_weighs_comments_and_a_description_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let texts = [
            (
                "src/wheel.rs",
                "/// A pause shorter than one tick waits for the next tick.\n\
                 fn advance(slots: &mut Slots) { slots.rotate(); }\n",
            ),
            (
                "src/pause.rs",
                "fn pause_until_next_tick(pause: Pause) { if pause.shorter() { wait_tick(); } }\n",
            ),
            ("src/other.rs", "fn unrelated() { reply(); }\n"),
        ]
        .map(|(p, t)| (p.to_string(), t.to_string()));
        let ix = built_from(&repo, &texts);
        let first = |q: &str, w: &Weights| ix.rank(q, 1, w, &|_| true)[0].path.clone();
        let without = Weights {
            comments: 0.0,
            ..Weights::default()
        };
        let question = "Why does a pause shorter than a tick wait for the next tick?";
        assert_eq!(first(question, &without), "src/pause.rs");
        assert_eq!(first(question, &Weights::default()), "src/wheel.rs");
        let description = "Pause shorter than a tick waits for the next tick";
        assert_eq!(
            ix.rank(description, 3, &Weights::default(), &|_| true),
            ix.rank(description, 3, &without, &|_| true)
        );
    }

    // A file where the question's words met in one function ranked below one that
    // spread each word over its own: the best chunk's share of the question now raises
    // a file, for questions only by default, when the text is at hand.
    #[test]
    fn a_file_where_the_questions_words_meet_outranks_one_that_spreads_them() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let filler = |i: usize| format!("    value_{i} = compute_{i}(value_{i})\n");
        let mut apart = String::new();
        for (i, word) in ["lease", "renew", "expiry"].iter().enumerate() {
            apart.push_str(&format!("def step_{i}():\n    {word}({word})\n"));
            (0..8).for_each(|k| apart.push_str(&filler(10 * i + k)));
        }
        let mut together = "def step():\n    lease.renew(expiry)\n".to_string();
        (0..27).for_each(|k| together.push_str(&filler(k)));
        let texts = [
            ("src/alpha.py", apart),
            ("src/beta.py", together),
            (
                "src/other.py",
                "def unrelated():\n    reply()\n".to_string(),
            ),
        ]
        .map(|(p, t)| (p.to_string(), t));
        let ix = built_from(&repo, &texts);
        let mut text = |p: &str| texts.iter().find(|(q, _)| q == p).map(|(_, t)| t.clone());
        let w = Weights {
            proximity: 2.0,
            ..Weights::default()
        };
        let question = "How is the lease renewed at expiry?";
        let first = |r: Vec<RankedFile>| r[0].path.clone();
        assert_eq!(first(ix.rank(question, 3, &w, &|_| true)), "src/alpha.py");
        assert_eq!(
            first(ix.rank_reading(question, 3, &w, &|_| true, &mut text)),
            "src/beta.py"
        );
        // A description of a change: no proximity unless asked for every query.
        let description = "Renew the lease at expiry";
        assert_eq!(
            ix.rank_reading(description, 3, &w, &|_| true, &mut text),
            ix.rank(description, 3, &w, &|_| true)
        );
        let all = Weights {
            proximity_all: true,
            ..w
        };
        assert_eq!(
            first(ix.rank_reading(description, 3, &all, &|_| true, &mut text)),
            "src/beta.py"
        );
        // No text at hand: the first pass's order.
        assert_eq!(
            ix.rank_reading(question, 3, &w, &|_| true, &mut |_| None),
            ix.rank(question, 3, &w, &|_| true)
        );
        // An answer reads the files itself and gives them in the same order.
        for max_results in [1, 3] {
            let q = RankedQuery {
                text: question.into(),
                path_glob: None,
                visible: None,
                max_results,
                token_limit: 8000,
            };
            let (hits, _) = ix.answer(&repo, &q, &w, &|_| true, &|_| None).unwrap();
            let got: Vec<String> = hits.into_iter().map(|h| h.path).collect();
            let want: Vec<String> = ix
                .rank_reading(question, max_results, &w, &|_| true, &mut text)
                .into_iter()
                .map(|f| f.path)
                .collect();
            assert_eq!(got, want, "{max_results}");
            assert_eq!(got[0], "src/beta.py");
        }
    }

    #[test]
    fn a_path_is_named_by_a_directory_or_its_stem_whole_or_by_first_part() {
        let words = ["sync".to_string()];
        assert!(path_named("tokio/src/sync/mutex.rs", &words));
        assert!(path_named("tokio/tests/sync_mpsc.rs", &words));
        assert!(path_named("tokio/src/sync.rs", &words));
        assert!(path_named("Sync-Extra/lib.rs", &words));
        assert!(!path_named("tokio/src/synchronize/mod.rs", &words));
        assert!(!path_named("tokio/src/io/async_sync.rs", &words));
        assert!(!path_named("docs/sync.md", &["md".to_string()]));
    }

    #[test]
    fn a_commit_message_raises_a_test_toward_the_source_it_is_named_after() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let texts = [
            (
                "src/sync/rwlock.rs",
                "fn limit_readers(readers: Readers) { readers.limit(); readers.count(); }\n",
            ),
            ("tests/sync_rwlock.rs", "fn smoke() { let x = limit(); }\n"),
            ("src/other.rs", "fn unrelated() { limit(); }\n"),
        ]
        .map(|(p, t)| (p.to_string(), t.to_string()));
        let ix = built_from(&repo, &texts);
        let score = |q: &str, w: &Weights, path: &str| -> f32 {
            let r = ix.rank(q, 3, w, &|_| true);
            r.iter().find(|f| f.path == path).unwrap().score
        };
        let off = Weights {
            related: rerank::Related::none(),
            ..Weights::default()
        };
        let w = Weights::default();
        let q = "sync: limit the readers";
        let (src, test) = ("src/sync/rwlock.rs", "tests/sync_rwlock.rs");
        assert!(
            score(q, &off, test) < 0.7 * score(q, &off, src),
            "below before"
        );
        let raised = score(q, &w, test) / score(q, &w, src);
        assert!((raised - w.related.pair).abs() < 1e-4, "{raised}");
        assert_eq!(score(q, &w, src), score(q, &off, src));
        // Not a commit message: no lift.
        for q in ["limit the readers", "how are the readers limited?"] {
            assert_eq!(ix.rank(q, 3, &w, &|_| true), ix.rank(q, 3, &off, &|_| true));
        }
    }

    #[test]
    fn a_commit_messages_word_prefix_lifts_the_files_it_names() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let text = "fn lock_guard(guard: Guard) { guard.release(); }\n";
        let texts = [("src/io/lock.rs", text), ("src/sync/lock.rs", text)]
            .map(|(p, t)| (p.to_string(), t.to_string()));
        let ix = built_from(&repo, &texts);
        let score = |q: &str, w: &Weights, path: &str| -> f32 {
            let r = ix.rank(q, 2, w, &|_| true);
            r.iter().find(|f| f.path == path).unwrap().score
        };
        let off = Weights {
            scope: 0.0,
            ..Weights::default()
        };
        let w = Weights::default();
        for (q, named, other) in [
            (
                "sync: release the lock guard",
                "src/sync/lock.rs",
                "src/io/lock.rs",
            ),
            (
                "io: release the lock guard",
                "src/io/lock.rs",
                "src/sync/lock.rs",
            ),
        ] {
            let lifted = score(q, &w, named) / score(q, &off, named);
            assert!((lifted - (1.0 + w.scope)).abs() < 1e-4, "{q}: {lifted}");
            assert_eq!(score(q, &w, other), score(q, &off, other), "{q}");
        }
        // No prefix, or a prefix naming no path: the ranking is the plain one.
        for q in ["release the lock guard", "guard: release the lock"] {
            assert_eq!(ix.rank(q, 2, &w, &|_| true), ix.rank(q, 2, &off, &|_| true));
        }
    }

    #[test]
    fn trailers_leave_commit_messages() {
        assert_eq!(
            message_text("Fix retry\n\nbody text\nSigned-off-by: A <a@b>\nCo-authored-by: B"),
            "Fix retry\n\nbody text"
        );
    }
}
