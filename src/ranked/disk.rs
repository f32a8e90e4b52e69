//! The ranked index as bytes: what a process stores so that the next one loads the
//! index instead of building it.
//!
//! Layout (integers little-endian; `varint` is LEB128):
//! ```text
//! magic    8 bytes  "SRMRANK\n"
//! version  u32      FORMAT_VERSION
//! crc32    u32      of every byte after this field
//! length   u64      bytes of payload
//! head     20 bytes the commit the index describes
//! payload:
//!   terms    varint n, then n × (varint len, bytes); len 0 is a free id
//!   slots    varint s, then s × (varint len, path bytes, 20-byte blob id); len 0 is a free slot
//!   body, path, defs: s × document
//!   kept     varint k, then k × 20-byte commit id, oldest first
//!   messages varint m, then m × (path, document): each path's summed message terms
//!   touches  varint t, then t × (path, varint commits that changed it)
//!   pairs    varint q, then q × (path, varint r, r × (path, varint commits)), paths sorted
//! path     = varint len, bytes
//! document = varint pairs, then pairs × (varint term id delta, varint frequency)
//! ```
//! What can be derived is not stored: postings (from the documents) and the `msgs`
//! field (from the per-path message sums). Loading checks the magic, the version, the
//! length and the checksum, and every id against its table, so a damaged file is
//! refused rather than trusted.

use std::collections::HashSet;

use git2::Oid;

use super::dict::Dict;
use super::field::Field;
use super::{History, MAX_HISTORY_COMMITS, RankedIndex};

const MAGIC: &[u8; 8] = b"SRMRANK\n";
/// Bumped whenever the layout or the meaning of what it stores changes (the tokenizer's
/// terms included): a file of another version is rebuilt, not read.
pub const FORMAT_VERSION: u32 = 2;
const HEADER: usize = 8 + 4 + 4 + 8 + 20;

/// Why stored bytes were not loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not a stored ranked index.
    #[error("not a stored ranked index")]
    Magic,
    /// Stored by another version of the format.
    #[error("format version {0}, expected {FORMAT_VERSION}")]
    Version(u32),
    /// Shorter or longer than its header says: a write cut short, or appended to.
    #[error("{actual} bytes where the header says {expected}")]
    Length {
        /// What the header says.
        expected: u64,
        /// What there is.
        actual: u64,
    },
    /// The bytes changed since they were written.
    #[error("checksum mismatch")]
    Checksum,
    /// The checksum matched but the contents do not hold together.
    #[error("malformed contents: {0}")]
    Malformed(&'static str),
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn put_document(out: &mut Vec<u8>, doc: &[(u32, u32)]) {
    put_varint(out, doc.len() as u64);
    let mut prev = 0u32;
    for &(t, tf) in doc {
        put_varint(out, u64::from(t - prev));
        put_varint(out, u64::from(tf));
        prev = t;
    }
}

/// A cursor over stored bytes; every read is checked.
struct Reader<'a>(&'a [u8]);

