//! The store on disk: one redb file. redb commits copy-on-write B-trees behind a checksummed
//! commit slot, so a crash (or power loss) leaves the last durable commit, never a torn one;
//! an opened file that redb finds damaged is refused with a message, never started empty.

use super::{
    Change, FORMAT_VERSION, QueueRows, Row, Snapshot, Store, StoreError, entry_key, split_entry_key,
};
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// `format` -> the store's layout version.
const META: TableDefinition<&str, u32> = TableDefinition::new("meta");
/// Topic -> retained record.
const RETAINED: TableDefinition<&str, &[u8]> = TableDefinition::new("retained");
/// Client id -> session record.
const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
/// Client id, NUL, filter -> subscription row.
const SUBSCRIPTIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("subscriptions");
/// Message id -> message record (as a retained one's).
const MESSAGES: TableDefinition<u64, &[u8]> = TableDefinition::new("messages");
/// Message id -> how many delivery rows point at it.
const REFS: TableDefinition<u64, u64> = TableDefinition::new("message_refs");
/// Client id, NUL, sequence number -> delivery row (see `entry.rs`).
const ENTRIES: TableDefinition<&str, &[u8]> = TableDefinition::new("deliveries");
/// Client id -> a will held for its delay (see `record::encode_will`).
const WILLS: TableDefinition<&str, &[u8]> = TableDefinition::new("wills");
/// Client id, NUL, packet id -> nothing: an inbound QoS 2 id awaiting PUBREL.
const INBOUND: TableDefinition<&str, ()> = TableDefinition::new("inbound_qos2");

/// How much of the store a load reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Load {
    /// Everything, the delivery rows as stored (an export writes even one that does not
    /// decode).
    Raw,
    /// Everything, the delivery rows decoded (`roost store check`).
    Full,
    /// The delivery rows decoded, only the messages of those put back whole, and the retained
    /// records that fit in `budget` bytes (start-up).
    Start { budget: usize },
}

/// A redb file holding Roost's durable state.
pub(crate) struct RedbStore {
    /// `None` between a failed reopening and the next (see [`Store::recover`]).
    db: std::sync::RwLock<Option<Database>>,
    path: PathBuf,
}

/// The store's error for a database that could not be opened again after a failure.
fn closed() -> StoreError {
    StoreError::Io("the store is closed after a failed write; reopening it failed".into())
}

/// redb's page cache. Its default, 1 GiB, was most of the broker's memory once the store
/// held 10 million queued deliveries (1.9 GB RSS where 0.5 GB held them in memory alone).
/// The broker serves from its own structures and reads the store whole only at start-up,
/// front to back; what a smaller cache costs is writing into a very large store, where each
/// commit touches pages across the whole deliveries tree (queueing those 10 million: 149 s
/// with 64 MiB, 127 s with 256 MiB, 93 s with 1 GiB; `docs/benchmarks.md`).
const CACHE_BYTES: usize = 64 * 1024 * 1024;

/// How every handle on the file is opened.
fn builder() -> redb::Builder {
    let mut b = Database::builder();
    b.set_cache_size(CACHE_BYTES);
    b
}

impl RedbStore {
    /// Everything stored, with the delivery rows as they are stored, undecoded: for an export,
    /// which writes out even a row that does not decode.
    pub(crate) fn load_raw(&self) -> Result<Snapshot, StoreError> {
        self.load_with(Load::Raw)
    }

    /// What start-up needs: as [`Store::load`], but of the messages only those that deliveries
    /// put back whole point at (queued ones are read back as they are sent), and of the
    /// retained messages' records only as many as fit in `budget` bytes (counted as the
    /// broker counts them in memory; 0: all): the others' topics only.
    pub(crate) fn load_for_start(&self, budget: usize) -> Result<Snapshot, StoreError> {
        self.load_with(Load::Start { budget })
    }

