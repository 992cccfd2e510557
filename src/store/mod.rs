//! What survives a restart (`[persistence]`): a [`Store`] applies batches of changes in one
//! commit and gives everything back at start-up; a [`Writer`] thread groups the broker's
//! changes, from every connection, into those batches, so that durability costs one fsync per
//! batch rather than one per change. The store is redb today ([`RedbStore`]); the trait is the
//! seam another engine (JetStream, for the cluster) plugs into.
//!
//! Kept: retained messages; persistent sessions with their subscriptions, their QoS 1/2
//! deliveries queued and in flight, and their inbound QoS 2 identifiers awaiting PUBREL; each
//! message such a delivery carries, once however many sessions it goes to.

mod batch;
mod entry;
mod record;
mod redb_store;
mod restore;
mod transfer;
mod writer;

pub(crate) use entry::{
    ClientRows, Deliveries, Row, entry_key, inbound_key, order_by_seq, split_entry_key, split_key,
};
pub(crate) use record::{
    SessionRecord, decode_retained, decode_subscription, decode_will, encode_retained,
    encode_subscription, encode_will, now_unix_ms, split_subscription_key, subscription_key,
};
pub(crate) use redb_store::RedbStore;
pub(crate) use restore::{StoredSession, start};
pub use transfer::{export, import};
pub(crate) use writer::{Group, Writer, writers_busy};

/// The store's file in `persistence.dir`.
pub const FILE_NAME: &str = "roost.redb";

/// The layout of the store this build writes; a store of another version is refused at
/// start-up rather than misread.
pub(crate) const FORMAT_VERSION: u32 = 1;

/// One change to durable state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// A topic's retained message set (an encoded record, see `record.rs`) or cleared.
    Retained {
        /// The topic.
        topic: Box<str>,
        /// The message's record; `None` clears the topic.
        record: Option<Vec<u8>>,
    },
    /// A persistent session written (a [`SessionRecord`]) or deleted, its subscriptions with
    /// it.
    Session {
        /// Its client id.
        client_id: Box<str>,
        /// Its record; `None` deletes it and every subscription row of it.
        record: Option<Vec<u8>>,
    },
    /// A session stops outliving its connection (resumed without an expiry) while messages
    /// of it wait on disk: its record, subscriptions and held will are deleted, its delivery
    /// rows and inbound identifiers left for it to read and finish until it ends (they go
    /// then with a `Session` deletion, or at the next start as rows of no session).
    Unpersisted {
        /// Its client id.
        client_id: Box<str>,
    },
    /// One subscription of a persistent session, written or deleted.
    Subscription {
        /// The row's key ([`subscription_key`]).
        key: Box<str>,
        /// The row ([`encode_subscription`]); `None` deletes it.
        record: Option<Vec<u8>>,
    },
    /// A message some delivery rows point at (a record as a retained one's). It stays while
    /// rows point at it and goes with the last (counted by the store).
    Message {
        /// Its id.
        id: u64,
        /// Its record.
        record: Vec<u8>,
    },
    /// One QoS 1/2 delivery of a persistent session, written or deleted.
    Entry {
        /// The row's key ([`entry_key`]).
        key: Box<str>,
        /// The row ([`Row::encode`]); `None` deletes it.
        row: Option<Vec<u8>>,
    },
    /// A delivery's QoS 2 exchange reached PUBREC (see [`Row::released`]).
    Released {
        /// The row's key.
        key: Box<str>,
        /// The packet identifier it went with.
        packet_id: u16,
    },
    /// A persistent session's will, held for its Will Delay Interval, written or deleted (it
    /// also goes with its session).
    Will {
        /// The session's client id.
        client_id: Box<str>,
        /// [`encode_will`]'s record; `None` deletes it.
        record: Option<Vec<u8>>,
    },
    /// An inbound QoS 2 identifier awaiting PUBREL (`pending`) or released.
    Inbound {
        /// Its key ([`inbound_key`]).
        key: Box<str>,
        /// Whether it awaits PUBREL.
        pending: bool,
    },
}

/// Everything a store holds, as records, for start-up.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    /// Topic and record of each retained message (at start-up, of those within the memory
    /// budget).
    pub(crate) retained: Vec<(String, Vec<u8>)>,
    /// At start-up, the topics of the retained messages beyond the memory budget: they stay
    /// on disk.
    pub(crate) retained_on_disk: Vec<String>,
    /// Client id and record of each persistent session.
    pub(crate) sessions: Vec<(String, Vec<u8>)>,
    /// Key and row of each subscription of a persistent session, a session's together.
    pub(crate) subscriptions: Vec<(String, Vec<u8>)>,
    /// Id and record of each message a delivery row points at (at start-up, only those
    /// of the rows put back whole).
    pub(crate) messages: Vec<(u64, Vec<u8>)>,
    /// How many messages the store holds.
    pub(crate) message_count: u64,
    /// Above every message id the store holds.
    pub(crate) message_ids_end: u64,
    /// The delivery rows of the persistent sessions, decoded ([`Store::load`]).
    pub(crate) deliveries: Deliveries,
    /// Key and row of each delivery of a persistent session, as stored: only
    /// [`RedbStore::load_raw`] (an export writes even a row that does not decode).
    pub(crate) entries: Vec<(String, Vec<u8>)>,
    /// Key of each inbound QoS 2 identifier awaiting PUBREL.
    pub(crate) inbound: Vec<String>,
    /// Client id and record of each will held for its delay.
    pub(crate) wills: Vec<(String, Vec<u8>)>,
}

