//! Line search over file contents: the literal and regex modes of `search_repo`.
//!
//! Knows nothing of scopes, stores or MCP: it is handed files. Matching is ripgrep's
//! own: patterns compile through `grep-regex` configured as `rg` configures it (Unicode,
//! multi-line anchors, `\n` as the line terminator so no match crosses a line) and
//! files are searched by `grep-searcher`, so a query finds exactly the lines `rg`
//! finds. The regex engine's matching time is linear in the input and its compiled
//! size is capped, so no pattern can hang the server or exhaust its memory.
//!
//! - [`plan`]: the trigram condition a pattern imposes on a file.
//! - [`index`]: the per-head index that applies that condition.
//! - [`segment`]: the index's stored form, mapped and searched in place.
//! - [`stencil`]: for patterns the index cannot narrow, bytes at fixed distances that
//!   rule files out before the regex runs.

pub mod index;
pub mod plan;
pub mod segment;
pub mod stencil;

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::rules::{PathGlob, RuleError};
use grep_matcher::Matcher;
use grep_regex::{ErrorKind, RegexMatcher, RegexMatcherBuilder};
use grep_searcher::{Searcher, SearcherBuilder, Sink, SinkMatch};

use crate::model::{LineQuery, MatchRange, SearchHit};
use index::FileEntry;
use plan::TrigramQuery;
use stencil::Stencil;

/// Longest line text returned in a hit, in bytes.
pub const MAX_LINE_BYTES: usize = 1000;
/// Compiled program size allowed for one pattern.
const REGEX_SIZE_LIMIT: usize = 4 * 1024 * 1024;
/// Lazy DFA cache allowed for one pattern.
const DFA_SIZE_LIMIT: usize = 16 * 1024 * 1024;
/// Wall-clock budget of one search; past it the answer is cut and marked truncated.
pub const TIME_BUDGET: Duration = Duration::from_secs(20);
/// Files are handed to the search threads in blocks of about this many bytes: small
/// enough that a search stopping at `max_results` wastes little, large enough that the
/// hand-over costs nothing next to the searching.
const BLOCK_BYTES: usize = 512 * 1024;

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
    /// The pattern needs a line break, which a line search never matches.
    #[error(
        "the pattern contains a line break ({0:?}); line search matches within one line, so search for one line of it"
    )]
    LineBreak(String),
    /// The path glob is refused.
    #[error(transparent)]
    Glob(RuleError),
}

/// Compile a path glob the way `list_files` and `search_repo` use it: `*` stays within a
/// path component, `**` crosses them, and a glob without `/` matches the file name
/// anywhere (as ripgrep's `-g` does). Bounded and never panicking: see [`PathGlob`].
pub fn compile_glob(glob: &str) -> Result<PathGlob, SearchError> {
    PathGlob::new("path_glob", glob).map_err(SearchError::Glob)
}

/// A compiled line search.
#[derive(Debug)]
pub struct LineSearcher {
    matcher: RegexMatcher,
    plan: TrigramQuery,
    /// Used when the plan narrows nothing (see [`stencil`]).
    stencil: Option<Stencil>,
    glob: Option<PathGlob>,
    visible: Option<std::sync::Arc<crate::rules::PathSet>>,
    max_results: usize,
    context: usize,
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

/// Up to `n` lines ending just before byte `start` of `file`.
fn lines_before(file: &[u8], start: usize, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut end = start;
    while out.len() < n && end > 0 {
        let line_end = end - 1;
        let line_start = file[..line_end]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        out.push(cut_line(&file[line_start..line_end]).0);
        end = line_start;
    }
    out.reverse();
    out
}

/// Up to `n` lines starting at byte `pos` of `file`.
fn lines_after(file: &[u8], mut pos: usize, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    while out.len() < n && pos < file.len() {
        let line_end = file[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(file.len(), |i| pos + i);
        out.push(cut_line(&file[pos..line_end]).0);
        pos = line_end + 1;
    }
    out
}

/// Collects the hits of one file as `grep-searcher` reports its matching lines.
struct Collect<'a> {
    matcher: &'a RegexMatcher,
    path: &'a str,
    file: &'a [u8],
    context: usize,
    limit: usize,
    hits: Vec<SearchHit>,
}

impl Sink for Collect<'_> {
    type Error = std::io::Error;

