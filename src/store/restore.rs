//! Start-up with `[persistence]`: open the store, put what it holds back in place before any
//! listener opens, and start the writer that keeps it up to date. A store that cannot be read
//! stops start-up with what is wrong and what to do: never a silent empty start.

use super::{
    Change, ClientRows, RedbStore, Row, SessionRecord, StoreError, Writer, decode_retained,
    decode_subscription, decode_will, order_by_seq, split_key, split_subscription_key,
};
use crate::auth::Realm;
use crate::broker::Broker;
use crate::config::SyncMode;
use crate::protocol::SubscriptionOptions;
use crate::session::{Delivery, Message, Restored, Resumed, advance};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A persistent session as read back.
pub(crate) struct StoredSession {
    /// Its client id.
    pub(crate) client_id: String,
    /// Its record.
    pub(crate) record: SessionRecord,
    /// Its subscriptions: filter, options, identifier.
    pub(crate) subscriptions: Vec<(String, SubscriptionOptions, Option<u32>)>,
    /// Its QoS 1/2 deliveries, in order.
    pub(crate) deliveries: Vec<Resumed>,
    /// Its inbound QoS 2 identifiers awaiting PUBREL.
    pub(crate) inbound: Vec<u16>,
    /// The will it held for its delay, and when that is over (Unix ms).
    pub(crate) will: Option<(u64, Message)>,
}

/// What a store's records say, every one decoded.
pub(super) struct Decoded {
    /// Retained messages still live.
    pub(super) retained: Vec<Message>,
    /// Topics of the retained messages left on disk (beyond the memory budget).
    pub(super) retained_on_disk: Vec<String>,
    /// Topics whose retained message expired while the broker was down.
    pub(super) expired: Vec<String>,
    /// Each persistent session with its subscriptions and deliveries.
    pub(super) sessions: Vec<StoredSession>,
    /// Keys of subscription rows that belong to no session (none should).
    pub(super) orphans: Vec<String>,
    /// The messages deliveries put back whole point at, by id, each once in memory.
    pub(super) messages: Vec<(u64, Arc<Message>)>,
    /// How many messages the store holds.
    pub(super) message_count: u64,
    /// Above every stored message's id, expired ones' too (their rows are deleted only
    /// after the start: a new message must not take their id meanwhile).
    pub(super) next_message_id: u64,
    /// Delivery rows to delete: of no session, or whose message expired (or is missing), or
    /// under a key Roost does not write.
    pub(super) dead_entries: Vec<String>,
    /// How many of those are under a key Roost does not write (see `Deliveries::strays`).
    pub(super) strays: usize,
    /// Inbound identifiers of no session, to delete.
    pub(super) dead_inbound: Vec<String>,
    /// Client ids of no session with delivery rows or inbound identifiers: all of them go.
    pub(super) dead_clients: Vec<String>,
    /// How many delivery rows and inbound identifiers those hold.
    pub(super) orphan_rows: usize,
    pub(super) orphan_inbound: usize,
    /// Wills of no session, to delete.
    pub(super) dead_wills: Vec<String>,
}

