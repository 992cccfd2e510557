//! Routing: subscribe and unsubscribe in the trie, and fan a PUBLISH out to every matching
//! session's bounded queue. Matching happens under a read lock without awaiting; each session is
//! then locked on its own for one enqueue, so a slow subscriber delays no one.

use super::{Broker, SubEntry, Subscriptions, TakenOver, lock};
use crate::auth::{SharedAcl, SubscribeCheck};
use crate::protocol::{QoS, ReasonCode, RetainHandling, SubscriptionOptions};
use crate::session::{
    DeliveryExtra, Enqueued, Message, RetainedCursor, Run, RunGrant, SubscriptionIds,
};
use crate::topic::{parse_shared, too_big, validate_filter};
use std::num::NonZeroU64;
use std::sync::Arc;

use super::metrics::Metrics;
use super::registry::SessionSlot;

thread_local! {
    /// The targets of the PUBLISH being routed on this thread (empty between calls).
    static TARGETS: std::cell::RefCell<Vec<Target>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Whether a full connected session takes messages past its limits under
/// `sessions.overflow = "backpressure"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Beyond {
    /// No: it drops them (a will, an embedder's message: no one to hold back).
    No,
    /// Yes, and the publishing connection is held back until it has room (see `pressure.rs`).
    Hold,
    /// Yes, with no one to hold back: messages already accepted and handed on from a shared
    /// subscription's leaving member (as many as it held).
    Take,
}

/// One session's share of a PUBLISH while the match is being collected.
struct Target {
    slot: Arc<SessionSlot>,
    grant: Grant,
}

/// What a session's matching subscriptions entitle it to.
pub(super) struct Grant {
    /// The highest QoS granted by the session's matching subscriptions.
    pub(crate) qos: QoS,
    /// Whether any of them asked for Retain As Published.
    pub(crate) retain_as_published: bool,
    pub(crate) subscription_ids: SubscriptionIds,
    /// The `$share/{group}/{filter}` the delivery is made through, if any.
    pub(crate) shared: Option<Arc<str>>,
}

impl Grant {
    /// The grant of one subscription.
    pub(super) fn of(e: &SubEntry, shared: Option<Arc<str>>) -> Self {
        Self {
            qos: e.options.qos,
            retain_as_published: e.options.retain_as_published,
            subscription_ids: SubscriptionIds::one(e.subscription_id),
            shared,
        }
    }
}