    fn matched(&mut self, _: &Searcher, mat: &SinkMatch<'_>) -> Result<bool, Self::Error> {
        let mut offset = mat.absolute_byte_offset() as usize;
        for (line_no, line) in (mat.line_number().unwrap_or(0)..).zip(mat.lines()) {
            let body = strip_eol(line);
            let (text, cut) = cut_line(body);
            let mut matches = Vec::new();
            let _ = self.matcher.find_iter(body, |m| {
                if m.start() <= cut {
                    matches.push(MatchRange {
                        start: m.start(),
                        end: m.end().min(cut),
                    });
                }
                true
            });
            let (before, after) = if self.context == 0 {
                (Vec::new(), Vec::new())
            } else {
                (
                    lines_before(self.file, offset, self.context),
                    lines_after(self.file, offset + line.len(), self.context),
                )
            };
            self.hits.push(SearchHit {
                path: self.path.to_string(),
                line: line_no,
                text,
                matches,
                before,
                after,
            });
            offset += line.len();
            if self.hits.len() >= self.limit {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// The line search's matcher with its stencil finding the candidate lines: the searcher
/// runs the regex only on lines holding a position where every probe holds, instead of
/// on every line the regex's own prefilter (its inner literal) lets through.
/// Everything else is the regex matcher's.
struct Stenciled<'a> {
    inner: &'a RegexMatcher,
    stencil: &'a Stencil,
}

impl Matcher for Stenciled<'_> {
    type Captures = grep_regex::RegexCaptures;
    type Error = grep_matcher::NoError;

    fn find_at(
        &self,
        haystack: &[u8],
        at: usize,
    ) -> Result<Option<grep_matcher::Match>, Self::Error> {
        self.inner.find_at(haystack, at)
    }

    fn new_captures(&self) -> Result<Self::Captures, Self::Error> {
        self.inner.new_captures()
    }

    fn capture_count(&self) -> usize {
        self.inner.capture_count()
    }

    fn capture_index(&self, name: &str) -> Option<usize> {
        self.inner.capture_index(name)
    }

    fn captures_at(
        &self,
        haystack: &[u8],
        at: usize,
        caps: &mut Self::Captures,
    ) -> Result<bool, Self::Error> {
        self.inner.captures_at(haystack, at, caps)
    }

    fn shortest_match_at(&self, haystack: &[u8], at: usize) -> Result<Option<usize>, Self::Error> {
        self.inner.shortest_match_at(haystack, at)
    }

    fn non_matching_bytes(&self) -> Option<&grep_matcher::ByteSet> {
        self.inner.non_matching_bytes()
    }

    fn line_terminator(&self) -> Option<grep_matcher::LineTerminator> {
        self.inner.line_terminator()
    }

    fn find_candidate_line(
        &self,
        haystack: &[u8],
    ) -> Result<Option<grep_matcher::LineMatchKind>, Self::Error> {
        // The haystack is what the regex sees (after any transcoding), so no match lies
        // on a line without a stencil position. Each line holding one is checked here,
        // as the searcher checks a candidate line (its terminator left out), so that a
        // line is reported confirmed and never run through the regex twice.
        let mut from = 0;
        while let Some(found) = self.stencil.first_position(&haystack[from..]) {
            let at = from + found;
            let start = memchr::memrchr(b'\n', &haystack[..at]).map_or(0, |i| i + 1);
            let end = memchr::memchr(b'\n', &haystack[at..]).map_or(haystack.len(), |i| at + i);
            if self.inner.is_match(&haystack[start..end])? {
                return Ok(Some(grep_matcher::LineMatchKind::Confirmed(at)));
            }
            if end == haystack.len() {
                break;
            }
            from = end + 1;
        }
        Ok(None)
    }
}

/// The hits of one block of files, once searched.
struct BlockResult {
    hits: Vec<SearchHit>,
    files: usize,
    /// False when the time budget ran out inside the block.
    complete: bool,
}

/// Blocks handed out so far, and how far the finished run from the first block reaches.
struct Progress {
    /// Where the next block starts in the file list.
    cursor: usize,
    /// One entry per block handed out, in file order; `None` until searched.
    blocks: Vec<Option<BlockResult>>,
    prefix: usize,
    prefix_hits: usize,
}

impl Progress {
    /// Hand out the next block of `files`: its number and its range. Blocks are cut here,
    /// as they are claimed, so a search that stops early never walks the files it does
    /// not search (with no usable trigram, the candidates are every file of the repo).
    fn claim<F: std::ops::Deref<Target = FileEntry>>(
        &mut self,
        files: &[F],
    ) -> Option<(usize, std::ops::Range<usize>)> {
        let start = self.cursor;
        if start >= files.len() {
            return None;
        }
        let mut end = start;
        let mut bytes = 0;
        while end < files.len() && bytes < BLOCK_BYTES {
            bytes += files[end].content.len();
            end += 1;
        }
        self.cursor = end;
        self.blocks.push(None);
        Some((self.blocks.len() - 1, start..end))
    }
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
}

impl LineSearcher {
    /// Compile `query`.
    pub fn new(query: &LineQuery) -> Result<Self, SearchError> {
        // The settings `rg` uses for a line-oriented search (its `-F` and `-i` map to
        // `fixed_strings` and `case_insensitive`).
        let matcher = RegexMatcherBuilder::new()
            .multi_line(true)
            .unicode(true)
            .octal(false)
            .fixed_strings(!query.regex)
            .case_insensitive(!query.case_sensitive)
            .line_terminator(Some(b'\n'))
            .size_limit(REGEX_SIZE_LIMIT)
            .dfa_size_limit(DFA_SIZE_LIMIT)
            .build(&query.pattern)
            .map_err(|e| match e.kind() {
                ErrorKind::Regex(m) if m.contains("exceeds size limit") => SearchError::TooCostly,
                ErrorKind::NotAllowed(lit) => SearchError::LineBreak(lit.clone()),
                _ => SearchError::BadRegex(e.to_string()),
            })?;
        // Parsed once for both the trigram plan and the stencil.
        let hir = plan::parse(&query.pattern, query.regex, !query.case_sensitive);
        let plan = hir.as_ref().map_or(TrigramQuery::All, plan::plan_of);
        let stencil = match (&plan, &hir) {
            (TrigramQuery::All, Some(hir)) => Stencil::of_hir(hir),
            _ => None,
        };
        let glob = query.path_glob.as_deref().map(compile_glob).transpose()?;
        Ok(Self {
            matcher,
            plan,
            stencil,
            glob,
            visible: query.visible.clone(),
            max_results: query.max_results,
            context: query.context_lines,
        })
    }

    /// Whether `path` passes the path glob and is visible.
    pub fn wants_path(&self, path: &str) -> bool {
        self.glob.as_ref().is_none_or(|g| g.is_match(path))
            && self.visible.as_ref().is_none_or(|v| v.sees(path))
    }

    /// The trigram condition a file must meet to hold a match.
    pub fn plan(&self) -> &TrigramQuery {
        &self.plan
    }

    /// The stencil files are checked against before the regex runs over them, if any.
    pub fn stencil(&self) -> Option<&Stencil> {
        self.stencil.as_ref()
    }

    /// The same search with no stencil: every file is searched by the regex. For
    /// comparisons (tests, fuzzing, benchmarks).
    pub fn without_stencil(mut self) -> Self {
        self.stencil = None;
        self
    }

    fn searcher() -> Searcher {
        SearcherBuilder::new().line_number(true).build()
    }

    /// Up to `limit` hits in one file, in line order.
    fn search_one(
        &self,
        searcher: &mut Searcher,
        path: &str,
        bytes: &[u8],
        limit: usize,
    ) -> Vec<SearchHit> {
        // grep-searcher (like rg) drops a UTF-8 byte-order mark before searching, and
        // reports offsets in what remains; context lines are cut from the same bytes.
        let view = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let mut sink = Collect {
            matcher: &self.matcher,
            path,
            file: view,
            context: self.context,
            limit,
            hits: Vec::new(),
        };
        // The sink never fails and a slice cannot fail to read.
        let _ = match &self.stencil {
            Some(stencil) if stencil.applies_to(bytes) => {
                let matcher = Stenciled {
                    inner: &self.matcher,
                    stencil,
                };
                searcher.search_slice(&matcher, bytes, &mut sink)
            }
            _ => searcher.search_slice(&self.matcher, bytes, &mut sink),
        };
        sink.hits
    }

    /// Search `files` in the order given, on every core, stopping once the first
    /// `max_results` hits (and whether there are more) are known. Returns the hits,
    /// whether the answer was cut, and how many files were searched. Past `budget` of
    /// wall-clock time the answer is cut there and marked truncated.
    pub fn search_files<F: std::ops::Deref<Target = FileEntry> + Sync>(
        &self,
        files: &[F],
        budget: Duration,
    ) -> (Vec<SearchHit>, bool, usize) {
        let deadline = Instant::now() + budget;
        // One hit past the limit tells whether the answer is truncated.
        let want = self.max_results + 1;
        let progress = Mutex::new(Progress {
            cursor: 0,
            blocks: Vec::new(),
            prefix: 0,
            prefix_hits: 0,
        });
        let stop = AtomicBool::new(false);
        let work = || {
            let mut searcher = Self::searcher();
            while !stop.load(Ordering::Relaxed) {
                let claimed = progress
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .claim(files);
                let Some((i, range)) = claimed else { break };
                let mut result = BlockResult {
                    hits: Vec::new(),
                    files: 0,
                    complete: true,
                };
                for f in &files[range] {
                    // Past the deadline, or once the blocks before this one hold the
                    // answer, the rest of the block is not searched: it is then either
                    // marked incomplete or never read.
                    if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                        result.complete = false;
                        stop.store(true, Ordering::Relaxed);
                        break;
                    }
                    result.files += 1;
                    if self
                        .stencil
                        .as_ref()
                        .is_some_and(|s| !s.may_match(&f.content))
                    {
                        continue;
                    }
                    let limit = want - result.hits.len();
                    result
                        .hits
                        .extend(self.search_one(&mut searcher, &f.path, &f.content, limit));
                    if result.hits.len() >= want {
                        break;
                    }
                }
                let mut p = progress.lock().unwrap_or_else(|e| e.into_inner());
                p.blocks[i] = Some(result);
                while let Some(Some(done)) = p.blocks.get(p.prefix) {
                    let (n, complete) = (done.hits.len(), done.complete);
                    p.prefix_hits += n;
                    p.prefix += 1;
                    if p.prefix_hits >= want || !complete {
                        stop.store(true, Ordering::Relaxed);
                        break;
                    }
                }
            }
        };
        // A search that fits in one block is not worth a second thread.
        let mut bytes = 0;
        let several = files
            .iter()
            .position(|f| {
                bytes += f.content.len();
                bytes >= BLOCK_BYTES
            })
            .is_some_and(|last| last + 1 < files.len());
        let n = if several { threads() } else { 1 };
        if n <= 1 {
            work();
        } else {
            std::thread::scope(|s| {
                for _ in 1..n {
                    s.spawn(work);
                }
                work();
            });
        }
        let p = progress.into_inner().unwrap_or_else(|e| e.into_inner());
        let mut hits = Vec::new();
        let mut searched = 0;
        let mut truncated = false;
        for block in p.blocks {
            let Some(block) = block else { break };
            hits.extend(block.hits);
            searched += block.files;
            if !block.complete {
                truncated = true;
                break;
            }
            if hits.len() >= want {
                break;
            }
        }
        if hits.len() > self.max_results {
            hits.truncate(self.max_results);
            truncated = true;
        }
        (hits, truncated, searched)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn query(pattern: &str, regex: bool) -> LineQuery {
        LineQuery {
            pattern: pattern.to_string(),
            regex,
            case_sensitive: true,
            path_glob: None,
            visible: None,
            max_results: 100,
            context_lines: 0,
        }
    }

    fn file(path: &str, text: &str) -> Arc<FileEntry> {
        Arc::new(FileEntry {
            path: path.into(),
            content: text.as_bytes().into(),
        })
    }

    fn run(q: &LineQuery, text: &str) -> Vec<SearchHit> {
        let s = LineSearcher::new(q).unwrap();
        s.search_files(&[file("f.rs", text)], TIME_BUDGET).0
    }

    /// The stencil changes which lines the regex runs on, never the answer: the same
    /// hits, line numbers, match ranges and context lines as the search without it,
    /// over files where stencil positions fall on lines with and without a match, at
    /// a file's first and last byte, and in a UTF-16 file the searcher transcodes.
    #[test]
    fn a_stencil_never_changes_the_hits() {
        let texts = [
            "#define CONFIG_ACPI_PROC_EVENT 1\nlower_case_name_here\nAB_CD_EF\n",
            "x\nNO_HITS_HERE_BUT_CLOSE_\n___A____\nTAIL_ABCD_EFGH_IJKL_MNOP",
            "ABCD_EFGH_IJKL_MNOP\r\nabcd_EFGH_IJKL_MNOP ABCD_EFGH_IJKL_MNOP\n\n",
            "",
            "a\n\n\n_\nABCD_\nEFGH_IJKL_MNOP\nQRST_UVWX_YZAB_CDEF\nend",
            // Matches that only text outside ASCII holds, placed so that no stencil
            // position lines up with them: the Kelvin sign matches `(?i)[A-Z]`,
            // Arabic-Indic digits match `\d`.
            "x\nABCD_EFG\u{212A}_IJKL_MNOP\n",
            "\u{664}\u{660}\u{662}\u{664}-\u{660}\u{661}-31\n",
            "date 1999-12-31\nno date 1999/12/31\n",
        ];
        let mut files: Vec<Arc<FileEntry>> = texts
            .iter()
            .enumerate()
            .map(|(i, t)| file(&format!("f{i}.rs"), t))
            .collect();
        let utf16: Vec<u8> = b"\xFF\xFE"
            .iter()
            .copied()
            .chain(
                "x\nWXYZ_ABCD_EFGH_IJKL\n"
                    .encode_utf16()
                    .flat_map(u16::to_le_bytes),
            )
            .collect();
        files.push(Arc::new(FileEntry {
            path: "wide.txt".into(),
            content: utf16.into(),
        }));
        for (pattern, regex, insensitive) in [
            ("[A-Z]{4}_[A-Z]{4}_[A-Z]{4}_[A-Z]{4}", true, false),
            (r"_[A-Z]{4}\b", true, false),
            ("[A-Z]_[A-Z]", true, false),
            ("[DE]_", true, false),
            ("[A-Z]_[A-Z]{2}", true, false),
            ("[A-Z]{4}_[A-Z]{4}_[A-Z]{4}_[A-Z]{4}", true, true),
            (r"\d{4}-\d{2}-\d{2}", true, false),
        ] {
            for context in [0, 2] {
                let mut q = query(pattern, regex);
                q.case_sensitive = !insensitive;
                q.context_lines = context;
                let with = LineSearcher::new(&q).unwrap();
                assert!(with.stencil().is_some(), "{pattern}");
                let without = LineSearcher::new(&q).unwrap().without_stencil();
                let (a, _, _) = with.search_files(&files, TIME_BUDGET);
                let (b, _, _) = without.search_files(&files, TIME_BUDGET);
                assert!(
                    !b.is_empty(),
                    "{pattern} found nothing: the check proves little"
                );
                assert_eq!(a, b, "{pattern}, {context} lines of context");
            }
        }
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
        let (hits, truncated, _) = s.search_files(&[file("f", "a\nx1\nb\nx2\nx3\n")], TIME_BUDGET);
        assert!(truncated);
        assert_eq!(hits.len(), 2);
        assert_eq!(hits[0].before, vec!["a"]);
        assert_eq!(hits[0].after, vec!["b"]);
    }

    #[test]
    fn context_lines_are_right_in_a_file_with_a_byte_order_mark() {
        let mut q = query("two", false);
        q.context_lines = 1;
        let s = LineSearcher::new(&q).unwrap();
        let (hits, _, _) = s.search_files(&[file("f", "\u{feff}one\ntwo\nthree\n")], TIME_BUDGET);
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].line, 2);
        assert_eq!(hits[0].before, vec!["one"]);
        assert_eq!(hits[0].after, vec!["three"]);
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
