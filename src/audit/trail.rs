//! The trail and its writer thread: a call hands its record to a bounded channel, and
//! one thread per process writes batches in a transaction, prunes past the retention,
//! and counts what it had to drop.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{MAX_TEXT_BYTES, Surface, cut, now_ms};
use crate::store::{AuditRow, AuditSink, StoreError};

/// Records waiting to be written, at most; past this they are dropped and counted.
const CHANNEL_CAPACITY: usize = 4096;
/// Records written in one transaction, at most.
const BATCH_MAX: usize = 256;
/// How long a batch gathers records after its first one.
const BATCH_WAIT: Duration = Duration::from_millis(100);
/// How often records past the retention are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

enum Message {
    /// Boxed, so the channel's slots stay small.
    Record(Box<AuditRow>),
    Flush(mpsc::Sender<()>),
}

struct Shared {
    /// Records lost, since the process started.
    dropped: AtomicU64,
    /// Whether the full channel has been reported in the log.
    warned_full: AtomicBool,
}

struct Writer {
    tx: Option<SyncSender<Message>>,
    thread: Option<std::thread::JoinHandle<()>>,
    shared: Arc<Shared>,
    /// A connection of its own for the records of writes, written by the caller at
    /// once (see [`Trail::record_durable`]); `None` when it could not be opened, and
    /// such records then go through the batch writer.
    durable: Option<Mutex<AuditSink>>,
}

impl Drop for Writer {
    /// Closing the channel lets the thread write what it holds and end.
    fn drop(&mut self) {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let dropped = self.shared.dropped.load(Ordering::Relaxed);
        if dropped > 0 {
            tracing::warn!(dropped, "audit records were dropped during this run");
        }
    }
}

/// A process's audit trail: cheap to clone, and off when the trail is turned off.
/// The last clone to go writes what is pending before it returns.
#[derive(Clone, Default)]
pub struct Trail {
    writer: Option<Arc<Writer>>,
}

impl std::fmt::Debug for Trail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trail").field("on", &self.is_on()).finish()
    }
}

impl Trail {
    /// A trail that records nothing.
    pub fn off() -> Self {
        Self::default()
    }

    /// The trail of the data directory `data_dir`, keeping records for `retention`
    /// (zero: no trail at all). Records older than that are deleted now and about
    /// every hour. When the database cannot be opened, the server runs without a trail
    /// and says so in its log.
    pub fn open(data_dir: &Path, retention: Duration, surface: Surface) -> Self {
        if retention.is_zero() {
            tracing::info!("the audit trail is off (--audit-retention 0)");
            return Self::off();
        }
        let durable = match AuditSink::open(data_dir) {
            Ok(s) => Some(Mutex::new(s)),
            Err(e) => {
                tracing::warn!(cause = %e, "the audit trail's second connection cannot be opened; records of writes are batched like the rest");
                None
            }
        };
        let sink = match AuditSink::open(data_dir) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(cause = %e, dir = %data_dir.display(), "the audit trail cannot be opened; running without one");
                return Self::off();
            }
        };
        let (tx, rx) = mpsc::sync_channel(CHANNEL_CAPACITY);
        let shared = Arc::new(Shared {
            dropped: AtomicU64::new(0),
            warned_full: AtomicBool::new(false),
        });
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || write_loop(sink, rx, thread_shared, retention, surface));
        match thread {
            Ok(thread) => Self {
                writer: Some(Arc::new(Writer {
                    tx: Some(tx),
                    thread: Some(thread),
                    shared,
                    durable,
                })),
            },
            Err(e) => {
                tracing::warn!(cause = %e, "no thread for the audit trail; running without one");
                Self::off()
            }
        }
    }

    /// Whether records are kept.
    pub fn is_on(&self) -> bool {
        self.writer.is_some()
    }

    /// Hand `row` to the writer, every text column cut to [`MAX_TEXT_BYTES`], or drop
    /// and count it when the writer is behind.
    pub fn record(&self, mut row: AuditRow) {
        let Some(w) = &self.writer else { return };
        let Some(tx) = &w.tx else { return };
        cap_columns(&mut row);
        match tx.try_send(Message::Record(Box::new(row))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                w.shared.dropped.fetch_add(1, Ordering::Relaxed);
                if !w.shared.warned_full.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "the audit trail's writer is behind; records are dropped and counted until it catches up"
                    );
                }
            }
        }
    }

    /// Write `row` to the database now, before the call answers, for the record of a
    /// write: a server killed right after answering a mint, revocation or commit must
    /// not lose its record, which the batch written about every 100 ms would. Costs
    /// the call one small transaction; reads do not wait.
    pub async fn record_durable(&self, mut row: AuditRow) {
        let Some(w) = &self.writer else { return };
        if w.durable.is_none() {
            return self.record(row);
        }
        cap_columns(&mut row);
        let this = self.clone();
        let written = tokio::task::spawn_blocking(move || {
            let w = this.writer.as_ref().expect("checked above");
            let sink = w.durable.as_ref().expect("checked above");
            let mut sink = sink.lock().unwrap_or_else(|p| p.into_inner());
            sink.write(std::slice::from_ref(&row))
                .map_err(|e| (e, Box::new(row)))
        })
        .await;
        match written {
            Ok(Ok(())) => {}
            // Not written (database busy past its timeout, disk full): the batch
            // writer tries again, and counts it as dropped if it fails too.
            Ok(Err((e, row))) => {
                tracing::warn!(cause = %e, "a write's audit record could not be written at once; handed to the batch writer");
                self.record(*row);
            }
            Err(e) => tracing::warn!(cause = %e, "a write's audit record was lost"),
        }
    }

    /// Write every record handed over so far, waiting at most a few seconds (for an
    /// orderly shutdown, so the records outlive the process).
    pub fn flush(&self) {
        let Some(w) = &self.writer else { return };
        let Some(tx) = &w.tx else { return };
        let (ack, done) = mpsc::channel();
        if tx.send(Message::Flush(ack)).is_ok() {
            let _ = done.recv_timeout(Duration::from_secs(5));
        }
    }

    /// Records lost since the process started (channel full or database unwritable).
    pub fn dropped(&self) -> u64 {
        self.writer
            .as_ref()
            .map(|w| w.shared.dropped.load(Ordering::Relaxed))
            .unwrap_or(0)
    }
}