    /// What `load` reads (see [`Load`]).
    fn load_with(&self, how: Load) -> Result<Snapshot, StoreError> {
        let raw = how == Load::Raw;
        let mut retained_room = match how {
            Load::Start { budget } if budget > 0 => budget,
            _ => usize::MAX,
        };
        let io = |e: redb::Error| StoreError::Io(e.to_string());
        let txn = self.with_db(|db| db.begin_read().map_err(|e| io(e.into())))?;
        let mut snapshot = Snapshot::default();
        let table = txn.open_table(RETAINED).map_err(|e| io(e.into()))?;
        for entry in table.iter().map_err(|e| io(e.into()))? {
            let (topic, record) = entry.map_err(|e| io(e.into()))?;
            let (topic, record) = (topic.value(), record.value());
            // As `broker/retained.rs` counts one in memory: topic, payload (less than the
            // record) and its fixed cost.
            let cost = topic.len() + record.len() + crate::broker::RETAINED_IN_MEMORY;
            if cost <= retained_room {
                retained_room -= cost;
                snapshot.retained.push((topic.to_owned(), record.to_vec()));
            } else {
                retained_room = 0;
                snapshot.retained_on_disk.push(topic.to_owned());
            }
        }
        for (def, into) in [
            (SESSIONS, &mut snapshot.sessions),
            (SUBSCRIPTIONS, &mut snapshot.subscriptions),
            (WILLS, &mut snapshot.wills),
        ] {
            let table = txn.open_table(def).map_err(|e| io(e.into()))?;
            for entry in table.iter().map_err(|e| io(e.into()))? {
                let (key, record) = entry.map_err(|e| io(e.into()))?;
                into.push((key.value().to_owned(), record.value().to_vec()));
            }
        }
        let table = txn.open_table(ENTRIES).map_err(|e| io(e.into()))?;
        for entry in table.iter().map_err(|e| io(e.into()))? {
            let (key, row) = entry.map_err(|e| io(e.into()))?;
            if raw {
                snapshot
                    .entries
                    .push((key.value().to_owned(), row.value().to_vec()));
            } else {
                snapshot.deliveries.push(key.value(), row.value())?;
            }
        }
        let table = txn.open_table(MESSAGES).map_err(|e| io(e.into()))?;
        snapshot.message_count = table.len().map_err(|e| io(e.into()))?;
        snapshot.message_ids_end = match table.last().map_err(|e| io(e.into()))? {
            Some((id, _)) => id.value() + 1,
            None => 1,
        };
        if matches!(how, Load::Start { .. }) {
            let mut ids: Vec<u64> = snapshot.deliveries.whole_messages().collect();
            ids.sort_unstable();
            ids.dedup();
            for id in ids {
                if let Some(record) = table.get(id).map_err(|e| io(e.into()))? {
                    snapshot.messages.push((id, record.value().to_vec()));
                }
            }
        } else {
            for entry in table.iter().map_err(|e| io(e.into()))? {
                let (id, record) = entry.map_err(|e| io(e.into()))?;
                snapshot
                    .messages
                    .push((id.value(), record.value().to_vec()));
            }
        }
        let table = txn.open_table(INBOUND).map_err(|e| io(e.into()))?;
        for entry in table.iter().map_err(|e| io(e.into()))? {
            let (key, _) = entry.map_err(|e| io(e.into()))?;
            snapshot.inbound.push(key.value().to_owned());
        }
        Ok(snapshot)
    }

