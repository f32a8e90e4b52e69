//! Turning text into search terms the way code names things: identifiers split at
//! `snake_case`, `camelCase` and digit boundaries, light stemming, a short stop list.

/// Words too common in English prose to say anything about which file is meant.
/// Code keywords are kept: inverse document frequency already discounts them, and a
/// question like "where is the async runtime started" needs `async`.
const STOP: &[&str] = &[
    "a", "about", "after", "all", "also", "an", "and", "any", "are", "as", "at", "be", "been",
    "before", "being", "but", "by", "can", "could", "did", "do", "does", "doing", "done", "each",
    "for", "from", "had", "has", "have", "he", "her", "here", "his", "how", "i", "if", "in",
    "into", "is", "it", "its", "just", "may", "me", "more", "most", "much", "my", "no", "now",
    "of", "on", "one", "only", "or", "other", "our", "out", "over", "same", "she", "should", "so",
    "some", "such", "than", "that", "the", "their", "them", "then", "there", "these", "they",
    "this", "those", "to", "too", "up", "us", "very", "was", "we", "were", "what", "when", "where",
    "which", "while", "who", "why", "will", "with", "would", "you", "your",
];

/// A word of at most six bytes as one integer: its bytes from the top, zero-padded, and
/// its length in the lowest byte. Keys sort as their words do, so [`STOP_KEYS`] is
/// sorted because [`STOP`] is.
const fn stop_key(w: &[u8]) -> u64 {
    let mut key = w.len() as u64;
    let mut i = 0;
    while i < w.len() {
        key |= (w[i] as u64) << (56 - 8 * i);
        i += 1;
    }
    key
}

/// [`STOP`] as [`stop_key`]s: looking a word up compares integers, not strings (this
/// runs for every short word of every line a ranked answer scores).
static STOP_KEYS: [u64; STOP.len()] = {
    let mut keys = [0; STOP.len()];
    let mut i = 0;
    while i < STOP.len() {
        keys[i] = stop_key(STOP[i].as_bytes());
        i += 1;
    }
    keys
};

fn is_stop(w: &str) -> bool {
    // No stop word is longer than six bytes; most parts of names are.
    w.len() <= 6 && STOP_KEYS.binary_search(&stop_key(w.as_bytes())).is_ok()
}

/// A light suffix stripper: plural and `-ing`/`-ed`/`-e` endings, so `parse`, `parses`,
/// `parsed` and `parsing` meet. Deliberately weaker than Porter: identifiers are not
/// English and aggressive stemming merges names that differ.
pub fn stem(w: &str) -> String {
    let (kept, added) = stem_parts(w);
    [kept, added].concat()
}

/// [`stem`] as the part of `w` it keeps and what it adds after it (`y`, for `-ies`, or
/// nothing), so callers can build the stem without allocating.
fn stem_parts(w: &str) -> (&str, &'static str) {
    if w.len() <= 3 || !w.bytes().all(|b| b.is_ascii_lowercase()) {
        return (w, "");
    }
    let mut s = w;
    if let Some(base) = s
        .strip_suffix("ies")
        .or_else(|| s.strip_suffix("ied"))
        .filter(|b| b.len() >= 2)
    {
        // `-ies` and `-ied` become `-y`, which none of the endings below strips, so
        // `verify`, `verifies` and `verified` meet.
        return (base, "y");
    } else if let Some(base) = s.strip_suffix("sses") {
        s = &w[..base.len() + 2];
    } else if s.ends_with('s') && !s.ends_with("ss") && !s.ends_with("us") && !s.ends_with("is") {
        s = &s[..s.len() - 1];
    }
    for suffix in ["ing", "ed"] {
        if let Some(base) = s.strip_suffix(suffix)
            && base.len() >= 3
        {
            s = base;
            break;
        }
    }
    if let Some(base) = s.strip_suffix('e')
        && base.len() >= 3
    {
        s = base;
    }
    (s, "")
}

/// Append `s` lower-cased to `out` (ASCII in place; anything else as `to_lowercase`).
fn push_lowercase(out: &mut String, s: &str) {
    if s.is_ascii() {
        let from = out.len();
        out.push_str(s);
        out[from..].make_ascii_lowercase();
    } else {
        out.push_str(&s.to_lowercase());
    }
}

