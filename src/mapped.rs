//! Stored index files read in place through read-only mappings, and letting go of the
//! pages read.
//!
//! A page of a mapped file that a process has read counts in that process's resident
//! memory until the process unmaps it, although the page belongs to the kernel's page
//! cache: shared with every other process that reads the file, and reclaimed under
//! pressure. [`release_all`] drops this process's hold on every page of every live
//! mapping (`madvise(MADV_DONTNEED)`). The pages stay in the page cache, and the next
//! read maps them back: a minor fault, with no disk read while they are cached.
//!
//! Searches hold a [`Reading`] while they run. [`RELEASE_AFTER`] after the first read
//! since the last release began, a thread of this module lets go of every mapping's
//! pages: an idle process's resident memory is its heap and not the text it searched,
//! and a busy one's holds what it read in the last quarter second, not everything it
//! ever read. A read maps back what it needs of the pages let go: on the Linux kernel's
//! source, about 3 ms for a search that reads 47 MB of text, paid at most once a
//! quarter second by a burst of such calls.
//!
//! Only read-only mappings of files that no process changes in place are made here (see
//! [`Mapping`]); for them, letting go of a page can never change what a later read sees.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

/// How long pages read are held at most: they are let go this long after the first
/// read since they were last let go began.
pub const RELEASE_AFTER: Duration = Duration::from_millis(250);

/// A file mapped whole, read-only.
///
/// Stored files are written once under a temporary name and renamed into place; no
/// process of this program writes to, truncates or extends one after that (a newer copy
/// replaces it by rename, and an old one is removed by unlinking: both leave every
/// mapping of it intact). What no program can rule out is another party truncating the
/// file while it is mapped (a read past the new end would fault): the data directory is
/// private to its owner (mode 0700).
#[derive(Debug)]
pub struct Mapping {
    map: memmap2::Mmap,
}

/// Every mapping made by this process that may still be alive.
static LIVE: Mutex<Vec<Weak<Mapping>>> = Mutex::new(Vec::new());

fn live() -> MutexGuard<'static, Vec<Weak<Mapping>>> {
    // A panic while holding the lock leaves a plain list of weak references: still
    // usable.
    LIVE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Reads in progress, and since when they have held pages.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Reads {
    running: usize,
    /// When the first read since pages were last let go started; `None` when nothing
    /// has been read since.
    held_since: Option<Instant>,
}

impl Reads {
    /// When to let go of the pages read ([`RELEASE_AFTER`] after they were first
    /// held); `None` when nothing is held.
    fn due(&self) -> Option<Instant> {
        Some(self.held_since? + RELEASE_AFTER)
    }

    /// A read started at `now`; whether it began a hold (the releasing thread then has
    /// a time to wait for).
    fn started(&mut self, now: Instant) -> bool {
        self.running += 1;
        let began = self.held_since.is_none();
        self.held_since.get_or_insert(now);
        began
    }

    fn finished(&mut self) {
        self.running -= 1;
    }

    /// The pages were let go at `now`: reads still running hold what they read next.
    fn released(&mut self, now: Instant) {
        self.held_since = (self.running > 0).then_some(now);
    }
}

/// The process's reads, and whether a thread lets go of what they read.
struct Releases {
    reads: Reads,
    /// Whether the releasing thread runs.
    releaser: bool,
}

static RELEASES: Mutex<Releases> = Mutex::new(Releases {
    reads: Reads {
        running: 0,
        held_since: None,
    },
    releaser: false,
});
static WAKE: Condvar = Condvar::new();

fn releases() -> MutexGuard<'static, Releases> {
    // Every update of `Releases` leaves it whole: a panic elsewhere cannot leave it half
    // done.
    RELEASES.lock().unwrap_or_else(|e| e.into_inner())
}

/// A read of mapped files in progress (see the module's documentation).
#[must_use = "a read counts as running only while this is held"]
pub struct Reading(());

/// Count a read as running until the returned guard is dropped.
pub fn reading() -> Reading {
    let mut s = releases();
    let began = s.reads.started(Instant::now());
    if !s.releaser {
        match std::thread::Builder::new()
            .name("release-pages".into())
            .spawn(release_when_due)
        {
            Ok(_) => s.releaser = true,
            // Without the thread, pages stay held until the process ends or the thread
            // can be started by a later read: memory shows more, answers are the same.
            Err(e) => tracing::debug!(cause = %e, "no thread to let go of mapped pages"),
        }
    }
    if began {
        WAKE.notify_one();
    }
    Reading(())
}

