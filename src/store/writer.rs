//! The writer: one thread that takes the broker's changes from a channel and commits them in
//! batches, everything that has arrived since the last commit in the next one (group commit),
//! so that a burst costs one fsync. Nothing on the message path waits for it: sending a
//! change is a channel push.

use super::{Change, Store};
use crate::config::SyncMode;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Changes taken into one commit at most: a commit of a huge backlog holds the new pages of
/// all of it in memory until it ends.
const MAX_BATCH: usize = 16 * 1024;

/// The handle the broker sends changes through.
pub(crate) struct Writer {
    tx: Mutex<Option<mpsc::Sender<Change>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Writer")
    }
}

impl Writer {
    /// Starts the writer thread over `store`; an error if no thread can be made (the broker
    /// must not run as if it kept what it does not).
    pub(crate) fn start(
        store: Arc<dyn Store>,
        sync: SyncMode,
        interval: Duration,
    ) -> Result<Self, super::StoreError> {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("roost-store".into())
            .spawn(move || run(&*store, &rx, sync, interval))
            .map_err(|e| super::StoreError::Io(format!("cannot start the writer thread: {e}")))?;
        Ok(Self {
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues a change for the next commit.
    pub(crate) fn send(&self, change: Change) {
        if let Some(tx) = crate::broker::lock(&self.tx).as_ref() {
            // The thread only ends after `close`, which takes the sender first.
            let _ = tx.send(change);
        }
    }

    /// Commits what is queued, durably, and stops the thread; later changes are not kept.
    pub(crate) fn close(&self) {
        drop(crate::broker::lock(&self.tx).take());
        if let Some(thread) = crate::broker::lock(&self.thread).take() {
            let _ = thread.join();
        }
    }
}

/// The thread: batches until the channel closes, then a last durable commit.
fn run(store: &dyn Store, rx: &mpsc::Receiver<Change>, sync: SyncMode, interval: Duration) {
    let mut batch = Vec::new();
    // Since when committed changes have waited to be made durable (periodic only).
    let mut dirty_since: Option<Instant> = None;
    let mut failing = false;
    loop {
        let wait = match dirty_since {
            Some(since) => interval.saturating_sub(since.elapsed()),
            None => Duration::from_secs(3600),
        };
        let closed = match rx.recv_timeout(wait) {
            Ok(change) => {
                batch.push(change);
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(change) => batch.push(change),
                        Err(_) => break,
                    }
                }
                false
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => true,
        };
        let due = dirty_since.is_some_and(|since| since.elapsed() >= interval);
        let durable = closed || sync == SyncMode::Always || due;
        if batch.is_empty() && !(durable && dirty_since.is_some()) {
            if closed {
                return;
            }
            continue;
        }
        match store.commit(&batch, durable) {
            Ok(()) => {
                if failing {
                    tracing::info!("persistence: commits succeed again");
                    failing = false;
                }
                batch.clear();
                dirty_since = match (durable, dirty_since) {
                    (true, _) => None,
                    (false, None) => Some(Instant::now()),
                    (false, since) => since,
                };
            }
            Err(e) => {
                // Kept and tried again with the next batch: a full disk may free up.
                if !failing {
                    tracing::error!("persistence: a commit failed, retrying with the next: {e}");
                    failing = true;
                }
                if closed {
                    tracing::error!(
                        "persistence: {} changes were not written at shutdown",
                        batch.len()
                    );
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        if closed {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Snapshot, StoreError};

    /// Records each commit's size and durability; the first commit waits for the gate.
    #[derive(Default)]
    struct Log(Mutex<Vec<(usize, bool)>>, Mutex<Option<mpsc::Receiver<()>>>);

    impl Store for Log {
        fn commit(&self, changes: &[Change], durable: bool) -> Result<(), StoreError> {
            if let Some(gate) = crate::broker::lock(&self.1).take() {
                let _ = gate.recv();
            }
            crate::broker::lock(&self.0).push((changes.len(), durable));
            Ok(())
        }
        fn load(&self) -> Result<Snapshot, StoreError> {
            Ok(Snapshot::default())
        }
    }

    fn change(i: usize) -> Change {
        Change::Retained {
            topic: format!("t/{i}").into(),
            record: None,
        }
    }

    #[test]
    fn everything_sent_is_committed_durably_by_close() {
        for sync in [SyncMode::Always, SyncMode::Periodic] {
            let log = Arc::new(Log::default());
            let (open, gate) = mpsc::channel();
            *crate::broker::lock(&log.1) = Some(gate);
            let w = Writer::start(log.clone(), sync, Duration::from_secs(60)).unwrap();
            // The first change's commit waits while 999 more arrive: they go in one commit.
            for i in 0..1000 {
                w.send(change(i));
            }
            open.send(()).unwrap();
            w.close();
            let commits = crate::broker::lock(&log.0).clone();
            let total: usize = commits.iter().map(|c| c.0).sum();
            assert_eq!(total, 1000, "{sync:?}: {commits:?}");
            assert!(commits.len() <= 3, "{sync:?}: grouped: {commits:?}");
            assert!(
                commits.last().unwrap().1,
                "{sync:?}: the last commit is durable"
            );
            if sync == SyncMode::Always {
                assert!(commits.iter().all(|c| c.1), "{commits:?}");
            }
        }
    }
}
