//! A first build's file pass on every core: threads read blobs, split them into terms
//! and find their definitions, each file's terms numbered on its own; one thread takes
//! the files back in tree order, gives each file's distinct terms their dictionary ids
//! and lays its documents end to end, the flat arrays the fields' bases are made of.
//!
//! A build that will be stored may spill ([`SpillPlan`]): once the documents pass a
//! bound, each field's go to an unnamed file as they are laid, and only their offsets
//! stay in memory; the postings are then made from those files when the index is
//! stored ([`super::field::SpilledDocuments`]). Given a [`ResumePlan`], the spill
//! files are named instead, in a checkpoint's directory, and the build records there,
//! every few seconds, what going on from the next file needs ([`super::resume`]); a
//! build given a checkpoint of its tree goes on from it.
//!
//! Taken back in order, the files number the terms exactly as reading them one by one
//! does (the order each term is first seen in), so a build gives the same index on any
//! number of cores. Each term of a file costs the dictionary one look-up, not each of its
//! occurrences, and nothing is kept per term and document beyond the final pairs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::channel;
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use git2::{Oid, Repository};

use super::dict::TermTable;
use super::field::Documents;
use super::resume::{self, Journal, ResumePlan};
use super::{MAX_INDEXED_BYTES, RankedError, StoredText, disk, symbols, terms};

/// Files a thread takes at a time: enough to make taking them cheap, few enough that
/// the threads finish together.
const CHUNK: usize = 16;
/// How many chunks the threads may read ahead of the one being taken back, per thread:
/// bounds the terms waiting in memory when one file takes long.
const AHEAD_PER_THREAD: usize = 8;

/// One file read and split: its distinct terms in the order first seen (its comments',
/// then its body's, its path's and its definitions'), and each field's (local id,
/// count) pairs.
#[derive(Debug, Default)]
pub(super) struct FileTerms {
    /// Whether the blob is text (a binary file is not indexed at all).
    pub text: bool,
    bytes: Vec<u8>,
    ends: Vec<u32>,
    body: Vec<(u32, u32)>,
    path: Vec<(u32, u32)>,
    defs: Vec<(u32, u32)>,
    comments: Vec<(u32, u32)>,
}

/// What a reading thread reuses from file to file.
#[derive(Default)]
struct Scratch {
    local: TermTable,
    counts: Vec<u32>,
    touched: Vec<u32>,
}

impl Scratch {
    fn intern(&mut self, term: &str) -> u32 {
        // A file's terms are far below 4 GiB: its text is at most one blob.
        let id = self.local.intern(term.as_bytes()).unwrap_or(0);
        if id as usize >= self.counts.len() {
            self.counts.resize(id as usize + 1, 0);
        }
        if self.counts[id as usize] == 0 {
            self.touched.push(id);
        }
        self.counts[id as usize] += 1;
        id
    }

    /// The counts since the last call, as (local id, count) pairs.
    fn drain(&mut self) -> Vec<(u32, u32)> {
        self.touched
            .drain(..)
            .map(|id| (id, std::mem::take(&mut self.counts[id as usize])))
            .collect()
    }
}

/// Read and split one file, as [`super::RankedIndex`] indexes it: its text from `text`
/// when that has it, else from its blob.
fn read_file(
    repo: &Repository,
    path: &str,
    blob: Oid,
    text: StoredText<'_>,
    s: &mut Scratch,
) -> Result<FileTerms, RankedError> {
    let mut split = None;
    if text(path, &mut |bytes| split = Some(split_file(path, bytes, s)))
        && let Some(f) = split
    {
        return Ok(f);
    }
    let b = repo.find_blob(blob)?;
    Ok(split_file(path, b.content(), s))
}

/// Split one file's bytes into its fields' terms.
fn split_file(path: &str, bytes: &[u8], s: &mut Scratch) -> FileTerms {
    if !crate::text::is_text(bytes) {
        return FileTerms::default();
    }
    let text = String::from_utf8_lossy(bytes);
    // The comments first, as one by one interns them: their words are the first a
    // file's terms are numbered by.
    if bytes.len() <= MAX_INDEXED_BYTES {
        terms::for_each_comment(path, &text, |c| {
            terms::for_each_term(c, |t| {
                s.intern(t);
            });
        });
    }
    let comments = s.drain();
    if bytes.len() <= MAX_INDEXED_BYTES {
        terms::for_each_term(&text, |t| {
            s.intern(t);
        });
    }
    let body = s.drain();
    terms::for_each_term(path, |t| {
        s.intern(t);
    });
    let path_terms = s.drain();
    for d in symbols::definitions(path, &text) {
        terms::for_each_term(&d.name, |t| {
            s.intern(t);
        });
    }
    let defs = s.drain();
    let (bytes, ends) = s.local.take();
    FileTerms {
        text: true,
        bytes,
        ends,
        body,
        path: path_terms,
        defs,
        comments,
    }
}

