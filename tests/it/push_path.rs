//! The git push and fetch path under attack, driven with the real `git` CLI and raw
//! HTTP against `api`: trickled, revoked, inflated, malformed and overlong pushes;
//! objects no commit references, in a push, in the repo or in a git source's fetch;
//! objects served by id; and `repo check` naming a spoiled repo.

use std::path::Path;
use std::time::Duration;

use scoped_repo_mcp::model::{Change, FileOp, RepoId, UpdateSpec};
use scoped_repo_mcp::paths::RepoPath;
use scoped_repo_mcp::store::StoreError;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::api::ApiChild;
use crate::common::{BIN, Harness};
use crate::git_http::{GitUser, api_on, blob, token, working_copy};

/// `git fsck --strict` passes on the repo.
fn fsck_strict(h: &Harness, id: &RepoId) {
    let out = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(h.store.git_dir(id))
        .args(["fsck", "--strict", "--no-progress"])
        .output()
        .unwrap();
    assert!(out.status.success(), "fsck --strict: {out:?}");
}

/// Commit `path` = `content` in the working copy; the new commit's id.
fn commit_file(git: &GitUser, wc: &Path, path: &str, content: &[u8]) -> String {
    std::fs::write(wc.join(path), content).unwrap();
    git.ok(wc, &["add", "."]);
    git.ok(wc, &["commit", "--quiet", "-m", &format!("add {path}")]);
    git.ok(wc, &["rev-parse", "HEAD"])
}

fn pkt(s: &str) -> String {
    format!("{:04x}{s}", s.len() + 4)
}

/// The request git sends to push `new` onto `old`: the command list, then a pack of
/// what `new` brings, plus the `extra` objects.
fn push_body(wc: &Path, old: &str, new: &str, extra: &[&str]) -> Vec<u8> {
    let listed = std::process::Command::new("git")
        .args(["rev-list", "--objects", new, &format!("^{old}")])
        .current_dir(wc)
        .output()
        .unwrap();
    let mut objects = String::from_utf8(listed.stdout).unwrap();
    for e in extra {
        objects.push_str(&format!("{e}\n"));
    }
    let pack =
        crate::common::git_fed(wc, &["pack-objects", "--stdout", "-q"], objects.as_bytes()).stdout;
    let mut body = pkt(&format!(
        "{old} {new} refs/heads/main\0report-status side-band-64k\n"
    ))
    .into_bytes();
    body.extend_from_slice(b"0000");
    body.extend_from_slice(&pack);
    body
}

/// Start a push over a raw connection, sending its headers and the first `sent`
/// bytes of `body`.
async fn start_push(
    api: &ApiChild,
    id: &RepoId,
    credential: &str,
    body: &[u8],
    sent: usize,
) -> TcpStream {
    use base64::Engine;
    let addr = api
        .base
        .trim_start_matches("http://")
        .trim_end_matches("/v1");
    let mut socket = TcpStream::connect(addr).await.unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("token:{credential}"));
    let head = format!(
        "POST /v1/repo/{id}.git/git-receive-pack HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Basic {auth}\r\nContent-Type: application/x-git-receive-pack-request\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(&body[..sent]).await.unwrap();
    socket.flush().await.unwrap();
    socket
}

/// Send the rest of the body; the answer's status and its text (chunked or not).
async fn finish_push(mut socket: TcpStream, rest: &[u8]) -> (u16, String) {
    socket.write_all(rest).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), socket.read_to_end(&mut answer))
        .await
        .expect("the push was answered")
        .unwrap();
    let status = String::from_utf8_lossy(&answer)
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, readable(&answer))
}