type Read<T> = Result<T, DecodeError>;

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Read<&'a [u8]> {
        if self.0.len() < n {
            return Err(DecodeError::Malformed("a field runs past the end"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }

    fn varint(&mut self) -> Read<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.take(1)?[0];
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(DecodeError::Malformed("a number too long"))
    }

    /// A count of items each taking at least one byte: never more than the bytes left,
    /// so a damaged count cannot ask for a huge allocation.
    fn count(&mut self) -> Read<usize> {
        let n = self.varint()?;
        if n > self.0.len() as u64 {
            return Err(DecodeError::Malformed("a count larger than the file"));
        }
        Ok(n as usize)
    }

    fn u32(&mut self) -> Read<u32> {
        u32::try_from(self.varint()?).map_err(|_| DecodeError::Malformed("a number too large"))
    }

    fn str(&mut self) -> Read<&'a str> {
        let n = self.count()?;
        std::str::from_utf8(self.take(n)?).map_err(|_| DecodeError::Malformed("a name not UTF-8"))
    }

    fn oid(&mut self) -> Read<Oid> {
        Oid::from_bytes(self.take(20)?).map_err(|_| DecodeError::Malformed("a commit id"))
    }

    /// A path of a list sorted by path: not empty, and after `last` (then its new value).
    fn next_path(&mut self, last: &mut Option<String>) -> Read<String> {
        let p = self.str()?.to_string();
        if p.is_empty() || last.as_ref().is_some_and(|l| *l >= p) {
            return Err(DecodeError::Malformed("paths empty or out of order"));
        }
        *last = Some(p.clone());
        Ok(p)
    }

    /// A document of known term ids (`known[id]`), sorted.
    fn document(&mut self, known: &[bool]) -> Read<Vec<(u32, u32)>> {
        let n = self.count()?;
        let mut doc = Vec::with_capacity(n);
        let mut t = 0u32;
        for i in 0..n {
            let delta = self.u32()?;
            if i > 0 && delta == 0 {
                return Err(DecodeError::Malformed("a document's terms out of order"));
            }
            t = t
                .checked_add(delta)
                .filter(|&t| known.get(t as usize) == Some(&true))
                .ok_or(DecodeError::Malformed("an unknown term id"))?;
            doc.push((t, self.u32()?));
        }
        Ok(doc)
    }
}

/// The head a stored index describes, read from its header without checking the rest:
/// enough to decide whether loading it is worth trying.
pub fn stored_head(bytes: &[u8]) -> Option<Oid> {
    (bytes.len() >= HEADER && &bytes[..8] == MAGIC)
        .then(|| Oid::from_bytes(&bytes[24..44]).ok())
        .flatten()
}

impl RankedIndex {
    /// The index as bytes (see the module's documentation for the layout).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + 1024);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&[0; 4 + 8]);
        out.extend_from_slice(self.head.as_bytes());
        let terms = self.dict.by_id();
        put_varint(&mut out, terms.len() as u64);
        for t in terms {
            put_bytes(&mut out, t.unwrap_or("").as_bytes());
        }
        put_varint(&mut out, self.paths.len() as u64);
        for (p, b) in self.paths.iter().zip(&self.blobs) {
            match p {
                Some(p) => {
                    put_bytes(&mut out, p.as_bytes());
                    out.extend_from_slice(b.as_bytes());
                }
                None => put_varint(&mut out, 0),
            }
        }
        for f in [&self.body, &self.path, &self.defs] {
            for slot in 0..self.paths.len() {
                put_document(&mut out, f.terms_of(slot as u32));
            }
        }
        // `order` may name a commit twice (withdrawn, then brought back by a later
        // head); its first place is the one the cap evicts it from, so that is kept.
        let h = &self.history;
        let mut seen = HashSet::new();
        let kept: Vec<&Oid> = h
            .order
            .iter()
            .filter(|o| h.kept.contains(o) && seen.insert(**o))
            .collect();
        put_varint(&mut out, kept.len() as u64);
        for oid in kept {
            out.extend_from_slice(oid.as_bytes());
        }
        // Sorted by path, so that one index always makes the same bytes.
        let sorted = |keys: &mut dyn Iterator<Item = &String>| {
            let mut v: Vec<String> = keys.cloned().collect();
            v.sort_unstable();
            v
        };
        let paths = sorted(&mut h.per_file.keys());
        put_varint(&mut out, paths.len() as u64);
        for p in &paths {
            put_bytes(&mut out, p.as_bytes());
            put_document(&mut out, &self.history_terms(p));
        }
        let paths = sorted(&mut h.touches.keys());
        put_varint(&mut out, paths.len() as u64);
        for p in &paths {
            put_bytes(&mut out, p.as_bytes());
            put_varint(&mut out, u64::from(h.touches[p]));
        }
        let paths = sorted(&mut h.pairs.keys());
        put_varint(&mut out, paths.len() as u64);
        for p in &paths {
            put_bytes(&mut out, p.as_bytes());
            let with = &h.pairs[p];
            let others = sorted(&mut with.keys());
            put_varint(&mut out, others.len() as u64);
            for q in &others {
                put_bytes(&mut out, q.as_bytes());
                put_varint(&mut out, u64::from(with[q]));
            }
        }
        let len = (out.len() - HEADER) as u64;
        out[16..24].copy_from_slice(&len.to_le_bytes());
        let crc = crc32fast::hash(&out[16..]);
        out[12..16].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// An index from bytes [`RankedIndex::to_bytes`] wrote, every part checked.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() < 12 || &bytes[..8] != MAGIC {
            return Err(DecodeError::Magic);
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if version != FORMAT_VERSION {
            return Err(DecodeError::Version(version));
        }
        if bytes.len() < HEADER {
            return Err(DecodeError::Length {
                expected: HEADER as u64,
                actual: bytes.len() as u64,
            });
        }
        let len = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"));
        let actual = (bytes.len() - HEADER) as u64;
        if len != actual {
            return Err(DecodeError::Length {
                expected: len,
                actual,
            });
        }
        let crc = u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes"));
        if crc32fast::hash(&bytes[16..]) != crc {
            return Err(DecodeError::Checksum);
        }
        let head = Oid::from_bytes(&bytes[24..44]).map_err(|_| DecodeError::Malformed("head"))?;
        let mut r = Reader(&bytes[HEADER..]);

