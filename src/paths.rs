//! Repository paths: the one place where a client-supplied path is judged safe.
//!
//! Every path that reaches a backend has passed [`RepoPath::parse`], so no backend has
//! to think about `..`, absolute paths or `.git` again.

use std::fmt;
use std::fmt::Write as _;

/// The longest path accepted, in bytes.
pub const MAX_PATH_BYTES: usize = 4096;

/// The longest file or directory name accepted, in bytes: the limit of ext4, APFS,
/// NTFS (in UTF-16 units, which never exceed UTF-8 bytes) and most other file systems,
/// so that every accepted path can be checked out anywhere.
pub const MAX_COMPONENT_BYTES: usize = 255;

/// A path inside a repository: relative, `/`-separated, and safe to commit, render and
/// check out.
///
/// What [`RepoPath::parse`] refuses:
/// - empty paths, paths over [`MAX_PATH_BYTES`], absolute paths, and empty, `.` or `..`
///   components;
/// - NUL, control characters (U+0001–U+001F, U+007F, U+0080–U+009F) and the Unicode
///   line and paragraph separators (U+2028, U+2029), which would forge lines wherever a
///   path is shown as text;
/// - backslashes, which Windows (and git's own checks) read as directory separators;
/// - components over [`MAX_COMPONENT_BYTES`];
/// - any component that git itself treats as `.git` with `core.protectHFS` and
///   `core.protectNTFS` on (git's `verify_path`), so that `git fsck` finds no
///   `hasDotgit` and no checkout on macOS or Windows can write into `.git`:
///   - `.git` in any ASCII case, with any of the code points HFS+ ignores (U+200C–U+200F,
///     U+202A–U+202E, U+206A–U+206F, U+FEFF) anywhere in it, e.g. `.G\u{200c}IT`;
///   - `.git` or `git~1` (its NTFS short name), in any case, followed only by spaces and
///     dots (`.git.`, `GIT~1 `), or by that and then `:` and anything (an NTFS alternate
///     data stream such as `.git::$INDEX_ALLOCATION`);
/// - a directory that git treats as `.gitmodules` or `.gitattributes` (in the same HFS+
///   and NTFS forms, including short names such as `gitmod~1` and `gi7eba~1`): `git fsck`
///   requires those to be files.
///
/// What it keeps, on purpose: the characters Windows reserves (`<>:"|?*`), names
/// Windows reserves for devices (`aux.c`, `CON`) and names ending in a space or dot,
/// except where they spell `.git` as above. Windows cannot check those out, but
/// ordinary Linux repositories hold them and the store must take those repositories
/// whole; git makes the same choice.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RepoPath(String);

/// Why a path was refused. Paths are quoted with invisible and control characters
/// written as `\u{…}` escapes, so a message never forges a line or hides a character.
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
    /// The path reaches into git's own metadata, or names something git, macOS or
    /// Windows treats as `.git`.
    #[error(
        "path `{0}` has a `.git` component (or a name git treats as `.git` on macOS or Windows, such as `.git.` or `git~1`); git metadata cannot be read or written"
    )]
    GitDir(String),
    /// A directory is named `.gitmodules` or `.gitattributes`, or a name git treats as
    /// one of them on macOS or Windows; git requires those to be files.
    #[error(
        "path `{0}` uses `.gitmodules` or `.gitattributes` (or a name git treats as one, such as `gitmod~1`) as a directory; git requires them to be files, so choose another directory name"
    )]
    GitFileAsDirectory(String),
    /// A component (a file or directory name) is longer than [`MAX_COMPONENT_BYTES`].
    #[error(
        "path `{path}` has a file or directory name of {bytes} bytes; names may be at most {MAX_COMPONENT_BYTES} bytes, so shorten it"
    )]
    ComponentTooLong {
        /// The path, cut short if it is long.
        path: String,
        /// The length of the overlong name, in bytes.
        bytes: usize,
    },
    /// The path contains a control character or a line separator.
    #[error(
        "path `{path}` contains the control character U+{code:04X}; file names may not hold control characters or line breaks, so rename it"
    )]
    ControlCharacter {
        /// The path, with the offending characters escaped.
        path: String,
        /// The first offending code point.
        code: u32,
    },
}

