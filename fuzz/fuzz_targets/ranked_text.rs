//! Fuzz target: the ranked tokenizer, definition finder and chunker on any UTF-8 text,
//! read as each language the definition patterns know (and as none): no panic, and the
//! chunks cover every line in order, as `chunks` promises; and the best chunk found by
//! splitting only the lines a needle points at is the one found by splitting them all.
//!
//! Input: the first line is the file's name (its extension picks the language), the
//! rest is the file's text; a query for `best_chunk` is taken from the name's line too.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use scoped_repo_mcp::ranked::chunks::{
    MAX_CHUNK_LINES, QueryTerms, best_chunk, best_chunk_scanning_every_line, chunks,
};
use scoped_repo_mcp::ranked::symbols::definitions;
use scoped_repo_mcp::ranked::terms::{for_each_term, plain_words, split_words, stem, terms};

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    let (path, text) = input.split_once('\n').unwrap_or((input, ""));

    for word in terms(text).iter().chain(&split_words(text)) {
        let _ = stem(word);
    }
    let _ = plain_words(text);
    let _ = stem(path);
    for_each_term(path, |t| assert!(!t.is_empty(), "an empty term"));

    let lines = text.lines().count();
    for d in definitions(path, text) {
        assert!(d.line < lines.max(1), "definition {d:?} past the last line");
    }
    let cut = chunks(path, text);
    assert_eq!(cut.first().map(|c| c.0), Some(0), "{cut:?}");
    assert_eq!(cut.last().map(|c| c.1), Some(lines), "{cut:?}");
    for w in cut.windows(2) {
        assert_eq!(w[0].1, w[1].0, "chunks leave a gap or overlap: {cut:?}");
    }
    for &(s, e) in &cut {
        assert!(s < e || lines == 0, "an empty chunk: {cut:?}");
        assert!(e - s <= MAX_CHUNK_LINES, "a chunk over the limit: {cut:?}");
    }

    let weights: HashMap<String, f32> = terms(path)
        .into_iter()
        .enumerate()
        .map(|(i, t)| (t, 1.0 + i as f32))
        .collect();
    let query = QueryTerms::new(&weights);
    let (s, e) = best_chunk(path, text, &query);
    assert!(s <= e && e <= lines, "best chunk {s}..{e} of {lines} lines");
    assert_eq!(
        (s, e),
        best_chunk_scanning_every_line(path, text, &query),
        "the lines the needles pass over held a query term"
    );
});
