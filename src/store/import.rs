//! Importing a directory from disk as a new repo: .gitignore honoured, binary files
//! kept as they are (within the per-file and per-repo limits), oversized and oddly
//! named files skipped and counted, and no file read from outside the directory, even
//! if symlinks are swapped in while the import runs.

use std::collections::BTreeMap;
use std::io::{self, Read as _};
use std::path::Path;
use std::sync::Arc;

use super::{IndexProgress, Store, StoreError};
use crate::model::RepoId;
use crate::paths::RepoPath;
use crate::ranked::RankedProgress;
use crate::search::index::FileEntry;

/// Progress of an import, reported as files are read.
#[derive(Debug, Clone, Copy)]
pub enum ImportProgress {
    /// Walking the directory; this many files found so far.
    Scanning(u64),
    /// Reading files: done of total, in files and in bytes.
    Reading {
        /// Files read.
        done: u64,
        /// Files to read.
        total: u64,
        /// Bytes read (as the walk measured the files).
        bytes: u64,
        /// Bytes of all the files to read, as the walk measured them.
        total_bytes: u64,
    },
    /// Writing the files into the new repo's git objects: done of total.
    Writing {
        /// Files written.
        done: u64,
        /// Files to write.
        total: u64,
    },
    /// Building the search index (on every core): done of total in `stage`.
    Indexing {
        /// What the index build is doing.
        stage: &'static str,
        /// Files done.
        done: u64,
        /// Files in all.
        total: u64,
    },
}

/// What an import did.
#[derive(Debug, Clone)]
pub struct ImportReport {
    /// The new repo.
    pub repo_id: RepoId,
    /// Its first commit.
    pub head: String,
    /// Files imported.
    pub files: usize,
    /// Bytes imported.
    pub bytes: u64,
    /// Of the files imported, how many are binary (kept as they are).
    pub binary: usize,
    /// Files skipped because they are binary: none, since binary files are kept; the
    /// count stays for the summaries that print it.
    pub skipped_binary: usize,
    /// Files skipped because they exceed the per-file limit.
    pub skipped_large: usize,
    /// Files skipped because their path cannot be stored (backslash, `.git`, control
    /// characters, …), or no longer leads to the regular file the walk found (it was
    /// replaced, by a symlink or another file, or removed while the import ran).
    pub skipped_path: usize,
    /// The skipped files with why, the first [`MAX_SKIPPED_KEPT`] of them (paths as
    /// found, lossily UTF-8). They are kept in the store, so that reading one later
    /// says why it is absent.
    pub skipped: Vec<(String, String)>,
    /// How many entries were left out for each reason, every one counted (files an
    /// ignore file excludes are not skipped: they are not part of the project).
    pub skipped_by: BTreeMap<SkipKind, usize>,
}

/// Why an import left an entry out, for its summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SkipKind {
    /// Over the per-file size limit.
    TooLarge,
    /// Binary content.
    Binary,
    /// Text that is not UTF-8.
    NotUtf8,
    /// A path the store cannot hold (backslash, control characters, not UTF-8, …).
    UnsafePath,
    /// Replaced or removed between the walk and the read.
    Changed,
    /// A symbolic link: links are not followed.
    Symlink,
    /// The store's own data directory, inside the imported one.
    DataDir,
}

impl SkipKind {
    /// The reason as a summary line names it.
    pub fn describe(self) -> &'static str {
        match self {
            SkipKind::TooLarge => "over the size limit",
            SkipKind::Binary => "binary",
            SkipKind::NotUtf8 => "not UTF-8 text",
            SkipKind::UnsafePath => "unsafe or unstorable path",
            SkipKind::Changed => "changed or removed while importing",
            SkipKind::Symlink => "symbolic link (not followed)",
            SkipKind::DataDir => "the store's own data directory",
        }
    }
}

/// Skipped files an import keeps by name; past it only the counts.
pub const MAX_SKIPPED_KEPT: usize = 10_000;

impl ImportReport {
    /// Entries left out, every reason counted.
    pub fn skipped_total(&self) -> usize {
        self.skipped_by.values().sum()
    }

    /// The one-line summary of what the import took and left out, by reason.
    pub fn summary(&self) -> String {
        format!(
            "imported {} file(s) ({} binary), {} bytes; {}",
            self.files,
            self.binary,
            self.bytes,
            self.skipped_summary()
        )
    }

