//! Blame through the `git` program: `git blame --porcelain` on the repo's own git
//! directory, parsed into runs of lines. libgit2's blame took 10x to 14x as long as
//! git's on tokio's largest files (see README, "History"), so the store's blame runs git.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::OnceLock;

use crate::git_source::GitProgram;
use crate::model::{BlameQuery, BlameRange, BlameResult, MAX_BLAME_RANGES, rfc3339};
use crate::store::StoreError;

/// Any git that has `blame --porcelain` with `-L`.
const MIN_GIT_BLAME: (u32, u32) = (2, 0);

fn git() -> Result<&'static GitProgram, StoreError> {
    static GIT: OnceLock<Result<GitProgram, String>> = OnceLock::new();
    GIT.get_or_init(|| GitProgram::find(MIN_GIT_BLAME))
        .as_ref()
        .map_err(|e| StoreError::Git(format!("blame needs the git program: {e}")))
}

/// Blame lines `q.start_line..=q.end_line` (0: to the end) of `q.path` at commit `at`
/// (a full id already resolved within the repo), a file of `total` lines, in the bare
/// repository `git_dir`.
pub(crate) fn run(
    git_dir: &Path,
    at: &str,
    q: &BlameQuery,
    total: u64,
) -> Result<BlameResult, StoreError> {
    let start = q.start_line.max(1);
    let end = if q.end_line == 0 {
        total
    } else {
        q.end_line.min(total)
    };
    if total == 0 {
        return Ok(BlameResult {
            commit: at.to_string(),
            total_lines: 0,
            ranges: Vec::new(),
            next_line: None,
        });
    }
    if start > total {
        return Err(StoreError::Invalid(format!(
            "start_line {start} is past the end of `{}`, which has {total} line(s)",
            q.path
        )));
    }
    if end < start {
        return Err(StoreError::Invalid(format!(
            "end_line {end} is before start_line {start}"
        )));
    }
    let git = git()?;
    let out = git
        .command()
        // No object replaced by a ref.
        .env("GIT_NO_REPLACE_OBJECTS", "1")
        .arg("--git-dir")
        .arg(git_dir)
        .args(["blame", "--porcelain", "-L"])
        .arg(format!("{start},{end}"))
        .arg(at)
        .arg("--")
        .arg(q.path.as_str())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| StoreError::Git(format!("git blame could not run: {e}")))?;
    if !out.status.success() {
        return Err(StoreError::Git(format!(
            "git blame failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let mut ranges = parse_porcelain(&String::from_utf8_lossy(&out.stdout));
    let next_line = if ranges.len() > MAX_BLAME_RANGES {
        let next = ranges[MAX_BLAME_RANGES].start_line;
        ranges.truncate(MAX_BLAME_RANGES);
        Some(next)
    } else {
        None
    };
    Ok(BlameResult {
        commit: at.to_string(),
        total_lines: total,
        ranges,
        next_line,
    })
}

#[derive(Default, Clone)]
struct About {
    author: String,
    time: i64,
    subject: String,
}

/// Runs of consecutive lines from one commit, from `git blame --porcelain` output.
fn parse_porcelain(text: &str) -> Vec<BlameRange> {
    let mut about: HashMap<String, About> = HashMap::new();
    let mut lines: Vec<(u64, String)> = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if line.starts_with('\t') {
            current = None;
            continue;
        }
        if let Some(sha) = &current {
            let entry = about.entry(sha.clone()).or_default();
            if let Some(a) = line.strip_prefix("author ") {
                entry.author = a.to_string();
            } else if let Some(t) = line.strip_prefix("author-time ") {
                entry.time = t.trim().parse().unwrap_or(0);
            } else if let Some(s) = line.strip_prefix("summary ") {
                entry.subject = s.to_string();
            }
            continue;
        }
        let mut parts = line.split(' ');
        let (Some(sha), Some(_orig), Some(final_line)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if sha.len() < 40 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let Ok(n) = final_line.parse::<u64>() else {
            continue;
        };
        lines.push((n, sha.to_string()));
        current = Some(sha.to_string());
    }
    let mut ranges: Vec<BlameRange> = Vec::new();
    for (n, sha) in lines {
        if let Some(last) = ranges.last_mut()
            && last.commit == sha
            && last.end_line + 1 == n
        {
            last.end_line = n;
            continue;
        }
        let a = about.get(&sha).cloned().unwrap_or_default();
        ranges.push(BlameRange {
            start_line: n,
            end_line: n,
            commit: sha,
            author: a.author,
            time: rfc3339(a.time),
            subject: a.subject,
        });
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn porcelain_lines_of_one_commit_join_into_runs() {
        let a = "a".repeat(40);
        let b = "b".repeat(40);
        let text = format!(
            "{a} 1 1 2\nauthor alice\nauthor-time 1700000000\nsummary first\nfilename f\n\tx\n\
             {a} 2 2\n\ty\n\
             {b} 3 3 1\nauthor bob\nauthor-time 1700000100\nsummary second\nfilename f\n\tz\n\
             {a} 4 4 1\n\tw\n"
        );
        let r = parse_porcelain(&text);
        assert_eq!(r.len(), 3);
        assert_eq!((r[0].start_line, r[0].end_line), (1, 2));
        assert_eq!(r[0].author, "alice");
        assert_eq!(r[0].subject, "first");
        assert_eq!(
            (r[1].start_line, r[1].end_line, r[1].author.as_str()),
            (3, 3, "bob")
        );
        assert_eq!((r[2].start_line, r[2].commit.as_str()), (4, a.as_str()));
        assert_eq!(r[2].time, "2023-11-14T22:13:20Z");
    }
}