        let n = r.count()?;
        let mut terms = Vec::with_capacity(n);
        // A free id must not be used: the next new term would inherit its postings.
        let mut known = Vec::with_capacity(n);
        for _ in 0..n {
            let t = r.str()?;
            known.push(!t.is_empty());
            terms.push((!t.is_empty()).then(|| t.to_string()));
        }
        let dict = Dict::from_ids(terms).ok_or(DecodeError::Malformed("a term stored twice"))?;
        let nterms = dict.id_bound();

        let s = r.count()?;
        let mut paths = Vec::with_capacity(s);
        let mut blobs = Vec::with_capacity(s);
        let mut slot_of = std::collections::HashMap::with_capacity(s);
        let mut free = Vec::new();
        for slot in 0..s {
            let p = r.str()?;
            if p.is_empty() {
                paths.push(None);
                blobs.push(Oid::zero());
                free.push(slot as u32);
                continue;
            }
            blobs.push(r.oid()?);
            if slot_of.insert(p.to_string(), slot as u32).is_some() {
                return Err(DecodeError::Malformed("a path stored twice"));
            }
            paths.push(Some(p.to_string()));
        }
        // Lowest slot on top, as a fresh index would hand them out.
        free.reverse();
        let mut fields = Vec::with_capacity(3);
        for _ in 0..3 {
            let mut docs = Vec::with_capacity(s);
            for p in &paths {
                let d = r.document(&known)?;
                if p.is_none() && !d.is_empty() {
                    return Err(DecodeError::Malformed("terms for a free slot"));
                }
                docs.push(d);
            }
            fields.push(
                Field::from_documents(docs, nterms)
                    .ok_or(DecodeError::Malformed("a field's documents"))?,
            );
        }