    /// `skipped N: n <reason>, …`, or `skipped none`.
    fn skipped_summary(&self) -> String {
        if self.skipped_by.is_empty() {
            return "skipped none".into();
        }
        let reasons: Vec<String> = self
            .skipped_by
            .iter()
            .map(|(kind, n)| format!("{n} {}", kind.describe()))
            .collect();
        format!("skipped {}: {}", self.skipped_total(), reasons.join(", "))
    }

    fn skip(&mut self, path: &Path, kind: SkipKind, reason: &str) {
        *self.skipped_by.entry(kind).or_default() += 1;
        if self.skipped.len() < MAX_SKIPPED_KEPT {
            self.skipped
                .push((path.to_string_lossy().into_owned(), reason.to_string()));
        }
    }
}

/// The walk of an import: hidden files included, `.git` left out, links not followed,
/// and ignore files honoured (inside or outside a git work tree) unless told not to.
fn walker(dir: &Path, honour_ignore: bool) -> ignore::WalkBuilder {
    let mut b = ignore::WalkBuilder::new(dir);
    b.hidden(false)
        .require_git(false)
        .follow_links(false)
        .git_ignore(honour_ignore)
        .git_exclude(honour_ignore)
        .git_global(honour_ignore)
        .ignore(honour_ignore)
        .parents(honour_ignore)
        .filter_entry(|e| e.file_name() != ".git");
    b
}

/// Why an import took no file, and what to do.
fn nothing_to_import(dir: &Path, honour_ignore: bool, report: &ImportReport) -> String {
    if report.skipped_total() > 0 {
        return format!(
            "`{}` has no file to import: {}",
            dir.display(),
            report.summary()
        );
    }
    if honour_ignore {
        let unfiltered = walker(dir, false)
            .build()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_some_and(|t| t.is_file()))
            .take(100_000)
            .count();
        if unfiltered > 0 {
            let culprit = std::fs::read_to_string(dir.join(".gitignore"))
                .ok()
                .and_then(|text| {
                    text.lines()
                        .enumerate()
                        .find(|(_, l)| matches!(l.trim(), "*" | "/*" | "**" | "/**" | "/**/*"))
                        .map(|(n, l)| {
                            format!(
                                "; `.gitignore` line {}: `{}` ignores everything",
                                n + 1,
                                l.trim()
                            )
                        })
                })
                .unwrap_or_default();
            return format!(
                "`{}`: every one of its {unfiltered}{} file(s) is excluded by its ignore files{culprit}; \
                 pass --no-ignore to import them anyway, or fix the ignore file",
                dir.display(),
                if unfiltered == 100_000 { "+" } else { "" },
            );
        }
    }
    format!("`{}` holds no file to import", dir.display())
}

impl Store {
    /// Import `dir` as a new repo.
    pub fn import_dir(
        &self,
        dir: &Path,
        metadata: BTreeMap<String, String>,
        progress: &dyn Fn(ImportProgress),
    ) -> Result<ImportReport, StoreError> {
        self.import_dir_with(dir, metadata, progress, true)
    }

    /// Import `dir` as a new repo; with `honour_ignore` false, ignore files
    /// (`.gitignore`, `.ignore`, `.git/info/exclude`, the global git excludes) are not
    /// read. An import that would take no file is refused, naming what excluded them.
    pub fn import_dir_with(
        &self,
        dir: &Path,
        metadata: BTreeMap<String, String>,
        progress: &dyn Fn(ImportProgress),
        honour_ignore: bool,
    ) -> Result<ImportReport, StoreError> {
        self.import_dir_as(RepoId::new_random(), dir, metadata, progress, honour_ignore)
    }

