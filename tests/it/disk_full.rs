//! The store on a small file system that fills up: every write path answers a clear
//! error and changes nothing, and everything works again once space is freed.
//!
//! Runs on a small file system of its own: the directory `SCOPED_REPO_SMALL_FS` names,
//! or else, as root, a 64 MiB tmpfs the test mounts (and a root that cannot mount one
//! fails the test). Not root and with no such directory, it prints that it skipped.

use std::io::Write;

use serde_json::json;

use crate::common::{Harness, call, ok, text};

/// Fill the file system holding `dir` to its last byte; the filler file.
fn fill(dir: &std::path::Path) -> std::path::PathBuf {
    let filler = dir.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let block = vec![0u8; 256 * 1024];
    loop {
        if f.write_all(&block).is_err() {
            break;
        }
    }
    for size in [4096usize, 512, 1] {
        let small = vec![0u8; size];
        while f.write_all(&small).is_ok() {}
    }
    let _ = f.sync_all();
    filler
}

fn fsck(h: &Harness, r: &scoped_repo_mcp::model::RepoId) {
    let out = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(h.store.git_dir(r))
        .args(["fsck", "--strict", "--no-dangling"])
        .output()
        .unwrap();
    assert!(out.status.success(), "git fsck: {out:?}");
}

/// The small file system the test runs on; unmounted on drop when the test mounted it.
enum SmallFs {
    Given(std::path::PathBuf),
    Mounted(tempfile::TempDir),
}

impl SmallFs {
    fn find() -> Option<Self> {
        if let Ok(root) = std::env::var("SCOPED_REPO_SMALL_FS") {
            return Some(SmallFs::Given(root.into()));
        }
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!(
                "skipped: not root, so no small file system can be mounted; set SCOPED_REPO_SMALL_FS to a directory on a small tmpfs to run it"
            );
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64m", "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "running as root, yet a 64 MiB tmpfs could not be mounted at {}: {}",
            dir.path().display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Some(SmallFs::Mounted(dir))
    }

    fn path(&self) -> &std::path::Path {
        match self {
            SmallFs::Given(p) => p,
            SmallFs::Mounted(d) => d.path(),
        }
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        if let SmallFs::Mounted(d) = self {
            // Lazily: a server the test started may still be closing its files.
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(d.path())
                .status();
        }
    }
}

/// A failed write must say the disk is full, not the vague internal error.
fn clear_or_done(answer: &rmcp::model::CallToolResult) -> bool {
    answer.is_error != Some(true) || text(answer).contains("disk holding the store is full")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_changes_nothing_and_everything_works_once_space_is_freed() {
    let Some(small) = SmallFs::find() else {
        return;
    };
    // Declared after `small`, so dropped (and its files removed) before the unmount.
    let h = Harness::new_in(small.path());
    let r = h.repo(&[("a.txt", "alpha\n")]);
    let id = r.to_string();
    let c = h.client_for(&[r]).await;
    ok(&call(&c, "search_repo", json!({"repo_id": id, "query": "alpha"})).await);
    let head = h.store.head(&r).unwrap();
    let tokens = h.store.tokens().unwrap().len();

    let filler = fill(h.data_dir());
    let big = "text that will not fit\n".repeat(40_000);
    let update = call(
        &c,
        "update_repo_files",
        json!({"repo_id": id, "operations": [{"type": "write", "path": "b.txt", "content": big}]}),
    )
    .await;
    assert_eq!(
        update.is_error,
        Some(true),
        "a 900 KiB write fit on a full disk"
    );
    assert!(clear_or_done(&update), "{}", text(&update));
    let mint = call(
        &c,
        "create_scoped_token",
        json!({"name": "full", "repo_ids": [id], "ttl_seconds": 60}),
    )
    .await;
    assert!(clear_or_done(&mint), "{}", text(&mint));
    // Reads still answer.
    ok(&call(&c, "read_file", json!({"repo_id": id, "path": "a.txt"})).await);
    assert_eq!(
        h.store.head(&r).unwrap(),
        head,
        "a failed update moved the head"
    );
    fsck(&h, &r);
    scoped_repo_mcp::store::Store::open(h.data_dir(), Default::default())
        .expect("the database opens on a full disk");

    std::fs::remove_file(filler).unwrap();
    let done = ok(&call(
        &c,
        "update_repo_files",
        json!({"repo_id": id, "operations": [{"type": "write", "path": "b.txt", "content": "fits now\n"}]}),
    )
    .await);
    assert_eq!(done["committed"], true);
    ok(&call(
        &c,
        "create_scoped_token",
        json!({"name": "after", "repo_ids": [id], "ttl_seconds": 60}),
    )
    .await);
    assert!(h.store.tokens().unwrap().len() > tokens);
    let found = ok(&call(
        &c,
        "search_repo",
        json!({"repo_id": id, "query": "fits now"}),
    )
    .await);
    assert_eq!(found["hits"].as_array().unwrap().len(), 1);
    fsck(&h, &r);
}