        let mut history = History::default();
        let nkept = r.count()?;
        for _ in 0..nkept {
            let oid = r.oid()?;
            if !history.kept.insert(oid) {
                return Err(DecodeError::Malformed("a commit stored twice"));
            }
            history.order.push_back(oid);
        }
        // The sums keep no zero and no empty map (see `History::apply`); a stored one
        // that does is not one this code wrote.
        let nonzero = |n: u32| {
            (n > 0)
                .then_some(n)
                .ok_or(DecodeError::Malformed("a zero sum"))
        };
        let mut last = None;
        for _ in 0..r.count()? {
            let p = r.next_path(&mut last)?;
            let doc = r.document(&known)?;
            if doc.is_empty() {
                return Err(DecodeError::Malformed("an empty sum"));
            }
            let mut m = std::collections::HashMap::with_capacity(doc.len());
            for (t, c) in doc {
                m.insert(t, nonzero(c)?);
            }
            history.per_file.insert(p, m);
        }
        let mut last = None;
        for _ in 0..r.count()? {
            let p = r.next_path(&mut last)?;
            let n = nonzero(r.u32()?)?;
            history.touches.insert(p, n);
        }
        let mut last = None;
        for _ in 0..r.count()? {
            let p = r.next_path(&mut last)?;
            let n = r.count()?;
            if n == 0 {
                return Err(DecodeError::Malformed("an empty sum"));
            }
            let mut m = std::collections::HashMap::with_capacity(n);
            let mut prev: Option<&str> = None;
            for _ in 0..n {
                let q = r.str()?;
                if q.is_empty() || q == p || prev.is_some_and(|l| l >= q) {
                    return Err(DecodeError::Malformed("paths empty or out of order"));
                }
                prev = Some(q);
                m.insert(q.to_string(), nonzero(r.u32()?)?);
            }
            history.pairs.insert(p, m);
        }
        if !r.0.is_empty() {
            return Err(DecodeError::Malformed("bytes after the end"));
        }

        let [body, path, defs] = <[Field; 3]>::try_from(fields).expect("three fields");
        let mut ix = Self {
            head,
            dict,
            slot_of,
            live: s - free.len(),
            paths,
            blobs,
            free,
            body,
            path,
            defs,
            msgs: Field::default(),
            history,
            history_cap: MAX_HISTORY_COMMITS,
        };
        let msgs: Vec<Vec<(u32, u32)>> = ix
            .paths
            .iter()
            .map(|p| {
                p.as_deref()
                    .map(|p| ix.history_terms(p))
                    .unwrap_or_default()
            })
            .collect();
        ix.msgs = Field::from_documents(msgs, nterms)
            .ok_or(DecodeError::Malformed("the commits' terms"))?;
        Ok(ix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ranked::Weights;
    use crate::ranked::tests::{commit, delete};
    use git2::Repository;

    fn sample() -> (tempfile::TempDir, Repository, RankedIndex) {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let a = commit(
            &repo,
            None,
            &[
                (
                    "src/retry/backoff.rs",
                    "/// Delay before the next attempt.\npub fn compute_backoff(attempt: u32) -> u64 { 100 }\n",
                ),
                (
                    "src/auth/token.rs",
                    "pub fn verify_token(token: &str) -> bool { true }\n",
                ),
                ("docs/old.md", "# Zeppelin notes\n"),
                ("README.md", "# Demo\n"),
            ],
            "Start the demo",
        );
        let b = commit(
            &repo,
            Some(a),
            &[(
                "src/auth/token.rs",
                "pub fn verify_token(token: &str) -> bool { check(token) }\n",
            )],
            "Check tokens against the stored hash",
        );
        let mut ix = RankedIndex::build(&repo, b).unwrap();
        // A removed file leaves a free slot behind, which must survive the round trip.
        let c = delete(&repo, b, "docs/old.md", "Drop the zeppelin notes");
        ix.advance(&repo, c).unwrap();
        (dir, repo, ix)
    }

    fn answers(ix: &RankedIndex) -> Vec<Vec<(String, u32)>> {
        [
            "retry backoff delay",
            "verify stored hash tokens",
            "zeppelin",
            "demo start",
        ]
        .iter()
        .map(|q| {
            ix.rank(q, 10, &Weights::default(), &|_| true)
                .into_iter()
                .map(|f| (f.path, f.score.to_bits()))
                .collect()
        })
        .collect()
    }

    #[test]
    fn an_index_read_back_answers_exactly_as_the_one_written() {
        let (_dir, repo, ix) = sample();
        let bytes = ix.to_bytes();
        let back = RankedIndex::from_bytes(&bytes).unwrap();
        assert_eq!(stored_head(&bytes), Some(ix.head()));
        assert_eq!(back.head(), ix.head());
        assert_eq!(back.len(), ix.len());
        assert_eq!(back.free, ix.free);
        assert_eq!(answers(&back), answers(&ix));
        assert!(!answers(&ix)[1].is_empty());
        assert_eq!(back.to_bytes(), bytes, "written again, the same bytes");
        for slot in 0..ix.paths.len() as u32 {
            assert_eq!(back.msgs.terms_of(slot), ix.msgs.terms_of(slot));
        }
        for oid in ix.history.kept.iter() {
            assert!(back.includes_commit(*oid));
        }
        // Both move on alike.
        let (mut a, mut b) = (ix, back);
        let next = commit(
            &repo,
            Some(a.head()),
            &[("src/new.rs", "fn gyroscope_calibration() {}\n")],
            "Calibrate the gyroscope",
        );
        a.advance(&repo, next).unwrap();
        b.advance(&repo, next).unwrap();
        assert_eq!(answers(&a), answers(&b));
        assert_eq!(
            a.rank("gyroscope", 1, &Weights::default(), &|_| true)[0].path,
            "src/new.rs"
        );
        assert_eq!(a.to_bytes(), b.to_bytes());
    }

    // A head moved to another branch and back names its commits twice in the history's
    // order; storing them twice made the copy unreadable.
    #[test]
    fn a_commit_withdrawn_and_brought_back_is_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init_bare(dir.path()).unwrap();
        let base = commit(&repo, None, &[("a.py", "x = 1\n")], "Start");
        let left = commit(
            &repo,
            Some(base),
            &[("a.py", "x = 2\n")],
            "Tune the zeppelin",
        );
        let right = commit(&repo, Some(base), &[("b.py", "y = 2\n")], "Calibrate");
        let mut ix = RankedIndex::build(&repo, left).unwrap();
        ix.advance(&repo, right).unwrap();
        ix.advance(&repo, left).unwrap();
        let bytes = ix.to_bytes();
        let back = RankedIndex::from_bytes(&bytes).unwrap();
        assert_eq!(answers(&back), answers(&ix));
        assert!(back.includes_commit(left));
        assert_eq!(back.to_bytes(), bytes);
    }