    /// [`Store::import_dir_with`] under an ID chosen beforehand (a server names it in
    /// its scope before the import ends). The repo appears under `id` only once whole.
    pub fn import_dir_as(
        &self,
        id: RepoId,
        dir: &Path,
        metadata: BTreeMap<String, String>,
        progress: &dyn Fn(ImportProgress),
        honour_ignore: bool,
    ) -> Result<ImportReport, StoreError> {
        if !dir.is_dir() {
            return Err(StoreError::Invalid(format!(
                "`{}` is not a directory",
                dir.display()
            )));
        }
        let mut report = ImportReport {
            repo_id: id,
            head: String::new(),
            files: 0,
            bytes: 0,
            binary: 0,
            skipped_binary: 0,
            skipped_large: 0,
            skipped_path: 0,
            skipped: Vec::new(),
            skipped_by: BTreeMap::new(),
        };
        let mut candidates = Vec::new();
        // Never walk into this store's own data directory (an import of a directory
        // that holds it): reading `store.db` or its journal here would open and close
        // descriptors of files this process's connection holds, which drops SQLite's
        // locks (see `db::open_private`), and a store is not a project's source.
        let own = DirId::of_path(self.root());
        let own_found = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut walker = walker(dir, honour_ignore);
        if let Some(own) = own {
            let found = own_found.clone();
            walker.filter_entry(move |e| {
                let is_own = e.file_type().is_some_and(|t| t.is_dir())
                    && e.metadata().ok().as_ref().and_then(DirId::of) == Some(own);
                if is_own && let Ok(mut found) = found.lock() {
                    found.push(e.path().to_path_buf());
                }
                e.file_name() != ".git" && !is_own
            });
        }
        let walker = walker.build();
        let mut total_bytes = 0u64;
        for entry in walker {
            let entry = entry.map_err(|e| StoreError::Io(e.to_string()))?;
            if entry.file_type().is_some_and(|t| t.is_symlink()) {
                let rel = entry.path().strip_prefix(dir).unwrap_or(entry.path());
                report.skip(
                    rel,
                    SkipKind::Symlink,
                    "a symbolic link (links are not followed)",
                );
                continue;
            }
            if !entry.file_type().is_some_and(|t| t.is_file()) {
                continue;
            }
            // The walk does not follow links, so this is the file itself; a file that
            // vanished already is skipped when it is read.
            let meta = entry.metadata().ok();
            let walked = meta.as_ref().map(FileId::of);
            total_bytes += meta.as_ref().map_or(0, |m| m.len());
            candidates.push((entry.into_path(), walked, meta.map_or(0, |m| m.len())));
            if candidates.len() % 1000 == 0 {
                progress(ImportProgress::Scanning(candidates.len() as u64));
            }
        }
        for path in own_found.lock().map(|f| f.clone()).unwrap_or_default() {
            let rel = path.strip_prefix(dir).unwrap_or(&path).to_path_buf();
            report.skip(&rel, SkipKind::DataDir, "the store's own data directory");
        }
        candidates.sort();
        let total = candidates.len() as u64;
        let limits = self.limits();
        let mut reader = WalkedFileReader::new(dir)?;
        let mut files = Vec::new();
        let mut bytes_done = 0u64;
        for (i, (path, walked, len)) in candidates.iter().enumerate() {
            if i % 256 == 0 {
                progress(ImportProgress::Reading {
                    done: i as u64,
                    total,
                    bytes: bytes_done,
                    total_bytes,
                });
            }
            bytes_done += len;
            let rel = path.strip_prefix(dir).unwrap_or(path);
            let parts: Option<Vec<&str>> =
                rel.components().map(|c| c.as_os_str().to_str()).collect();
            let Some(repo_path) = parts.and_then(|parts| RepoPath::parse(&parts.join("/")).ok())
            else {
                report.skipped_path += 1;
                report.skip(rel, SkipKind::UnsafePath, "its path cannot be stored");
                continue;
            };
            let read = match walked {
                Some(walked) => reader.read(rel, *walked, limits.max_file_bytes as u64),
                None => Ok(WalkedFile::Changed),
            };
            let bytes = match read
                .map_err(|e| StoreError::Io(format!("{}: {e}", path.display())))?
            {
                WalkedFile::Read(bytes) => bytes,
                WalkedFile::TooLarge => {
                    report.skipped_large += 1;
                    report.skip(
                        rel,
                        SkipKind::TooLarge,
                        &format!("over the limit of {} bytes a file", limits.max_file_bytes),
                    );
                    continue;
                }
                WalkedFile::Changed => {
                    tracing::warn!(path = ?path, "skipped: no longer the regular file the walk found (replaced or removed while importing)");
                    report.skipped_path += 1;
                    report.skip(
                        rel,
                        SkipKind::Changed,
                        "it changed while the import read it",
                    );
                    continue;
                }
            };
            if !super::is_text(&bytes) {
                report.binary += 1;
            }
            report.bytes += bytes.len() as u64;
            files.push((repo_path, bytes));
        }
        progress(ImportProgress::Reading {
            done: total,
            total,
            bytes: total_bytes,
            total_bytes,
        });
        report.files = files.len();
        if files.is_empty() {
            return Err(StoreError::Invalid(nothing_to_import(
                dir,
                honour_ignore,
                &report,
            )));
        }
        // An import is not an agent's update: its size is bounded by the per-file limit
        // and the repo's quota only, so it goes through a store with the update limits
        // lifted.
        let to_write = files.len() as u64;
        let (row, outcome) = self.create_repo_unbounded(id, metadata, &files, &|done| {
            progress(ImportProgress::Writing {
                done: done as u64,
                total: to_write,
            })
        })?;
        // The line index is made from the text files read here, which are the commit's
        // tree, rather than by inflating the blobs just written.
        let mut text: Vec<Arc<FileEntry>> = files
            .into_iter()
            .filter(|(_, bytes)| super::is_text(bytes))
            .map(|(path, bytes)| {
                Arc::new(FileEntry {
                    path: path.as_str().into(),
                    content: bytes.into(),
                })
            })
            .collect();
        text.sort_unstable_by(|a, b| a.path.cmp(&b.path));
        if let Err(e) = self.db.record_skipped(&row.id, &report.skipped) {
            tracing::warn!(repo = %row.id, cause = %e, "the skipped files could not be recorded; reading one will not say why it is absent");
        }
        report.repo_id = row.id;
        // Index now, while the user watches a progress bar, so a server opening the repo
        // later loads the stored postings instead of extracting them again.
        let given = git2::Oid::from_str(&outcome.head).ok().map(|at| (at, text));
        report.head = outcome.head;
        self.line_index_for_import(&row.id, progress, given);
        Ok(report)
    }