/// A raw HTTP answer as someone reads it: its head, then its body with the chunked
/// transfer coding and git's pkt-line and side-band framing taken off. git relays the
/// hook's words in side-band packets cut wherever its pipe reads stopped, so a message
/// (an object id included) may be split across packets until they are joined here.
fn readable(raw: &[u8]) -> String {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(raw.len(), |i| i + 4);
    let (head, mut body) = (&raw[..split], raw[split..].to_vec());
    if String::from_utf8_lossy(head)
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    let text = match pkt_lines(&body) {
        Some(lines) => {
            let (mut band, mut text) = (Vec::new(), Vec::new());
            for line in lines {
                match line.first() {
                    Some(1) => band.extend_from_slice(&line[1..]),
                    Some(2 | 3) => text.extend_from_slice(&line[1..]),
                    _ => text.extend_from_slice(line),
                }
            }
            for line in pkt_lines(&band).unwrap_or_default() {
                text.extend_from_slice(line);
            }
            text
        }
        None => body,
    };
    format!(
        "{}{}",
        String::from_utf8_lossy(head),
        String::from_utf8_lossy(&text)
    )
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = body.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&body[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 || body.len() < eol + 2 + size {
            break;
        }
        out.extend_from_slice(&body[eol + 2..eol + 2 + size]);
        body = &body[(eol + 4 + size).min(body.len())..];
    }
    out
}

/// The payloads of a run of pkt-lines (flushes skipped), or `None` when `bytes` is not
/// one.
fn pkt_lines(mut bytes: &[u8]) -> Option<Vec<&[u8]>> {
    let mut lines = Vec::new();
    while bytes.len() >= 4 {
        let len = usize::from_str_radix(std::str::from_utf8(&bytes[..4]).ok()?, 16).ok()?;
        if len < 4 {
            bytes = &bytes[4..];
            continue;
        }
        lines.push(bytes.get(4..len)?);
        bytes = &bytes[len..];
    }
    Some(lines)
}

/// POST `body` to the repo's `service`; the status and the answer's text.
async fn post(
    api: &ApiChild,
    id: &RepoId,
    credential: &str,
    service: &str,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let mut req = reqwest::Client::new()
        .post(format!("{}/repo/{id}.git/{service}", api.base))
        .basic_auth("token", Some(credential))
        .header("content-type", format!("application/x-{service}-request"))
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.text().await.unwrap_or_default())
}

fn write_spec(path: &str, content: &str) -> UpdateSpec {
    UpdateSpec {
        change: Change::Operations(vec![FileOp::Write {
            path: RepoPath::parse(path).unwrap(),
            content: content.into(),
        }]),
        expected_head: None,
        message: Some(format!("write {path}")),
        control: Default::default(),
        visible: None,
    }
}

// A push whose body trickled in held the repo's writer lock for as long as it lasted.
#[tokio::test(flavor = "multi_thread")]
async fn a_trickling_push_held_the_writer_lock() {
    let h = Harness::new();
    let id = h.repo(&[("a.txt", "a\n")]);
    let api = api_on(&h).await;
    let git = GitUser::new();
    let t = token(&h, id);
    let wc = working_copy(&h, &git, &api, &id, "wc");
    let head = h.store.head(&id).unwrap();
    let new = commit_file(&git, &wc, "b.txt", b"b\n");
    let body = push_body(&wc, &head, &new, &[]);
    let socket = start_push(&api, &id, &t, &body, body.len() / 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // While half the push is in, an update of the same repo from another process goes
    // through at once.
    let store = h.store.clone();
    let updated = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::task::spawn_blocking(move || store.update(&id, &write_spec("c.txt", "c\n"), "t")),
    )
    .await
    .expect("the update waited for the push's upload")
    .unwrap()
    .unwrap();

    // The push, whole now, finds `main` moved under it and is refused in words.
    let (status, answer) = finish_push(socket, &body[body.len() / 2..]).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("ng refs/heads/main"), "{answer}");
    assert!(answer.contains("moved"), "{answer}");
    assert_eq!(h.store.head(&id).unwrap(), updated.head);
    fsck_strict(&h, &id);
}