/// Rows read back by [`Store::read_queue`]: number, and row with its message's record (`None`
/// for a row that does not decode).
pub(crate) type QueueRows = Vec<(u32, Option<(Row, Option<Vec<u8>>)>)>;

/// A durable state engine.
pub(crate) trait Store: Send + Sync + 'static {
    /// Applies `changes` in one commit, on disk when this returns if `durable`. Returns the
    /// ids of the messages it deleted, the last rows pointing at them gone.
    fn commit(&self, changes: &[Change], durable: bool) -> Result<Vec<u64>, StoreError>;
    /// Everything stored, the delivery rows decoded (the first that does not decode is the
    /// error).
    fn load(&self) -> Result<Snapshot, StoreError>;
    /// The rows of `client_id`'s deliveries numbered `from` on, `count` numbers (wrapping past
    /// `u32::MAX` to 1), in order, each with its number and its message's record (`None` if
    /// the store does not have it): a queue held on disk, read back. A row that does not
    /// decode is logged and given as `None`.
    fn read_queue(&self, client_id: &str, from: u32, count: u32) -> Result<QueueRows, StoreError>;
    /// The record of `topic`'s retained message, if the store has one: a message held on
    /// disk only, read back.
    fn read_retained(&self, topic: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// Makes the store usable again after a failed commit (a full disk): what was durable
    /// before it is there; commits made since the last durable one may not be.
    fn recover(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// Why the store cannot be used; each says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file cannot be opened or read as a store.
    #[error(
        "cannot open the store {path}: {why}. If the file is damaged, move it aside and start \
         again (state is lost), or check it with `roost store check`"
    )]
    Open {
        /// The store's file.
        path: String,
        /// What went wrong.
        why: String,
    },
    /// A store written by a newer Roost.
    #[error(
        "the store {path} has format version {found}; this roost reads version {FORMAT_VERSION}: \
         run the roost that wrote it, or move the file aside"
    )]
    Version {
        /// The store's file.
        path: String,
        /// The version it carries.
        found: u32,
    },
    /// A read or a commit failed.
    #[error("store: {0}")]
    Io(String),
    /// A record that does not decode.
    #[error("store: a {what} record for {key:?} does not decode: {why}")]
    Record {
        /// What kind of record.
        what: &'static str,
        /// Its key.
        key: String,
        /// Why.
        why: String,
    },
}

/// `roost store check`: opens the store in `dir` read-and-write (as start-up would, so redb
/// repairs an unclean shutdown the same way) and decodes every record. Returns a summary, or
/// the first problem with what to do about it.
pub fn check(dir: &std::path::Path) -> Result<String, StoreError> {
    let path = dir.join(FILE_NAME);
    let snapshot = RedbStore::open_existing(dir)?.load()?;
    let subscriptions = snapshot.subscriptions.len();
    let decoded = restore::decode(snapshot, std::time::Instant::now())?;
    let (live, expired) = (decoded.retained.len(), decoded.expired.len());
    let now_ms = now_unix_ms();
    let sessions = (decoded.sessions.iter())
        .filter(|s| s.record.remaining_secs(now_ms).is_some())
        .count();
    let ended = decoded.sessions.len() - sessions;
    let deliveries: usize = (decoded.sessions.iter())
        .flat_map(|s| s.deliveries.iter().map(crate::session::Resumed::len))
        .sum();
    let wills = decoded.sessions.iter().filter(|s| s.will.is_some()).count();
    let strays = match decoded.strays {
        0 => String::new(),
        n => format!(", {n} delivery rows under keys Roost does not write"),
    };
    let orphans = match (decoded.orphan_rows, decoded.orphan_inbound) {
        (0, 0) => String::new(),
        (rows, ids) => format!(", {rows} delivery rows and {ids} inbound QoS 2 ids of no session"),
    };
    Ok(format!(
        "{}: format version {FORMAT_VERSION}, {live} retained messages ({expired} expired), \
         {sessions} persistent sessions ({ended} expired) with {subscriptions} subscriptions \
         and {deliveries} queued or in-flight deliveries of {} stored messages, {wills} held \
         wills{strays}{orphans}; expired ones (and strays, and rows of no session) are dropped \
         at the next start; every record decodes",
        path.display(),
        decoded.message_count,
    ))
}