impl Broker {
    /// Subscribes `slot`'s session to `filter` on behalf of connection `conn` and returns the
    /// SUBACK reason: the QoS granted, or 0x8F for a malformed or too deep filter, 0x9E for
    /// `$share` when shared subscriptions are off, 0xA2 for a wildcard when wildcards are off,
    /// 0x87 when `acl` lets the client read nothing the filter matches (a subscription that
    /// may read some of it keeps the ACL, and each message is checked; see `auth/acl.rs`).
    /// The subscription's retained messages are queued to the session as a stream.
    ///
    /// `TakenOver` if `conn` no longer has the session: checked under the session's lock, held
    /// until the subscription is in the trie and in the session's list, so that a takeover
    /// either comes first (and nothing is added) or finds the filter to remove [issue 14,
    /// section 6]. Lock order: the session's, then the subscriptions' (or the retained
    /// store's); nothing takes a session's lock while holding either of the others.
    pub(super) fn subscribe(
        &self,
        slot: &Arc<SessionSlot>,
        conn: NonZeroU64,
        filter: &str,
        options: SubscriptionOptions,
        subscription_id: Option<u32>,
        acl: Option<&SharedAcl>,
    ) -> Result<ReasonCode, TakenOver> {
        let limits = &self.config().limits;
        let shared = parse_shared(filter);
        let plain = match shared {
            Some(Ok((_, f))) => f,
            _ => filter,
        };
        let refusal = match shared {
            Some(Err(_)) => Some(ReasonCode::TOPIC_FILTER_INVALID),
            Some(Ok(_)) if !self.config().shared_subscriptions.available => {
                Some(ReasonCode::SHARED_SUBSCRIPTIONS_NOT_SUPPORTED)
            }
            None if validate_filter(filter).is_err() => Some(ReasonCode::TOPIC_FILTER_INVALID),
            _ if too_big(plain, limits) => Some(ReasonCode::TOPIC_FILTER_INVALID),
            _ if !limits.wildcard_subscription_available && plain.contains(['+', '#']) => {
                Some(ReasonCode::WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED)
            }
            _ => None,
        };
        // A subscription the rules allow whole is still checked per message: a reload of the
        // ACL file may take part of it away later.
        let (refusal, read_check) = match (refusal, acl) {
            (None, Some(acl)) => match acl.subscribe(plain) {
                SubscribeCheck::Refused => (Some(ReasonCode::NOT_AUTHORIZED), None),
                SubscribeCheck::Whole | SubscribeCheck::Filtered => (None, Some(acl.clone())),
            },
            (refusal, _) => (refusal, None),
        };
        if let Some(reason) = refusal {
            // Refused, but only a connection that still has the session answers.
            drop(slot.lock_for(conn)?);
            return Ok(reason);
        }
        let max_qos = QoS::from_bits(limits.max_qos).unwrap_or(QoS::ExactlyOnce);
        let granted = options.qos.min(max_qos);
        let options = SubscriptionOptions {
            qos: granted,
            ..options
        };
        let entry = SubEntry {
            slot: slot.clone(),
            options,
            subscription_id,
            read_check: read_check.clone(),
        };
        let mut st = slot.lock_for(conn)?;
        let max = limits.max_subscriptions_per_client;
        if max > 0 && st.filters.len() >= max && !st.filters.contains(filter) {
            // A new filter beyond the limit; replacing one the session has is always allowed.
            return Ok(ReasonCode::QUOTA_EXCEEDED);
        }
        let kept = super::registry::Granted {
            options,
            id: subscription_id,
        };
        // The same subscription again changes nothing to keep.
        if st.filters.insert(filter, kept) != Some(kept) {
            self.persist_subscription(slot, &st, filter, Some(kept));
        }
        if let Some(Ok((group, shared_filter))) = shared {
            self.join_group(filter, group, shared_filter, entry);
            // No retained messages on a shared subscription (MQTT 5.0 section 4.8.2).
            return Ok(ReasonCode(granted as u8));
        }
        let existed = self
            .subscriptions_mut()
            .direct
            .insert(filter, slot.client_id.clone(), entry)
            .is_some();
        let send_retained = match options.retain_handling {
            RetainHandling::SendAtSubscribe => true,
            RetainHandling::SendIfNew => !existed,
            RetainHandling::DoNotSend => false,
        };
        if send_retained && limits.retain_available {
            st.session.push_retained(RetainedCursor {
                filter: filter.into(),
                after: None,
                qos: granted,
                extra: DeliveryExtra::new(SubscriptionIds::one(subscription_id), None),
                read_check,
            });
        }
        Ok(ReasonCode(granted as u8))
    }

    /// Removes the subscription of `slot`'s session to `filter` on behalf of connection `conn`;
    /// false if there was none, `TakenOver` if `conn` no longer has the session.
    pub(super) fn unsubscribe(
        &self,
        slot: &Arc<SessionSlot>,
        conn: NonZeroU64,
        filter: &str,
    ) -> Result<bool, TakenOver> {
        let mut st = slot.lock_for(conn)?;
        let removed = {
            let mut subs = self.subscriptions_mut();
            match parse_shared(filter) {
                Some(Ok((group, f))) => subs.leave_group(f, group, slot),
                _ => subs.direct.remove(filter, &slot.client_id).is_some(),
            }
        };
        let had = st.filters.remove(filter);
        st.session.drop_retained(filter);
        if had {
            self.persist_subscription(slot, &st, filter, None);
        }
        Ok(removed)
    }

    /// Removes the subscriptions of the session `slot` holds (its `filters`) when it ends. Only
    /// its own: a new session of the same client id may hold the same filters by then.
    pub(super) fn unsubscribe_all(&self, slot: &Arc<SessionSlot>, filters: &[Box<str>]) {
        if filters.is_empty() {
            return;
        }
        let id = &slot.client_id;
        let mut subs = self.subscriptions_mut();
        for filter in filters {
            match parse_shared(filter) {
                Some(Ok((group, f))) => {
                    subs.leave_group(f, group, slot);
                }
                _ => {
                    let ours = subs
                        .direct
                        .get(filter, id)
                        .is_some_and(|e| Arc::ptr_eq(&e.slot, slot));
                    if ours {
                        subs.direct.remove(filter, id);
                    }
                }
            }
        }
    }

    /// The subscriptions, for writing.
    pub(super) fn subscriptions_mut(&self) -> std::sync::RwLockWriteGuard<'_, Subscriptions> {
        self.inner
            .subscriptions
            .write()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The subscriptions, for matching.
    pub(super) fn subscriptions(&self) -> std::sync::RwLockReadGuard<'_, Subscriptions> {
        self.inner
            .subscriptions
            .read()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Routes a message: updates the retained store if it is retained, then offers it to every
    /// matching session. Returns how many sessions it matched.
    /// No one is held back by it (`sessions.overflow = "backpressure"` holds back the
    /// connection a message was read from; a will or an embedder's message has none).
    pub fn publish(&self, message: Message) -> usize {
        self.route_run(&[Arc::new(message)], Beyond::No)
    }