// A push admitted before its token was revoked still landed.
#[tokio::test(flavor = "multi_thread")]
async fn a_push_admitted_before_its_token_was_revoked_landed() {
    let h = Harness::new();
    let id = h.repo(&[("a.txt", "a\n")]);
    let api = api_on(&h).await;
    let git = GitUser::new();
    let t = token(&h, id);
    let wc = working_copy(&h, &git, &api, &id, "wc");
    let head = h.store.head(&id).unwrap();
    let new = commit_file(&git, &wc, "b.txt", b"b\n");
    let body = push_body(&wc, &head, &new, &[]);
    let socket = start_push(&api, &id, &t, &body, body.len() / 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(h.store.revoke_token(&t).unwrap().is_some());

    let (status, answer) = finish_push(socket, &body[body.len() / 2..]).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("ng refs/heads/main"), "{answer}");
    assert!(
        answer
            .contains("the credential no longer admits this push: the repo token has been revoked"),
        "{answer}"
    );
    assert_eq!(h.store.head(&id).unwrap(), head);
    // The push's record, written before its answer ended, says the gate refused it.
    let push = h
        .store
        .audit(&scoped_repo_mcp::store::AuditQuery {
            repo: Some(id.to_string()),
            limit: 100,
            ..Default::default()
        })
        .unwrap()
        .into_iter()
        .find(|r| r.action.ends_with("/git-receive-pack"))
        .expect("a record of the push");
    assert_eq!(push.outcome, "refused", "{push:?}");
    assert!(
        push.reason
            .as_deref()
            .unwrap_or_default()
            .contains("revoked"),
        "{push:?}"
    );
    assert!(push.head_after.is_none(), "{push:?}");
    fsck_strict(&h, &id);
}

// A gzip push body was inflated without limit: a few MB drove git to gigabytes.
#[tokio::test(flavor = "multi_thread")]
async fn a_gzip_push_body_was_inflated_without_limit() {
    let h = Harness::new();
    let id = h.repo(&[("a.txt", "a\n")]);
    let api = api_on(&h).await;
    let t = token(&h, id);
    let head = h.store.head(&id).unwrap();
    let zero = "0".repeat(40);
    // A command list, then 160 MiB of zeros where the pack goes, gzipped to ~160 KB.
    let script = format!(
        "{{ printf '%s0000' '{}'; head -c 167772160 /dev/zero; }} | gzip -1",
        pkt(&format!("{head} {zero} refs/heads/main\0report-status\n")).replace('\0', "\\0")
    );
    let gz = std::process::Command::new("sh")
        .args(["-c", &script])
        .output()
        .unwrap()
        .stdout;
    assert!(gz.len() < 1 << 20, "{}", gz.len());
    let (status, answer) = post(
        &api,
        &id,
        &t,
        "git-receive-pack",
        gz,
        &[("content-encoding", "gzip")],
    )
    .await;
    assert_eq!(status, 413, "{answer}");
    assert!(
        answer.contains("bytes (decompressed), the most this server takes in one request"),
        "{answer}"
    );
    assert_eq!(h.store.head(&id).unwrap(), head);
    fsck_strict(&h, &id);
}

// A push's command list went to git whole, however many commands it held.
#[tokio::test(flavor = "multi_thread")]
async fn a_push_of_many_commands_went_to_git_whole() {
    let h = Harness::new();
    let id = h.repo(&[("a.txt", "a\n")]);
    let api = api_on(&h).await;
    let t = token(&h, id);
    let head = h.store.head(&id).unwrap();
    let zero = "0".repeat(40);
    let mut body = pkt(&format!("{zero} {head} refs/heads/b0\0report-status\n"));
    for i in 1..1000 {
        body.push_str(&pkt(&format!("{zero} {head} refs/heads/b{i}\n")));
    }
    body.push_str("0000");
    let (status, answer) = post(&api, &id, &t, "git-receive-pack", body.into_bytes(), &[]).await;
    assert_eq!(status, 413, "{answer}");
    assert!(answer.contains("at most 4 ref updates"), "{answer}");
    assert_eq!(h.store.head(&id).unwrap(), head);
}

// Malformed pkt-lines were answered 200 with an empty body.
#[tokio::test(flavor = "multi_thread")]
async fn malformed_pkt_lines_were_answered_200_and_empty() {
    let h = Harness::new();
    let id = h.repo(&[("a.txt", "a\n")]);
    let api = api_on(&h).await;
    let t = token(&h, id);
    for service in ["git-receive-pack", "git-upload-pack"] {
        let (status, answer) = post(&api, &id, &t, service, b"zzzzhello".to_vec(), &[]).await;
        assert_eq!(status, 400, "{service}: {answer}");
        assert!(
            answer.contains("malformed git request: a pkt-line length that is not four hex digits"),
            "{service}: {answer}"
        );
    }
}