    /// Opens the store in `dir` (created with its file if missing), checking its format.
    pub(crate) fn open(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join(super::FILE_NAME);
        let shown = path.display().to_string();
        let open = |why: String| StoreError::Open {
            path: shown.clone(),
            why,
        };
        std::fs::create_dir_all(dir)
            .map_err(|e| open(format!("cannot create {}: {e}", dir.display())))?;
        // `create` only for a file that is not there: it would make a new store of an empty
        // (truncated) file, where `open` refuses it.
        let db = if path.exists() {
            builder().open(&path)
        } else {
            builder().create(&path)
        }
        .map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => open(
                "it is in use by another process (a roost running on it?): stop that first".into(),
            ),
            e => open(e.to_string()),
        })?;
        let store = Self {
            db: std::sync::RwLock::new(Some(db)),
            path,
        };
        store.prepare().map_err(|e| match e {
            StoreError::Io(why) => open(why),
            other => other,
        })?;
        Ok(store)
    }

    /// Opens the store in `dir`, which must exist (for `roost store` commands: a mistyped
    /// directory must not leave an empty store behind).
    pub(crate) fn open_existing(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join(super::FILE_NAME);
        if !path.exists() {
            return Err(StoreError::Open {
                path: path.display().to_string(),
                why: "there is no store there (one is made at the first start with \
                      persistence on)"
                    .into(),
            });
        }
        Self::open(dir)
    }

    /// Runs `f` on the open database (an error while it is closed after a failed reopening).
    fn with_db<T>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let db = self.db.read().unwrap_or_else(|e| e.into_inner());
        f(db.as_ref().ok_or_else(closed)?)
    }

    /// Creates the tables of a new store and writes its format; checks an existing one's.
    fn prepare(&self) -> Result<(), StoreError> {
        let io = |e: redb::Error| StoreError::Io(e.to_string());
        let txn = self.with_db(|db| db.begin_write().map_err(|e| io(e.into())))?;
        {
            let mut meta = txn.open_table(META).map_err(|e| io(e.into()))?;
            let found = meta
                .get("format")
                .map_err(|e| io(e.into()))?
                .map(|v| v.value());
            match found {
                None => {
                    meta.insert("format", FORMAT_VERSION)
                        .map_err(|e| io(e.into()))?;
                }
                Some(FORMAT_VERSION) => {}
                Some(found) => {
                    return Err(StoreError::Version {
                        path: self.path.display().to_string(),
                        found,
                    });
                }
            }
            txn.open_table(RETAINED).map_err(|e| io(e.into()))?;
            txn.open_table(SESSIONS).map_err(|e| io(e.into()))?;
            txn.open_table(SUBSCRIPTIONS).map_err(|e| io(e.into()))?;
            // Added after version 1's first release: a store without them opens and gets them.
            txn.open_table(MESSAGES).map_err(|e| io(e.into()))?;
            txn.open_table(REFS).map_err(|e| io(e.into()))?;
            txn.open_table(ENTRIES).map_err(|e| io(e.into()))?;
            txn.open_table(INBOUND).map_err(|e| io(e.into()))?;
            txn.open_table(WILLS).map_err(|e| io(e.into()))?;
        }
        txn.commit().map_err(|e| io(e.into()))
    }
}

