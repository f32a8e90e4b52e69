//! Line search over file contents: the literal and regex modes of `search_repo`.
//!
//! Knows nothing of scopes, stores or MCP: it is handed paths and bytes. Patterns are
//! compiled by the `regex` crate, whose matching time is linear in the input, so no
//! pattern can hang the server; compiled size is capped so none can exhaust memory.

use std::time::{Duration, Instant};

use globset::{GlobBuilder, GlobMatcher};
use regex::bytes::{Regex, RegexBuilder};

use crate::model::{LineQuery, MatchRange, SearchHit};

/// Longest line text returned in a hit, in bytes.
pub const MAX_LINE_BYTES: usize = 1000;
/// Compiled program size allowed for one pattern.
const REGEX_SIZE_LIMIT: usize = 4 * 1024 * 1024;
/// Lazy DFA cache allowed for one pattern.
const DFA_SIZE_LIMIT: usize = 16 * 1024 * 1024;
/// Wall-clock budget of one search; past it the answer is cut and marked truncated.
const TIME_BUDGET: Duration = Duration::from_secs(20);

/// A pattern or glob that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// The regex does not compile.
    #[error("the regex does not compile: {0}")]
    BadRegex(String),
    /// The regex compiles to a program over the size limit.
    #[error(
        "the regex is too costly to run (its compiled form exceeds {REGEX_SIZE_LIMIT} bytes); simplify it, e.g. fewer repetitions like {{1000}} or fewer alternatives"
    )]
    TooCostly,
    /// The path glob does not parse.
    #[error("path_glob `{glob}` is not a valid glob: {reason}")]
    BadGlob {
        /// The glob.
        glob: String,
        /// Why.
        reason: String,
    },
}

/// Compile a path glob the way `list_files` and `search_repo` use it: `*` stays within a
/// path component, `**` crosses them, and a glob without `/` matches the file name
/// anywhere (as ripgrep's `-g` does).
pub fn compile_glob(glob: &str) -> Result<GlobMatcher, SearchError> {
    let effective = if glob.contains('/') {
        glob.to_string()
    } else {
        format!("**/{glob}")
    };
    GlobBuilder::new(&effective)
        .literal_separator(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| SearchError::BadGlob {
            glob: glob.to_string(),
            reason: e.kind().to_string(),
        })
}

/// A compiled line search.
#[derive(Debug)]
pub struct LineSearcher {
    re: Regex,
    glob: Option<GlobMatcher>,
    max_results: usize,
    context: usize,
}

impl LineSearcher {
    /// Compile `query`.
    pub fn new(query: &LineQuery) -> Result<Self, SearchError> {
        let pattern = if query.regex {
            query.pattern.clone()
        } else {
            regex::escape(&query.pattern)
        };
        let re = RegexBuilder::new(&pattern)
            .case_insensitive(!query.case_sensitive)
            .multi_line(true)
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(DFA_SIZE_LIMIT)
            .build()
            .map_err(|e| match e {
                regex::Error::CompiledTooBig(_) => SearchError::TooCostly,
                other => SearchError::BadRegex(other.to_string()),
            })?;
        let glob = query.path_glob.as_deref().map(compile_glob).transpose()?;
        Ok(Self {
            re,
            glob,
            max_results: query.max_results,
            context: query.context_lines,
        })
    }

    /// Whether `path` passes the path glob.
    pub fn wants_path(&self, path: &str) -> bool {
        self.glob.as_ref().is_none_or(|g| g.is_match(path))
    }

    /// Begin a search run that collects hits across files.
    pub fn start(&self) -> SearchRun<'_> {
        SearchRun {
            searcher: self,
            hits: Vec::new(),
            truncated: false,
            files: 0,
            deadline: Instant::now() + TIME_BUDGET,
        }
    }
}

/// Hits collected so far by one search.
#[derive(Debug)]
pub struct SearchRun<'a> {
    searcher: &'a LineSearcher,
    hits: Vec<SearchHit>,
    truncated: bool,
    files: usize,
    deadline: Instant,
}

fn cut_line(line: &[u8]) -> (String, usize) {
    let mut end = line.len().min(MAX_LINE_BYTES);
    let text = loop {
        match std::str::from_utf8(&line[..end]) {
            Ok(s) => break s.to_string(),
            Err(e) if e.valid_up_to() > 0 && end - e.valid_up_to() < 4 => end = e.valid_up_to(),
            Err(_) => break String::from_utf8_lossy(&line[..end]).into_owned(),
        }
    };
    (text, end)
}

