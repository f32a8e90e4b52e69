//! The refusal rules that need no backend: update sizes, token names and lifetimes,
//! metadata keys, queries and globs.
//!
//! The MCP tools, the REST API and the admin commands apply these before any backend
//! (the embedded store or the Relace API) sees the input, so both backends refuse the
//! same inputs with the same words. The store applies the update limits a second time,
//! since it is also reached by imports and by the REST API directly.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use crate::paths::RepoPath;

/// Longest query, pattern or glob accepted, in bytes.
pub const MAX_QUERY_BYTES: usize = 4096;

/// The largest JSON-RPC message accepted over stdio (and as an MCP request body over
/// HTTP). It leaves room for an update at
/// the 50 MiB limit with JSON escaping; a longer line is dropped by the transport.
pub const MAX_STDIO_MESSAGE_BYTES: usize = 128 * 1024 * 1024;

/// Most matching lines one search returns, and most files one ranked answer ranks.
pub const MAX_SEARCH_RESULTS: usize = 1000;

/// Most context lines around a match.
pub const MAX_CONTEXT_LINES: usize = 10;

/// Largest `token_limit` a ranked answer may ask for.
pub const MAX_TOKEN_LIMIT: usize = 100_000;

/// Longest token name accepted, in bytes.
pub const MAX_TOKEN_NAME_BYTES: usize = 200;

/// The latest expiry a token may have: 9999-12-31T23:59:59Z, the last instant RFC 3339
/// can write.
pub const MAX_EXPIRY_UNIX: i64 = 253_402_300_799;

/// Metadata keys reserved for the store. `imported_from` once linked a repo to the
/// directory `serve --import` serves; that link now lives in a table no token can
/// write, and the key is refused so that no repo can pretend to it again.
pub const RESERVED_METADATA_KEYS: &[&str] = &["imported_from"];

/// An input refused by a rule.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RuleError {
    /// Over a size limit.
    #[error("{0}")]
    TooLarge(String),
    /// Malformed or not allowed.
    #[error("{0}")]
    Invalid(String),
}

/// Size limits on what enters a repo: through an update, a push, a git source or an
/// import.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest file, in bytes, text or binary, however it arrives (`--max-file-size`).
    pub max_file_bytes: usize,
    /// Largest update (sum of written contents), in bytes; also a push's new content.
    pub max_update_bytes: usize,
    /// Most operations (or files) in one update.
    pub max_operations: usize,
    /// The per-repo quota (`--max-repo-size`): most bytes a repo's git objects may take
    /// on disk, its whole history included. What would pass it is refused.
    pub max_repo_bytes: u64,
}

/// Default of [`Limits::max_file_bytes`]: 10 MiB.
pub const DEFAULT_MAX_FILE_BYTES: usize = 10 * 1024 * 1024;

/// Default of [`Limits::max_repo_bytes`]: 4 GiB.
pub const DEFAULT_MAX_REPO_BYTES: u64 = 4 * 1024 * 1024 * 1024;

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            max_update_bytes: 50 * 1024 * 1024,
            max_operations: 10_000,
            max_repo_bytes: DEFAULT_MAX_REPO_BYTES,
        }
    }
}

impl Limits {
    /// Check a whole-tree list of files.
    pub fn check_files(&self, files: &[(RepoPath, String)]) -> Result<(), RuleError> {
        self.check_count(files.len(), "files")?;
        let mut total = 0usize;
        for (path, content) in files {
            self.check_content(path, content)?;
            total = total.saturating_add(content.len());
        }
        self.check_total(total)
    }

    pub(crate) fn check_count(&self, n: usize, what: &str) -> Result<(), RuleError> {
        if n > self.max_operations {
            return Err(RuleError::TooLarge(format!(
                "{n} {what} is over the limit of {} per update; split it into several updates",
                self.max_operations
            )));
        }
        Ok(())
    }

    /// Check one file's size, text or binary.
    pub fn check_size(&self, path: &RepoPath, len: usize) -> Result<(), RuleError> {
        if len > self.max_file_bytes {
            return Err(RuleError::TooLarge(format!(
                "`{path}` is {len} bytes, over the limit of {} bytes a file",
                self.max_file_bytes
            )));
        }
        Ok(())
    }

    /// Check one file's content: size, and no NUL byte.
    pub fn check_content(&self, path: &RepoPath, content: &str) -> Result<(), RuleError> {
        self.check_size(path, content.len())?;
        if content.contains('\0') {
            return Err(RuleError::Invalid(format!(
                "`{path}`: content contains a NUL byte; only text files can be written here (binary files arrive by git push, a git source, an import or the REST API's file PUT)"
            )));
        }
        Ok(())
    }

