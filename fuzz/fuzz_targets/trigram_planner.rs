//! Fuzz target, differential: for any pattern and file texts, the files the trigram
//! index narrows a search to include every file a full scan finds a match in. A file
//! the planner wrongly rules out is a result lost without a trace.
//!
//! Input: one byte of flags (bit 0: regex, bit 1: case-insensitive, bit 2: the odd
//! files arrive as a later commit, through the index's overlay and dead-file bitmap),
//! then the pattern, then each file's bytes, separated by NUL bytes. `0`, `1`, `2` and
//! `3` are the plain flag bytes, so seeds stay readable.
#![no_main]

use std::collections::BTreeSet;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use scoped_repo_mcp::model::LineQuery;
use scoped_repo_mcp::search::LineSearcher;
use scoped_repo_mcp::search::index::{FileEntry, LineIndex};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut parts = rest.split(|&b| b == 0);
    let Some(Ok(pattern)) = parts.next().map(std::str::from_utf8) else {
        return;
    };
    let query = LineQuery {
        pattern: pattern.to_string(),
        regex: flags & 1 != 0,
        case_sensitive: flags & 2 == 0,
        path_glob: None,
        visible: None,
        max_results: usize::MAX / 2,
        context_lines: 0,
    };
    let Ok(searcher) = LineSearcher::new(&query) else {
        return;
    };
    let files: Vec<Arc<FileEntry>> = parts
        .take(64)
        .enumerate()
        .map(|(i, content)| {
            Arc::new(FileEntry {
                path: format!("f{i:02}.txt").into(),
                content: content.into(),
            })
        })
        .collect();
    if files.is_empty() {
        return;
    }

    let index = if flags & 4 != 0 {
        // The odd files start empty and get their text in the next commit.
        let first: Vec<Arc<FileEntry>> = files
            .iter()
            .enumerate()
            .map(|(i, f)| {
                if i % 2 == 1 {
                    Arc::new(FileEntry {
                        path: f.path.clone(),
                        content: Box::new([]),
                    })
                } else {
                    f.clone()
                }
            })
            .collect();
        let changes = files
            .iter()
            .skip(1)
            .step_by(2)
            .map(|f| (f.path.to_string(), Some(f.content.clone())))
            .collect();
        LineIndex::build("one".into(), first, &|_| {}).apply("two".into(), changes)
    } else {
        LineIndex::build("one".into(), files.clone(), &|_| {})
    };

    let narrowed: BTreeSet<String> = index
        .candidates(searcher.plan(), |_| true)
        .iter()
        .map(|f| f.path.to_string())
        .collect();
    let (hits, truncated, _) = searcher.search_files(&files);
    if truncated {
        return; // Out of time: the full scan is not complete, so proves nothing.
    }
    for hit in &hits {
        assert!(
            narrowed.contains(&hit.path),
            "the index ruled out {} but it matches {pattern:?} (regex {}, case-insensitive {}) \
             at line {}: {:?}\nplan: {:?}",
            hit.path,
            query.regex,
            !query.case_sensitive,
            hit.line,
            hit.text,
            searcher.plan()
        );
    }

    // The index as stored and loaded again narrows the same way.
    let (parts, whole) = index.base_parts();
    if whole {
        let again = LineIndex::from_parts(
            "one".into(),
            index.live_files(),
            parts.keys.to_vec(),
            parts.offsets.to_vec(),
            parts.data.to_vec(),
        )
        .expect("an index's own parts fit together");
        let reloaded: BTreeSet<String> = again
            .candidates(searcher.plan(), |_| true)
            .iter()
            .map(|f| f.path.to_string())
            .collect();
        assert_eq!(reloaded, narrowed, "a reloaded index narrows differently");
    }
});
