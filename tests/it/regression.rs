//! Regression tests, each named after what broke, driven through the public surface (an
//! MCP client on the local backend, or the store's import).

use std::cell::Cell;
use std::path::Path;

use serde_json::json;

use crate::common::{Harness, call, refused};

/// Write `path` through `update_repo_files` and return the refusal, checking that the
/// repo did not move.
async fn refused_write(h: &Harness, path: &str) -> String {
    let r = h.repo(&[("a.txt", "a\n")]);
    let before = h.store.head(&r).unwrap();
    let c = h.client_for(&[r]).await;
    let ops = json!([{"type": "write", "path": path, "content": "x\n"}]);
    let msg = refused(
        &call(
            &c,
            "update_repo_files",
            json!({"repo_id": r.to_string(), "operations": ops}),
        )
        .await,
    );
    c.cancel().await.ok();
    assert_eq!(
        h.store.head(&r).unwrap(),
        before,
        "{path:?} changed the repo"
    );
    msg
}

// `.G\u{200c}IT` (`.git` with a code point HFS+ ignores) was committed, and `git fsck`
// reported `hasDotgit`.
#[tokio::test(flavor = "multi_thread")]
async fn hfs_ignorable_dotgit_was_committed() {
    let h = Harness::new();
    for path in [
        ".G\u{200c}IT/config",
        "src/.git\u{feff}/hooks/pre-commit",
        "\u{202e}.gi\u{206f}t",
    ] {
        let msg = refused_write(&h, path).await;
        assert!(msg.contains("has a `.git` component"), "{path:?}: {msg}");
        assert!(
            !msg.contains('\u{200c}') && msg.contains("\\u{"),
            "invisible characters are shown: {msg}"
        );
    }
}

// The NTFS forms of `.git` (`.git.`, `.git ` , `git~1`, `.git::$INDEX_ALLOCATION`)
// passed the path check and failed later inside libgit2 with a vague error.
#[tokio::test(flavor = "multi_thread")]
async fn ntfs_dotgit_forms_failed_late() {
    let h = Harness::new();
    for path in [
        ".git./config",
        ".git  /x",
        "GIT~1/HEAD",
        "src/git~1",
        ".git::$INDEX_ALLOCATION/config",
        "a/.Git. .:stream",
    ] {
        let msg = refused_write(&h, path).await;
        assert!(msg.contains("has a `.git` component"), "{path:?}: {msg}");
    }
}

// A file or directory name over 255 bytes (`a/<300 × y>/z.txt`) was committed, though no
// common file system can check it out.
#[tokio::test(flavor = "multi_thread")]
async fn overlong_component_was_committed() {
    let h = Harness::new();
    let path = format!("a/{}/z.txt", "y".repeat(300));
    let msg = refused_write(&h, &path).await;
    assert!(
        msg.contains("300 bytes") && msg.contains("at most 255 bytes"),
        "{msg}"
    );
    // 255 bytes is the limit, not past it.
    let r = h.repo(&[(&format!("a/{}/z.txt", "y".repeat(255)), "ok\n")]);
    assert_eq!(h.store.list_files(&r).unwrap().paths.len(), 1);
}

// Control characters in paths were accepted, and forged lines in text renderings.
#[tokio::test(flavor = "multi_thread")]
async fn control_characters_in_paths_were_accepted() {
    let h = Harness::new();
    for (path, code) in [
        ("notes.txt\n+ a forged line.txt", "U+000A"),
        ("red\u{1b}[31m.txt", "U+001B"),
        ("tab\there", "U+0009"),
        ("del\u{7f}", "U+007F"),
        ("next\u{85}line", "U+0085"),
        ("csi\u{9b}2J", "U+009B"),
    ] {
        let msg = refused_write(&h, path).await;
        assert!(
            msg.contains("control character") && msg.contains(code),
            "{path:?}: {msg}"
        );
        assert!(!msg.contains('\n') && !msg.contains('\u{1b}'), "{msg:?}");
    }
}