    /// Check that a repo whose git objects take `used` bytes may take `adding` more
    /// and stay within its quota. Nothing added always passes: a repo over its quota
    /// (the quota lowered since) can still delete and rename.
    pub fn check_quota(&self, used: u64, adding: u64) -> Result<(), RuleError> {
        if adding > 0 && used.saturating_add(adding) > self.max_repo_bytes {
            return Err(RuleError::TooLarge(format!(
                "the repo would take {} bytes on disk, over its quota of {} bytes (--max-repo-size); delete files from it, or ask the operator for a larger quota",
                used.saturating_add(adding),
                self.max_repo_bytes
            )));
        }
        Ok(())
    }

    pub(crate) fn check_total(&self, total: usize) -> Result<(), RuleError> {
        if total > self.max_update_bytes {
            return Err(RuleError::TooLarge(format!(
                "the update writes {total} bytes, over the limit of {} bytes an update; split it",
                self.max_update_bytes
            )));
        }
        Ok(())
    }
}

/// Whether `c` may not appear in a name shown on one line: control characters, line
/// and paragraph separators, and the bidirectional overrides that reorder what a
/// reader sees.
fn unprintable(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// The one rule for token names, on every door (tool, REST API, `token create`):
/// printable text of 1 to [`MAX_TOKEN_NAME_BYTES`] bytes once trimmed, with no
/// control character. Returns the trimmed name.
pub fn token_name(raw: &str) -> Result<&str, RuleError> {
    let name = raw.trim();
    if name.is_empty() || name.len() > MAX_TOKEN_NAME_BYTES || name.chars().any(unprintable) {
        return Err(RuleError::Invalid(format!(
            "a token name must be 1 to {MAX_TOKEN_NAME_BYTES} bytes of printable text, \
             with no line break or other control character"
        )));
    }
    Ok(name)
}

/// The expiry of a token minted at `now` to live `ttl_seconds`, refused when it would
/// fall after [`MAX_EXPIRY_UNIX`].
pub fn token_expiry(now: i64, ttl_seconds: u64) -> Result<i64, RuleError> {
    let room = MAX_EXPIRY_UNIX.saturating_sub(now).max(0) as u64;
    if ttl_seconds > room {
        return Err(RuleError::Invalid(format!(
            "ttl_seconds {ttl_seconds} puts the expiry after 9999-12-31T23:59:59Z; \
             give at most {room} seconds"
        )));
    }
    Ok(now + ttl_seconds as i64)
}

/// Most path globs one token may carry.
pub const MAX_TOKEN_PATHS: usize = 64;

/// Check a token's path globs: at most [`MAX_TOKEN_PATHS`], each a glob [`PathGlob`]
/// compiles, relative to the repo root (no leading `/`).
pub fn token_paths(paths: &[String]) -> Result<(), RuleError> {
    if paths.len() > MAX_TOKEN_PATHS {
        return Err(RuleError::Invalid(format!(
            "a token carries at most {MAX_TOKEN_PATHS} path globs, not {}",
            paths.len()
        )));
    }
    for p in paths {
        if p.is_empty() || p.starts_with('/') {
            return Err(RuleError::Invalid(format!(
                "path glob `{}` must be relative to the repo root, like `web/**`",
                crate::text::one_line(p)
            )));
        }
        PathGlob::new("path glob", p)?;
    }
    Ok(())
}

/// Refuse metadata that sets a key reserved for the store.
pub fn metadata(metadata: &BTreeMap<String, String>) -> Result<(), RuleError> {
    if let Some(key) = RESERVED_METADATA_KEYS
        .iter()
        .find(|k| metadata.contains_key(**k))
    {
        return Err(RuleError::Invalid(format!(
            "metadata key `{key}` is reserved for the store; choose another key"
        )));
    }
    Ok(())
}

/// Refuse a query, pattern or glob over [`MAX_QUERY_BYTES`]; `what` names it.
pub fn query_length(what: &str, value: &str) -> Result<(), RuleError> {
    if value.len() > MAX_QUERY_BYTES {
        return Err(RuleError::TooLarge(format!(
            "{what} is {} bytes; the limit is {MAX_QUERY_BYTES}",
            value.len()
        )));
    }
    Ok(())
}

/// Refuse a search query over [`MAX_QUERY_BYTES`], or empty; `what` names it.
pub fn search_query(what: &str, query: &str) -> Result<(), RuleError> {
    query_length(what, query)?;
    if query.is_empty() {
        return Err(RuleError::Invalid(format!("{what} is empty")));
    }
    Ok(())
}

/// A compiled path glob: `*` stays within a path component, `**` crosses them, and a
/// glob without `/` matches the file name anywhere (as ripgrep's `-g` does).
#[derive(Debug, Clone)]
pub struct PathGlob(GlobSet);

impl PathGlob {
    /// Compile `glob` (at most [`MAX_QUERY_BYTES`]); `field` names the argument in the
    /// refusal. Every failure, including a glob whose regex would be too large, is an
    /// error, never a panic.
    pub fn new(field: &str, glob: &str) -> Result<Self, RuleError> {
        query_length(field, glob)?;
        let effective = if glob.contains('/') {
            glob.to_string()
        } else {
            format!("**/{glob}")
        };
        let bad = |reason: String| {
            RuleError::Invalid(format!("{field} `{glob}` is not a valid glob: {reason}"))
        };
        let parsed = GlobBuilder::new(&effective)
            .literal_separator(true)
            .build()
            .map_err(|e| bad(e.kind().to_string()))?;
        // `GlobSet::build` reports a regex that cannot be built as an error, where
        // `Glob::compile_matcher` would panic.
        let set = GlobSetBuilder::new()
            .add(parsed)
            .build()
            .map_err(|e| bad(e.kind().to_string()))?;
        Ok(Self(set))
    }

    /// Whether `path` matches.
    pub fn is_match(&self, path: &str) -> bool {
        self.0.is_match(path)
    }
}

/// A set of path globs, any of which admits a path: the paths a token is limited to.
/// Files outside behave as if they did not exist.
#[derive(Debug)]
pub struct PathSet {
    globs: Vec<String>,
    matchers: Vec<PathGlob>,
}

impl PathSet {
    /// Compile a token's globs (ripgrep syntax, relative to the repo root).
    pub fn new(globs: &[String]) -> Result<Self, RuleError> {
        token_paths(globs)?;
        let matchers = globs
            .iter()
            .map(|g| PathGlob::new("path glob", g))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            globs: globs.to_vec(),
            matchers,
        })
    }

    /// A set that admits nothing, keeping `globs` to show (stored globs that no longer
    /// compile).
    pub fn nothing(globs: &[String]) -> Self {
        Self {
            globs: globs.to_vec(),
            matchers: Vec::new(),
        }
    }

    /// Whether the file at `path` is visible.
    pub fn sees(&self, path: &str) -> bool {
        self.matchers.iter().any(|m| m.is_match(path))
    }

    /// The globs.
    pub fn globs(&self) -> &[String] {
        &self.globs
    }

    /// Whether every path `child` can match is one this scope sees: `child` is one of
    /// the globs, or lies under one of them of the form `dir/**` (its text starts with
    /// `dir/`, `dir` holding no glob syntax). Sound, and deliberately simple: a child
    /// glob this cannot prove narrower is refused.
    pub fn covers(&self, child: &str) -> bool {
        self.globs.iter().any(|g| {
            g == child
                || g.strip_suffix("/**").is_some_and(|dir| {
                    !dir.contains(['*', '?', '[', ']', '{', '}', '\\', '!'])
                        && child.starts_with(dir)
                        && child.as_bytes().get(dir.len()) == Some(&b'/')
                })
        })
    }
}