// A push could carry objects no pushed commit references; they were kept unchecked.
#[tokio::test(flavor = "multi_thread")]
async fn objects_no_pushed_commit_references_were_kept() {
    let h = Harness::new();
    let id = h.repo(&[("a.txt", "a\n")]);
    let api = api_on(&h).await;
    let git = GitUser::new();
    let t = token(&h, id);
    let wc = working_copy(&h, &git, &api, &id, "wc");
    let head = h.store.head(&id).unwrap();
    let stray = blob(&git, &wc, b"\0\x01binary, referenced by nothing\0");
    let new = commit_file(&git, &wc, "b.txt", b"b\n");
    let body = push_body(&wc, &head, &new, &[&stray]);
    let socket = start_push(&api, &id, &t, &body, 0).await;
    let (status, answer) = finish_push(socket, &body).await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer.contains("the push carries 1 object(s) that no pushed commit references"),
        "{answer}"
    );
    assert!(answer.contains(&stray), "{answer}");
    assert_eq!(h.store.head(&id).unwrap(), head);
    let repo = git2::Repository::open_bare(h.store.git_dir(&id)).unwrap();
    assert!(
        !repo
            .odb()
            .unwrap()
            .exists(git2::Oid::from_str(&stray).unwrap())
    );
    // The same commit without the stray object lands.
    git.ok(&wc, &["push", "--quiet", "origin", "main"]);
    assert_eq!(h.store.head(&id).unwrap(), new);
    fsck_strict(&h, &id);
}

// The history check skipped blobs the repo already held, so a file kept there earlier
// (then a binary one, refused in those days; now one over the per-file cap) reached
// `main` through a later push.
#[tokio::test(flavor = "multi_thread")]
async fn a_blob_the_repo_already_held_skipped_the_check() {
    let h = Harness::new();
    let id = h.repo(&[("a.txt", "a\n")]);
    let api =
        crate::api::start_api_with(&h, std::process::Stdio::null(), &["--max-file-size", "64"])
            .await;
    let git = GitUser::new();
    let wc = working_copy(&h, &git, &api, &id, "wc");
    let head = h.store.head(&id).unwrap();
    let held = [b'x'; 100];
    git2::Repository::open_bare(h.store.git_dir(&id))
        .unwrap()
        .blob(&held)
        .unwrap();
    commit_file(&git, &wc, "kept.bin", &held);
    let err = git.fails(&wc, &["push", "origin", "main"]);
    assert!(
        err.contains("remote: push refused, nothing changed: commit"),
        "{err}"
    );
    assert!(
        err.contains("adds `kept.bin`: 100 bytes, over the limit of 64 bytes a file"),
        "{err}"
    );
    assert_eq!(h.store.head(&id).unwrap(), head);
}

// Protocol v2 served any object by id, one `main` does not reach included.
#[tokio::test(flavor = "multi_thread")]
async fn objects_main_does_not_reach_were_served_by_id() {
    let h = Harness::new();
    let id = h.repo(&[("a.txt", "a\n")]);
    let api = api_on(&h).await;
    let git = GitUser::new();
    let wc = working_copy(&h, &git, &api, &id, "wc");
    // A commit in the repo that no ref reaches.
    let hidden = {
        let repo = git2::Repository::open_bare(h.store.git_dir(&id)).unwrap();
        let blob = repo.blob(b"secret\n").unwrap();
        let mut tb = repo.treebuilder(None).unwrap();
        tb.insert("secret.txt", blob, 0o100644).unwrap();
        let tree = repo.find_tree(tb.write().unwrap()).unwrap();
        let sig = git2::Signature::now("x", "x@example.com").unwrap();
        repo.commit(None, &sig, &sig, "hidden", &tree, &[])
            .unwrap()
            .to_string()
    };
    for version in ["2", "0"] {
        let err = git.fails(
            &wc,
            &[
                "-c",
                &format!("protocol.version={version}"),
                "fetch",
                "origin",
                &hidden,
            ],
        );
        // In v0 git itself does not ask for what the server does not advertise.
        assert!(
            err.contains(&format!("not our ref {hidden}"))
                || (version == "0"
                    && err.contains("Server does not allow request for unadvertised object")),
            "protocol v{version}: {err}"
        );
    }
    // What `main` reaches is served by id, as before.
    let head = h.store.head(&id).unwrap();
    git.ok(&wc, &["-c", "protocol.version=2", "fetch", "origin", &head]);
    fsck_strict(&h, &id);
}