impl Drop for Reading {
    fn drop(&mut self) {
        releases().reads.finished();
    }
}

/// The releasing thread: lets go of every mapping's pages when [`Reads::due`]; for the
/// life of the process.
fn release_when_due() {
    let mut s = releases();
    loop {
        let Some(due) = s.reads.due() else {
            s = WAKE.wait(s).unwrap_or_else(|e| e.into_inner());
            continue;
        };
        let now = Instant::now();
        if now < due {
            s = WAKE
                .wait_timeout(s, due - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            continue;
        }
        s.reads.released(now);
        drop(s);
        release_all();
        s = releases();
    }
}

impl Mapping {
    /// Map `file` whole (see the type's documentation for what that assumes).
    pub fn new(file: &std::fs::File) -> std::io::Result<Arc<Self>> {
        // SAFETY: see the type's documentation: the file is never changed in place
        // while mapped, and the mapping is read-only.
        let map = unsafe { memmap2::Mmap::map(file) }?;
        let this = Arc::new(Self { map });
        let mut live = live();
        live.retain(|m| m.strong_count() > 0);
        live.push(Arc::downgrade(&this));
        Ok(this)
    }

    /// The mapped bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// Let go of the pages of this mapping that this process holds (see the module's
    /// documentation). Failure only leaves them held, so it is logged, not returned.
    pub fn release(&self) {
        if self.map.is_empty() {
            return;
        }
        // SAFETY: the mapping is read-only and shared with its file, which no process
        // changes while it is mapped (the type's contract). MADV_DONTNEED on such a
        // mapping only removes page-table entries: the range stays mapped, every
        // reference into it stays valid, and a later read faults the same bytes back
        // from the file.
        let done = unsafe {
            self.map
                .unchecked_advise(memmap2::UncheckedAdvice::DontNeed)
        };
        if let Err(e) = done {
            tracing::debug!(cause = %e, "could not let go of a mapping's pages");
        }
    }
}

impl Mapping {
    /// Let go of the pages this process holds of `range` (bytes of the mapping; only
    /// the whole pages inside it), as [`Mapping::release`] does for all of them: a pass
    /// that reads a large mapping once lets go of what it has read as it goes, so that
    /// the pass holds a window of the file rather than all of it.
    pub fn release_range(&self, range: std::ops::Range<usize>) {
        let page = page_size();
        let start = range.start.next_multiple_of(page);
        let end = range.end.min(self.map.len()) / page * page;
        if start >= end {
            return;
        }
        // SAFETY: as in `release`: a read-only shared mapping of a file no process
        // changes while it is mapped; the range is inside the mapping and page-aligned
        // (the mapping itself starts on a page).
        let done = unsafe {
            self.map
                .unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start)
        };
        if let Err(e) = done {
            tracing::debug!(cause = %e, "could not let go of a mapping's pages");
        }
    }
}

/// The system's page size (4 KiB where it cannot be read).
fn page_size() -> usize {
    #[cfg(unix)]
    {
        // SAFETY: sysconf reads a constant of the system; it touches no memory of ours.
        let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if n > 0 {
            return n as usize;
        }
    }
    4096
}