/// The most calls a rate may allow per unit, and the largest burst.
const MAX_AMOUNT: u32 = 1_000_000;

/// A rate: `amount` calls per `unit_secs`, at most `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub(crate) amount: u32,
    pub(crate) unit_secs: u32,
    pub(crate) burst: u32,
}

/// A rate that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a rate; write it like 120/m (calls a minute; also /s and /h), optionally with a burst: 120/m,burst=20 (amounts from 1 to 1000000)"
)]
pub struct BadRate(pub String);

impl Rate {
    /// `amount` calls per `unit_secs`, in bursts of up to `burst`.
    pub fn new(amount: u32, unit_secs: u32, burst: u32) -> Option<Self> {
        let ok = |n: u32| (1..=MAX_AMOUNT).contains(&n);
        (ok(amount) && ok(burst) && matches!(unit_secs, 1 | 60 | 3600)).then_some(Self {
            amount,
            unit_secs,
            burst,
        })
    }

    /// Calls refilled per second.
    pub(crate) fn per_second(&self) -> f64 {
        f64::from(self.amount) / f64::from(self.unit_secs)
    }

    /// Whether this rate refills no faster than `other`, compared exactly.
    fn refills_no_faster_than(&self, other: &Rate) -> bool {
        u64::from(self.amount) * u64::from(other.unit_secs)
            <= u64::from(other.amount) * u64::from(self.unit_secs)
    }

    /// Whether this rate is no looser than `other` in any way: what a child token may
    /// have under a parent with `other`.
    pub fn within(&self, other: &Rate) -> bool {
        self.refills_no_faster_than(other) && self.burst <= other.burst
    }