impl RepoPath {
    /// Validate a client-supplied path (see [`RepoPath`] for what is refused).
    pub fn parse(raw: &str) -> Result<Self, PathError> {
        if raw.is_empty() {
            return Err(PathError::Empty);
        }
        if raw.len() > MAX_PATH_BYTES {
            return Err(PathError::TooLong(shown(cut(raw, 64))));
        }
        if raw.contains('\0') {
            return Err(PathError::Nul);
        }
        if let Some(c) = raw.chars().find(|&c| is_refused_control(c)) {
            return Err(PathError::ControlCharacter {
                path: shown_cut(raw, 256),
                code: c as u32,
            });
        }
        if raw.contains('\\') {
            return Err(PathError::Backslash(shown(raw)));
        }
        if raw.starts_with('/') {
            return Err(PathError::Absolute(shown(raw)));
        }
        let mut components = raw.split('/').peekable();
        while let Some(component) = components.next() {
            let is_dir = components.peek().is_some();
            match component {
                "" | "." | ".." => return Err(PathError::BadComponent(shown(raw))),
                c if is_hfs_dot(c, "git") || is_ntfs_dotgit(c) => {
                    return Err(PathError::GitDir(shown(raw)));
                }
                c if is_dir && is_git_file_name(c) => {
                    return Err(PathError::GitFileAsDirectory(shown(raw)));
                }
                c if c.len() > MAX_COMPONENT_BYTES => {
                    return Err(PathError::ComponentTooLong {
                        path: shown_cut(raw, 300),
                        bytes: c.len(),
                    });
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

/// C0 and C1 control characters and DEL, plus the two Unicode characters that break
/// lines without being controls.
fn is_refused_control(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

/// The code points HFS+ drops when it compares names (git's `next_hfs_char`).
fn is_hfs_ignorable(c: char) -> bool {
    matches!(
        c,
        '\u{200c}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{206a}'..='\u{206f}' | '\u{feff}'
    )
}

/// Whether HFS+ would read `name` as `.` followed by `needle` (git's
/// `is_hfs_dot_generic`): equal in ASCII case once the ignorable code points are
/// dropped. HFS+ folds more than ASCII case, but git compares only ASCII, and so do we:
/// the rule must match git's exactly.
fn is_hfs_dot(name: &str, needle: &str) -> bool {
    let mut chars = name.chars().filter(|&c| !is_hfs_ignorable(c));
    chars.next() == Some('.')
        && needle
            .chars()
            .all(|want| chars.next().is_some_and(|c| c.eq_ignore_ascii_case(&want)))
        && chars.next().is_none()
}

/// Whether NTFS would read `name` as `.git` (git's `is_ntfs_dotgit`): `.git` or its
/// short name `git~1`, in any ASCII case, followed only by the spaces and dots Windows
/// trims, and optionally by `:` and an alternate data stream (all streams of `.git` are
/// refused, as git does, not just `::$INDEX_ALLOCATION`).
fn is_ntfs_dotgit(name: &str) -> bool {
    let b = name.as_bytes();
    let tail = if b.len() >= 4 && b[0] == b'.' && b[1..4].eq_ignore_ascii_case(b"git") {
        &b[4..]
    } else if b.len() >= 5 && b[..3].eq_ignore_ascii_case(b"git") && &b[3..5] == b"~1" {
        &b[5..]
    } else {
        return false;
    };
    only_spaces_and_dots(tail)
}

/// Whether what follows a name is only what Windows trims (spaces and dots), up to the
/// end or to the `:` that opens an alternate data stream.
fn only_spaces_and_dots(tail: &[u8]) -> bool {
    for &c in tail {
        match c {
            b':' => return true,
            b' ' | b'.' => {}
            _ => return false,
        }
    }
    true
}

/// Whether git reads `name` as `.gitmodules` or `.gitattributes` on macOS or Windows.
/// `git fsck` requires whatever bears those names to be a file (`gitmodulesBlob`,
/// `gitattributesBlob`), so no directory may.
fn is_git_file_name(name: &str) -> bool {
    is_hfs_dot(name, "gitmodules")
        || is_ntfs_dot(name, "gitmodules", "gi7eba")
        || is_hfs_dot(name, "gitattributes")
        || is_ntfs_dot(name, "gitattributes", "gi7d29")
}

/// Whether NTFS would read `name` as `.` followed by `needle` (git's
/// `is_ntfs_dot_generic`): the name itself, its regular short name (the first six
/// letters, `~` and 1 to 4), or a fall-back short name (a prefix of `short`, `~` and
/// digits, eight characters in all), each followed only by spaces and dots or a stream.
fn is_ntfs_dot(name: &str, needle: &str, short: &str) -> bool {
    let (b, needle, short) = (name.as_bytes(), needle.as_bytes(), short.as_bytes());
    if b.first() == Some(&b'.')
        && b.len() > needle.len()
        && b[1..=needle.len()].eq_ignore_ascii_case(needle)
    {
        return only_spaces_and_dots(&b[needle.len() + 1..]);
    }
    if b.len() >= 8
        && b[..6].eq_ignore_ascii_case(&needle[..6])
        && b[6] == b'~'
        && (b'1'..=b'4').contains(&b[7])
    {
        return only_spaces_and_dots(&b[8..]);
    }
    let mut i = 0;
    let mut saw_tilde = false;
    while i < 8 {
        let Some(&c) = b.get(i) else {
            return false;
        };
        if saw_tilde {
            if !c.is_ascii_digit() {
                return false;
            }
        } else if c == b'~' {
            i += 1;
            if !matches!(b.get(i), Some(b'1'..=b'9')) {
                return false;
            }
            saw_tilde = true;
        } else if i >= 6 || c.to_ascii_lowercase() != short[i] {
            return false;
        }
        i += 1;
    }
    only_spaces_and_dots(&b[i..])
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// [`shown`] of at most `max` bytes of `s`, with `…` where it was cut.
fn shown_cut(s: &str, max: usize) -> String {
    let head = cut(s, max);
    let mut out = shown(head);
    if head.len() < s.len() {
        out.push('…');
    }
    out
}

/// `s` with control, line-breaking and invisible formatting characters written as
/// `\u{…}`, so that quoting a refused path in a message shows what is really there.
fn shown(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if is_refused_control(c) || is_hfs_ignorable(c) || matches!(c, '\u{200b}' | '\u{2060}') {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code point HFS+ ignores, as git lists them.
    const HFS_IGNORABLES: [char; 16] = [
        '\u{200c}', '\u{200d}', '\u{200e}', '\u{200f}', '\u{202a}', '\u{202b}', '\u{202c}',
        '\u{202d}', '\u{202e}', '\u{206a}', '\u{206b}', '\u{206c}', '\u{206d}', '\u{206e}',
        '\u{206f}', '\u{feff}',
    ];

    fn assert_git_dir(raw: &str) {
        assert!(
            matches!(RepoPath::parse(raw), Err(PathError::GitDir(_))),
            "{raw:?} should be refused as `.git`, got {:?}",
            RepoPath::parse(raw)
        );
    }

    fn assert_accepted(raw: &str) {
        assert_eq!(
            RepoPath::parse(raw).map(|p| p.as_str().to_string()),
            Ok(raw.to_string()),
            "{raw:?} should be accepted"
        );
    }

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
            assert_accepted(ok);
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
        assert!(matches!(
            RepoPath::parse(&format!("a/{}/z.txt", "y".repeat(300))),
            Err(PathError::ComponentTooLong { bytes: 300, .. })
        ));
        assert!(matches!(
            RepoPath::parse("a\nb"),
            Err(PathError::ControlCharacter { code: 0x0a, .. })
        ));
    }

    #[test]
    fn every_hfs_ignorable_anywhere_in_dotgit_is_refused() {
        for c in HFS_IGNORABLES {
            for base in [".git", ".GIT", ".gIt"] {
                for at in 0..=base.len() {
                    let name = format!("{}{c}{}", &base[..at], &base[at..]);
                    assert_git_dir(&name);
                    assert_git_dir(&format!("a/{name}/b.txt"));
                    assert_git_dir(&format!("{name}/config"));
                }
            }
            // Several at once, and the same one twice.
            assert_git_dir(&format!("{c}.{c}g{c}{c}i{c}t{c}"));
        }
        assert_git_dir(".G\u{200c}IT");
        assert_git_dir("\u{feff}.git/HEAD");
    }

    #[test]
    fn near_misses_of_hfs_dotgit_are_accepted() {
        // Code points HFS+ does not ignore, and letters that only look like `git`.
        for name in [
            ".g\u{200b}it",
            ".g\u{2060}it",
            ".g\u{00ad}it",
            ".gıt",
            ".gİt",
            ".ｇit",
            ".git\u{200c}x",
            "\u{200c}git",
            ".gi\u{200c}",
            ".git\u{200c} ",
        ] {
            assert_accepted(name);
        }
    }

    #[test]
    fn every_ntfs_form_of_dotgit_is_refused() {
        for name in [
            ".git.",
            ".git..",
            ".git ",
            ".git  ",
            ".git . .",
            ".GIT. ",
            ".Git .",
            "git~1",
            "GIT~1",
            "Git~1",
            "gIT~1",
            "git~1.",
            "git~1 ",
            "GIT~1. .",
            ".git:",
            ".git:x",
            ".git::$INDEX_ALLOCATION",
            ".GIT::$index_allocation",
            ".git:stream:$DATA",
            ".git. :x",
            "git~1:",
            "git~1::$INDEX_ALLOCATION",
            "GIT~1 .:$DATA",
        ] {
            assert_git_dir(name);
            assert_git_dir(&format!("{name}/config"));
            assert_git_dir(&format!("src/{name}/x.rs"));
            assert_git_dir(&format!("src/{name}"));
        }
    }

    #[test]
    fn near_misses_of_ntfs_dotgit_are_accepted() {
        // Windows-reserved characters stay allowed (the store takes Linux repos whole),
        // and so do short names other than `git~1` and names that only start like one.
        for name in [
            "git~2",
            "git~10",
            "git~1x",
            "git~1.txt",
            ".git~1",
            "xgit~1",
            "git~",
            "git",
            ".gitx",
            ".git.x",
            ".git .x",
            ".git_",
            "x.git",
            "x.git.",
            "x.git:",
            ".gi:t",
            "a:b",
            "what?<>|\"*.txt",
            "aux.c",
            "CON",
            "trailing.",
            "trailing ",
            " leading",
            ".gitignore",
            ".github",
            "...",
            ".. .",
        ] {
            assert_accepted(name);
            assert_accepted(&format!("dir/{name}/x"));
        }
    }

    #[test]
    fn gitmodules_and_gitattributes_may_be_files_but_not_directories() {
        for name in [
            ".gitmodules",
            ".GitModules",
            ".gitmodules.",
            ".gitmodules :x",
            ".git\u{200d}modules\u{feff}",
            "gitmod~1",
            "GITMOD~4",
            "gi7eba~1",
            "gi7eb~12",
            "g~123456",
            ".gitattributes",
            ".GITATTRIBUTES ",
            "\u{206a}.gitattributes",
            "gitatt~2",
            "gi7d29~1",
            "gi7d2~99",
        ] {
            assert_accepted(name);
            assert_accepted(&format!("sub/{name}"));
            for raw in [format!("{name}/x"), format!("sub/{name}/x/y")] {
                assert!(
                    matches!(RepoPath::parse(&raw), Err(PathError::GitFileAsDirectory(_))),
                    "{raw:?}: {:?}",
                    RepoPath::parse(&raw)
                );
            }
        }
        for name in [
            "gitmodules",
            ".gitmodulesx",
            "gitmod~5",
            "gitmod~0",
            "gi7eba~0",
            "gi7eba1",
            "gi7ebax~1",
            "gitattributes",
            ".gitattribute",
            "gitatt~5",
            ".gitignore",
            ".mailmap",
        ] {
            assert_accepted(&format!("{name}/x"));
        }
    }

    #[test]
    fn names_of_255_bytes_pass_and_256_do_not() {
        let ascii = "y".repeat(255);
        let multibyte = "é".repeat(127) + "y"; // 255 bytes
        for name in [&ascii, &multibyte] {
            assert_eq!(name.len(), 255);
            assert_accepted(name);
            assert_accepted(&format!("a/{name}/z.txt"));
            assert_accepted(&format!("a/{name}"));
        }
        for (name, bytes) in [
            ("y".repeat(256), 256),
            ("é".repeat(128), 256),
            ("é".repeat(127) + "yy", 256),
            ("y".repeat(300), 300),
            ("€".repeat(1000), 3000),
        ] {
            for raw in [
                name.clone(),
                format!("a/{name}/z.txt"),
                format!("{name}/z"),
                format!("a/{name}"),
            ] {
                assert_eq!(
                    RepoPath::parse(&raw).map_err(|e| match e {
                        PathError::ComponentTooLong { bytes, .. } => bytes,
                        other => panic!("{raw}: {other}"),
                    }),
                    Err(bytes)
                );
            }
        }
        let message = RepoPath::parse(&format!("a/{}/z.txt", "y".repeat(300)))
            .unwrap_err()
            .to_string();
        assert!(message.contains("300 bytes"), "{message}");
        assert!(message.contains("at most 255 bytes"), "{message}");
        assert!(
            message.len() < 500,
            "the message quotes a cut path: {message}"
        );
    }

    #[test]
    fn every_control_character_is_refused() {
        let controls = (0x01..=0x1f)
            .chain([0x7f])
            .chain(0x80..=0x9f)
            .chain([0x2028, 0x2029]);
        for code in controls {
            let c = char::from_u32(code).unwrap();
            for raw in [
                format!("{c}"),
                format!("a{c}b.txt"),
                format!("dir/x{c}"),
                format!("{c}/x"),
            ] {
                let refused = RepoPath::parse(&raw);
                assert!(
                    matches!(refused, Err(PathError::ControlCharacter { code: got, .. }) if got == code),
                    "U+{code:04X} in {raw:?}: {refused:?}"
                );
                let message = refused.unwrap_err().to_string();
                assert!(
                    !message.contains(c),
                    "message holds the raw character: {message:?}"
                );
                assert!(message.contains(&format!("U+{code:04X}")), "{message}");
            }
        }
        assert_eq!(RepoPath::parse("a\0b"), Err(PathError::Nul));
        // The nearest characters that are not controls.
        for ok in ["a\u{a0}b", "a\u{a1}b", "a~b", "a\u{2027}b", "a\u{202f}b"] {
            assert_accepted(ok);
        }
    }

    #[test]
    fn messages_show_invisible_characters_escaped() {
        let message = RepoPath::parse("src/.G\u{200c}IT/x")
            .unwrap_err()
            .to_string();
        assert!(message.contains("src/.G\\u{200c}IT/x"), "{message}");
        assert!(message.contains("`.git`"), "{message}");
        let message = RepoPath::parse("a\n+ b\u{1b}[31m").unwrap_err().to_string();
        assert!(
            !message.contains('\n') && !message.contains('\u{1b}'),
            "{message:?}"
        );
        assert!(message.contains("a\\u{a}+ b\\u{1b}[31m"), "{message}");
    }

    #[test]
    fn prefix_contains_only_whole_components() {
        let p = RepoPath::parse_prefix("src/").unwrap();
        assert!(p.contains("src"));
        assert!(p.contains("src/a.rs"));
        assert!(!p.contains("srcx/a.rs"));
    }

    /// Names near `.git` and its HFS and NTFS forms, from a fixed seed, so a failure
    /// reproduces: bases mutated by inserting any of the characters that matter to the
    /// rules, appending what Windows trims or HFS+ ignores, re-casing and deleting.
    fn generated_names() -> Vec<String> {
        const BASES: [&str; 13] = [
            ".git",
            "git~1",
            ".GIT",
            "GiT~1",
            ".gitmodules",
            "git",
            "x",
            ".g",
            "~1",
            ".git.",
            ".gitattributes",
            "gitmod~1",
            "gi7d29~1",
        ];
        const ANY: [char; 33] = [
            '.', '.', ' ', ' ', ':', ':', '~', '1', '2', 'g', 'G', 'i', 'I', 't', 'T', 'a', '$',
            '\u{200b}', '\u{200c}', '\u{200d}', '\u{200e}', '\u{200f}', '\u{202a}', '\u{202e}',
            '\u{206a}', '\u{206f}', '\u{feff}', 'é', 'ı', '<', '|', '*', '"',
        ];
        const TRAILING: [char; 8] = ['.', ' ', ':', '$', 'x', '\u{200c}', '\u{202b}', '\u{feff}'];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let mut names = std::collections::BTreeSet::new();
        for _ in 0..3000 {
            let mut name: Vec<char> = BASES[next(BASES.len())].chars().collect();
            for _ in 0..next(5) {
                match next(5) {
                    0 => {
                        let at = next(name.len() + 1);
                        name.insert(at, ANY[next(ANY.len())]);
                    }
                    1 => name.push(TRAILING[next(TRAILING.len())]),
                    2 => {
                        let at = next(name.len() + 1);
                        name.insert(at, TRAILING[5 + next(3)]);
                    }
                    3 => {
                        let at = next(name.len());
                        name[at] = if name[at].is_ascii_lowercase() {
                            name[at].to_ascii_uppercase()
                        } else {
                            name[at].to_ascii_lowercase()
                        };
                    }
                    _ if name.len() > 1 => {
                        name.remove(next(name.len()));
                    }
                    _ => {}
                }
            }
            names.insert(name.into_iter().collect::<String>());
        }
        names.into_iter().collect()
    }

    fn git(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
        std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "core.protectHFS=true", "-c", "core.protectNTFS=true"])
            .args(args)
            .output()
            .expect("the `git` command is needed by this test")
    }

    /// git's own `verify_path`, with its HFS and NTFS protections on, refuses exactly the
    /// generated names we refuse: `update-index` runs it on every path it adds.
    #[test]
    fn refuses_exactly_the_names_git_refuses() {
        let dir = tempfile::tempdir().unwrap();
        assert!(git(dir.path(), &["init", "-q"]).status.success());
        let names = generated_names();
        let refused_by_us = names.iter().filter(|n| RepoPath::parse(n).is_err()).count();
        assert!(
            refused_by_us > 100 && refused_by_us + 1000 < names.len(),
            "the generated set should hold many of both: {refused_by_us} of {}",
            names.len()
        );
        for name in &names {
            let ours = RepoPath::parse(name);
            if let Err(e) = &ours {
                assert!(
                    matches!(e, PathError::GitDir(_) | PathError::BadComponent(_)),
                    "{name:?}: {e}"
                );
            }
            let info = format!("100644,e69de29bb2d1d6434b8b29ae775ad8c2e48c5391,{name}");
            let theirs = git(dir.path(), &["update-index", "--add", "--cacheinfo", &info]);
            assert_eq!(
                !theirs.status.success(),
                ours.is_err(),
                "{name:?}: git says {:?}, we say {ours:?}",
                String::from_utf8_lossy(&theirs.stderr)
            );
        }
    }

    /// Every generated name we accept, as a file and as a directory, and names of 255
    /// bytes, commit through the store into a tree that `git fsck --strict` finds clean
    /// and that git checks out with its HFS and NTFS protections on.
    #[test]
    fn accepted_paths_pass_git_fsck_strict_and_check_out() {
        let mut paths: Vec<String> = Vec::new();
        for name in generated_names() {
            for path in [format!("files/{name}"), format!("dirs/{name}/x")] {
                if RepoPath::parse(&path).is_ok() {
                    paths.push(path);
                }
            }
        }
        paths.extend([
            "y".repeat(255),
            format!("long/{}/{}", "é".repeat(127) + "y", "z".repeat(255)),
            "win/what?<>|\"*:.txt".to_string(),
            "win/aux.c".to_string(),
            "win/trailing. ".to_string(),
            ".gitignore".to_string(),
            ".github/workflows/ci.yml".to_string(),
        ]);
        let files: Vec<(RepoPath, String)> = paths
            .iter()
            .map(|p| (RepoPath::parse(p).unwrap(), "# generated\n".to_string()))
            .collect();
        let data = tempfile::tempdir().unwrap();
        let store =
            crate::store::Store::open(data.path(), crate::store::Limits::default()).unwrap();
        let (row, _) = store.create_repo(Default::default(), &files).unwrap();
        let git_dir = store.git_dir(&row.id);

        let fsck = git(&git_dir, &["fsck", "--strict", "--no-dangling"]);
        let said = String::from_utf8_lossy(&fsck.stderr).to_string()
            + &String::from_utf8_lossy(&fsck.stdout);
        assert!(fsck.status.success(), "git fsck --strict failed: {said}");
        assert!(
            !said.contains("warning") && !said.contains("error"),
            "git fsck --strict complained: {said}"
        );

        let work = tempfile::tempdir().unwrap();
        let checkout = work.path().join("checkout");
        let clone = git(
            work.path(),
            &["clone", "-q", git_dir.to_str().unwrap(), "checkout"],
        );
        assert!(
            clone.status.success(),
            "clone failed: {}",
            String::from_utf8_lossy(&clone.stderr)
        );
        for p in &paths {
            assert!(checkout.join(p).is_file(), "{p:?} was not checked out");
        }
    }
}