/// Decodes every record of `snapshot`: the first one that does not decode is the error, named.
pub(super) fn decode(snapshot: super::Snapshot, now: Instant) -> Result<Decoded, StoreError> {
    let bad = |what, key: &str, why| StoreError::Record {
        what,
        key: key.to_owned(),
        why,
    };
    let (mut retained, mut expired) = (Vec::new(), Vec::new());
    for (topic, record) in snapshot.retained {
        match decode_retained(&record, now).map_err(|why| bad("retained message", &topic, why))? {
            Some(m) => retained.push(m),
            None => expired.push(topic),
        }
    }
    let mut subscriptions: HashMap<String, Vec<_>> = HashMap::new();
    let mut orphans = Vec::new();
    for (key, row) in snapshot.subscriptions {
        let (options, id) =
            decode_subscription(&row).map_err(|why| bad("subscription", &key, why))?;
        match split_subscription_key(&key) {
            Some((client_id, filter)) => subscriptions
                .entry(client_id.to_owned())
                .or_default()
                .push((filter.to_owned(), options, id)),
            None => orphans.push(key),
        }
    }
    // Live messages; an expired one's id maps to `None`.
    let mut messages: HashMap<u64, Option<Arc<Message>>> = HashMap::new();
    let next_message_id = (snapshot.messages.iter().map(|(id, _)| id + 1))
        .chain([snapshot.message_ids_end, 1])
        .max()
        .unwrap_or(1);
    for (id, record) in snapshot.messages {
        let m =
            decode_retained(&record, now).map_err(|why| bad("message", &id.to_string(), why))?;
        messages.insert(id, m.map(Arc::new));
    }
    // Rows as stored (a snapshot made for an export): decoded here.
    let mut deliveries = snapshot.deliveries;
    for (key, bytes) in snapshot.entries {
        deliveries.push(&key, &bytes)?;
    }
    let strays = deliveries.strays.len();
    let mut dead_entries = deliveries.strays;
    // Client id -> its deliveries.
    let mut entries: HashMap<String, ClientRows> = HashMap::with_capacity(deliveries.clients.len());
    for (client_id, rows) in deliveries.clients {
        // Each client's rows come together, so once: moved in, not copied.
        match entries.entry(client_id) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(rows);
            }
            std::collections::hash_map::Entry::Occupied(mut o) => {
                o.get_mut().whole.extend(rows.whole);
                o.get_mut().queued.extend(rows.queued);
            }
        }
    }
    let mut inbound: HashMap<String, Vec<u16>> = HashMap::new();
    let mut dead_inbound = Vec::new();
    for key in snapshot.inbound {
        match split_key(&key).and_then(|(c, id)| Some((c, u16::try_from(id).ok()?))) {
            Some((client_id, id)) if id != 0 => {
                inbound.entry(client_id.to_owned()).or_default().push(id);
            }
            _ => dead_inbound.push(key),
        }
    }
    let mut wills = HashMap::new();
    for (client_id, record) in snapshot.wills {
        let will = decode_will(&record, now).map_err(|why| bad("will", &client_id, why))?;
        wills.insert(client_id, will);
    }
    let mut sessions = Vec::with_capacity(snapshot.sessions.len());
    for (client_id, record) in snapshot.sessions {
        let session =
            SessionRecord::decode(&record).map_err(|why| bad("session", &client_id, why))?;
        let subs = subscriptions.remove(&client_id).unwrap_or_default();
        let rows = entries.remove(&client_id).unwrap_or_default();
        // In the session's order, both kinds together.
        let mut ordered: Vec<(u32, Option<Row>)> = (rows.whole.into_iter())
            .map(|(seq, row)| (seq, Some(row)))
            .chain(rows.queued.into_iter().map(|seq| (seq, None)))
            .collect();
        order_by_seq(&mut ordered);
        // Not sized for `ordered`: a queued run of any length is one entry.
        let mut deliveries = Vec::new();
        for (seq, row) in ordered {
            let Some(row) = row else {
                // Queued: read back when it is due (an expired one is dropped then). Runs of
                // consecutive numbers go as one.
                if let Some(Resumed::OnDisk { first, count }) = deliveries.last_mut()
                    && advance(*first, *count) == seq
                    && *count < u32::MAX
                {
                    *count += 1;
                } else {
                    deliveries.push(Resumed::OnDisk {
                        first: seq,
                        count: 1,
                    });
                }
                continue;
            };
            let message = match messages.get(&row.message) {
                Some(Some(message)) => message,
                // Expired while the broker was down: dropped, as it would have been on the way.
                Some(None) => {
                    dead_entries.push(super::entry_key(&client_id, seq));
                    continue;
                }
                None => {
                    tracing::warn!(
                        client_id,
                        seq,
                        message = row.message,
                        "a stored delivery points at a message the store does not have: dropped"
                    );
                    dead_entries.push(super::entry_key(&client_id, seq));
                    continue;
                }
            };
            deliveries.push(Resumed::Whole(Restored {
                delivery: Delivery {
                    message: message.clone(),
                    qos: row.qos,
                    retain: row.retain,
                    extra: row.extra,
                    seq,
                },
                packet_id: row.packet_id,
                released: row.released,
            }));
        }
        let inbound = inbound.remove(&client_id).unwrap_or_default();
        let will = wills.remove(&client_id);
        sessions.push(StoredSession {
            client_id,
            record: session,
            subscriptions: subs,
            deliveries,
            inbound,
            will,
        });
    }
    // Rows left are those of no session.
    orphans.extend(subscriptions.into_iter().flat_map(|(client_id, subs)| {
        subs.into_iter()
            .map(move |(filter, ..)| super::subscription_key(&client_id, &filter))
    }));
    // Rows of no session (one that stopped being persistent with messages on disk, and the
    // broker stopped before it ended): deleted a client at a time, as a range, not row by row
    // (there may be millions).
    let orphan_rows = entries
        .values()
        .map(|r| r.whole.len() + r.queued.len())
        .sum();
    let orphan_inbound = inbound.values().map(Vec::len).sum();
    let mut dead_clients: Vec<String> = entries.into_keys().chain(inbound.into_keys()).collect();
    dead_clients.sort_unstable();
    dead_clients.dedup();
    Ok(Decoded {
        retained,
        retained_on_disk: snapshot.retained_on_disk,
        expired,
        sessions,
        orphans,
        messages: messages
            .into_iter()
            .filter_map(|(id, m)| Some((id, m?)))
            .collect(),
        message_count: snapshot.message_count,
        next_message_id,
        dead_entries,
        strays,
        dead_inbound,
        dead_clients,
        orphan_rows,
        orphan_inbound,
        dead_wills: wills.into_keys().collect(),
    })
}

