//! Fuzz target: `RepoPath::parse` never panics, and every path it accepts is a git tree
//! path that checks out on Linux, macOS and Windows.
//!
//! The checks below are written afresh from git's own rules (`verify_path`,
//! `is_hfs_dotgit`, `is_ntfs_dotgit`, `is_ntfs_dot_generic` and fsck's
//! `gitmodulesBlob`), not shared with `src/paths.rs`, so a slip in either shows up as a
//! disagreement.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scoped_repo_mcp::paths::{MAX_COMPONENT_BYTES, MAX_PATH_BYTES, RepoPath};

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    match RepoPath::parse(raw) {
        Ok(path) => {
            assert_eq!(path.as_str(), raw, "an accepted path is kept as given");
            check_accepted(raw);
            // Accepting is stable, and a directory prefix of an accepted path is too.
            assert_eq!(RepoPath::parse(path.as_str()).as_ref(), Ok(&path));
            assert_eq!(
                RepoPath::parse_prefix(&format!("{raw}/")).as_ref(),
                Ok(&path)
            );
        }
        Err(e) => {
            // A refusal quotes the path, and must never forge a line while doing so.
            let message = e.to_string();
            assert!(
                !message.chars().any(breaks_text),
                "the refusal of {raw:?} holds a control character: {message:?}"
            );
        }
    }
});

/// Control characters and the two Unicode line breaks.
fn breaks_text(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}'
}

fn check_accepted(raw: &str) {
    assert!(!raw.is_empty());
    assert!(raw.len() <= MAX_PATH_BYTES, "{} bytes", raw.len());
    assert!(!raw.starts_with('/'), "absolute: {raw:?}");
    assert!(!raw.contains('\\'), "backslash: {raw:?}");
    assert!(!raw.chars().any(breaks_text), "control character: {raw:?}");
    let components: Vec<&str> = raw.split('/').collect();
    for (i, c) in components.iter().enumerate() {
        let is_dir = i + 1 < components.len();
        assert!(
            !matches!(*c, "" | "." | ".."),
            "empty, . or .. component: {raw:?}"
        );
        assert!(
            c.len() <= MAX_COMPONENT_BYTES,
            "{} byte name: {raw:?}",
            c.len()
        );
        assert!(!hfs_dot(c, "git"), "HFS+ reads {c:?} as .git in {raw:?}");
        assert!(!ntfs_dotgit(c), "NTFS reads {c:?} as .git in {raw:?}");
        if is_dir {
            for (needle, short) in [("gitmodules", "gi7eba"), ("gitattributes", "gi7d29")] {
                assert!(
                    !hfs_dot(c, needle) && !ntfs_dot_generic(c, needle, short),
                    "directory {c:?} is .{needle} to git on macOS or Windows: {raw:?}"
                );
            }
        }
    }
}

/// git's `next_hfs_char` skips these code points.
fn hfs_ignored(c: char) -> bool {
    matches!(
        c as u32,
        0x200c | 0x200d | 0x200e | 0x200f | 0x202a..=0x202e | 0x206a..=0x206f | 0xfeff
    )
}

/// git's `is_hfs_dot_generic`, per component.
fn hfs_dot(name: &str, needle: &str) -> bool {
    let mut it = name.chars().filter(|c| !hfs_ignored(*c));
    if it.next() != Some('.') {
        return false;
    }
    for want in needle.bytes() {
        match it.next() {
            Some(c) if (c as u32) < 128 && (c as u8).to_ascii_lowercase() == want => {}
            _ => return false,
        }
    }
    it.next().is_none()
}

/// git's `is_ntfs_dotgit`, per component (a component ends where the name does).
fn ntfs_dotgit(name: &str) -> bool {
    let b = name.as_bytes();
    let at = |i: usize| b.get(i).copied().unwrap_or(0);
    let mut i;
    if at(0) == b'.' {
        if !(at(1).eq_ignore_ascii_case(&b'g')
            && at(2).eq_ignore_ascii_case(&b'i')
            && at(3).eq_ignore_ascii_case(&b't'))
        {
            return false;
        }
        i = 4;
    } else if at(0).eq_ignore_ascii_case(&b'g') {
        if !(at(1).eq_ignore_ascii_case(&b'i')
            && at(2).eq_ignore_ascii_case(&b't')
            && at(3) == b'~'
            && at(4) == b'1')
        {
            return false;
        }
        i = 5;
    } else {
        return false;
    }
    loop {
        let c = at(i);
        i += 1;
        if c == 0 || c == b':' {
            return true;
        }
        if c != b'.' && c != b' ' {
            return false;
        }
    }
}

/// git's `is_ntfs_dot_generic`, per component.
fn ntfs_dot_generic(name: &str, needle: &str, short: &str) -> bool {
    let b = name.as_bytes();
    let at = |i: usize| b.get(i).copied().unwrap_or(0);
    let only_spaces_and_periods = |mut i: usize| loop {
        let c = at(i);
        i += 1;
        if c == 0 || c == b':' {
            return true;
        }
        if c != b' ' && c != b'.' {
            return false;
        }
    };
    let n = needle.as_bytes();
    if at(0) == b'.' && (0..n.len()).all(|k| at(1 + k).to_ascii_lowercase() == n[k]) {
        return only_spaces_and_periods(n.len() + 1);
    }
    if (0..6).all(|k| at(k).to_ascii_lowercase() == n[k])
        && at(6) == b'~'
        && (b'1'..=b'4').contains(&at(7))
    {
        return only_spaces_and_periods(8);
    }
    let s = short.as_bytes();
    let mut saw_tilde = false;
    let mut i = 0;
    while i < 8 {
        let c = at(i);
        if c == 0 {
            return false;
        } else if saw_tilde {
            if !c.is_ascii_digit() {
                return false;
            }
        } else if c == b'~' {
            i += 1;
            if !(b'1'..=b'9').contains(&at(i)) {
                return false;
            }
            saw_tilde = true;
        } else if i >= 6 || c & 0x80 != 0 || c.to_ascii_lowercase() != s[i] {
            return false;
        }
        i += 1;
    }
    only_spaces_and_periods(i)
}