/// When a build's documents leave memory for files, and where those go.
#[derive(Debug, Clone)]
pub(super) struct SpillPlan {
    /// The stored file the build ends in: the spill files are made beside it, under
    /// temporary names (see [`disk::temp_beside`]) unlinked as soon as they are open.
    pub beside: PathBuf,
    /// Bytes of (term, frequency) pairs the four fields may hold in memory, all told,
    /// before they go to their files.
    pub after_bytes: u64,
    /// Where the build keeps checkpoints, its spill files among them; none: the spill
    /// files have no name, and an interrupted build starts over.
    pub resume: Option<ResumePlan>,
}

/// A build keeping checkpoints: what it has written of the state the next file needs.
struct Checkpoints {
    plan: ResumePlan,
    tree: Oid,
    total: usize,
    /// Files taken back so far.
    taken: usize,
    /// The files' entries (see [`resume`]), held here until the build spills.
    files_held: Vec<u8>,
    /// The journals, once the build has spilled.
    terms_out: Option<Journal>,
    files_out: Option<Journal>,
    /// Terms written to `terms_out`.
    terms_written: usize,
    last: Instant,
    since: usize,
    entry: Vec<u8>,
}

/// A new file beside `beside` with no name: its space goes back when the handle is
/// closed, however the process ends (one killed between making and unlinking it leaves
/// a temporary name the store's sweep removes).
fn spill_file(beside: &Path) -> std::io::Result<std::fs::File> {
    let tmp = disk::temp_beside(beside);
    let f = std::fs::File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&tmp)?;
    if let Err(e) = std::fs::remove_file(&tmp) {
        drop(f);
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(f)
}

/// The build's dictionary and the documents of the fields read from files, one
/// document per text file, in the order the files are given.
#[derive(Default)]
pub(super) struct Built {
    pub terms: TermTable,
    pub body: Documents,
    pub path: Documents,
    pub defs: Documents,
    pub comments: Documents,
    /// Set for a build that may spill its documents.
    spill: Option<SpillPlan>,
    /// Set for a build that keeps checkpoints.
    checkpoints: Option<Checkpoints>,
    /// Global ids of the file being added (reused).
    ids: Vec<u32>,
    pair_buf: Vec<(u32, u32)>,
    /// The last file's documents' lengths, in pairs.
    lens: [usize; 4],
}

impl Built {
    /// An empty build of `total` files of `tree`, spilling under `spill` if given.
    pub fn new(spill: Option<SpillPlan>, tree: Oid, total: usize) -> Self {
        let checkpoints = spill
            .as_ref()
            .and_then(|s| s.resume.clone())
            .map(|plan| Checkpoints {
                plan,
                tree,
                total,
                taken: 0,
                files_held: Vec::new(),
                terms_out: None,
                files_out: None,
                terms_written: 0,
                last: Instant::now(),
                since: 0,
                entry: Vec::new(),
            });
        Self {
            spill,
            checkpoints,
            ..Self::default()
        }
    }

    /// Go on from the checkpoint of this build's tree, if there is one that holds
    /// together (any other is removed): the files already taken back, each with
    /// whether it was indexed (text).
    pub fn take_up(&mut self) -> Option<Vec<bool>> {
        let c = self.checkpoints.as_mut()?;
        let t = resume::take_up(&c.plan.dir, c.tree, c.total)?;
        let [body, path, defs, comments] = t.docs;
        self.body = body;
        self.path = path;
        self.defs = defs;
        self.comments = comments;
        self.terms = t.terms;
        c.taken = t.taken;
        c.terms_written = self.terms.len();
        c.terms_out = Some(t.terms_out);
        c.files_out = Some(t.files_out);
        c.last = Instant::now();
        Some(t.text)
    }

    /// Whether the documents went to files.
    pub fn spilled(&self) -> bool {
        self.body.is_spilled()
    }