/// The parts of one identifier: `parseHTTPHeader2` → `parse`, `HTTP`, `Header`, `2`.
fn parts(word: &str, out: &mut Vec<(usize, usize)>) {
    let b = word.as_bytes();
    let mut start = None::<usize>;
    for i in 0..b.len() {
        let c = b[i];
        if c == b'_' || (!c.is_ascii_alphanumeric() && c.is_ascii()) {
            if let Some(s) = start.take() {
                out.push((s, i));
            }
            continue;
        }
        let Some(s) = start else {
            start = Some(i);
            continue;
        };
        let p = b[i - 1];
        let boundary = (p.is_ascii_lowercase() && c.is_ascii_uppercase())
            || (p.is_ascii_alphabetic() && c.is_ascii_digit())
            || (p.is_ascii_digit() && c.is_ascii_alphabetic())
            || (p.is_ascii_uppercase()
                && c.is_ascii_uppercase()
                && b.get(i + 1).is_some_and(|n| n.is_ascii_lowercase()));
        if boundary && i > s {
            out.push((s, i));
            start = Some(i);
        }
    }
    if let Some(s) = start {
        out.push((s, b.len()));
    }
}

/// Call `emit` with every search term of `text`, in order.
///
/// Each identifier gives its parts (lowercased, stemmed) and, when it has several, the
/// whole name with separators removed, so `get_user_name` and `getUserName` both match
/// a query for either spelling, and a query for `user` matches both too.
pub fn for_each_term(text: &str, emit: impl FnMut(&str)) {
    for_each_term_where(text, |_| true, emit)
}

/// [`for_each_term`], leaving out terms whose first byte `first` refuses without
/// the work of making them (lower-casing and stemming a part keep its first byte, once
/// lower-cased, when it is ASCII; a part starting outside ASCII is always made).
pub fn for_each_term_where(text: &str, first: impl Fn(u8) -> bool, mut emit: impl FnMut(&str)) {
    let wanted = |b: u8| !b.is_ascii() || first(b.to_ascii_lowercase());
    let mut spans = Vec::new();
    // Reused for every word: the whole name, a part lower-cased, and its stem.
    let (mut buf, mut lower, mut stemmed) = (String::new(), String::new(), String::new());
    for word in text
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
    {
        if word.len() > 64 {
            continue; // hashes, base64 and minified code: no one searches for them
        }
        spans.clear();
        parts(word, &mut spans);
        // The whole name starts as its first part does.
        let whole = spans.len() > 1 && wanted(word.as_bytes()[spans[0].0]);
        let mut pieces = 0;
        for &(s, e) in &spans {
            let part = wanted(word.as_bytes()[s]);
            if !part && (!whole || pieces > 0) {
                continue; // neither this term nor the whole name's count needs it
            }
            lower.clear();
            push_lowercase(&mut lower, &word[s..e]);
            if (lower.len() < 2 && !lower.bytes().all(|b| b.is_ascii_digit())) || is_stop(&lower) {
                continue;
            }
            pieces += 1;
            if !part {
                continue;
            }
            let (kept, added) = stem_parts(&lower);
            stemmed.clear();
            stemmed.push_str(kept);
            stemmed.push_str(added);
            emit(&stemmed);
        }
        if whole && pieces > 0 {
            buf.clear();
            for &(s, e) in &spans {
                push_lowercase(&mut buf, &word[s..e]);
            }
            emit(&buf);
        }
    }
}

/// How a language marks its comments, judged by the file's extension.
#[derive(Clone, Copy, PartialEq, Eq)]
enum CommentStyle {
    /// `#` to the end of the line, and Python's triple-quoted docstrings.
    Hash,
    /// `//` to the end of the line and `/* … */` blocks.
    Slash,
    /// Not code, or a language not known here: no comments taken apart.
    None,
}

fn comment_style(path: &str) -> CommentStyle {
    let ext = path.rsplit_once('.').map_or("", |(_, e)| e);
    match ext {
        "py" | "pyi" | "pyx" | "rb" | "sh" | "bash" | "pl" | "r" | "ex" | "exs" | "jl" | "nim" => {
            CommentStyle::Hash
        }
        "rs" | "c" | "h" | "cc" | "cpp" | "cxx" | "hpp" | "hh" | "java" | "kt" | "kts"
        | "scala" | "swift" | "m" | "mm" | "go" | "js" | "jsx" | "mjs" | "cjs" | "ts" | "tsx"
        | "cs" | "dart" | "zig" | "php" | "proto" => CommentStyle::Slash,
        _ => CommentStyle::None,
    }
}

