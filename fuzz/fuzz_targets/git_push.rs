//! Fuzz target: the rules a `git push` obeys. Any tree, written as raw git objects (so
//! with names and modes git's own tools would never write: `.GIT`, `..`, empty names,
//! duplicates, unsorted entries, symlinks, submodules, odd modes), pushed as a commit on
//! top of `main`: when the push check accepts it, every file of the pushed tree is one
//! the store could hold. Also: receive-pack's ref-update lines, parsed from any text,
//! never panic.
//!
//! The oracle walks the pushed tree itself, entry by entry, so a file the check's diff
//! does not see (a duplicate name, an entry out of order) still counts.
//!
//! Input: a count byte, then that many entries, each a mode byte (an index into
//! `MODES`), a path length byte, the path, a content length byte and the content (the
//! length is multiplied by 9 to reach the size limit); what is left is the ref-update
//! text.
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use git2::{ObjectType, Oid, Repository, Signature, TreeWalkMode, TreeWalkResult};
use libfuzzer_sys::fuzz_target;
use scoped_repo_mcp::paths::RepoPath;
use scoped_repo_mcp::rules::Limits;
use scoped_repo_mcp::store::push::{RefUpdate, check_push};

const MODES: &[&[u8]] = &[
    b"100644", b"100755", b"120000", b"160000", b"40000", b"100664", b"644", b"0100644",
];

const LIMITS: Limits = Limits {
    max_file_bytes: 1024,
    max_update_bytes: 3000,
    max_operations: 6,
    max_repo_bytes: 1 << 20,
};

/// The repo pushed into, holding `main` at `base`, shared by every input (a refused
/// push never changes it).
struct Fixture {
    dir: tempfile::TempDir,
    main: std::path::PathBuf,
    base: Oid,
}

/// One input's quarantine, as receive-pack keeps one per push: its objects go to
/// `incoming`, so the check sees them as new, and `view` reads both, for the oracle.
/// A quarantine shared across inputs would hold earlier inputs' objects, which no later
/// push references, and the check refuses such a push whole.
struct Quarantine {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    incoming: Repository,
    view: Repository,
}

impl Quarantine {
    fn new(f: &Fixture) -> Self {
        let dir = tempfile::tempdir_in(f.dir.path()).expect("a quarantine directory");
        let incoming = Repository::init_bare(dir.path().join("incoming.git")).unwrap();
        let path = incoming.path().join("objects");
        let view = Repository::open_bare(&f.main).unwrap();
        view.odb()
            .unwrap()
            .add_disk_alternate(&path.to_string_lossy())
            .unwrap();
        Self {
            _dir: dir,
            path,
            incoming,
            view,
        }
    }
}

// libFuzzer runs one input at a time, on one thread: the handles are never shared.
struct Shared(Fixture);
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Shared> = OnceLock::new();
    &FIXTURE
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let main = dir.path().join("main.git");
            let base = {
                let repo = Repository::init_bare(&main).expect("a bare repository");
                let blob = repo.blob(b"fn main() {}\n").unwrap();
                let mut tb = repo.treebuilder(None).unwrap();
                tb.insert("main.rs", blob, 0o100644).unwrap();
                let tree = repo.find_tree(tb.write().unwrap()).unwrap();
                let sig = Signature::new("t", "t@example.invalid", &git2::Time::new(0, 0)).unwrap();
                repo.commit(Some("refs/heads/main"), &sig, &sig, "base", &tree, &[])
                    .unwrap()
            };
            Shared(Fixture { dir, main, base })
        })
        .0
}

struct Entry {
    mode: &'static [u8],
    path: Vec<u8>,
    content: Vec<u8>,
}

fn parse(data: &[u8]) -> (Vec<Entry>, &[u8]) {
    let mut rest = data;
    let mut take = |n: usize| -> Option<&[u8]> {
        if rest.len() < n {
            return None;
        }
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Some(head)
    };
    let mut entries = Vec::new();
    let count = take(1).map_or(0, |b| b[0] % 9);
    for _ in 0..count {
        let Some(mode) = take(1).map(|b| MODES[b[0] as usize % MODES.len()]) else {
            break;
        };
        let Some(path) = take(1)
            .and_then(|b| take(b[0] as usize % 64))
            .map(<[u8]>::to_vec)
        else {
            break;
        };
        let Some(content) = take(1).map(|b| {
            let n = b[0] as usize * 9;
            // Content past the input's end repeats a letter, to reach the size limits.
            vec![b'x'; n]
        }) else {
            break;
        };
        let content = if let Some(own) = take(content.len().min(32)) {
            let mut c = own.to_vec();
            c.extend_from_slice(&content[c.len()..]);
            c
        } else {
            content
        };
        entries.push(Entry {
            mode,
            path,
            content,
        });
    }
    (entries, rest)
}

