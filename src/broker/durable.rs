//! Persistent sessions in the store (`[persistence]`): each session that outlives its
//! connection is written whole, as a [`SessionRecord`], whenever what it would restore to
//! changes (created or resumed, a subscription made or removed, its connection gone) and
//! deleted when it ends; at start-up each record becomes an offline session again, its
//! subscriptions back in the trie, its expiry counting on from when its connection went.
//!
//! The writes go to the store's writer thread in the order they are made under the session's
//! lock. Kept: who the session belongs to, its expiry, its subscriptions with every option,
//! and (through the session's [`Sink`]) its QoS 1/2 deliveries and inbound QoS 2 identifiers.

use super::registry::{Filters, Granted, SlotState};
use super::{Broker, SessionSlot, SubEntry, lock};
use crate::auth::Realm;
use crate::session::{Journal, Message, Sink};
use crate::store::{
    Change, SessionRecord, StoredSession, Writer, encode_subscription, encode_will, entry_key,
    inbound_key, now_unix_ms, subscription_key,
};
use crate::topic::{parse_shared, validate_filter};
use std::sync::Arc;

/// Wills read from the store, to arm once every session is back (see
/// [`Broker::arm_restored_wills`]): the session holding each (`None`: it ended), the will,
/// and milliseconds left of its delay.
#[derive(Default)]
pub(crate) struct RestoredWills(Vec<(Option<Arc<SessionSlot>>, Message, u64)>);

/// Who a session belongs to: a user (none for an anonymous client) under one listener's rules
/// (`Realm::id`). A session is only ever resumed by the same owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Owner {
    /// The user name the client was let in with.
    pub(crate) user: Option<Arc<str>>,
    /// The rules it was let in under (`Realm::id`).
    pub(crate) realm: u64,
}

impl Owner {
    /// An anonymous client under `[auth]`.
    pub(crate) fn anonymous() -> Self {
        Self {
            user: None,
            realm: 0,
        }
    }

    /// The keyed hash a session keeps to compare owners (see [`super::owner_of`]).
    pub(super) fn hash(&self) -> u32 {
        super::owner_of(self.user.as_deref(), self.realm)
    }
}

impl Broker {
    /// Writes `slot`'s session to the store as it is now (under its lock, held by the caller
    /// as `st`), or deletes it once it no longer outlives its connection. A no-op without a
    /// store, or for a session that never outlived its connection.
    pub(super) fn persist_session(&self, slot: &SessionSlot, st: &mut SlotState) {
        let (Some(store), Some(who)) = (self.store(), &slot.who) else {
            return;
        };
        let record = (st.expiry != 0).then(|| {
            SessionRecord {
                expiry: st.expiry,
                offline_since: if st.is_attached() {
                    0
                } else {
                    now_unix_ms().max(1)
                },
                realm: who.realm,
                user: who.user.as_deref().map(str::to_owned),
            }
            .encode()
        });
        let kept = record.is_some();
        if !kept && st.session.is_spilled() {
            // Messages of it wait on disk: it goes on reading them from its rows, which stay
            // until it ends; only its record goes now (a crash must not bring it back).
            store.send(Change::Unpersisted {
                client_id: (&*slot.client_id).into(),
            });
            return;
        }
        store.send(Change::Session {
            client_id: (&*slot.client_id).into(),
            record,
        });
        if kept {
            st.session.keep(sink(store, &slot.client_id));
        } else {
            // Its rows went with its record.
            st.session.unkeep();
        }
    }

    /// Writes one subscription of `slot`'s session to the store (`None`: deletes it), under
    /// the session's lock, held by the caller as `st`. A no-op unless the session is kept.
    pub(super) fn persist_subscription(
        &self,
        slot: &SessionSlot,
        st: &SlotState,
        filter: &str,
        granted: Option<Granted>,
    ) {
        let (Some(store), Some(_)) = (self.store(), &slot.who) else {
            return;
        };
        if st.expiry == 0 {
            return;
        }
        store.send(Change::Subscription {
            key: subscription_key(&slot.client_id, filter).into(),
            record: granted.map(|g| encode_subscription(g.options, g.id)),
        });
    }