/// Cut every text column of `row` to [`MAX_TEXT_BYTES`].
fn cap_columns(row: &mut AuditRow) {
    for column in [
        &mut row.surface,
        &mut row.credential,
        &mut row.action,
        &mut row.outcome,
    ] {
        cut(column, MAX_TEXT_BYTES);
    }
    for column in [
        &mut row.credential_id,
        &mut row.repo,
        &mut row.reason,
        &mut row.head_before,
        &mut row.head_after,
        &mut row.subject,
        &mut row.subject_id,
    ]
    .into_iter()
    .flatten()
    {
        cut(column, MAX_TEXT_BYTES);
    }
}
fn prune(sink: &AuditSink, retention: Duration) {
    let before = now_ms().saturating_sub(retention.as_millis().min(i64::MAX as u128) as i64);
    match sink.prune(before) {
        Ok(0) => {}
        Ok(n) => tracing::info!(deleted = n, "audit records past the retention deleted"),
        Err(e) => tracing::warn!(cause = %e, "old audit records could not be deleted"),
    }
}

/// The writer thread: wait for a record, let more gather for [`BATCH_WAIT`], write
/// what came in transactions of at most [`BATCH_MAX`] records, repeat; prune every
/// [`PRUNE_EVERY`].
///
/// While a batch gathers the thread sleeps rather than waiting on the channel: a
/// thread waiting there is woken by every record sent, which would cost each call a
/// wake-up and a context switch.
fn write_loop(
    mut sink: AuditSink,
    rx: Receiver<Message>,
    shared: Arc<Shared>,
    retention: Duration,
    surface: Surface,
) {
    let mut state = WriteState {
        shared,
        surface,
        warned: false,
        reported: 0,
    };
    prune(&sink, retention);
    let mut last_prune = Instant::now();
    let mut batch = Vec::with_capacity(BATCH_MAX);
    loop {
        if last_prune.elapsed() >= PRUNE_EVERY {
            prune(&sink, retention);
            last_prune = Instant::now();
        }
        let mut acks = Vec::new();
        let mut closed = false;
        match rx.recv_timeout(PRUNE_EVERY) {
            Ok(Message::Record(r)) => batch.push(*r),
            Ok(Message::Flush(ack)) => acks.push(ack),
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => closed = true,
        }
        if !closed && acks.is_empty() {
            std::thread::sleep(BATCH_WAIT);
        }
        while !closed {
            match rx.try_recv() {
                Ok(Message::Record(r)) => {
                    batch.push(*r);
                    if batch.len() == BATCH_MAX {
                        state.write(&mut sink, &mut batch);
                    }
                }
                Ok(Message::Flush(ack)) => acks.push(ack),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => closed = true,
            }
        }
        state.write(&mut sink, &mut batch);
        for ack in acks {
            let _ = ack.send(());
        }
        if closed {
            return;
        }
    }
}