fn write(root: &Path, rel: &str, content: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

// Importing a directory that held a `.git` form (`.git.`, `git~1`, …) aborted the whole
// import inside libgit2, instead of skipping those files.
#[test]
fn dotgit_form_in_a_directory_aborted_the_import() {
    let h = Harness::new();
    let src = tempfile::tempdir().unwrap();
    let root = src.path();
    write(root, "src/main.rs", "fn main() {}\n");
    write(root, "README.md", "# hi\n");
    // A nested repository's own metadata: left out, as always, and not counted.
    write(root, "vendor/.git/config", "[core]\n");
    let refused = [
        ".git./config",
        ".git ./HEAD",
        "git~1/HEAD",
        "sub/GIT~1/objects/x",
        ".G\u{200c}IT/config",
        "\u{feff}.git/config",
        ".git::$INDEX_ALLOCATION/config",
        "deep/er/.git:stream",
        "lib/.gitmodules/x",
        "lib/gitmod~1/y",
        "esc\u{1b}[31m/a.txt",
        "line\nbreak.txt",
        "c1\u{85}.txt",
    ];
    for rel in refused {
        write(root, rel, "x\n");
    }
    let report = h
        .store
        .import_dir(root, Default::default(), &|_| {})
        .expect("the import goes on past paths it cannot store");
    assert_eq!(report.skipped_path, refused.len());
    assert_eq!(
        h.store.list_files(&report.repo_id).unwrap().paths,
        ["README.md", "src/main.rs"]
    );
}
// The import walk skipped symlinks, but then read each file by path, following a symlink
// (or a directory turned symlink, or another file) swapped in after the walk, and so
// imported files from outside the directory.
#[cfg(unix)]
#[test]
fn import_followed_a_symlink_swapped_in() {
    let h = Harness::new();
    let outside = tempfile::tempdir().unwrap();
    write(outside.path(), "secret.txt", "SECRET via a file symlink\n");
    write(
        outside.path(),
        "dir/inner.txt",
        "SECRET via a directory symlink\n",
    );
    write(outside.path(), "hard.txt", "SECRET via another file\n");
    let src = tempfile::tempdir().unwrap();
    let root = src.path();
    write(root, "keep.txt", "kept\n");
    write(root, "a.txt", "inside a\n");
    write(root, "sub/inner.txt", "inside sub\n");
    write(root, "b.txt", "inside b\n");

    // The walk is over when reading starts: swap then, exactly as a racing process would.
    let swapped = Cell::new(false);
    let report = h
        .store
        .import_dir(root, Default::default(), &|p| {
            if matches!(p, scoped_repo_mcp::store::ImportProgress::Reading { .. })
                && !swapped.replace(true)
            {
                std::fs::remove_file(root.join("a.txt")).unwrap();
                std::os::unix::fs::symlink(outside.path().join("secret.txt"), root.join("a.txt"))
                    .unwrap();
                std::fs::rename(root.join("sub"), outside.path().join("moved-sub")).unwrap();
                std::os::unix::fs::symlink(outside.path().join("dir"), root.join("sub")).unwrap();
                std::fs::remove_file(root.join("b.txt")).unwrap();
                std::fs::hard_link(outside.path().join("hard.txt"), root.join("b.txt")).unwrap();
            }
        })
        .unwrap();
    assert!(swapped.get());
    let files = h.store.list_files(&report.repo_id).unwrap().paths;
    for path in &files {
        let content = h
            .store
            .read_bytes(
                &report.repo_id,
                &scoped_repo_mcp::paths::RepoPath::parse(path).unwrap(),
            )
            .unwrap();
        assert!(
            !String::from_utf8_lossy(&content).contains("SECRET"),
            "{path} was read from outside the directory"
        );
    }
    assert_eq!(files, ["keep.txt"]);
    assert_eq!(
        report.skipped_path, 3,
        "each swapped file is skipped and counted"
    );
}