    /// The stricter of two limits, each possibly absent: the slower refill and the
    /// smaller burst.
    pub fn stricter(a: Option<Rate>, b: Option<Rate>) -> Option<Rate> {
        match (a, b) {
            (Some(a), Some(b)) => {
                let slower = if a.refills_no_faster_than(&b) { a } else { b };
                Some(Rate {
                    burst: a.burst.min(b.burst),
                    ..slower
                })
            }
            (a, b) => a.or(b),
        }
    }

    pub(crate) fn unit_word(&self) -> &'static str {
        match self.unit_secs {
            1 => "second",
            60 => "minute",
            _ => "hour",
        }
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.unit_secs {
            1 => "s",
            60 => "m",
            _ => "h",
        };
        write!(f, "{}/{unit}", self.amount)?;
        if self.burst != self.amount {
            write!(f, ",burst={}", self.burst)?;
        }
        Ok(())
    }
}

impl FromStr for Rate {
    type Err = BadRate;

    /// `N/s`, `N/m`, `N/h` (also `sec`, `min`, `hour` and their plurals), optionally
    /// `,burst=B`; without a burst the bucket holds one unit's worth (`N`).
    fn from_str(raw: &str) -> Result<Self, BadRate> {
        let bad = || BadRate(crate::text::one_line(raw).to_string());
        let compact: String = raw.chars().filter(|c| !c.is_whitespace()).collect();
        let (rate, burst) = match compact.split_once(',') {
            Some((rate, burst)) => {
                let b = burst.strip_prefix("burst=").ok_or_else(bad)?;
                (rate, Some(b.parse::<u32>().map_err(|_| bad())?))
            }
            None => (compact.as_str(), None),
        };
        let (amount, unit) = rate.split_once('/').ok_or_else(bad)?;
        let amount: u32 = amount.parse().map_err(|_| bad())?;
        let unit_secs = match unit.to_ascii_lowercase().as_str() {
            "s" | "sec" | "secs" | "second" | "seconds" => 1,
            "m" | "min" | "mins" | "minute" | "minutes" => 60,
            "h" | "hr" | "hour" | "hours" => 3600,
            _ => return Err(bad()),
        };
        Rate::new(amount, unit_secs, burst.unwrap_or(amount)).ok_or_else(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_names_are_printable_and_bounded() {
        assert_eq!(token_name("  ci agent  ").unwrap(), "ci agent");
        assert_eq!(token_name("x <a@b>").unwrap(), "x <a@b>");
        for bad in [
            "",
            "   ",
            "ci\nencoding x",
            "a\rb",
            "esc\u{1b}[31m",
            "nul\0",
            "del\u{7f}",
            "c1\u{85}x",
            "line\u{2028}sep",
            "bidi\u{202e}",
        ] {
            assert!(token_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(token_name(&"n".repeat(MAX_TOKEN_NAME_BYTES)).is_ok());
        assert!(token_name(&"n".repeat(MAX_TOKEN_NAME_BYTES + 1)).is_err());
    }

    #[test]
    fn expiries_past_year_9999_are_refused() {
        let now = 1_800_000_000;
        assert_eq!(token_expiry(now, 60).unwrap(), now + 60);
        let room = (MAX_EXPIRY_UNIX - now) as u64;
        assert_eq!(token_expiry(now, room).unwrap(), MAX_EXPIRY_UNIX);
        assert!(token_expiry(now, room + 1).is_err());
        assert!(token_expiry(now, u64::MAX).is_err());
    }

    #[test]
    fn reserved_metadata_keys_are_refused() {
        let mut m = BTreeMap::new();
        m.insert("name".to_string(), "x".to_string());
        assert!(metadata(&m).is_ok());
        m.insert("imported_from".to_string(), "/home/op/project".to_string());
        assert!(metadata(&m).is_err());
    }

    #[test]
    fn globs_are_bounded_and_never_panic() {
        let g = PathGlob::new("glob", "*.rs").unwrap();
        assert!(g.is_match("src/a.rs"));
        assert!(!g.is_match("src/a.py"));
        let g = PathGlob::new("glob", "src/*.rs").unwrap();
        assert!(g.is_match("src/a.rs"));
        assert!(!g.is_match("src/x/a.rs"));
        assert!(PathGlob::new("glob", "a[").is_err());
        assert!(matches!(
            PathGlob::new("glob", &"*a".repeat(200_000)),
            Err(RuleError::TooLarge(_))
        ));
        // The longest glob accepted compiles or is refused; it does not panic.
        let _ = PathGlob::new("glob", &"*a".repeat(MAX_QUERY_BYTES / 2));
    }
}