impl Store for RedbStore {
    fn commit(&self, changes: &[Change], durable: bool) -> Result<Vec<u64>, StoreError> {
        let io = |e: redb::Error| StoreError::Io(e.to_string());
        let mut txn = self.with_db(|db| db.begin_write().map_err(|e| io(e.into())))?;
        if !durable {
            txn.set_durability(Durability::None)
                .map_err(|e| StoreError::Io(e.to_string()))?;
        }
        let mut freed = Vec::new();
        {
            let mut retained = txn.open_table(RETAINED).map_err(|e| io(e.into()))?;
            let mut sessions = txn.open_table(SESSIONS).map_err(|e| io(e.into()))?;
            let mut subscriptions = txn.open_table(SUBSCRIPTIONS).map_err(|e| io(e.into()))?;
            let mut messages = txn.open_table(MESSAGES).map_err(|e| io(e.into()))?;
            let mut refs = txn.open_table(REFS).map_err(|e| io(e.into()))?;
            let mut entries = txn.open_table(ENTRIES).map_err(|e| io(e.into()))?;
            let mut inbound = txn.open_table(INBOUND).map_err(|e| io(e.into()))?;
            let mut wills = txn.open_table(WILLS).map_err(|e| io(e.into()))?;
            // How many rows each message gains or loses in this commit, applied at its end: a
            // row deleted and another added for the same message within one batch leave it be.
            let mut deltas: HashMap<u64, i64> = HashMap::new();
            for change in changes {
                let (table, key, record) = match change {
                    Change::Retained { topic, record } => (&mut retained, topic, record),
                    Change::Session {
                        client_id,
                        record: None,
                    }
                    | Change::Unpersisted { client_id } => {
                        // Every key from "id\0" up to "id\x01"; an unpersisted session's
                        // delivery rows and inbound ids stay until it ends.
                        let (from, to) = (format!("{client_id}\0"), format!("{client_id}\u{1}"));
                        let range = from.as_str()..to.as_str();
                        subscriptions
                            .retain_in::<&str, _>(range.clone(), |_, _| false)
                            .map_err(|e| io(e.into()))?;
                        if matches!(change, Change::Session { .. }) {
                            entries
                                .retain_in::<&str, _>(range.clone(), |_, row| {
                                    *deltas.entry(Row::message_of(row)).or_default() -= 1;
                                    false
                                })
                                .map_err(|e| io(e.into()))?;
                            inbound
                                .retain_in::<&str, _>(range, |_, ()| false)
                                .map_err(|e| io(e.into()))?;
                        }
                        wills.remove(&**client_id).map_err(|e| io(e.into()))?;
                        (&mut sessions, client_id, &None)
                    }
                    Change::Session { client_id, record } => (&mut sessions, client_id, record),
                    Change::Subscription { key, record } => (&mut subscriptions, key, record),
                    Change::Will { client_id, record } => (&mut wills, client_id, record),
                    Change::Message { id, record } => {
                        messages
                            .insert(*id, record.as_slice())
                            .map_err(|e| io(e.into()))?;
                        deltas.entry(*id).or_default();
                        continue;
                    }
                    Change::Entry { key, row } => {
                        let old = match row {
                            Some(row) => {
                                *deltas.entry(Row::message_of(row)).or_default() += 1;
                                entries.insert(&**key, row.as_slice())
                            }
                            None => entries.remove(&**key),
                        }
                        .map_err(|e| io(e.into()))?;
                        if let Some(old) = old {
                            *deltas.entry(Row::message_of(old.value())).or_default() -= 1;
                        }
                        continue;
                    }
                    Change::Released { key, packet_id } => {
                        let row = entries.get(&**key).map_err(|e| io(e.into()))?;
                        // A row deleted already (acknowledged, session gone) stays deleted.
                        let Some(row) = row.map(|r| Row::released(r.value(), *packet_id)) else {
                            continue;
                        };
                        // A row that does not decode is left as it is, and named: failing the
                        // commit would fail every retry of it too, and stop all writing.
                        // `roost store check` and start-up report it.
                        let row = match row {
                            Ok(row) => row,
                            Err(why) => {
                                tracing::error!(
                                    key = &**key,
                                    why,
                                    "persistence: a delivery row does not decode; its PUBREC is \
                                     not recorded"
                                );
                                continue;
                            }
                        };
                        entries
                            .insert(&**key, row.as_slice())
                            .map_err(|e| io(e.into()))?;
                        continue;
                    }
                    Change::Inbound { key, pending } => {
                        if *pending {
                            inbound.insert(&**key, ()).map(drop)
                        } else {
                            inbound.remove(&**key).map(drop)
                        }
                        .map_err(|e| io(e.into()))?;
                        continue;
                    }
                };
                match record {
                    Some(r) => table.insert(&**key, r.as_slice()).map(drop),
                    None => table.remove(&**key).map(drop),
                }
                .map_err(|e| io(e.into()))?;
            }
            for (id, delta) in deltas {
                let had = refs.get(id).map_err(|e| io(e.into()))?.map(|v| v.value());
                let now = had.unwrap_or(0) as i64 + delta;
                if now > 0 {
                    refs.insert(id, now as u64).map_err(|e| io(e.into()))?;
                } else {
                    refs.remove(id).map_err(|e| io(e.into()))?;
                    messages.remove(id).map_err(|e| io(e.into()))?;
                    freed.push(id);
                }
            }
        }
        txn.commit().map_err(|e| io(e.into()))?;
        Ok(freed)
    }