    /// Routes a run of messages that share one topic and one publisher, in order: the matching
    /// is done once, and each matching session is locked and woken once for the whole run. A
    /// device's burst of telemetry arrives as such runs, many to a read. Returns how many
    /// sessions the topic matched.
    /// The full sessions it pressed are noted for the connection it was read from to take
    /// (see `broker/pressure.rs`).
    pub(crate) fn publish_run(&self, run: &[Arc<Message>]) -> usize {
        self.route_run(run, Beyond::Hold)
    }

    /// Routes a run (see [`Broker::publish_run`]); `beyond`: whether a full connected
    /// subscriber takes it beyond its limits, holding its publisher back.
    fn route_run(&self, run: &[Arc<Message>], beyond: Beyond) -> usize {
        let Some(first) = run.first() else { return 0 };
        debug_assert!(run.iter().all(|m| m.topic == first.topic));
        if self.config().limits.retain_available && run.iter().any(|m| m.retain) {
            // Prepared before the lock, which every retained PUBLISH and every subscription's
            // retained stream takes: the message in one buffer of its own (it may be kept for
            // years, and must not pin the read it came in) and its record for the store.
            let now = std::time::Instant::now();
            let prepared: Vec<_> = (run.iter().filter(|m| m.retain))
                .map(|m| {
                    let kept = (!m.payload.is_empty()).then(|| Arc::new(m.compacted()));
                    let record = (self.store().is_some())
                        .then(|| {
                            kept.as_ref()
                                .and_then(|k| crate::store::encode_retained(k, now))
                        })
                        .flatten();
                    (m, kept, record)
                })
                .collect();
            let mut retained = lock(&self.inner.retained);
            for (m, kept, record) in prepared {
                // Sent under the lock, so the store sees a topic's changes in their order.
                // Only a message whose record is stored may leave memory.
                let spillable = record.is_some();
                let written = self.store().map(|store| {
                    store.send(crate::store::Change::Retained {
                        topic: (&*m.topic).into(),
                        record,
                    });
                    crate::store::Writer::last_sent_here()
                });
                let written = written.filter(|_| spillable);
                retained.update(&m.topic, kept, self.memory(), written);
            }
            self.settle_retained(&mut retained);
        }
        // One vector per thread, reused: collecting a thousand targets into a fresh vector grew
        // it ten times per PUBLISH, and the allocator handed back freshly zeroed pages each time.
        let mut targets = TARGETS.with(|t| std::mem::take(&mut *t.borrow_mut()));
        self.match_targets(first, &mut targets);
        let mut matched = targets.len();
        // Shared by every session that takes the run whole (see `session::Run`). Worth it for
        // more than one session, or for one that takes it at QoS 0 (written from the run's
        // one encoding); a single QoS 1/2 subscriber takes the messages one by one.
        let shareable = targets.len() > 1 || targets.iter().any(|t| t.grant.qos == QoS::AtMostOnce);
        let whole = (run.len() > 1 && shareable).then(|| Run::new(run));
        for t in targets.drain(..) {
            self.offer_run(&t.slot, run, whole.as_ref(), t.grant, beyond);
        }
        TARGETS.with(|t| *t.borrow_mut() = targets);
        matched += self.route_shared(run, beyond);
        matched
    }

