//! Start-up with `[persistence]`: open the store, put what it holds back in place before any
//! listener opens, and start the writer that keeps it up to date. A store that cannot be read
//! stops start-up with what is wrong and what to do: never a silent empty start.

use super::{Change, RedbStore, SessionRecord, Store, StoreError, Writer, decode_retained};
use crate::auth::Realm;
use crate::broker::Broker;
use crate::config::SyncMode;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    let snapshot = store.load()?;
    let now = Instant::now();
    let (mut retained, mut expired) = (Vec::new(), Vec::new());
    for (topic, record) in snapshot.retained {
        match decode_retained(&record, now) {
            Ok(Some(m)) => retained.push(m),
            Ok(None) => expired.push(topic),
            Err(why) => {
                return Err(StoreError::Record {
                    what: "retained message",
                    key: topic,
                    why,
                });
            }
        }
    }
    let restored = retained.len();
    broker.restore_retained(retained);
    let mut sessions = Vec::with_capacity(snapshot.sessions.len());
    for (client_id, record) in snapshot.sessions {
        match SessionRecord::decode(&record) {
            Ok(s) => sessions.push((client_id, s)),
            Err(why) => {
                return Err(StoreError::Record {
                    what: "session",
                    key: client_id,
                    why,
                });
            }
        }
    }
    let mut realms = vec![broker.realm().clone()];
    realms.extend(listener_realms.iter().filter(|r| r.id != 0).cloned());
    let now_ms = super::now_unix_ms();
    let (mut resumable, mut ended) = (0, Vec::new());
    for (client_id, session) in sessions {
        if broker.restore_session(&client_id, session, &realms, now_ms) {
            resumable += 1;
        } else {
            ended.push(client_id);
        }
    }
    let writer = Writer::start(
        Arc::new(store),
        p.sync,
        Duration::from_millis(p.sync_interval_ms),
    );
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
    broker.persist_to(Arc::new(writer));
    tracing::info!(
        dir = %p.dir.display(),
        retained = restored,
        expired = expired.len(),
        sessions = resumable,
        sessions_expired = ended.len(),
        sync = ?p.sync,
        "restored from the store in {:.1} ms",
        began.elapsed().as_secs_f64() * 1000.0
    );
    Ok(())
}
