//! The few fields a history walk reads, from git objects' raw bytes: a commit's tree,
//! parents, commit time, author's name and message, and one named entry of a tree. libgit2's lookups
//! parse the whole object (every entry of a tree, each signature and the message of a
//! commit) and keep it in the handle's object cache; a walk that only asks where a
//! path's entry points reads thousands of objects once each, so the parse and the
//! cache's bookkeeping were much of its cost.

use git2::{ObjectType, Odb, Oid, Repository};

use crate::store::{StoreError, git};

/// What a walk needs of a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CommitHeader {
    pub tree: Oid,
    pub parents: Vec<Oid>,
    /// The committer's time, in seconds since the epoch (as `Commit::time`).
    pub time: i64,
    /// The author's name, as `Signature::name_bytes`.
    pub author: Vec<u8>,
    /// Everything after the header, as `Commit::message_bytes`.
    pub message: Vec<u8>,
}

/// The header of the commit `id`. A commit whose header this reader cannot make out
/// is read through libgit2, which answers it or says what is wrong with it.
pub(super) fn commit_header(
    repo: &Repository,
    odb: &Odb<'_>,
    id: Oid,
) -> Result<CommitHeader, StoreError> {
    let object = odb.read(id).map_err(git::git_err)?;
    if object.kind() == ObjectType::Commit
        && let Some(header) = parse_commit_header(object.data())
    {
        return Ok(header);
    }
    let commit = repo.find_commit(id).map_err(git::git_err)?;
    Ok(CommitHeader {
        tree: commit.tree_id(),
        parents: commit.parent_ids().collect(),
        time: commit.time().seconds(),
        author: commit.author().name_bytes().to_vec(),
        message: commit.message_bytes().to_vec(),
    })
}

/// The entry named `name` in the tree `tree`: its id and mode. An object that is not a
/// tree, or a tree this reader cannot make out, is read through libgit2.
pub(super) fn tree_entry(
    repo: &Repository,
    odb: &Odb<'_>,
    tree: Oid,
    name: &str,
) -> Result<Option<(Oid, u32)>, StoreError> {
    let object = odb.read(tree).map_err(git::git_err)?;
    if object.kind() == ObjectType::Tree
        && let Some(found) = find_entry(object.data(), name.as_bytes())
    {
        return Ok(found);
    }
    let tree = repo.find_tree(tree).map_err(git::git_err)?;
    Ok(tree.get_name(name).map(|e| (e.id(), e.filemode() as u32)))
}

/// Whether a mode is a directory's.
pub(super) fn is_dir_mode(mode: u32) -> bool {
    mode & 0o170000 == 0o040000
}

fn hex_oid(hex: &[u8]) -> Option<Oid> {
    if hex.len() != 40 {
        return None;
    }
    Oid::from_str(std::str::from_utf8(hex).ok()?).ok()
}

/// The header of a commit object's bytes; `None` when they are not laid out as git
/// writes them.
pub(super) fn parse_commit_header(data: &[u8]) -> Option<CommitHeader> {
    let mut tree = None;
    let mut parents = Vec::new();
    let mut author = None;
    for line in data.split(|b| *b == b'\n') {
        if line.is_empty() {
            // The end of the header, with no committer line.
            return None;
        }
        if let Some(hex) = line.strip_prefix(b"tree ") {
            tree = Some(hex_oid(hex)?);
        } else if let Some(hex) = line.strip_prefix(b"parent ") {
            parents.push(hex_oid(hex)?);
        } else if let Some(who) = line.strip_prefix(b"author ") {
            author = Some(signature_name(who)?);
        } else if let Some(who) = line.strip_prefix(b"committer ") {
            signature_name(who)?;
            // `Name <email> SECONDS ZONE`: the time follows the last `>`.
            let after = &who[memchr::memrchr(b'>', who)? + 1..];
            let seconds = after.split(|b| *b == b' ').find(|f| !f.is_empty())?;
            let time = std::str::from_utf8(seconds).ok()?.parse().ok()?;
            // As libgit2 reads it: the message follows the first empty line, and is
            // empty without one.
            let message = memchr::memmem::find(data, b"\n\n").map_or(&[][..], |at| &data[at + 2..]);
            return Some(CommitHeader {
                tree: tree?,
                parents,
                time,
                author: author?.to_vec(),
                message: message.to_vec(),
            });
        }
    }
    None
}

/// The name of a signature line's `Name <email> SECONDS ZONE`, as libgit2 reads it:
/// what comes before the last `<`, with the spaces around it trimmed.
fn signature_name(who: &[u8]) -> Option<&[u8]> {
    let lt = memchr::memrchr(b'<', who)?;
    let gt = memchr::memrchr(b'>', who)?;
    if gt <= lt {
        return None;
    }
    Some(who[..lt].trim_ascii())
}

