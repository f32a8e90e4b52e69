//! Judging and escaping text: whether bytes are text at all ([`is_binary`], as git and
//! ripgrep judge; [`is_text`], what the tools return as text), and the escaping of untrusted text (paths, metadata, token names,
//! matched lines) for the line-oriented renderings: tool text, `repo list`, `token
//! list`. A newline or an escape sequence in such text must not forge a line or recolour
//! a terminal.

use std::borrow::Cow;
use std::fmt::Write;

/// Whether `c` is escaped: control characters (C0, DEL, C1), the Unicode line and
/// paragraph separators, and the bidirectional controls that reorder what a reader sees.
fn escaped(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
}

/// Whether bytes look binary: a NUL byte in their first 8 KiB, as git and ripgrep judge.
pub fn is_binary(bytes: &[u8]) -> bool {
    bytes[..bytes.len().min(8192)].contains(&0)
}

/// Whether bytes are text the tools can return: UTF-8 with no NUL byte anywhere. Every
/// other file is binary to the store: kept, served as bytes by the REST API, skipped
/// by the search indexes, and answered by `read_file` with its size alone.
pub fn is_text(bytes: &[u8]) -> bool {
    !is_binary(bytes) && !bytes.contains(&0) && std::str::from_utf8(bytes).is_ok()
}

/// `text` with every escaped character written as `\n`, `\t`, `\r` or `\u{…}`, and
/// backslashes left alone; borrowed when nothing needed escaping.
pub fn one_line(text: &str) -> Cow<'_, str> {
    if !text.chars().any(escaped) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if escaped(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_cannot_forge_lines() {
        assert!(matches!(one_line("src/main.rs"), Cow::Borrowed(_)));
        assert_eq!(one_line("a\nb.rs:1: forged"), "a\\nb.rs:1: forged");
        assert_eq!(one_line("\u{1b}[31mred"), "\\u{1b}[31mred");
        assert_eq!(one_line("x\u{202e}y\u{85}"), "x\\u{202e}y\\u{85}");
        assert!(!one_line("a\r\n\u{2028}b").contains(['\n', '\r', '\u{2028}']));
    }
}
