//! A few threads, started once per process, that cut the snippets of ranked answers in
//! parallel: choosing a file's best chunk splits its lines into terms and runs the
//! definition patterns over it, which is most of an answer's time on a large repo.
//!
//! The threads live as long as the process (one per core, at most four), so answers
//! neither pay for starting threads nor make the thread count rise and fall with the
//! load.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, LazyLock, Mutex};

type Job = Box<dyn FnOnce() + Send>;

struct Pool {
    jobs: Sender<Job>,
    threads: usize,
}

static POOL: LazyLock<Pool> = LazyLock::new(|| {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4);
    let (jobs, queue) = channel::<Job>();
    let queue = Arc::new(Mutex::new(queue));
    let mut started_threads = 0;
    for i in 0..threads {
        let queue = Arc::clone(&queue);
        let started = std::thread::Builder::new()
            .name(format!("snippets-{i}"))
            .spawn(move || run(&queue));
        match started {
            Ok(_) => started_threads += 1,
            // Answers still come: with no thread at all, `submit` runs each job in place.
            Err(e) => tracing::warn!(error = %e, "could not start a snippet thread"),
        }
    }
    Pool {
        jobs,
        threads: started_threads.max(1),
    }
});

fn run(queue: &Mutex<Receiver<Job>>) {
    loop {
        // The lock is held only while taking a job, not while doing it.
        let job = match queue.lock() {
            Ok(q) => q.recv(),
            Err(_) => return,
        };
        match job {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}

/// How many jobs run at once: the number of threads.
pub fn threads() -> usize {
    POOL.threads
}

/// Run `job` on one of the threads. A job must not panic past its own boundary:
/// callers catch panics inside the job and hand them back through their own channel.
pub fn submit(job: impl FnOnce() + Send + 'static) {
    if let Err(e) = POOL.jobs.send(Box::new(job)) {
        // No thread is left to take it (none could be started): do it here.
        (e.0)();
    }
}
