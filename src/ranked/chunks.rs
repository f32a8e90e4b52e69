//! Structure-aware chunks: a file cut at its definitions (with the comments and
//! decorators above them), long stretches cut again, and the choice of the chunk that
//! best answers a query, so a result points at lines rather than at a whole file.

use std::collections::HashMap;

use super::{symbols, terms};

/// Longest chunk, in lines: longer definitions are cut into windows of this size.
pub const MAX_CHUNK_LINES: usize = 60;

/// Lines that belong to the definition below them.
fn is_preamble(line: &str) -> bool {
    let t = line.trim_start();
    ["@", "#[", "///", "//", "#", "/*", "*"]
        .iter()
        .any(|p| t.starts_with(p))
}

/// The file's chunks as 0-based half-open line ranges, covering every line in order.
pub fn chunks(path: &str, text: &str) -> Vec<(usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    chunks_of_lines(path, &lines)
}

/// [`chunks`], given `text`'s lines.
fn chunks_of_lines(path: &str, lines: &[&str]) -> Vec<(usize, usize)> {
    let total = lines.len();
    let mut starts = vec![0usize];
    for line in symbols::definition_lines(path, lines) {
        let mut s = line;
        while s > 0 && s - 1 > *starts.last().unwrap_or(&0) && is_preamble(lines[s - 1]) {
            s -= 1;
        }
        if s > *starts.last().unwrap_or(&0) {
            starts.push(s);
        }
    }
    starts.push(total);
    let mut out = Vec::new();
    for w in starts.windows(2) {
        let (mut s, e) = (w[0], w[1]);
        while s < e {
            let end = (s + MAX_CHUNK_LINES).min(e);
            out.push((s, end));
            s = end;
        }
    }
    if out.is_empty() {
        out.push((0, total));
    }
    out
}

/// A query's terms, weighted, ready to score the chunks of many files: each term's
/// needle (a string every line that holds the term contains, once lower-cased with its
/// underscores removed), and one pattern that finds any of them.
pub struct QueryTerms {
    /// The terms and their weights, in a fixed order (so sums round alike every time).
    terms: Vec<(String, f32)>,
    /// Finds any ASCII term's needle; `None` when there is none. (A term outside ASCII
    /// only comes from a line outside ASCII, and those are all split into terms.)
    needles: Option<regex::bytes::Regex>,
    /// Bit `n` set when a term is `n` bytes long (any term of 64 bytes or more sets bit
    /// 63), and which bytes a term starts with: a word passing neither is no term,
    /// without a string comparison.
    lengths: u64,
    firsts: [bool; 256],
}

/// The bit of [`QueryTerms::lengths`] for a word of `len` bytes.
fn length_bit(len: usize) -> u64 {
    1 << len.min(63)
}

impl QueryTerms {
    /// `weights`: term → informativeness (see [`super::RankedIndex::term_weights`]).
    pub fn new(weights: &HashMap<String, f32>) -> Self {
        let mut terms: Vec<(String, f32)> = weights.iter().map(|(t, w)| (t.clone(), *w)).collect();
        terms.sort_by(|a, b| a.0.cmp(&b.0));
        let alternatives: Vec<String> = terms
            .iter()
            .filter(|(t, _)| t.is_ascii())
            .map(|(t, _)| regex::escape(needle(t)))
            .collect();
        let needles = (!alternatives.is_empty()).then(|| {
            regex::bytes::RegexBuilder::new(&alternatives.join("|"))
                .unicode(false)
                .build()
                .expect("escaped literals compile")
        });
        let mut lengths = 0;
        let mut firsts = [false; 256];
        for (t, _) in &terms {
            lengths |= length_bit(t.len());
            if let Some(&b) = t.as_bytes().first() {
                firsts[b as usize] = true;
            }
        }
        QueryTerms {
            terms,
            needles,
            lengths,
            firsts,
        }
    }

    /// How often each term occurs in `line` (by the terms' order), or `None` if none does.
    fn counts(&self, line: &str) -> Option<Vec<u32>> {
        let mut tf = vec![0u32; self.terms.len()];
        let mut any = false;
        terms::for_each_term_where(
            line,
            |b| self.firsts[b as usize],
            |t| {
                let first = t.as_bytes().first().map_or(0, |&b| b as usize);
                if self.lengths & length_bit(t.len()) == 0 || !self.firsts[first] {
                    return;
                }
                if let Ok(i) = self.terms.binary_search_by(|(x, _)| x.as_str().cmp(t)) {
                    tf[i] += 1;
                    any = true;
                }
            },
        );
        any.then_some(tf)
    }

    /// A chunk's score from its terms' counts: the sum over matched terms of weight ×
    /// (1 + ln tf), slightly favouring shorter chunks.
    fn score(&self, tf: &[u32], lines: usize) -> f32 {
        self.terms
            .iter()
            .zip(tf)
            .filter(|(_, c)| **c > 0)
            .map(|((_, w), &c)| w * (1.0 + (c as f32).ln()))
            .sum::<f32>()
            / (1.0 + lines as f32 / 200.0)
    }

