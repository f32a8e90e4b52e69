//! Importing a directory from disk as a new repo: .gitignore honoured, binary,
//! non-UTF-8, oversized and oddly named files skipped and counted.

use std::collections::BTreeMap;
use std::path::Path;

use super::{IndexProgress, Store, StoreError};
use crate::model::RepoId;
use crate::paths::RepoPath;

/// Progress of an import, reported as files are read.
#[derive(Debug, Clone, Copy)]
pub enum ImportProgress {
    /// Walking the directory; this many files found so far.
    Scanning(u64),
    /// Reading files: done of total.
    Reading {
        /// Files read.
        done: u64,
        /// Files to read.
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
    /// Files skipped because they are binary or not UTF-8.
    pub skipped_binary: usize,
    /// Files skipped because they exceed the per-file limit.
    pub skipped_large: usize,
    /// Files skipped because their path cannot be stored (backslash, `.git`, …).
    pub skipped_path: usize,
}

impl Store {
    /// Import `dir` as a new repo.
    pub fn import_dir(
        &self,
        dir: &Path,
        metadata: BTreeMap<String, String>,
        progress: &dyn Fn(ImportProgress),
    ) -> Result<ImportReport, StoreError> {
        if !dir.is_dir() {
            return Err(StoreError::Invalid(format!(
                "`{}` is not a directory",
                dir.display()
            )));
        }
        let mut candidates = Vec::new();
        let walker = ignore::WalkBuilder::new(dir)
            .hidden(false)
            .require_git(false)
            .follow_links(false)
            .filter_entry(|e| e.file_name() != ".git")
            .build();
        for entry in walker {
            let entry = entry.map_err(|e| StoreError::Io(e.to_string()))?;
            if !entry.file_type().is_some_and(|t| t.is_file()) {
                continue;
            }
            candidates.push(entry.into_path());
            if candidates.len() % 1000 == 0 {
                progress(ImportProgress::Scanning(candidates.len() as u64));
            }
        }
        candidates.sort();
        let total = candidates.len() as u64;
        let limits = self.limits();
        let mut report = ImportReport {
            repo_id: RepoId::new_random(),
            head: String::new(),
            files: 0,
            bytes: 0,
            skipped_binary: 0,
            skipped_large: 0,
            skipped_path: 0,
        };
        let mut files = Vec::new();
        for (i, path) in candidates.iter().enumerate() {
            if i % 256 == 0 {
                progress(ImportProgress::Reading {
                    done: i as u64,
                    total,
                });
            }
            let rel = path.strip_prefix(dir).unwrap_or(path);
            let rel: Option<Vec<&str>> = rel.components().map(|c| c.as_os_str().to_str()).collect();
            let Some(repo_path) = rel.and_then(|parts| RepoPath::parse(&parts.join("/")).ok())
            else {
                report.skipped_path += 1;
                continue;
            };
            let meta = std::fs::metadata(path)?;
            if meta.len() > limits.max_file_bytes as u64 {
                report.skipped_large += 1;
                continue;
            }
            let bytes = std::fs::read(path)?;
            if super::is_binary(&bytes) {
                report.skipped_binary += 1;
                continue;
            }
            let Ok(text) = String::from_utf8(bytes) else {
                report.skipped_binary += 1;
                continue;
            };
            report.bytes += text.len() as u64;
            files.push((repo_path, text));
        }
        progress(ImportProgress::Reading { done: total, total });
        report.files = files.len();
        // An import is not an agent's update: its size is bounded by the per-file limit
        // only, so it goes through a store with the update limits lifted.
        let (row, outcome) = self.create_repo_unbounded(metadata, &files)?;
        drop(files);
        report.repo_id = row.id;
        report.head = outcome.head;
        // Index now, while the user watches a progress bar, so a server opening the repo
        // later loads the stored postings instead of extracting them again.
        let indexed = self.line_index_with(&row.id, &|p| {
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
        });
        if let Err(e) = indexed {
            tracing::warn!(repo = %row.id, cause = %e, "imported, but the search index was not built; the first search builds it");
        }
        Ok(report)
    }
}