    /// Build repo `id`'s line index as part of an import, its progress shown as the
    /// import's, from `given`'s files when it is at the head. A failure is logged, not
    /// returned: the first search builds it.
    fn line_index_for_import(
        &self,
        id: &RepoId,
        progress: &dyn Fn(ImportProgress),
        given: Option<(git2::Oid, Vec<Arc<FileEntry>>)>,
    ) {
        let indexed = self.line_index_given(
            id,
            &|p| {
                progress(match p {
                    IndexProgress::Reading { done, total } => ImportProgress::Indexing {
                        stage: "indexing: reading",
                        done,
                        total,
                    },
                    IndexProgress::Indexing { done, total } => ImportProgress::Indexing {
                        stage: "indexing: trigrams",
                        done,
                        total,
                    },
                })
            },
            given,
        );
        if let Err(e) = indexed {
            tracing::warn!(repo = %id, cause = %e, "imported, but the search index was not built; the first search builds it");
        }
    }

    /// Build repo `id`'s search indexes as an import's last step, while the user
    /// watches its progress: the line index (unless there is one) and the ranked index,
    /// stored before this returns, so that a server opening the repo later loads both
    /// instead of building them on its first question. A failure is logged, not
    /// returned: the repo is whole, and the first question builds what is missing.
    pub fn index_import(
        &self,
        id: &RepoId,
        progress: &dyn Fn(ImportProgress),
    ) -> Option<super::RankedBuild> {
        self.line_index_for_import(id, progress, None);
        let ranked = self.build_ranked_index(id, &|p| {
            progress(match p {
                RankedProgress::Files { done, total } => ImportProgress::Indexing {
                    stage: "ranked index: files",
                    done,
                    total,
                },
                RankedProgress::Resumed { from, total } => ImportProgress::Indexing {
                    stage: "ranked index: resumed from a checkpoint",
                    done: from,
                    total,
                },
                RankedProgress::Commits { done, total } => ImportProgress::Indexing {
                    stage: "ranked index: history",
                    done,
                    total,
                },
            })
        });
        match ranked {
            Ok(built) => Some(built),
            Err(e) => {
                tracing::warn!(repo = %id, cause = %e, "imported, but the ranked index was not built; the first ranked question builds it");
                None
            }
        }
    }
}

/// A directory's identity (device and inode), to recognise it under any path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DirId(u64, u64);

impl DirId {
    fn of(meta: &std::fs::Metadata) -> Option<Self> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            Some(DirId(meta.dev(), meta.ino()))
        }
        #[cfg(not(unix))]
        {
            let _ = meta;
            None
        }
    }

    fn of_path(path: &Path) -> Option<Self> {
        std::fs::metadata(path).ok().as_ref().and_then(Self::of)
    }
}