    /// The lines of `text` that may hold a term, in order: those where a needle occurs
    /// once the text is lower-cased (ASCII) and its underscores removed, and every line
    /// with a byte outside ASCII (whose case folding the needles do not model).
    fn candidate_lines(&self, text: &str) -> Vec<usize> {
        if self.terms.is_empty() {
            return Vec::new();
        }
        // Copied a run at a time between underscores, and lower-cased in place.
        let mut flat = Vec::with_capacity(text.len());
        for run in text.as_bytes().split(|&b| b == b'_') {
            let from = flat.len();
            flat.extend_from_slice(run);
            flat[from..].make_ascii_lowercase();
        }
        let wide: Vec<usize> = if text.is_ascii() {
            Vec::new()
        } else {
            text.split('\n')
                .enumerate()
                .filter(|(_, l)| !l.is_ascii())
                .map(|(i, _)| i)
                .collect()
        };
        let mut found = wide;
        let (mut at, mut line) = (0, 0);
        let mut from = 0;
        while let Some(m) = self.needles.as_ref().and_then(|n| n.find_at(&flat, from)) {
            line += flat[at..m.start()].iter().filter(|&&b| b == b'\n').count();
            found.push(line);
            // Go on from the next line: this one is a candidate already.
            at = m.start();
            from = match flat[m.start()..].iter().position(|&b| b == b'\n') {
                Some(i) => m.start() + i,
                None => flat.len(),
            };
        }
        found.sort_unstable();
        found.dedup();
        found
    }
}

/// A string every line that yields `term` contains, lower-cased with underscores
/// removed. A term is a word's part, stemmed, or a whole identifier with its separators
/// removed ([`terms::for_each_term`]); stemming only strips endings, except that `-ies`
/// and `-ied` become `-y`, so the term without a final `y` is a prefix of the part it
/// came from.
fn needle(term: &str) -> &str {
    match term.strip_suffix('y') {
        Some(base) if term.len() >= 3 => base,
        _ => term,
    }
}

/// The chunk of `text` that best matches the query: the sum over matched terms of
/// weight × (1 + ln tf), slightly favouring shorter chunks among equals. Only the lines
/// that may hold a term are split into terms.
pub fn best_chunk(path: &str, text: &str, query: &QueryTerms) -> (usize, usize) {
    best_chunk_and_coverage(path, text, query).0
}

/// [`best_chunk`] splitting every line into terms: the reference the needles are
/// checked against.
pub fn best_chunk_scanning_every_line(
    path: &str,
    text: &str,
    query: &QueryTerms,
) -> (usize, usize) {
    let lines: Vec<&str> = text.lines().collect();
    let hits: Vec<(usize, Vec<u32>)> = lines
        .iter()
        .enumerate()
        .filter_map(|(i, l)| Some((i, query.counts(l)?)))
        .collect();
    pick_chunk(path, &lines, query, &hits).0
}

/// The best of `text`'s chunks given the term counts of the lines that hold a term
/// (`hits`, in line order), and the [`coverage`] of the chunk that holds most of the
/// query's weight (not always the best: that one also counts repeats and length).
fn pick_chunk(
    path: &str,
    lines: &[&str],
    query: &QueryTerms,
    hits: &[(usize, Vec<u32>)],
) -> ((usize, usize), f32) {
    let mut best = (f32::MIN, (0, lines.len().min(MAX_CHUNK_LINES)));
    let mut held = 0.0f32;
    let mut tf = vec![0u32; query.terms.len()];
    let mut next = 0;
    for (s, e) in chunks_of_lines(path, lines) {
        tf.fill(0);
        while next < hits.len() && hits[next].0 < e {
            if hits[next].0 >= s {
                for (sum, c) in tf.iter_mut().zip(&hits[next].1) {
                    *sum += c;
                }
            }
            next += 1;
        }
        let score = query.score(&tf, e - s);
        if score > best.0 {
            best = (score, (s, e));
        }
        let here: f32 = query
            .terms
            .iter()
            .zip(&tf)
            .filter(|(_, c)| **c > 0)
            .map(|((_, w), _)| w)
            .sum();
        held = held.max(here);
    }
    let total: f32 = query.terms.iter().map(|(_, w)| w).sum();
    let coverage = if total > 0.0 { held / total } else { 0.0 };
    (best.1, coverage)
}

/// How much of the query one place of `text` holds: the largest share, over the file's
/// chunks, of the query's summed term weight whose terms occur in that chunk, each term
/// counted once however often it occurs. 0 when no term occurs (or the query has none).
///
/// A file where the question's words meet in one definition answers it better than
/// one where they are spread over thousands of lines (measured against the best window
/// of 20 or 40 lines and against the whole file's share, which gained less or lost:
/// see `BENCHMARKS.md`).
pub fn coverage(path: &str, text: &str, query: &QueryTerms) -> f32 {
    best_chunk_and_coverage(path, text, query).1
}

