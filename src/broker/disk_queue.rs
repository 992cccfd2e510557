//! A kept session's messages held on disk only (over `limits.max_memory_bytes`, see
//! `session/spill.rs`), read back from the store under its client id as its connection sends
//! them.

use crate::session::{Delivery, Message, StoredSource};
use crate::store::{Writer, decode_retained};
use rustc_hash::FxHashMap as HashMap;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

/// One session's queue in the store.
pub(crate) struct DiskQueue<'a> {
    pub(crate) writer: &'a Writer,
    pub(crate) client_id: &'a str,
}

impl StoredSource for DiskQueue<'_> {
    fn committed(&self, n: u64) -> bool {
        self.writer.is_done(n)
    }

    fn read(
        &self,
        from: u32,
        count: u32,
        out: &mut VecDeque<Delivery>,
        gone: &mut Vec<u32>,
    ) -> Result<(), String> {
        let rows = self
            .writer
            .read_queue(self.client_id, from, count)
            .map_err(|e| e.to_string())?;
        let now = Instant::now();
        // A batch often holds several deliveries of one message: decoded once.
        let mut decoded: HashMap<u64, Option<Arc<Message>>> = HashMap::default();
        for (seq, row) in rows {
            // A row that does not decode (logged by the store) cannot be sent: it goes.
            let Some((row, record)) = row else {
                gone.push(seq);
                continue;
            };
            let message = decoded.entry(row.message).or_insert_with(|| {
                let record = record?;
                match decode_retained(&record, now) {
                    Ok(m) => m.map(Arc::new),
                    Err(why) => {
                        tracing::warn!(
                            client_id = self.client_id,
                            seq,
                            why,
                            "a queued message read back from the store does not decode: dropped"
                        );
                        None
                    }
                }
            });
            match message {
                Some(message) => out.push_back(Delivery {
                    message: message.clone(),
                    qos: row.qos,
                    retain: row.retain,
                    extra: row.extra,
                    seq,
                }),
                // Expired on disk, or its message is missing: not sent, and its row goes.
                None => gone.push(seq),
            }
        }
        Ok(())
    }
}