/// Write a tree of `entries` (paths split on `/`) as raw objects, keeping names and
/// order as given.
fn write_tree(repo: &Repository, entries: &[(Vec<&[u8]>, &'static [u8], Oid)]) -> Oid {
    let mut order: Vec<&[u8]> = Vec::new();
    let mut groups: BTreeMap<&[u8], Vec<(Vec<&[u8]>, &'static [u8], Oid)>> = BTreeMap::new();
    let mut raw = Vec::new();
    for (parts, mode, oid) in entries {
        if parts.len() == 1 {
            raw.extend_from_slice(mode);
            raw.push(b' ');
            raw.extend_from_slice(parts[0]);
            raw.push(0);
            raw.extend_from_slice(oid.as_bytes());
        } else {
            if !groups.contains_key(parts[0]) {
                order.push(parts[0]);
            }
            groups
                .entry(parts[0])
                .or_default()
                .push((parts[1..].to_vec(), mode, *oid));
        }
    }
    for name in order {
        let sub = write_tree(repo, &groups[name]);
        raw.extend_from_slice(b"40000 ");
        raw.extend_from_slice(name);
        raw.push(0);
        raw.extend_from_slice(sub.as_bytes());
    }
    repo.odb().unwrap().write(ObjectType::Tree, &raw).unwrap()
}

fuzz_target!(|data: &[u8]| {
    let (entries, rest) = parse(data);
    let _ = RefUpdate::parse_lines(&String::from_utf8_lossy(rest));

    let f = fixture();
    let q = Quarantine::new(f);
    let odb = q.incoming.odb().unwrap();
    let mut leaves = Vec::new();
    for e in &entries {
        let oid = odb.write(ObjectType::Blob, &e.content).unwrap();
        leaves.push((
            e.path.split(|b| *b == b'/').collect::<Vec<_>>(),
            e.mode,
            oid,
        ));
    }
    let tree_id = write_tree(&q.incoming, &leaves);
    let commit = format!(
        "tree {tree_id}\nparent {}\nauthor t <t@example.invalid> 0 +0000\ncommitter t <t@example.invalid> 0 +0000\n\npushed\n",
        f.base
    );
    let pushed = odb.write(ObjectType::Commit, commit.as_bytes()).unwrap();
    let update = RefUpdate {
        old: f.base,
        new: pushed,
        name: "refs/heads/main".into(),
    };
    let accepted = check_push(&f.main, Some(&q.path), &[update], &LIMITS);
    if accepted.is_err() {
        return;
    }
    let repo = &q.view;
    let tree = repo
        .find_tree(tree_id)
        .expect("an accepted push's tree can be read");
    // Accepted: every entry of the pushed tree must be a file the store could hold.
    let mut problem = None;
    let walked = tree.walk(TreeWalkMode::PreOrder, |dir, entry| {
        let name = entry.name_bytes();
        let path = format!("{dir}{}", String::from_utf8_lossy(name));
        if entry.kind() == Some(ObjectType::Tree) {
            if RepoPath::parse(&format!("{path}/x")).is_err() && problem.is_none() {
                problem = Some(format!("directory `{path:?}` cannot hold a file"));
            }
            return TreeWalkResult::Ok;
        }
        let ok_mode = matches!(entry.filemode_raw(), 0o100644 | 0o100755 | 0o100664);
        let utf8 = std::str::from_utf8(name).is_ok();
        let parsed = RepoPath::parse(&path).is_ok();
        let content = repo.find_blob(entry.id()).ok();
        // Binary files are kept: only their size is checked.
        let in_limits = content
            .as_ref()
            .is_some_and(|b| b.content().len() <= LIMITS.max_file_bytes);
        if !(ok_mode && utf8 && parsed && in_limits) && problem.is_none() {
            problem = Some(format!(
                "`{path:?}` (mode {:o}): mode ok {ok_mode}, UTF-8 name {utf8}, path ok {parsed}, in limits {in_limits}",
                entry.filemode_raw()
            ));
        }
        TreeWalkResult::Ok
    });
    assert!(
        walked.is_ok(),
        "an accepted tree cannot be walked: {walked:?}"
    );
    assert!(
        problem.is_none(),
        "accepted a push holding {}",
        problem.unwrap()
    );
});