/// Call `emit` with each stretch of comment text (comments and docstrings) in a source
/// file's `text`: the prose a question's words are likeliest to meet. Strings are not
/// parsed, so a comment marker inside a string literal starts a comment here too (rare,
/// and only a few words land in the wrong field). Prose files give nothing: all their
/// text is prose already.
pub fn for_each_comment(path: &str, text: &str, mut emit: impl FnMut(&str)) {
    let style = comment_style(path);
    if style == CommentStyle::None {
        return;
    }
    // Inside a block (a Python triple-quoted string opened at the start of a line, or a
    // `/*` comment), and what closes it.
    let mut in_block: Option<&str> = None;
    for line in text.lines() {
        let t = line.trim_start();
        if let Some(close) = in_block {
            match t.find(close) {
                Some(i) => {
                    emit(&t[..i]);
                    in_block = None;
                }
                None => emit(t),
            }
            continue;
        }
        match style {
            CommentStyle::Hash => {
                let unprefixed = t.strip_prefix(['r', 'R', 'b', 'f', 'u']).unwrap_or(t);
                if let Some(q) = [r#"""""#, "'''"]
                    .into_iter()
                    .find(|q| unprefixed.starts_with(q))
                {
                    let rest = &unprefixed[3..];
                    match rest.find(q) {
                        Some(i) => emit(&rest[..i]),
                        None => {
                            emit(rest);
                            in_block = Some(q);
                        }
                    }
                } else if let Some(i) = line.find('#') {
                    emit(&line[i + 1..]);
                }
            }
            CommentStyle::Slash => {
                if let Some(i) = line.find("//") {
                    emit(&line[i + 2..]);
                } else if let Some(i) = line.find("/*") {
                    let rest = &line[i + 2..];
                    match rest.find("*/") {
                        Some(j) => emit(&rest[..j]),
                        None => {
                            emit(rest);
                            in_block = Some("*/");
                        }
                    }
                }
            }
            CommentStyle::None => {}
        }
    }
}

/// Whether `text` asks a question in words (its first line holds a question mark or
/// starts with an interrogative), as opposed to describing a change or a symptom. Only
/// the first line: a commit message's body may ask a question of its reader. "Do" is
/// not taken as asking: a change is described as "Do not …".
pub fn is_question(text: &str) -> bool {
    const ASKING: &[&str] = &[
        "how", "where", "why", "what", "which", "when", "who", "is", "are", "does", "can", "could",
        "should", "would", "will", "was", "did", "has", "have",
    ];
    let first = text.trim_start().lines().next().unwrap_or("");
    first.contains('?')
        || first
            .split_whitespace()
            .next()
            .map(|w| {
                w.trim_matches(|c: char| !c.is_alphanumeric())
                    .to_ascii_lowercase()
            })
            .is_some_and(|w| ASKING.contains(&w.as_str()))
}

/// The words of a leading `word:` prefix on the first line of `text` (`sync:`,
/// `io, net:`, `fix(config):`, `mark/expression:`), lower-cased: the part of the code a
/// commit message says it changes. Empty when the first line has no such prefix.
pub fn scope_words(text: &str) -> Vec<String> {
    let first = text.trim_start().lines().next().unwrap_or("");
    let Some((head, _)) = first.split_once(':') else {
        return Vec::new();
    };
    if head.is_empty()
        || head.len() > 40
        || !head.chars().all(|c| {
            c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ',' | ' ' | '(' | ')')
        })
        || head.split(',').any(|p| p.trim().contains(' '))
    {
        return Vec::new();
    }
    head.split([',', '/', '(', ')', ' '])
        .filter(|w| !w.is_empty())
        .map(|w| w.to_ascii_lowercase())
        .collect()
}

/// The terms of `text` as a vector.
pub fn terms(text: &str) -> Vec<String> {
    let mut v = Vec::new();
    for_each_term(text, |t| v.push(t.to_string()));
    v
}