    /// Send the documents to files once they pass the plan's bound.
    fn maybe_spill(&mut self) -> Result<(), RankedError> {
        let Some(plan) = &self.spill else {
            return Ok(());
        };
        if self.spilled() {
            return Ok(());
        }
        let docs = [
            &mut self.body,
            &mut self.path,
            &mut self.defs,
            &mut self.comments,
        ];
        let pairs: u64 = docs.iter().map(|d| d.pairs()).sum();
        if pairs * 8 <= plan.after_bytes {
            return Ok(());
        }
        let spilling = |e: std::io::Error| RankedError::Store(format!("spilling the build: {e}"));
        let Some(c) = self.checkpoints.as_mut() else {
            for d in docs {
                spill_file(&plan.beside)
                    .and_then(|f| d.spill_to(f))
                    .map_err(spilling)?;
            }
            return Ok(());
        };
        // Named, in the checkpoint's directory (emptied when the build began), with
        // the journals of the state the documents' terms and slots depend on.
        let dir = &c.plan.dir;
        std::fs::create_dir_all(dir).map_err(spilling)?;
        for (d, name) in docs.into_iter().zip(resume::STREAMS) {
            resume::create(dir, name)
                .and_then(|f| d.spill_to(f))
                .map_err(spilling)?;
        }
        let mut terms_out = resume::create_journal(dir, resume::STREAMS[4]).map_err(spilling)?;
        let mut buf = Vec::new();
        for id in 0..self.terms.len() as u32 {
            let t = self.terms.term(id);
            resume::put_varint(&mut buf, t.len() as u64);
            buf.extend_from_slice(t);
            if buf.len() >= 1 << 16 {
                terms_out.append(&buf).map_err(spilling)?;
                buf.clear();
            }
        }
        terms_out.append(&buf).map_err(spilling)?;
        c.terms_written = self.terms.len();
        let mut files_out = resume::create_journal(dir, resume::STREAMS[5]).map_err(spilling)?;
        files_out
            .append(&std::mem::take(&mut c.files_held))
            .map_err(spilling)?;
        c.terms_out = Some(terms_out);
        c.files_out = Some(files_out);
        Ok(())
    }

    /// Take back the next file: add a text file's documents, and note the file for
    /// the checkpoints, writing one when due.
    fn take(&mut self, f: &FileTerms) -> Result<(), RankedError> {
        if f.text {
            self.add(f)?;
        }
        let Some(c) = self.checkpoints.as_mut() else {
            return Ok(());
        };
        let failed =
            |e: std::io::Error| RankedError::Store(format!("checkpointing the build: {e}"));
        c.entry.clear();
        c.entry.push(u8::from(f.text));
        if f.text {
            for &n in &self.lens {
                resume::put_varint(&mut c.entry, n as u64);
            }
        }
        match c.files_out.as_mut() {
            Some(out) => out.append(&c.entry).map_err(failed)?,
            None => c.files_held.extend_from_slice(&c.entry),
        }
        if let Some(out) = c.terms_out.as_mut()
            && c.terms_written < self.terms.len()
        {
            c.entry.clear();
            for id in c.terms_written as u32..self.terms.len() as u32 {
                let t = self.terms.term(id);
                resume::put_varint(&mut c.entry, t.len() as u64);
                c.entry.extend_from_slice(t);
            }
            out.append(&c.entry).map_err(failed)?;
            c.terms_written = self.terms.len();
        }
        c.taken += 1;
        c.since += 1;
        let due = c.taken == c.total
            || c.last.elapsed() >= c.plan.every
            || (c.plan.every_files > 0 && c.since >= c.plan.every_files);
        if due && c.files_out.is_some() {
            self.checkpoint().map_err(failed)?;
        }
        Ok(())
    }