/// Let go of the pages this process holds of every live mapping.
pub fn release_all() {
    let maps: Vec<Arc<Mapping>> = {
        let mut live = live();
        live.retain(|m| m.strong_count() > 0);
        live.iter().filter_map(Weak::upgrade).collect()
    };
    for m in maps {
        m.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// KiB of `m` this process holds, from `/proc/self/smaps` (Linux only).
    fn resident_kib(m: &Mapping) -> Option<u64> {
        let header = format!("{:x}-", m.bytes().as_ptr() as usize);
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let mut lines = smaps.lines().skip_while(|l| !l.starts_with(&header));
        lines.next()?;
        let rss = lines.find_map(|l| l.strip_prefix("Rss:"))?;
        rss.trim().strip_suffix("kB")?.trim().parse().ok()
    }

    #[test]
    fn released_pages_leave_the_process_and_read_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let body: Vec<u8> = (0..4u32 << 20).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::File::create(&path)
            .unwrap()
            .write_all(&body)
            .unwrap();
        let m = Mapping::new(&std::fs::File::open(&path).unwrap()).unwrap();
        let sum = |b: &[u8]| b.iter().map(|&x| u64::from(x)).sum::<u64>();
        // Read it whole and look at once. The process's release of pages held a quarter
        // second may come between the two on a loaded machine, so a few tries.
        let read_and_look = || {
            let mut held = None;
            for _ in 0..20 {
                assert_eq!(sum(m.bytes()), sum(&body));
                held = resident_kib(&m);
                if held.is_none_or(|kib| kib >= 4096) {
                    break;
                }
            }
            held
        };
        let before = read_and_look();
        // Its own mapping only: letting go of every mapping would disturb the test
        // beside it.
        m.release();
        let after = resident_kib(&m);
        if cfg!(target_os = "linux") {
            let (before, after) = (before.unwrap(), after.unwrap());
            assert!(before >= 4096, "all 4 MiB were read: {before} KiB held");
            assert_eq!(after, 0, "nothing held after the release");
        }
        assert_eq!(
            m.bytes(),
            &body[..],
            "the same bytes read back after a release"
        );
        let held = read_and_look();
        if cfg!(target_os = "linux") {
            assert!(held.unwrap() >= 4096, "read back: held again");
        }
    }

    // A load's check reads a whole stored file through its mapping and lets go of the
    // pages behind it a range at a time: what it let go of must leave the process, and
    // every byte must read back the same. (The rest may go too: a huge page the range
    // cuts into is let go whole on some file systems.)
    #[test]
    fn a_released_range_leaves_the_process_and_reads_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let body: Vec<u8> = (0..4u32 << 20).map(|i| (i * 13 % 251) as u8).collect();
        std::fs::write(&path, &body).unwrap();
        let m = Mapping::new(&std::fs::File::open(&path).unwrap()).unwrap();
        let sum = |b: &[u8]| b.iter().map(|&x| u64::from(x)).sum::<u64>();
        // As above, a few tries: the process's own release may come in between.
        let mut before = None;
        for _ in 0..20 {
            assert_eq!(sum(m.bytes()), sum(&body));
            before = resident_kib(&m);
            if before.is_none_or(|kib| kib >= 4096) {
                break;
            }
        }
        // Not on page boundaries: only the whole pages inside go.
        m.release_range(100..(3 << 20) + 100);
        let after = resident_kib(&m);
        if cfg!(target_os = "linux") {
            let (before, after) = (before.unwrap(), after.unwrap());
            assert!(before >= 4096, "all 4 MiB were read: {before} KiB held");
            assert!(
                after <= 1024 + 8,
                "at most the last MiB and two partial pages held: {after} KiB"
            );
        }
        assert_eq!(m.bytes(), &body[..], "the same bytes read back");
    }

    #[test]
    fn pages_go_a_quarter_second_after_they_were_first_held() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let after = |ms: u64| Some(at(ms) + RELEASE_AFTER);
        let mut r = Reads::default();
        assert_eq!(r.due(), None, "nothing read, nothing to let go");
        assert!(r.started(at(0)), "the first read begins a hold");
        assert_eq!(r.due(), after(0));
        assert!(!r.started(at(100)), "a second read joins it");
        r.finished();
        r.finished();
        assert_eq!(r.due(), after(0), "from the first read, not the last");
        r.released(at(250));
        assert_eq!(r.due(), None, "let go with nothing running: nothing held");
        assert!(r.started(at(300)));
        assert_eq!(r.due(), after(300));
        r.released(at(550));
        assert_eq!(
            r.due(),
            after(550),
            "a running read holds what it reads next"
        );
        r.finished();
        r.released(at(800));
        assert_eq!(r.due(), None);
    }

    /// Waits until the process holds none of `m`'s pages (the thread lets go of them).
    fn until_let_go(m: &Mapping, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while resident_kib(m).unwrap() > 0 {
            assert!(Instant::now() < deadline, "{what}: never let go");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn pages_are_let_go_after_the_reads_and_during_a_long_one() {
        if !cfg!(target_os = "linux") {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![7u8; 1 << 20]).unwrap();
        let m = Mapping::new(&std::fs::File::open(&path).unwrap()).unwrap();
        let read = || assert!(m.bytes().iter().all(|&b| b == 7));
        {
            let _r = reading();
            read();
            assert!(resident_kib(&m).unwrap() >= 1024);
        }
        until_let_go(&m, "after the read");
        let long = reading();
        read();
        assert!(resident_kib(&m).unwrap() >= 1024);
        until_let_go(&m, "during a long read");
        read();
        drop(long);
        until_let_go(&m, "after the long read");
    }
}