    fn load(&self) -> Result<Snapshot, StoreError> {
        self.load_with(Load::Full)
    }

    fn read_retained(&self, topic: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let io = |e: redb::Error| StoreError::Io(e.to_string());
        let txn = self.with_db(|db| db.begin_read().map_err(|e| io(e.into())))?;
        let table = txn.open_table(RETAINED).map_err(|e| io(e.into()))?;
        let record = table.get(topic).map_err(|e| io(e.into()))?;
        Ok(record.map(|r| r.value().to_vec()))
    }

    fn read_queue(&self, client_id: &str, from: u32, count: u32) -> Result<QueueRows, StoreError> {
        let io = |e: redb::Error| StoreError::Io(e.to_string());
        let txn = self.with_db(|db| db.begin_read().map_err(|e| io(e.into())))?;
        let entries = txn.open_table(ENTRIES).map_err(|e| io(e.into()))?;
        let messages = txn.open_table(MESSAGES).map_err(|e| io(e.into()))?;
        // Numbers run 1 to u32::MAX and wrap: one range, or two across the wrap.
        if count == 0 {
            return Ok(Vec::new());
        }
        let last = u64::from(from) + u64::from(count) - 1;
        let max = u64::from(u32::MAX);
        let ranges = if last <= max {
            vec![(from, last as u32)]
        } else {
            // `last - max` is at most `count`, a u32.
            vec![(from, u32::MAX), (1, (last - max) as u32)]
        };
        let mut out = Vec::with_capacity(count as usize);
        for (first, last) in ranges {
            let (lo, hi) = (entry_key(client_id, first), entry_key(client_id, last));
            for entry in entries
                .range::<&str>(lo.as_str()..=hi.as_str())
                .map_err(|e| io(e.into()))?
            {
                let (key, bytes) = entry.map_err(|e| io(e.into()))?;
                let Some((_, seq)) = split_entry_key(key.value()) else {
                    continue;
                };
                let row = match Row::decode(bytes.value()) {
                    Ok(row) => row,
                    Err(why) => {
                        tracing::error!(
                            key = key.value(),
                            why,
                            "persistence: a queued delivery's row does not decode: dropped"
                        );
                        out.push((seq, None));
                        continue;
                    }
                };
                let record = messages.get(row.message).map_err(|e| io(e.into()))?;
                out.push((seq, Some((row, record.map(|r| r.value().to_vec())))));
            }
        }
        Ok(out)
    }