fn strip_eol(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\n").unwrap_or(line)
}

impl SearchRun<'_> {
    /// Search one file's bytes; false once the run should stop (enough hits or out of time).
    pub fn search_file(&mut self, path: &str, bytes: &[u8]) -> bool {
        if self.truncated {
            return false;
        }
        if Instant::now() > self.deadline {
            self.truncated = true;
            return false;
        }
        self.files += 1;
        let re = &self.searcher.re;
        // A whole-buffer test first: most files have no match, and a per-line match is
        // always also a whole-buffer match in multi-line mode.
        if crate::store::is_binary(bytes) || !re.is_match(bytes) {
            return true;
        }
        let lines: Vec<&[u8]> = bytes
            .split_inclusive(|&b| b == b'\n')
            .map(strip_eol)
            .collect();
        let ctx = self.searcher.context;
        for (i, line) in lines.iter().enumerate() {
            let mut matches = re.find_iter(line).peekable();
            if matches.peek().is_none() {
                continue;
            }
            if self.hits.len() >= self.searcher.max_results {
                self.truncated = true;
                return false;
            }
            let (text, cut) = cut_line(line);
            let ranges = matches
                .filter(|m| m.start() <= cut)
                .map(|m| MatchRange {
                    start: m.start(),
                    end: m.end().min(cut),
                })
                .collect();
            let line_text = |l: &[u8]| cut_line(l).0;
            self.hits.push(SearchHit {
                path: path.to_string(),
                line: i as u64 + 1,
                text,
                matches: ranges,
                before: lines[i.saturating_sub(ctx)..i]
                    .iter()
                    .map(|l| line_text(l))
                    .collect(),
                after: lines[(i + 1).min(lines.len())..(i + 1 + ctx).min(lines.len())]
                    .iter()
                    .map(|l| line_text(l))
                    .collect(),
            });
        }
        true
    }

    /// The hits, whether the run stopped early, and how many files it searched.
    pub fn finish(self) -> (Vec<SearchHit>, bool, usize) {
        (self.hits, self.truncated, self.files)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pattern: &str, regex: bool) -> LineQuery {
        LineQuery {
            pattern: pattern.to_string(),
            regex,
            case_sensitive: true,
            path_glob: None,
            max_results: 100,
            context_lines: 0,
        }
    }

    fn run(q: &LineQuery, text: &str) -> Vec<SearchHit> {
        let s = LineSearcher::new(q).unwrap();
        let mut r = s.start();
        r.search_file("f.rs", text.as_bytes());
        r.finish().0
    }

    #[test]
    fn literal_is_not_a_regex() {
        let hits = run(&query("a.b(", false), "axb(\na.b(c\n");
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].line, 2);
        assert_eq!(hits[0].matches, vec![MatchRange { start: 0, end: 4 }]);
    }

    #[test]
    fn anchors_work_per_line() {
        let hits = run(&query("^fn \\w+$", true), "fn a\n  fn b\nfn c\r\nfn d");
        let lines: Vec<u64> = hits.iter().map(|h| h.line).collect();
        assert_eq!(lines, vec![1, 4]);
    }

    #[test]
    fn whitespace_class_does_not_cross_lines() {
        assert!(run(&query("foo\\sbar", true), "foo\nbar\n").is_empty());
    }

    #[test]
    fn context_and_truncation() {
        let mut q = query("x", false);
        q.context_lines = 1;
        q.max_results = 2;
        let s = LineSearcher::new(&q).unwrap();
        let mut r = s.start();
        assert!(!r.search_file("f", b"a\nx1\nb\nx2\nx3\n"));
        let (hits, truncated, _) = r.finish();
        assert!(truncated);
        assert_eq!(hits.len(), 2);
        assert_eq!(hits[0].before, vec!["a"]);
        assert_eq!(hits[0].after, vec!["b"]);
    }

    #[test]
    fn costly_and_broken_patterns_are_refused() {
        assert!(matches!(
            LineSearcher::new(&query("(a", true)),
            Err(SearchError::BadRegex(_))
        ));
        assert!(matches!(
            LineSearcher::new(&query("(\\w{100}){100}", true)),
            Err(SearchError::TooCostly)
        ));
    }

    #[test]
    fn globs_without_slash_match_anywhere() {
        let g = compile_glob("*.rs").unwrap();
        assert!(g.is_match("a/b/c.rs"));
        let g = compile_glob("src/*.rs").unwrap();
        assert!(g.is_match("src/c.rs"));
        assert!(!g.is_match("src/x/c.rs"));
    }
}