/// Opens the store of `broker`'s configuration (if it persists), restores it into the broker
/// and starts the writer. `listener_realms` are the listeners' rules, which restored sessions
/// belong under. One log line says what was restored and how long it took.
pub(crate) fn start(broker: &Broker, listener_realms: &[Arc<Realm>]) -> Result<(), StoreError> {
    let p = &broker.config().persistence;
    if !p.enabled || p.sync == SyncMode::Off {
        return Ok(());
    }
    let began = Instant::now();
    let store = RedbStore::open(&p.dir)?;
    let Decoded {
        retained,
        retained_on_disk,
        expired,
        sessions,
        mut orphans,
        messages,
        next_message_id,
        dead_entries,
        strays,
        dead_inbound,
        dead_wills,
        message_count,
        dead_clients,
        orphan_rows: _,
        orphan_inbound: _,
    } = decode(
        // Retained messages take at most half the budget at start-up: the queues must not
        // start with it spent.
        store.load_for_start(broker.memory().limit().div_ceil(2))?,
        Instant::now(),
    )?;
    if strays > 0 {
        tracing::warn!(
            strays,
            "delivery rows under keys Roost does not write (an import, or an older store): deleted"
        );
    }
    let stored_messages = message_count;
    // Started first: restored sessions send their changes to it from the start. Nothing is
    // written back for what is restored as it was.
    let writer = Arc::new(Writer::start(
        Arc::new(store),
        p.sync,
        Duration::from_millis(p.sync_interval_ms),
        messages,
        next_message_id,
    )?);
    broker.persist_to(writer.clone());
    let restored = retained.len() + retained_on_disk.len();
    let retained_on_disk_count = retained_on_disk.len();
    broker.restore_retained(retained, retained_on_disk);
    let mut realms = vec![broker.realm().clone()];
    realms.extend(listener_realms.iter().cloned());
    let now_ms = super::now_unix_ms();
    let (mut resumable, mut ended, mut were_online) = (0, Vec::new(), Vec::new());
    let mut queued = 0;
    let mut wills = crate::broker::RestoredWills::default();
    for s in sessions {
        let online = s.record.offline_since == 0;
        let client_id = s.client_id.clone();
        let deliveries: usize = s.deliveries.iter().map(Resumed::len).sum();
        match broker.restore_session(s, &realms, now_ms, &mut wills) {
            Some(refused) => {
                resumable += 1;
                queued += deliveries;
                orphans.extend(
                    refused
                        .iter()
                        .map(|f| super::subscription_key(&client_id, f)),
                );
                if online {
                    were_online.push(client_id);
                }
            }
            None => ended.push(client_id),
        }
    }
    for topic in &expired {
        writer.send(Change::Retained {
            topic: topic.as_str().into(),
            record: None,
        });
    }
    for client_id in &ended {
        writer.send(Change::Session {
            client_id: client_id.as_str().into(),
            record: None,
        });
    }
    for key in orphans {
        writer.send(Change::Subscription {
            key: key.into(),
            record: None,
        });
    }
    for key in dead_entries {
        writer.send(Change::Entry {
            key: key.into(),
            row: None,
        });
    }
    for client_id in dead_wills {
        writer.send(Change::Will {
            client_id: client_id.into(),
            record: None,
        });
    }
    for client_id in dead_clients {
        writer.send(Change::Session {
            client_id: client_id.into(),
            record: None,
        });
    }
    for key in dead_inbound {
        writer.send(Change::Inbound {
            key: key.into(),
            pending: false,
        });
    }
    broker.arm_restored_wills(wills);
    // Offline from now, in their records too: a session connected when the broker stopped
    // would otherwise get its whole expiry again at every restart.
    for client_id in &were_online {
        broker.persist_restored(client_id);
    }
    tracing::info!(
        dir = %p.dir.display(),
        retained = restored,
        retained_on_disk = retained_on_disk_count,
        expired = expired.len(),
        sessions = resumable,
        sessions_expired = ended.len(),
        deliveries = queued,
        messages = stored_messages,
        sync = ?p.sync,
        "restored from the store in {:.1} ms",
        began.elapsed().as_secs_f64() * 1000.0
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::store::Store;

    /// A session whose connection was attached when the broker stopped (a crash: its record
    /// says "connected") is written back at start-up as offline from then, so that its expiry
    /// runs on across later restarts instead of starting again in full.
    #[tokio::test]
    async fn a_session_connected_at_a_crash_is_offline_from_the_next_start() {
        let dir = std::env::temp_dir().join(format!("roost-restore-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let record = SessionRecord {
            expiry: 3600,
            offline_since: 0,
            realm: 0,
            user: None,
        };
        RedbStore::open(&dir)
            .unwrap()
            .commit(
                &[
                    Change::Session {
                        client_id: "dev".into(),
                        record: Some(record.encode()),
                    },
                    Change::Subscription {
                        key: super::super::subscription_key("dev", "a/#").into(),
                        record: Some(super::super::encode_subscription(Default::default(), None)),
                    },
                ],
                true,
            )
            .unwrap();
        let mut config = Config::default();
        config.persistence.enabled = true;
        config.persistence.dir = dir.clone();
        let broker = Broker::new(Arc::new(config));
        start(&broker, &[]).unwrap();
        assert!(broker.has_session("dev"));
        broker.store().unwrap().close();
        let stored = RedbStore::open(&dir).unwrap().load().unwrap();
        let back = SessionRecord::decode(&stored.sessions[0].1).unwrap();
        assert_ne!(back.offline_since, 0, "offline since this start");
        assert_eq!(stored.subscriptions.len(), 1, "its subscription stays");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Rows of a session that stopped being persistent and never ended (the broker was
    /// killed): `roost store check` names them, and the next start deletes them all.
    #[tokio::test]
    async fn rows_of_no_session_are_named_and_deleted_at_start() {
        let dir = std::env::temp_dir().join(format!("roost-orphans-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let row = crate::store::Row {
            message: 1,
            qos: crate::protocol::QoS::AtLeastOnce,
            retain: false,
            released: false,
            packet_id: 0,
            extra: None,
        };
        let message = Message {
            topic: crate::protocol::ByteStr::from_static("t").unwrap(),
            payload: bytes::Bytes::from_static(b"m"),
            qos: crate::protocol::QoS::AtLeastOnce,
            retain: false,
            properties: Default::default(),
            publisher: Arc::from(""),
            expires_at: None,
        };
        let mut changes = vec![Change::Message {
            id: 1,
            record: super::super::encode_retained(&message, Instant::now()).unwrap(),
        }];
        for seq in 1..=3 {
            changes.push(Change::Entry {
                key: super::super::entry_key("ghost", seq).into(),
                row: Some(row.encode()),
            });
        }
        changes.push(Change::Inbound {
            key: super::super::inbound_key("ghost", 7).into(),
            pending: true,
        });
        RedbStore::open(&dir)
            .unwrap()
            .commit(&changes, true)
            .unwrap();
        let summary = crate::store::check(&dir).unwrap();
        assert!(
            summary.contains("3 delivery rows and 1 inbound QoS 2 ids of no session"),
            "{summary}"
        );
        let mut config = Config::default();
        config.persistence.enabled = true;
        config.persistence.dir = dir.clone();
        let broker = Broker::new(Arc::new(config));
        start(&broker, &[]).unwrap();
        broker.store().unwrap().close();
        let summary = crate::store::check(&dir).unwrap();
        assert!(!summary.contains("ids of no session"), "{summary}");
        assert!(summary.contains("of 0 stored messages"), "{summary}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