/// How reading a file the walk found ended.
#[derive(Debug, PartialEq, Eq)]
enum WalkedFile {
    /// Its content, no more than the limit.
    Read(Vec<u8>),
    /// It holds more than the limit.
    TooLarge,
    /// The path no longer leads, without symlinks, to the regular file the walk saw.
    Changed,
}

/// The identity of the file the walk saw, so that reading can insist on that very file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct FileId {
    #[cfg(unix)]
    dev: u64,
    #[cfg(unix)]
    ino: u64,
}

impl FileId {
    fn of(meta: &std::fs::Metadata) -> Self {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt as _;
            Self {
                dev: meta.dev(),
                ino: meta.ino(),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = meta;
            Self {}
        }
    }
}

/// Read the rest of `file`, up to `limit` bytes: the limit holds for what is read, even
/// if the file grew after it was measured.
fn read_limited(file: &std::fs::File, len: u64, limit: u64) -> io::Result<WalkedFile> {
    if len > limit {
        return Ok(WalkedFile::TooLarge);
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Ok(WalkedFile::TooLarge);
    }
    Ok(WalkedFile::Read(bytes))
}

/// Reads the files the walk found, each through descriptors opened from the import's
/// root one name at a time, none of them following a symlink: a directory or file swapped
/// for a symlink after the walk is refused rather than followed out of the directory. The
/// directories of the previous file stay open, since files come in path order.
#[cfg(unix)]
struct WalkedFileReader {
    root: std::os::fd::OwnedFd,
    names: Vec<std::ffi::OsString>,
    dirs: Vec<std::os::fd::OwnedFd>,
}

#[cfg(unix)]
impl WalkedFileReader {
    fn new(root: &Path) -> io::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let root = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(root)?;
        Ok(Self {
            root: root.into(),
            names: Vec::new(),
            dirs: Vec::new(),
        })
    }

    /// Read `rel` (relative to the root) if it is still the regular file `walked`.
    fn read(&mut self, rel: &Path, walked: FileId, limit: u64) -> io::Result<WalkedFile> {
        let mut names = Vec::new();
        for c in rel.components() {
            match c {
                std::path::Component::Normal(name) => names.push(name),
                _ => return Ok(WalkedFile::Changed),
            }
        }
        let Some((name, parents)) = names.split_last() else {
            return Ok(WalkedFile::Changed);
        };
        let file = match self.open_dirs(parents).and_then(|dir| {
            open_at(
                dir,
                name,
                libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY,
            )
        }) {
            Ok(fd) => std::fs::File::from(fd),
            Err(e) if is_swapped(&e) => return Ok(WalkedFile::Changed),
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        if !meta.file_type().is_file() || FileId::of(&meta) != walked {
            return Ok(WalkedFile::Changed);
        }
        read_limited(&file, meta.len(), limit)
    }

    /// The directory `parents` below the root, opened without following symlinks.
    fn open_dirs(
        &mut self,
        parents: &[&std::ffi::OsStr],
    ) -> io::Result<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd as _;
        let same = self
            .names
            .iter()
            .zip(parents)
            .take_while(|(open, want)| open.as_os_str() == **want)
            .count();
        self.names.truncate(same);
        self.dirs.truncate(same);
        for name in &parents[same..] {
            let parent = self.dirs.last().unwrap_or(&self.root).as_fd();
            let fd = open_at(
                parent,
                name,
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
            )?;
            self.dirs.push(fd);
            self.names.push(name.to_os_string());
        }
        Ok(self.dirs.last().unwrap_or(&self.root).as_fd())
    }
}

/// `openat(2)` of one name in `dir`, close-on-exec.
#[cfg(unix)]
fn open_at(
    dir: std::os::fd::BorrowedFd<'_>,
    name: &std::ffi::OsStr,
    flags: libc::c_int,
) -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::{AsRawFd as _, FromRawFd as _};
    use std::os::unix::ffi::OsStrExt as _;
    let name = std::ffi::CString::new(name.as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `dir` is an open descriptor for the whole call, and `name` is a
    // NUL-terminated string that outlives it.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `openat` just returned this descriptor, and nothing else owns it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// Whether opening failed because the path changed after the walk: a symlink where
/// `O_NOFOLLOW` forbids one (`ELOOP`; `EMLINK` on the BSDs), a file where a directory
/// was, a socket, or nothing at all.
#[cfg(unix)]
fn is_swapped(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ELOOP | libc::EMLINK | libc::ENOTDIR | libc::ENOENT | libc::ENXIO)
    )
}