// A git source's fetch could bring objects its commits do not reference; they joined
// the repo unchecked.
#[test]
fn objects_a_git_source_sent_beyond_its_history_were_kept() {
    let h = Harness::new();
    let made = h.store.create_from_history(Default::default(), |dir| {
        let repo = git2::Repository::open_bare(dir).unwrap();
        let file = repo.blob(b"fine\n").unwrap();
        repo.blob(b"\0binary nobody references\0").unwrap();
        let mut tb = repo.treebuilder(None).unwrap();
        tb.insert("ok.txt", file, 0o100644).unwrap();
        let tree = repo.find_tree(tb.write().unwrap()).unwrap();
        let sig = git2::Signature::now("x", "x@example.com").unwrap();
        let c = repo.commit(None, &sig, &sig, "one", &tree, &[]).unwrap();
        repo.reference("refs/fetched/tip", c, true, "fetched")
            .unwrap();
        Ok::<(), StoreError>(())
    });
    let err = made.expect_err("a fetch with a stray object was taken");
    assert!(
        err.to_string()
            .contains("the git source sent 1 object(s) that no fetched commit references"),
        "{err}"
    );
}

// Nothing could tell which stored repos a bad push had already spoiled.
#[tokio::test(flavor = "multi_thread")]
async fn repo_check_names_a_spoiled_repo() {
    let h = Harness::new();
    let good = h.repo(&[("a.txt", "a\n")]);
    let bad = h.repo(&[("a.txt", "a\n")]);
    let check = |args: &[&str]| {
        std::process::Command::new(BIN)
            .arg("--data-dir")
            .arg(h.data_dir())
            .args(["repo", "check"])
            .args(args)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    };
    let clean = check(&[]);
    assert!(clean.status.success(), "{clean:?}");
    let said = String::from_utf8_lossy(&clean.stdout);
    assert!(
        said.contains(&format!("{good}\tok")) && said.contains(&format!("{bad}\tok")),
        "{said}"
    );

    // `main` of one repo moves to a commit with a symbolic link, as a push spoiled it.
    {
        let repo = git2::Repository::open_bare(h.store.git_dir(&bad)).unwrap();
        let head = repo.head().unwrap().peel_to_commit().unwrap();
        let target = repo.blob(b"/etc/passwd").unwrap();
        let mut tb = repo.treebuilder(Some(&head.tree().unwrap())).unwrap();
        tb.insert("image.bin", target, 0o120000).unwrap();
        let tree = repo.find_tree(tb.write().unwrap()).unwrap();
        let sig = git2::Signature::now("x", "x@example.com").unwrap();
        repo.commit(
            Some("refs/heads/main"),
            &sig,
            &sig,
            "spoil",
            &tree,
            &[&head],
        )
        .unwrap();
    }
    let spoiled = check(&[]);
    assert!(!spoiled.status.success(), "{spoiled:?}");
    let said = String::from_utf8_lossy(&spoiled.stdout);
    assert!(said.contains(&format!("{good}\tok")), "{said}");
    assert!(said.contains(&format!("{bad}\tFAILED")), "{said}");
    assert!(
        said.contains("adds `image.bin`: symbolic links are not accepted"),
        "{said}"
    );
    assert!(said.contains("repair:"), "{said}");
    let err = String::from_utf8_lossy(&spoiled.stderr);
    assert!(err.contains("1 of 2 repos failed the check"), "{err}");
    assert!(check(&[&good.to_string()]).status.success());
}