    /// Writes the will `slot`'s session holds until `due_unix_ms` (`None`: deletes it). A no-op
    /// unless the session is kept.
    pub(super) fn persist_will(
        &self,
        slot: &SessionSlot,
        st: &SlotState,
        will: Option<(&Message, u64)>,
    ) {
        let (Some(store), Some(_)) = (self.store(), &slot.who) else {
            return;
        };
        if st.expiry == 0 {
            return;
        }
        // Its Message Expiry Interval counts from its publication (see `publish_will`), not from
        // the connection's end: kept without a deadline, or a restart after the interval would
        // find it expired before it was ever sent.
        let record = will.and_then(|(m, due)| {
            let m = Message {
                expires_at: None,
                ..m.clone()
            };
            encode_will(&m, due, std::time::Instant::now())
        });
        store.send(Change::Will {
            client_id: (&*slot.client_id).into(),
            record,
        });
    }

    /// Whether `slot`'s held will is kept in the store (and so outlives a shutdown).
    pub(super) fn will_is_kept(&self, slot: &SessionSlot, st: &SlotState) -> bool {
        self.store().is_some() && slot.who.is_some() && st.expiry != 0
    }

    /// Deletes `slot`'s session from the store: it ends (under its lock, held by the caller:
    /// the writes of one session reach the store in the order they were made).
    /// The session stops being kept: a router that matched it a moment before must not write
    /// rows under its client id after they were deleted (a new session of that id would find
    /// them at the next start).
    pub(super) fn forget_session(&self, slot: &SessionSlot, st: &mut SlotState) {
        if let (Some(store), Some(_)) = (self.store(), &slot.who) {
            store.send(Change::Session {
                client_id: (&*slot.client_id).into(),
                record: None,
            });
        }
        // It ends: its queue goes with it.
        st.session.unkeep();
    }

    /// Writes the restored session of `client_id` back as it is now: offline from this start.
    /// For a session whose connection was attached when the broker stopped (its record says
    /// so), or its expiry would start again in full at every restart.
    pub(crate) fn persist_restored(&self, client_id: &str) {
        let slot = lock(&self.inner.sessions).get(client_id).cloned();
        if let Some(slot) = slot {
            let mut st = lock(&slot.state);
            self.persist_session(&slot, &mut st);
        }
    }