    /// Offers a run of messages to one session under one lock, and wakes its connection if the
    /// queue was empty. Drops by queue policy are counted and logged (rate-limited). `whole`
    /// is the run made shareable: an online session with room for all of it takes it as one
    /// queue entry; others take the messages one by one. `beyond`: whether a full session
    /// (connected, `sessions.overflow = "backpressure"`) takes them past its limits; with
    /// [`Beyond::Hold`] one that did is noted for the publisher to wait on (see `pressure.rs`).
    pub(super) fn offer_run(
        &self,
        slot: &Arc<SessionSlot>,
        run: &[Arc<Message>],
        whole: Option<&Arc<Run>>,
        grant: Grant,
        beyond: Beyond,
    ) {
        let mut st = lock(&slot.state);
        let online = st.conn.is_some();
        // The connection drains its whole queue on every turn of its loop, so only a queue
        // that was empty can have a connection asleep on it: one wake per run at most.
        let was_empty = st.session.queued() == 0;
        let (mut dropped, mut first_drop, mut pressed) = (0, false, false);
        let (mut over_budget, mut spilled) = (0, 0);
        // A shared subscription's messages are queued one by one: a leaving member hands each
        // on to another (`take_shared`).
        let whole = whole.filter(|_| grant.shared.is_none());
        let extra = DeliveryExtra::new(grant.subscription_ids, grant.shared);
        let grant = RunGrant {
            qos: grant.qos,
            retain_as_published: grant.retain_as_published,
            extra,
        };
        let taken_whole = whole.is_some_and(|w| st.session.offer_run(w, &grant, online));
        let one_by_one = if taken_whole { &[][..] } else { run };
        // A client's own queue never holds it back: it would stop reading the acknowledgements
        // that drain it. Full, it drops.
        let press = beyond != Beyond::No
            && st.session.may_press(online)
            && run.first().is_some_and(|m| m.publisher != slot.client_id);
        for m in one_by_one {
            let qos = m.qos.min(grant.qos);
            let outcome = st
                .session
                .offer(qos, m.payload.len(), online, press, || grant.delivery(m));
            match outcome {
                Enqueued::Dropped { first } => {
                    dropped += 1;
                    first_drop |= first;
                }
                Enqueued::Displaced { dropped: n, first } => {
                    dropped += u64::from(n);
                    first_drop |= first;
                }
                Enqueued::Pressed => pressed = true,
                Enqueued::OverBudget => over_budget += 1,
                Enqueued::Spilled => spilled += 1,
                Enqueued::Queued | Enqueued::Skipped => {}
            }
        }
        let waker = if online && was_empty && st.session.queued() > 0 {
            st.take_waker()
        } else {
            None
        };
        drop(st);
        if let Some(waker) = waker {
            waker.wake();
        }
        if first_drop {
            self.inner.overload_log.queue_full(&slot.client_id);
        }
        self.count_queue_full(dropped);
        self.count_memory(over_budget, spilled);
        if pressed && beyond == Beyond::Hold {
            super::pressure::note(slot);
        }
    }

    /// Counts `n` messages dropped because a session's queue was full.
    pub(super) fn count_queue_full(&self, n: u64) {
        let metrics = self.metrics();
        Metrics::add(&metrics.messages_dropped, n);
        Metrics::add(&metrics.dropped_queue_full, n);
    }

    /// Counts `dropped` messages refused, and `spilled` held on disk only, because the queues
    /// were over the memory budget; logs the first refusal of an episode.
    pub(super) fn count_memory(&self, dropped: u64, spilled: u64) {
        let metrics = self.metrics();
        Metrics::add(&metrics.messages_spilled, spilled);
        if dropped == 0 && spilled == 0 {
            return;
        }
        // Retained bodies waiting for the writer leave memory at the next retained message or
        // subscription; when the queues spill or drop for want of memory, now.
        self.settle_retained_if_waiting();
        if dropped == 0 {
            return;
        }
        Metrics::add(&metrics.messages_dropped, dropped);
        Metrics::add(&metrics.dropped_memory, dropped);
        let budget = self.memory();
        if budget.first_refusal() {
            tracing::warn!(
                used = budget.used(),
                limit = budget.limit(),
                "queued messages are over limits.max_memory_bytes: new messages that cannot be \
                 held on disk are dropped (counted as dropped_memory) until queues drain"
            );
        }
    }

    /// One target per session: overlapping subscriptions collapse to the highest granted QoS,
    /// carrying every matching Subscription Identifier [MQTT-3.3.5-1, MQTT-3.3.4-3..4].
    fn match_targets(&self, message: &Message, targets: &mut Vec<Target>) {
        let mut withheld = 0;
        let subs = self.subscriptions();
        let sets = subs.direct.for_each_match(&message.topic, |client, e| {
            if e.options.no_local && *client == message.publisher {
                return; // [MQTT-3.8.3-3] of 5.0
            }
            if !e.may_read(&message.topic) {
                withheld += 1;
                return;
            }
            targets.push(Target {
                slot: e.slot.clone(),
                grant: Grant::of(e, None),
            });
        });
        drop(subs);
        if withheld > 0 {
            Metrics::add(&self.metrics().dropped_not_authorized, withheld);
        }
        // A session appears more than once only when several of its filters match, so only when
        // several filters' sets matched. Sorting by session and merging neighbours costs no
        // allocation (a hash map did, per PUBLISH).
        if sets > 1 && targets.len() > 1 {
            targets.sort_unstable_by_key(|t| Arc::as_ptr(&t.slot));
            targets.dedup_by(|dup, kept| {
                if !Arc::ptr_eq(&dup.slot, &kept.slot) {
                    return false;
                }
                let (kept, dup) = (&mut kept.grant, &mut dup.grant);
                kept.qos = kept.qos.max(dup.qos);
                kept.retain_as_published |= dup.retain_as_published;
                kept.subscription_ids.append(&mut dup.subscription_ids);
                true
            });
        }
    }
}