    /// After a failed write redb answers every transaction with `PreviousIo`: the file is
    /// closed and opened again, which brings back its last durable commit.
    fn recover(&self) -> Result<(), StoreError> {
        let mut db = self.db.write().unwrap_or_else(|e| e.into_inner());
        // Closed first: the file is locked while open.
        drop(db.take());
        let reopened = builder()
            .open(&self.path)
            .map_err(|e| StoreError::Io(e.to_string()))?;
        *db = Some(reopened);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("roost-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn set(topic: &str, record: &[u8]) -> Change {
        Change::Retained {
            topic: topic.into(),
            record: Some(record.to_vec()),
        }
    }

    /// A queue's rows read back by number: a range, across the wrap past `u32::MAX`, of
    /// only the client asked for; nothing for no numbers.
    #[test]
    fn queued_rows_are_read_back_by_number() {
        let d = dir("queue");
        let s = RedbStore::open(&d).unwrap();
        let row = |message: u64| Row {
            message,
            qos: crate::protocol::QoS::AtLeastOnce,
            retain: false,
            released: false,
            packet_id: 0,
            extra: None,
        };
        let mut changes = vec![Change::Message {
            id: 1,
            record: b"m".to_vec(),
        }];
        for (client, seq) in [
            ("a", 1),
            ("a", 2),
            ("a", 3),
            ("a", u32::MAX),
            ("ab", 2),
            ("b", 2),
        ] {
            changes.push(Change::Entry {
                key: entry_key(client, seq).into(),
                row: Some(row(1).encode()),
            });
        }
        changes.push(Change::Entry {
            key: entry_key("a", 4).into(),
            row: Some(vec![0xFF]),
        });
        s.commit(&changes, true).unwrap();
        let seqs = |from, count| -> Vec<(u32, bool)> {
            (s.read_queue("a", from, count).unwrap().into_iter())
                .map(|(seq, row)| (seq, row.is_some()))
                .collect()
        };
        assert_eq!(seqs(2, 3), [(2, true), (3, true), (4, false)]);
        assert_eq!(seqs(u32::MAX, 3), [(u32::MAX, true), (1, true), (2, true)]);
        assert_eq!(seqs(2, 0), []);
        let (_, got) = &s.read_queue("a", 1, 1).unwrap()[0];
        assert_eq!(got.as_ref().unwrap().1.as_deref(), Some(&b"m"[..]));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn commits_are_there_after_reopening() {
        let d = dir("reopen");
        {
            let s = RedbStore::open(&d).unwrap();
            s.commit(&[set("a", b"1"), set("b", b"2")], true).unwrap();
            s.commit(
                &[
                    Change::Retained {
                        topic: "a".into(),
                        record: None,
                    },
                    set("c", b"3"),
                ],
                false,
            )
            .unwrap();
            // A durable commit makes the one before it durable too.
            s.commit(&[], true).unwrap();
        }
        let s = RedbStore::open(&d).unwrap();
        let got = s.load().unwrap().retained;
        assert_eq!(
            got,
            vec![("b".into(), b"2".to_vec()), ("c".into(), b"3".to_vec())]
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_newer_format_is_refused_with_what_to_do() {
        let d = dir("newer");
        {
            let s = RedbStore::open(&d).unwrap();
            let db = s.db.read().unwrap();
            let txn = db.as_ref().unwrap().begin_write().unwrap();
            txn.open_table(META)
                .unwrap()
                .insert("format", FORMAT_VERSION + 1)
                .unwrap();
            txn.commit().unwrap();
        }
        let e = RedbStore::open(&d).err().unwrap().to_string();
        assert!(
            e.contains("format version 2") && e.contains("move the file aside"),
            "{e}"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_file_that_is_not_a_store_is_refused_not_emptied() {
        let d = dir("garbage");
        std::fs::create_dir_all(&d).unwrap();
        let file = d.join(super::super::FILE_NAME);
        let garbage: Vec<u8> = (0..64 * 1024u32).map(|i| (i * 7 + 3) as u8).collect();
        for bytes in [garbage, Vec::new()] {
            std::fs::write(&file, &bytes).unwrap();
            let e = RedbStore::open(&d).err().unwrap().to_string();
            assert!(
                e.contains("cannot open the store"),
                "{} bytes: {e}",
                bytes.len()
            );
            assert_eq!(
                std::fs::read(&file).unwrap(),
                bytes,
                "the damaged file is left as it was"
            );
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_truncated_store_is_refused() {
        let d = dir("truncated");
        {
            let s = RedbStore::open(&d).unwrap();
            s.commit(&[set("a", &[7; 4096])], true).unwrap();
        }
        let file = d.join(super::super::FILE_NAME);
        let len = std::fs::metadata(&file).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&file)
            .unwrap()
            .set_len(len / 2)
            .unwrap();
        let e = RedbStore::open(&d).map(|s| s.load().map(|l| l.retained.len()));
        assert!(
            !matches!(e, Ok(Ok(1))),
            "a store cut in half is refused or found short, never read as whole"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}
