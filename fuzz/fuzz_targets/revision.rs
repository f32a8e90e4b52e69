//! Fuzz target: `parse_rev`, the one gate between a caller's `ref`/`commit` argument
//! and git's revision parser, never panics, and accepts only the documented forms: a
//! commit id of 4 to 40 hex digits, or `main` / `HEAD` with an optional `~N`
//! (N ≤ 1,000,000). What it hands git is a hex prefix or `refs/heads/main~N`, never
//! anything git would read as an option, a reflog, a search or a range.
//!
//! Input: any UTF-8 text, as a caller would send it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scoped_repo_mcp::model::{RevSpec, parse_rev};

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    match parse_rev(raw) {
        Ok(rev) => {
            let s = raw.trim();
            let expr = rev.git_expression();
            assert!(!expr.starts_with('-'), "{raw:?} -> {expr:?}");
            for forbidden in ["@", ":", "^", "{", "..", " ", "/main~-"] {
                assert!(!expr.contains(forbidden), "{raw:?} -> {expr:?}");
            }
            match &rev {
                RevSpec::Commit(hex) => {
                    assert!((4..=40).contains(&hex.len()), "{raw:?}");
                    assert!(
                        hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                        "{raw:?}"
                    );
                    assert!(s.eq_ignore_ascii_case(hex), "{raw:?} -> {hex:?}");
                    assert_eq!(&expr, hex);
                }
                RevSpec::HeadAncestor(n) => {
                    assert!(*n <= 1_000_000, "{raw:?}");
                    let rest = s
                        .strip_prefix("main")
                        .or_else(|| s.strip_prefix("HEAD"))
                        .unwrap_or_else(|| panic!("{raw:?} accepted without main or HEAD"));
                    let digits = match rest {
                        "" => None,
                        r => Some(r.strip_prefix('~').unwrap_or_else(|| panic!("{raw:?}"))),
                    };
                    if let Some(d) = digits.filter(|d| !d.is_empty()) {
                        assert!(d.bytes().all(|b| b.is_ascii_digit()), "{raw:?}");
                        assert_eq!(d.parse::<u32>().ok(), Some(*n), "{raw:?}");
                    }
                    assert_eq!(expr, format!("refs/heads/main~{n}"));
                }
            }
            // Parsing is stable: the canonical rendering parses to the same revision.
            assert_eq!(parse_rev(&rev.to_string()).as_ref(), Ok(&rev));
        }
        Err(e) => {
            let message = e.to_string();
            assert!(
                !message.chars().any(|c| c.is_control()),
                "the refusal of {raw:?} holds a control character: {message:?}"
            );
        }
    }
});