/// [`best_chunk`] and [`coverage`] at once, from one reading of the text.
pub fn best_chunk_and_coverage(
    path: &str,
    text: &str,
    query: &QueryTerms,
) -> ((usize, usize), f32) {
    let lines: Vec<&str> = text.lines().collect();
    let mut hits: Vec<(usize, Vec<u32>)> = Vec::new();
    for i in query.candidate_lines(text) {
        if let Some(tf) = lines.get(i).and_then(|l| query.counts(l)) {
            hits.push((i, tf));
        }
    }
    pick_chunk(path, &lines, query, &hits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_start_at_definitions_and_keep_their_decorators() {
        let text = "import os\n\n@cache\ndef a():\n    pass\n\n# why b\ndef b():\n    return 1\n";
        assert_eq!(chunks("m.py", text), [(0, 2), (2, 6), (6, 9)]);
    }

    #[test]
    fn the_best_chunk_holds_the_query_terms() {
        let text =
            "def load():\n    read()\n\ndef backoff_delay(attempt):\n    return 2 ** attempt\n";
        let w: HashMap<String, f32> = [("backoff".to_string(), 2.0), ("delay".to_string(), 1.0)]
            .into_iter()
            .collect();
        assert_eq!(best_chunk("r.py", text, &QueryTerms::new(&w)), (3, 5));
    }

    /// Every line that yields a term is among the lines its needle points at, for each
    /// term of a text full of the ways names are written.
    #[test]
    fn the_needles_find_every_line_that_holds_a_term() {
        let text = "fn parse_HTTPHeader2(bodies: &Entries) {}\r\n\
                    let getUserName = queries_parsed + __dunder__;\n\
                    // The PROXIES retried; boxes, glasses, classes\n\
                    größe = Straße_Kelvin \u{212A}elvin x1y2 v42\n\
                    copies studies ponies dressing addressed\n\
                    \n\
                    tail_without_newline";
        let lines: Vec<&str> = text.lines().collect();
        let all: std::collections::BTreeSet<String> = terms::terms(text).into_iter().collect();
        assert!(all.len() > 30, "{all:?}");
        for t in &all {
            let q = QueryTerms::new(&[(t.clone(), 1.0)].into_iter().collect());
            let candidates = q.candidate_lines(text);
            for (i, line) in lines.iter().enumerate() {
                if q.counts(line).is_some() {
                    assert!(
                        candidates.contains(&i),
                        "{t:?} on line {i} not found: {candidates:?}"
                    );
                }
            }
        }
        // And the needles do narrow: a term on one line points at that line alone.
        let q = QueryTerms::new(&[("getusername".to_string(), 1.0)].into_iter().collect());
        assert_eq!(q.candidate_lines(text), [1, 3]);
    }

    #[test]
    fn the_best_chunk_is_the_one_found_by_splitting_every_line() {
        let mut text = String::new();
        for i in 0..40 {
            text.push_str(&format!(
                "def handler_{i}(retries):\n    backoff = compute_backoff_delay(retries, {i})\n    return RetryPolicy(max_retries={})\n\n",
                i % 7
            ));
        }
        for query in [
            "retry backoff",
            "compute delay 3",
            "handler_17",
            "policy max",
            "nothing",
        ] {
            let w: HashMap<String, f32> = terms::terms(query)
                .into_iter()
                .enumerate()
                .map(|(i, t)| (t, 1.0 + i as f32 / 3.0))
                .collect();
            let q = QueryTerms::new(&w);
            assert_eq!(
                best_chunk("h.py", &text, &q),
                best_chunk_scanning_every_line("h.py", &text, &q),
                "{query}"
            );
        }
    }

    #[test]
    fn coverage_is_the_best_chunks_share_of_the_query_weight() {
        let w: HashMap<String, f32> = [
            ("retry".to_string(), 3.0),
            ("backoff".to_string(), 2.0),
            ("jitter".to_string(), 1.0),
        ]
        .into_iter()
        .collect();
        let q = QueryTerms::new(&w);
        // Every term in the file, never two in one definition: the best chunk holds
        // `retry` alone, however often.
        let apart =
            "def a():\n    retry(); retry()\n\ndef b():\n    backoff()\n\ndef c():\n    jitter()\n";
        assert!((coverage("m.py", apart, &q) - 0.5).abs() < 1e-6);
        // Two of them met in one definition.
        let together = "def a():\n    retry(backoff)\n\ndef c():\n    jitter()\n";
        assert!((coverage("m.py", together, &q) - 5.0 / 6.0).abs() < 1e-6);
        assert_eq!(coverage("m.py", "def a():\n    pass\n", &q), 0.0);
    }

    #[test]
    fn long_stretches_are_cut() {
        let text = "x = 1\n".repeat(150);
        assert_eq!(chunks("a.py", &text), [(0, 60), (60, 120), (120, 150)]);
    }
}