    /// Make what was written durable, then record it as the checkpoint.
    fn checkpoint(&mut self) -> std::io::Result<()> {
        let Some(c) = self.checkpoints.as_mut() else {
            return Ok(());
        };
        let started = Instant::now();
        let mut streams = [(0u64, 0u32); 6];
        for (s, d) in streams.iter_mut().zip([
            &mut self.body,
            &mut self.path,
            &mut self.defs,
            &mut self.comments,
        ]) {
            *s = d
                .sync_spill()
                .unwrap_or_else(|| Err(std::io::Error::other("documents not spilled")))?;
        }
        let (Some(terms_out), Some(files_out)) = (c.terms_out.as_mut(), c.files_out.as_mut())
        else {
            return Ok(());
        };
        streams[4] = terms_out.sync()?;
        streams[5] = files_out.sync()?;
        resume::write_record(
            &c.plan.dir,
            &resume::Record {
                tree: c.tree,
                total: c.total as u64,
                taken: c.taken as u64,
                terms: self.terms.len() as u64,
                streams,
            },
        )?;
        tracing::debug!(
            taken = c.taken,
            total = c.total,
            took_ms = started.elapsed().as_millis() as u64,
            "ranked build checkpoint"
        );
        c.last = Instant::now();
        c.since = 0;
        if c.taken < c.total
            && let Some(marker) = c.plan.hold.take()
            && std::fs::write(&marker, std::process::id().to_string()).is_ok()
        {
            while Path::new(&marker).exists() {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        Ok(())
    }

    /// Give the file's terms their ids and add its documents.
    fn add(&mut self, f: &FileTerms) -> Result<(), RankedError> {
        self.ids.clear();
        let mut start = 0usize;
        for &end in &f.ends {
            let id = self
                .terms
                .intern(&f.bytes[start..end as usize])
                .ok_or_else(|| RankedError::Git("too many distinct terms to index".into()))?;
            self.ids.push(id);
            start = end as usize;
        }
        for (docs, local) in [
            (&mut self.body, &f.body),
            (&mut self.path, &f.path),
            (&mut self.defs, &f.defs),
            (&mut self.comments, &f.comments),
        ] {
            self.pair_buf.clear();
            self.pair_buf
                .extend(local.iter().map(|&(l, c)| (self.ids[l as usize], c)));
            self.pair_buf.sort_unstable();
            docs.push(&self.pair_buf);
        }
        self.lens = [f.body.len(), f.path.len(), f.defs.len(), f.comments.len()];
        self.maybe_spill()
    }
}

/// Read `files` (path, blob) on every core, each one's text from `text` when that has
/// it, and hand each one back in order to `each(index, file, built)`, after adding a
/// text file's documents to `built`.
pub(super) fn read_files(
    repo: &Repository,
    files: &[(String, Oid)],
    text: StoredText<'_>,
    built: &mut Built,
    each: &mut dyn FnMut(usize, &FileTerms),
) -> Result<(), RankedError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Each thread reads through its own handle (a libgit2 repository is not shared
    // between threads); one that cannot be opened (a repository with no path on disk)
    // leaves the reading to this thread.
    let handles: Vec<Repository> = if threads > 1 && files.len() > CHUNK {
        (0..threads)
            .map_while(|_| Repository::open(repo.path()).ok())
            .collect()
    } else {
        Vec::new()
    };
    if handles.is_empty() {
        let mut s = Scratch::default();
        for (i, (path, blob)) in files.iter().enumerate() {
            let f = read_file(repo, path, *blob, text, &mut s)?;
            built.take(&f)?;
            each(i, &f);
        }
        return Ok(());
    }
    let chunks = files.len().div_ceil(CHUNK);
    let ahead = AHEAD_PER_THREAD * handles.len();
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    // The first chunk not yet taken back, and a signal when it moves.
    let taken = Mutex::new(0usize);
    let moved = Condvar::new();
    let (send, receive) = channel::<(usize, Result<Vec<FileTerms>, RankedError>)>();
    std::thread::scope(|scope| {
        for handle in handles {
            let send = send.clone();
            let (next, stop, taken, moved) = (&next, &stop, &taken, &moved);
            scope.spawn(move || {
                let mut s = Scratch::default();
                loop {
                    let c = next.fetch_add(1, Ordering::Relaxed);
                    if c >= chunks {
                        return;
                    }
                    {
                        let mut t = taken.lock().unwrap_or_else(|p| p.into_inner());
                        while c >= *t + ahead && !stop.load(Ordering::Relaxed) {
                            t = moved.wait(t).unwrap_or_else(|p| p.into_inner());
                        }
                    }
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let out = files[c * CHUNK..((c + 1) * CHUNK).min(files.len())]
                        .iter()
                        .map(|(path, blob)| read_file(&handle, path, *blob, text, &mut s))
                        .collect();
                    if send.send((c, out)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(send);
        // Whatever way this ends, the threads are told to stop and woken.
        struct Stop<'a>(&'a AtomicBool, &'a Condvar, &'a Mutex<usize>);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
                let _held = self.2.lock();
                self.1.notify_all();
            }
        }
        let _stop = Stop(&stop, &moved, &taken);
        let mut own = Scratch::default();
        let mut waiting: BTreeMap<usize, Vec<FileTerms>> = BTreeMap::new();
        let mut want = 0usize;
        while want < chunks {
            let chunk = match waiting.remove(&want) {
                Some(c) => c,
                None => match receive.recv() {
                    Ok((c, out)) => {
                        // A thread's own handle failing (an object only the caller's
                        // handle can reach) is not the build's failure: the chunk is
                        // read again here, through the caller's, and only that error
                        // counts.
                        let out = match out {
                            Ok(out) => out,
                            Err(_) => files[c * CHUNK..((c + 1) * CHUNK).min(files.len())]
                                .iter()
                                .map(|(path, blob)| read_file(repo, path, *blob, text, &mut own))
                                .collect::<Result<_, _>>()?,
                        };
                        waiting.insert(c, out);
                        continue;
                    }
                    // Every thread ended short of the last chunk: one panicked, which
                    // the scope raises again as it ends.
                    Err(_) => return Err(RankedError::Git("a reading thread stopped".into())),
                },
            };
            for (k, f) in chunk.iter().enumerate() {
                built.take(f)?;
                each(want * CHUNK + k, f);
            }
            want += 1;
            *taken.lock().unwrap_or_else(|p| p.into_inner()) = want;
            moved.notify_all();
        }
        Ok(())
    })
}
