//! Repository paths: the one place where a client-supplied path is judged safe.
//!
//! Every path that reaches a backend has passed [`RepoPath::parse`], so no backend has
//! to think about `..`, absolute paths or `.git` again.

use std::fmt;

/// The longest path accepted, in bytes.
pub const MAX_PATH_BYTES: usize = 4096;

/// A path inside a repository: relative, `/`-separated, with no empty, `.`, `..` or
/// `.git` components, no NUL byte and no backslash.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RepoPath(String);

/// Why a path was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    /// The path is empty.
    #[error("path is empty")]
    Empty,
    /// The path is longer than [`MAX_PATH_BYTES`].
    #[error("path `{0}…` is longer than {MAX_PATH_BYTES} bytes")]
    TooLong(String),
    /// The path starts with `/`.
    #[error("path `{0}` is absolute; give it relative to the repository root, e.g. `src/main.rs`")]
    Absolute(String),
    /// The path contains a NUL byte.
    #[error("path contains a NUL byte")]
    Nul,
    /// The path contains a backslash.
    #[error("path `{0}` contains a backslash; separate directories with `/`")]
    Backslash(String),
    /// The path has an empty, `.` or `..` component.
    #[error("path `{0}` has an empty, `.` or `..` component; give a normalized relative path")]
    BadComponent(String),
    /// The path reaches into git's own metadata.
    #[error("path `{0}` has a `.git` component; git metadata cannot be read or written")]
    GitDir(String),
}

impl RepoPath {
    /// Validate a client-supplied path.
    pub fn parse(raw: &str) -> Result<Self, PathError> {
        if raw.is_empty() {
            return Err(PathError::Empty);
        }
        if raw.len() > MAX_PATH_BYTES {
            let mut cut = 64;
            while !raw.is_char_boundary(cut) {
                cut -= 1;
            }
            return Err(PathError::TooLong(raw[..cut].to_string()));
        }
        if raw.contains('\0') {
            return Err(PathError::Nul);
        }
        if raw.contains('\\') {
            return Err(PathError::Backslash(raw.to_string()));
        }
        if raw.starts_with('/') {
            return Err(PathError::Absolute(raw.to_string()));
        }
        for component in raw.split('/') {
            match component {
                "" | "." | ".." => return Err(PathError::BadComponent(raw.to_string())),
                c if c.eq_ignore_ascii_case(".git") => {
                    return Err(PathError::GitDir(raw.to_string()));
                }
                _ => {}
            }
        }
        Ok(Self(raw.to_string()))
    }

    /// Validate a directory prefix: like [`RepoPath::parse`], but a trailing `/` is
    /// tolerated and dropped.
    pub fn parse_prefix(raw: &str) -> Result<Self, PathError> {
        Self::parse(raw.strip_suffix('/').unwrap_or(raw))
    }

    /// The path as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `other` is this path or lies below it as a directory.
    pub fn contains(&self, other: &str) -> bool {
        other == self.0
            || (other.len() > self.0.len()
                && other.starts_with(&self.0)
                && other.as_bytes()[self.0.len()] == b'/')
    }
}

impl fmt::Display for RepoPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_paths() {
        for ok in [
            "a",
            "src/main.rs",
            "dir/.gitignore",
            "a/b/c.d",
            "ünï/cödé.rs",
            ".github/x",
        ] {
            assert_eq!(RepoPath::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn refuses_each_class() {
        assert_eq!(RepoPath::parse(""), Err(PathError::Empty));
        assert!(matches!(
            RepoPath::parse("/etc/passwd"),
            Err(PathError::Absolute(_))
        ));
        assert!(matches!(
            RepoPath::parse("a/../b"),
            Err(PathError::BadComponent(_))
        ));
        assert!(matches!(
            RepoPath::parse("./a"),
            Err(PathError::BadComponent(_))
        ));
        assert!(matches!(
            RepoPath::parse("a//b"),
            Err(PathError::BadComponent(_))
        ));
        assert!(matches!(
            RepoPath::parse("a/"),
            Err(PathError::BadComponent(_))
        ));
        assert!(matches!(
            RepoPath::parse(".git/config"),
            Err(PathError::GitDir(_))
        ));
        assert!(matches!(
            RepoPath::parse("x/.GIT/y"),
            Err(PathError::GitDir(_))
        ));
        assert_eq!(RepoPath::parse("a\0b"), Err(PathError::Nul));
        assert!(matches!(
            RepoPath::parse("a\\b"),
            Err(PathError::Backslash(_))
        ));
        assert!(matches!(
            RepoPath::parse(&"é".repeat(3000)),
            Err(PathError::TooLong(_))
        ));
    }

    #[test]
    fn prefix_contains_only_whole_components() {
        let p = RepoPath::parse_prefix("src/").unwrap();
        assert!(p.contains("src"));
        assert!(p.contains("src/a.rs"));
        assert!(!p.contains("srcx/a.rs"));
    }
}