/// The entry named `name` among a tree object's bytes (`MODE SP NAME NUL ID`, each
/// id 20 bytes): `Some(None)` when there is none, `None` when the bytes are not a
/// tree as git writes them.
pub(super) fn find_entry(data: &[u8], name: &[u8]) -> Option<Option<(Oid, u32)>> {
    let mut rest = data;
    while !rest.is_empty() {
        let space = memchr::memchr(b' ', rest)?;
        let nul = space + 1 + memchr::memchr(0, &rest[space + 1..])?;
        let id_end = nul + 1 + 20;
        if id_end > rest.len() {
            return None;
        }
        if &rest[space + 1..nul] == name {
            let mode = u32::from_str_radix(std::str::from_utf8(&rest[..space]).ok()?, 8).ok()?;
            let id = Oid::from_bytes(&rest[nul + 1..id_end]).ok()?;
            return Some(Some((id, mode)));
        }
        rest = &rest[id_end..];
    }
    Some(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> (tempfile::TempDir, Repository) {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        (dir, repo)
    }

    #[test]
    fn a_commits_header_reads_as_libgit2_reads_it() {
        let (_d, repo) = repo();
        let blob = repo.blob(b"x\n").unwrap();
        let mut b = repo.treebuilder(None).unwrap();
        b.insert("f", blob, 0o100644).unwrap();
        let tree = repo.find_tree(b.write().unwrap()).unwrap();
        let sig = |t| git2::Signature::new("A", "a@b", &git2::Time::new(t, 120)).unwrap();
        let first = repo
            .commit(None, &sig(100), &sig(1_700_000_000), "one", &tree, &[])
            .unwrap();
        let first = repo.find_commit(first).unwrap();
        let second = repo
            .commit(
                None,
                &sig(5),
                &sig(1_600_000_007),
                "two\n\nbody",
                &tree,
                &[&first, &first],
            )
            .unwrap();
        let odb = repo.odb().unwrap();
        for id in [first.id(), second] {
            let c = repo.find_commit(id).unwrap();
            let h = commit_header(&repo, &odb, id).unwrap();
            assert_eq!(h.tree, c.tree_id());
            assert_eq!(h.parents, c.parent_ids().collect::<Vec<_>>());
            assert_eq!(h.time, c.time().seconds());
            assert_eq!(h.author, c.author().name_bytes());
            assert_eq!(h.message, c.message_bytes());
        }
        assert_eq!(
            commit_header(&repo, &odb, second).unwrap().time,
            1_600_000_007
        );
    }

    #[test]
    fn a_commit_header_not_as_git_writes_it_is_not_guessed() {
        let tree = "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n";
        assert_eq!(parse_commit_header(tree.as_bytes()), None);
        let no_time = format!("{tree}author a <b> 1 +0000\ncommitter a <b>\n\nmsg");
        assert_eq!(parse_commit_header(no_time.as_bytes()), None);
        let short = "tree 4b825dc6\ncommitter a <b> 1 +0000\n";
        assert_eq!(parse_commit_header(short.as_bytes()), None);
        let ok = format!("{tree}author a <b> 1 +0000\ncommitter a <b> 42 +0000\n\nmsg");
        let h = parse_commit_header(ok.as_bytes()).unwrap();
        assert_eq!((h.parents.len(), h.time), (0, 42));
        assert_eq!((&h.author[..], &h.message[..]), (&b"a"[..], &b"msg"[..]));
        let no_author = format!("{tree}committer a <b> 42 +0000\n\nmsg");
        assert_eq!(parse_commit_header(no_author.as_bytes()), None);
        let no_email = format!("{tree}author a 1 +0000\ncommitter a <b> 42 +0000\n\nmsg");
        assert_eq!(parse_commit_header(no_email.as_bytes()), None);
    }

    #[test]
    fn a_trees_entries_are_found_by_exact_name() {
        let (_d, repo) = repo();
        let blob = repo.blob(b"x\n").unwrap();
        let mut inner = repo.treebuilder(None).unwrap();
        inner.insert("a", blob, 0o100644).unwrap();
        let inner = inner.write().unwrap();
        let mut b = repo.treebuilder(None).unwrap();
        // `a.b` sorts between the directory `a` (as `a/`) and `a-b` in git's order.
        b.insert("a", inner, 0o040000).unwrap();
        b.insert("a-b", blob, 0o100755).unwrap();
        b.insert("a.b", blob, 0o120000).unwrap();
        b.insert("z", blob, 0o100644).unwrap();
        let tree = b.write().unwrap();
        let odb = repo.odb().unwrap();
        let t = repo.find_tree(tree).unwrap();
        for name in ["a", "a-b", "a.b", "z", "b", "", "a/"] {
            let ours = tree_entry(&repo, &odb, tree, name).unwrap();
            let theirs = t.get_name(name).map(|e| (e.id(), e.filemode() as u32));
            assert_eq!(ours, theirs, "{name}");
        }
        assert!(is_dir_mode(
            tree_entry(&repo, &odb, tree, "a").unwrap().unwrap().1
        ));
        assert!(!is_dir_mode(
            tree_entry(&repo, &odb, tree, "z").unwrap().unwrap().1
        ));
        // Cut short, the bytes are not taken as a tree.
        let raw = odb.read(tree).unwrap();
        let data = raw.data();
        assert_eq!(find_entry(&data[..data.len() - 3], b"z"), None);
    }
}