/// Without `openat`, the best at hand: the path must not be a symlink just before it is
/// opened, and must be a regular file once open.
#[cfg(not(unix))]
struct WalkedFileReader {
    root: std::path::PathBuf,
}

#[cfg(not(unix))]
impl WalkedFileReader {
    fn new(root: &Path) -> io::Result<Self> {
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    fn read(&mut self, rel: &Path, _walked: FileId, limit: u64) -> io::Result<WalkedFile> {
        let path = self.root.join(rel);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_file() => {}
            Ok(_) => return Ok(WalkedFile::Changed),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(WalkedFile::Changed),
            Err(e) => return Err(e),
        }
        let file = std::fs::File::open(&path)?;
        let meta = file.metadata()?;
        if !meta.file_type().is_file() {
            return Ok(WalkedFile::Changed);
        }
        read_limited(&file, meta.len(), limit)
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn walked(path: &Path) -> FileId {
        FileId::of(&std::fs::symlink_metadata(path).unwrap())
    }

    /// Each way a walked file can be swapped afterwards is refused, never followed.
    #[test]
    fn reads_only_the_regular_file_the_walk_saw() {
        let outside = tempfile::tempdir().unwrap();
        let secret = outside.path().join("secret");
        std::fs::write(&secret, "SECRET").unwrap();
        std::fs::create_dir(outside.path().join("dir")).unwrap();
        std::fs::write(outside.path().join("dir/f"), "SECRET").unwrap();
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("sub/deeper")).unwrap();
        let names = [
            "plain",
            "link",
            "sub/deeper/f",
            "other",
            "fifo",
            "grows",
            "gone",
        ];
        for f in names {
            std::fs::write(r.join(f), "inside").unwrap();
        }
        let ids: BTreeMap<&str, FileId> =
            names.into_iter().map(|f| (f, walked(&r.join(f)))).collect();

        std::fs::remove_file(r.join("link")).unwrap();
        std::os::unix::fs::symlink(&secret, r.join("link")).unwrap();
        std::fs::rename(r.join("sub"), outside.path().join("moved")).unwrap();
        std::fs::create_dir(r.join("sub")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("dir"), r.join("sub/deeper")).unwrap();
        std::fs::remove_file(r.join("other")).unwrap();
        std::fs::hard_link(&secret, r.join("other")).unwrap();
        std::fs::remove_file(r.join("fifo")).unwrap();
        let fifo =
            std::ffi::CString::new(r.join("fifo").into_os_string().into_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        std::fs::write(r.join("grows"), "x".repeat(100)).unwrap();
        std::fs::remove_file(r.join("gone")).unwrap();

        let mut reader = WalkedFileReader::new(r).unwrap();
        let mut read = |f: &str| reader.read(Path::new(f), ids[f], 10).unwrap();
        assert_eq!(read("plain"), WalkedFile::Read(b"inside".to_vec()));
        assert_eq!(read("link"), WalkedFile::Changed);
        assert_eq!(read("sub/deeper/f"), WalkedFile::Changed);
        assert_eq!(read("other"), WalkedFile::Changed);
        assert_eq!(
            read("fifo"),
            WalkedFile::Changed,
            "a FIFO is refused, not waited on"
        );
        assert_eq!(read("grows"), WalkedFile::TooLarge);
        assert_eq!(read("gone"), WalkedFile::Changed);
        assert_eq!(read("plain"), WalkedFile::Read(b"inside".to_vec()));
    }

    #[test]
    fn the_size_limit_holds_for_what_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "0123456789abc").unwrap();
        let file = std::fs::File::open(&path).unwrap();
        // Measured small, but it has grown since: only limit + 1 bytes are read.
        assert_eq!(read_limited(&file, 3, 10).unwrap(), WalkedFile::TooLarge);
        let file = std::fs::File::open(&path).unwrap();
        assert_eq!(
            read_limited(&file, 13, 13).unwrap(),
            WalkedFile::Read(b"0123456789abc".to_vec())
        );
    }
}