/// Plain words: lowercase runs of letters and digits, split on whitespace and
/// punctuation only (the simplest baseline).
pub fn plain_words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Words split on punctuation, with identifiers also split into their parts, without
/// stemming or stop words (the stronger baseline).
pub fn split_words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut spans = Vec::new();
    for word in text
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
    {
        spans.clear();
        parts(word, &mut spans);
        for &(s, e) in &spans {
            out.push(word[s..e].to_lowercase());
        }
        if spans.len() > 1 {
            out.push(word.to_lowercase());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Leaving terms out by their first byte gives the terms that filtering them
    /// afterwards gives, whole names included, for every first byte.
    #[test]
    fn terms_left_out_by_first_byte_are_those_filtered_after() {
        let text = "fn parse_HTTPHeader2(bodies: &Entries) -> of_the_x {}\n\
                    let getUserName = queries_parsed + __dunder__ + a_b + The_Zone;\n\
                    größe = Straße_Kelvin \u{212A}elvin x1y2 v42 ÄpfelBaum 9lives";
        let all = terms(text);
        for b in 0..=255u8 {
            let first = |c: u8| c == b || c == b'z';
            let mut quick = Vec::new();
            for_each_term_where(text, first, |t| quick.push(t.to_string()));
            let wanted = |t: &&String| {
                t.as_bytes()
                    .first()
                    .is_some_and(|&c| !c.is_ascii() || first(c))
            };
            let filtered: Vec<&String> = all.iter().filter(wanted).collect();
            let kept: Vec<&String> = quick.iter().filter(wanted).collect();
            assert_eq!(kept, filtered, "first byte {b}");
        }
    }

    #[test]
    fn stop_list_is_sorted_for_binary_search() {
        assert!(STOP.windows(2).all(|w| w[0] < w[1]));
        assert!(STOP_KEYS.windows(2).all(|k| k[0] < k[1]));
        assert!(
            STOP.iter().all(|w| w.len() <= 6),
            "is_stop skips longer words"
        );
    }

    #[test]
    fn a_word_is_a_stop_word_exactly_when_the_list_holds_it() {
        for w in STOP {
            assert!(is_stop(w), "{w}");
            // Every prefix and every one-letter extension that is not itself listed.
            for end in 1..w.len() {
                assert_eq!(is_stop(&w[..end]), STOP.contains(&&w[..end]), "{w} {end}");
            }
            for c in ['a', 's', 'z', '0'] {
                let longer = format!("{w}{c}");
                assert_eq!(
                    is_stop(&longer),
                    STOP.contains(&longer.as_str()),
                    "{longer}"
                );
            }
        }
        for w in ["", "ab", "abouts", "th", "thee", "zz", "should_", "shoulda"] {
            assert_eq!(is_stop(w), STOP.contains(&w), "{w}");
        }
    }

    #[test]
    fn identifiers_split_the_way_code_names_things() {
        assert_eq!(
            terms("parseHTTPHeader2"),
            ["pars", "http", "header", "2", "parsehttpheader2"]
        );
        assert_eq!(
            terms("get_user_name"),
            ["get", "user", "nam", "getusername"]
        );
        assert_eq!(terms("getUserName"), terms("get_user_name"));
        assert_eq!(terms("the retry backoff"), ["retry", "backoff"]);
    }

    fn comments(path: &str, text: &str) -> Vec<String> {
        let mut v = Vec::new();
        for_each_comment(path, text, |c| v.push(c.trim().to_string()));
        v
    }

    #[test]
    fn comments_and_docstrings_are_told_from_code() {
        let py = "def f(x):\n    \"\"\"Retry with backoff.\n\n    More words.\n    \"\"\"\n    y = x  # the delay\n    return '#no'\n";
        assert_eq!(
            comments("a.py", py),
            [
                "Retry with backoff.",
                "",
                "More words.",
                "",
                "the delay",
                "no'"
            ]
        );
        let rs = "/// Sleep until the deadline.\nfn f() { g(); // not yet\n/* a block\n   that ends */ h(); }\n";
        assert_eq!(
            comments("a.rs", rs),
            [
                "/ Sleep until the deadline.",
                "not yet",
                "a block",
                "that ends"
            ]
        );
        assert!(comments("README.md", "# Title\nprose // here\n").is_empty());
    }

    #[test]
    fn questions_are_told_from_descriptions() {
        assert!(is_question("How is the signed cookie verified?"));
        assert!(is_question("where does the timer wheel advance"));
        assert!(is_question("the socket keeps returning pending?"));
        assert!(!is_question("Fix retry delay overflow in the timer wheel"));
        assert!(!is_question("My handler panics when the body is empty"));
        assert!(!is_question("Do not import the plugin twice"));
        assert!(!is_question(
            "Fix the retry delay\n\nWhy was it negative? Overflow."
        ));
    }

    #[test]
    fn a_commit_messages_leading_word_prefix_names_what_it_changes() {
        assert_eq!(scope_words("sync: fix a lost wakeup"), ["sync"]);
        assert_eq!(
            scope_words("io, net: vectored writes\n\nbody"),
            ["io", "net"]
        );
        assert_eq!(scope_words("fix(config): read TOML"), ["fix", "config"]);
        assert_eq!(
            scope_words("mark/expression: allow ::"),
            ["mark", "expression"]
        );
        assert_eq!(scope_words("tokio-util: add a codec"), ["tokio-util"]);
        // A sentence before a colon, or no colon on the first line, names nothing.
        assert!(scope_words("Fix this: the timer wheel overflows").is_empty());
        assert!(scope_words("Fix the timer\n\nsync: not the first line").is_empty());
        assert!(scope_words("See https://example.org").is_empty());
        assert!(scope_words(": nothing").is_empty());
    }

    #[test]
    fn stemming_merges_inflections() {
        for w in ["parse", "parses", "parsed", "parsing"] {
            assert_eq!(stem(w), "pars", "{w}");
        }
        assert_eq!(stem("fixtures"), stem("fixture"));
        assert_eq!(stem("entries"), "entry");
        for w in ["verify", "verifies", "verified"] {
            assert_eq!(stem(w), "verify", "{w}");
        }
        assert_eq!(stem("class"), "class");
        assert_eq!(stem("need"), "need");
    }
}