    /// Puts a session read from the store back, offline, with its `subscriptions` (filter,
    /// options, identifier), and arms its expiry. Returns the filters it left out because the
    /// configuration no longer allows them (shared or wildcard subscriptions turned off, a
    /// filter that is not valid), for the caller to delete from the store; `None` (and nothing
    /// done) if the session expired while the broker was down.
    /// `realms` are `[auth]`'s rules and the listeners' own; a session whose rules no longer
    /// exist is checked against `[auth]`'s ACL, and resumed by nobody (its owner is that of the
    /// rules it was made under) until it expires.
    pub(crate) fn restore_session(
        &self,
        stored: StoredSession,
        realms: &[Arc<Realm>],
        now_ms: u64,
        wills: &mut RestoredWills,
    ) -> Option<Vec<String>> {
        let StoredSession {
            client_id,
            record,
            subscriptions,
            deliveries,
            inbound,
            will,
        } = stored;
        let client_id = client_id.as_str();
        let Some(left) = record.remaining_secs(now_ms) else {
            // The session ended while the broker was down, before its will's delay or with
            // it: the will goes now.
            if let Some((_, will)) = will {
                wills.0.push((None, will, 0));
            }
            return None;
        };
        let (subscriptions, refused): (Vec<_>, Vec<_>) = subscriptions
            .into_iter()
            .partition(|(filter, ..)| self.still_allowed(filter));
        let refused: Vec<String> = refused.into_iter().map(|(f, ..)| f).collect();
        for filter in &refused {
            tracing::warn!(
                client_id,
                filter,
                "stored subscription not restored: the configuration no longer allows it"
            );
        }
        let realm = realms
            .iter()
            .find(|r| r.id == record.realm)
            .unwrap_or(self.realm());
        let owner = Owner {
            user: record.user.as_deref().map(Arc::from),
            realm: record.realm,
        };
        let mut filters = Filters::default();
        for (filter, options, id) in &subscriptions {
            filters.insert(
                filter,
                Granted {
                    options: *options,
                    id: *id,
                },
            );
        }
        let acl = realm.acl_for(record.user.as_deref(), client_id);
        let slot = self.restore_slot(client_id.into(), record.expiry, owner, filters);
        if let Some(store) = self.store() {
            let sink = sink(store, &slot.client_id);
            lock(&slot.state).session.restore(deliveries, inbound, sink);
        }
        for (filter, options, id) in subscriptions {
            let entry = SubEntry {
                slot: slot.clone(),
                options,
                subscription_id: id,
                read_check: acl.clone(),
            };
            match parse_shared(&filter) {
                Some(Ok((group, inner))) => self.join_group(&filter, group, inner, entry),
                _ => {
                    self.subscriptions_mut()
                        .direct
                        .insert(&filter, slot.client_id.clone(), entry);
                }
            }
        }
        if left != u32::MAX {
            let mut st = lock(&slot.state);
            self.expire_after(&slot, &mut st, left);
        }
        if let Some((due_ms, will)) = will {
            // Its delay counts on across the restart; one that came due while the broker was
            // down goes now.
            wills
                .0
                .push((Some(slot.clone()), will, due_ms.saturating_sub(now_ms)));
        }
        Some(refused)
    }

    /// Arms (or publishes, for sessions that ended while the broker was down) the wills read
    /// from the store: after every session is back, so a will reaches every subscriber, and
    /// after the store's clean-up, so its copies' rows follow it.
    pub(crate) fn arm_restored_wills(&self, wills: RestoredWills) {
        for (slot, will, left_ms) in wills.0 {
            match slot {
                Some(slot) => self.hold_restored_will(&slot, will, left_ms),
                None => self.publish_will(will),
            }
        }
    }

    /// Whether a SUBSCRIBE to `filter` would still be granted under this configuration (the
    /// checks of `Broker::subscribe` that depend on nothing but the configuration).
    fn still_allowed(&self, filter: &str) -> bool {
        let config = self.config();
        let plain = match parse_shared(filter) {
            Some(Ok(_)) if !config.shared_subscriptions.available => return false,
            Some(Ok((_, inner))) => inner,
            Some(Err(_)) => return false,
            None if validate_filter(filter).is_err() => return false,
            None => filter,
        };
        config.limits.wildcard_subscription_available || !plain.contains(['+', '#'])
    }
}

/// Where a kept session's changes go: to `store`, as rows keyed by `client_id`.
fn sink(store: &Arc<Writer>, client_id: &Arc<str>) -> Sink {
    let (store, client_id) = (store.clone(), client_id.clone());
    Arc::new(move |change| {
        journal(&store, &client_id, change);
        Writer::last_sent_here()
    })
}

/// Sends one change of `client_id`'s kept session to `store`.
fn journal(store: &Writer, client_id: &str, change: Journal) {
    match change {
        Journal::Queued {
            seq,
            delivery,
            packet_id,
        } => store.deliver(entry_key(client_id, seq).into(), delivery, packet_id),
        Journal::Released { seq, packet_id } => store.send(Change::Released {
            key: entry_key(client_id, seq).into(),
            packet_id,
        }),
        Journal::Done { seq } => store.send(Change::Entry {
            key: entry_key(client_id, seq).into(),
            row: None,
        }),
        Journal::Inbound { packet_id, pending } => store.send(Change::Inbound {
            key: inbound_key(client_id, packet_id).into(),
            pending,
        }),
    }
}