    // A term id the dictionary has freed, used by a document, would hand that
    // document's counts to whichever new term gets the id next.
    #[test]
    fn documents_naming_a_free_term_id_are_refused() {
        let mut b = Vec::new();
        put_document(&mut b, &[(0, 2), (2, 1)]);
        assert_eq!(
            Reader(&b).document(&[true, false, true]).unwrap(),
            [(0, 2), (2, 1)]
        );
        let mut b = Vec::new();
        put_document(&mut b, &[(0, 2), (1, 1)]);
        assert!(Reader(&b).document(&[true, false, true]).is_err());
        assert!(Reader(&b).document(&[true]).is_err());
    }

    #[test]
    fn a_cut_or_damaged_file_is_refused() {
        let (_dir, _repo, ix) = sample();
        let bytes = ix.to_bytes();
        for n in 0..bytes.len() {
            assert!(RankedIndex::from_bytes(&bytes[..n]).is_err(), "cut at {n}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            RankedIndex::from_bytes(&longer),
            Err(DecodeError::Length { .. })
        ));
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            assert!(RankedIndex::from_bytes(&b).is_err(), "byte {i} flipped");
        }
        let mut other = bytes.clone();
        other[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
        assert_eq!(
            RankedIndex::from_bytes(&other).err(),
            Some(DecodeError::Version(FORMAT_VERSION + 1))
        );
    }

    // Contents damaged before the checksum was taken (a bug, or a file made by hand)
    // must be refused or read, never panic.
    #[test]
    fn malformed_contents_with_a_valid_checksum_never_panic() {
        let (_dir, _repo, ix) = sample();
        let bytes = ix.to_bytes();
        for i in HEADER..bytes.len() {
            for x in [0x01, 0x80, 0xff] {
                let mut b = bytes.clone();
                b[i] ^= x;
                let crc = crc32fast::hash(&b[16..]);
                b[12..16].copy_from_slice(&crc.to_le_bytes());
                let _ = RankedIndex::from_bytes(&b);
            }
        }
    }
}