struct WriteState {
    shared: Arc<Shared>,
    surface: Surface,
    /// Whether a failed write has been reported in the log.
    warned: bool,
    /// Dropped records already written down as such.
    reported: u64,
}

impl WriteState {
    fn write(&mut self, sink: &mut AuditSink, batch: &mut Vec<AuditRow>) {
        if batch.is_empty() {
            return;
        }
        if let Err(e) = sink.write(batch) {
            self.failed(&e, batch.len());
        } else {
            self.report_drops(sink);
        }
        batch.clear();
    }

    fn failed(&mut self, e: &StoreError, lost: usize) {
        self.shared
            .dropped
            .fetch_add(lost as u64, Ordering::Relaxed);
        if !self.warned {
            self.warned = true;
            tracing::warn!(cause = %e, "the audit trail cannot be written; records are dropped and counted until it can");
        }
    }

    /// Once writing works, a record of how many records were lost before.
    fn report_drops(&mut self, sink: &mut AuditSink) {
        let dropped = self.shared.dropped.load(Ordering::Relaxed);
        if dropped <= self.reported {
            return;
        }
        let row = AuditRow {
            at_ms: now_ms(),
            pid: std::process::id() as i64,
            surface: self.surface.as_str().into(),
            credential: "operator".into(),
            action: "audit-trail".into(),
            outcome: "error".into(),
            reason: Some(format!(
                "{} record(s) dropped (writer behind or database unwritable)",
                dropped - self.reported
            )),
            ..Default::default()
        };
        if sink.write(std::slice::from_ref(&row)).is_ok() {
            self.reported = dropped;
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    fn row(n: i64) -> AuditRow {
        AuditRow {
            at_ms: n,
            surface: "stdio".into(),
            credential: "operator".into(),
            action: "read_file".into(),
            outcome: "ok".into(),
            ..Default::default()
        }
    }

    #[test]
    fn records_are_written_in_batches_and_flushed_on_the_last_drop() {
        let dir = tempfile::tempdir().unwrap();
        let trail = Trail::open(dir.path(), Duration::from_secs(3600), Surface::Stdio);
        let now = now_ms();
        for i in 0..300 {
            trail.record(row(now + i));
        }
        trail.flush();
        let store = crate::store::Store::open(dir.path(), Default::default()).unwrap();
        let q = crate::store::AuditQuery {
            limit: 1000,
            ..Default::default()
        };
        assert_eq!(store.audit(&q).unwrap().len(), 300);
        trail.record(row(now + 1000));
        drop(trail);
        assert_eq!(store.audit(&q).unwrap().len(), 301);
    }

    #[test]
    fn an_unwritable_database_drops_and_counts_and_says_so_later() {
        let dir = tempfile::tempdir().unwrap();
        let trail = Trail::open(dir.path(), Duration::from_secs(3600), Surface::Api);
        let store = crate::store::Store::open(dir.path(), Default::default()).unwrap();
        // Another connection holds the write lock past the writer's busy timeout.
        let blocker = rusqlite::Connection::open(dir.path().join("store.db")).unwrap();
        blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
        trail.record(row(now_ms()));
        trail.flush();
        assert_eq!(trail.dropped(), 1);
        blocker.execute_batch("ROLLBACK").unwrap();
        trail.record(row(now_ms()));
        trail.flush();
        let rows = store
            .audit(&crate::store::AuditQuery {
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert!(rows.iter().any(|r| {
            r.action == "audit-trail"
                && r.reason
                    .as_deref()
                    .is_some_and(|m| m.starts_with("1 record"))
        }));
    }

    #[test]
    fn retention_prunes_old_records_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(dir.path(), Default::default()).unwrap();
        store
            .record_audit(&[row(now_ms() - 2 * 3_600_000), row(now_ms())])
            .unwrap();
        let trail = Trail::open(dir.path(), Duration::from_secs(3600), Surface::Api);
        trail.flush();
        let q = crate::store::AuditQuery {
            limit: 10,
            ..Default::default()
        };
        assert_eq!(store.audit(&q).unwrap().len(), 1);
        assert!(!Trail::open(dir.path(), Duration::ZERO, Surface::Api).is_on());
    }
}
