//! Fuzz target, differential: for any pattern and file texts, the files the trigram
//! index narrows a search to include every file a full scan finds a match in. A file
//! the planner wrongly rules out is a result lost without a trace. The same holds of
//! the stencil (bytes at fixed distances, checked before the regex runs over a file
//! when the index cannot narrow the pattern): the search finds the same hits with it
//! and without it.
//!
//! Input: one byte of flags (bit 0: regex, bit 1: case-insensitive, bit 2: the odd
//! files arrive as a later commit, through a delta segment and the dead-file bitmaps),
//! then the pattern, then each file's bytes, separated by NUL bytes. `0`, `1`, `2` and
//! `3` are the plain flag bytes, so seeds stay readable.
#![no_main]

use std::collections::BTreeSet;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use scoped_repo_mcp::model::LineQuery;
use scoped_repo_mcp::search::LineSearcher;
use scoped_repo_mcp::search::index::{FileEntry, LineIndex, Segment};

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
                        content: Vec::new().into(),
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
            .map(|f| {
                (
                    f.path.to_string(),
                    Some(f.content.to_vec().into_boxed_slice()),
                )
            })
            .collect();
        LineIndex::build("one".into(), first, &|_| {})
            .and_then(|ix| ix.apply("two".into(), changes))
            .expect("an index builds")
    } else {
        LineIndex::build("one".into(), files.clone(), &|_| {}).expect("an index builds")
    };

    let narrowed: BTreeSet<String> = index
        .candidates(searcher.plan(), |_| true)
        .iter()
        .map(|f| f.path.to_string())
        .collect();
    let plain = LineSearcher::new(&query)
        .expect("compiled once")
        .without_stencil();
    let (hits, truncated, _) = plain.search_files(&files, scoped_repo_mcp::search::TIME_BUDGET);
    if truncated {
        return; // Out of time: the full scan is not complete, so proves nothing.
    }
    let (stenciled, truncated, _) =
        searcher.search_files(&files, scoped_repo_mcp::search::TIME_BUDGET);
    if !truncated {
        assert_eq!(
            stenciled,
            hits,
            "the stencil {:?} changed the hits of {pattern:?} (regex {}, case-insensitive {})",
            searcher.stencil(),
            query.regex,
            !query.case_sensitive,
        );
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

    // The index merged into one stored segment and opened again narrows the same way.
    let merged = index
        .write_merged(std::io::Cursor::new(Vec::new()))
        .expect("a merge writes");
    let segment = Segment::from_vec(merged.into_inner(), false).expect("a merge opens");
    let again = LineIndex::from_segments(vec![Arc::new(segment)]).expect("one base is an index");
    let reloaded: BTreeSet<String> = again
        .candidates(searcher.plan(), |_| true)
        .iter()
        .map(|f| f.path.to_string())
        .collect();
    assert_eq!(reloaded, narrowed, "a reloaded index narrows differently");
});
