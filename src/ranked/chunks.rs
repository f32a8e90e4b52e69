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
    let total = lines.len();
    let mut starts = vec![0usize];
    for d in symbols::definitions(path, text) {
        let mut s = d.line;
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

/// The chunk of `text` that best matches the query terms weighted by `weights`
/// (term → informativeness): the sum over matched terms of weight × (1 + ln tf),
/// slightly favouring shorter chunks among equals.
pub fn best_chunk(path: &str, text: &str, weights: &HashMap<String, f32>) -> (usize, usize) {
    let lines: Vec<&str> = text.lines().collect();
    let mut best = (f32::MIN, (0, lines.len().min(MAX_CHUNK_LINES)));
    for (s, e) in chunks(path, text) {
        let mut tf: HashMap<String, u32> = HashMap::new();
        for line in &lines[s..e] {
            terms::for_each_term(line, |t| {
                if weights.contains_key(t) {
                    *tf.entry(t.to_string()).or_default() += 1;
                }
            });
        }
        let score: f32 = tf
            .iter()
            .map(|(t, &c)| weights[t] * (1.0 + (c as f32).ln()))
            .sum::<f32>()
            / (1.0 + (e - s) as f32 / 200.0);
        if score > best.0 {
            best = (score, (s, e));
        }
    }
    best.1
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
        assert_eq!(best_chunk("r.py", text, &w), (3, 5));
    }

    #[test]
    fn long_stretches_are_cut() {
        let text = "x = 1\n".repeat(150);
        assert_eq!(chunks("a.py", &text), [(0, 60), (60, 120), (120, 150)]);
    }
}
