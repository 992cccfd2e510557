//! Routing: subscribe and unsubscribe in the trie, and fan a PUBLISH out to every matching
//! session's bounded queue. Matching happens under a read lock without awaiting; each session is
//! then locked on its own for one enqueue, so a slow subscriber delays no one.

use super::{Broker, SubEntry, lock};
use crate::protocol::{QoS, ReasonCode, RetainHandling, SubscriptionOptions};
use crate::session::{Delivery, Enqueued, Message};
use crate::topic::{parse_shared, validate_filter};
use std::sync::Arc;

use super::metrics::Metrics;
use super::registry::SessionSlot;

/// The result of one SUBSCRIBE topic filter.
#[derive(Debug)]
pub struct SubscribeOutcome {
    /// Granted QoS (0x00-0x02) or a failure code.
    pub reason: ReasonCode,
    /// Retained messages to send for it.
    pub retained: Vec<Delivery>,
}

/// One session's share of a PUBLISH while the match is being collected.
struct Target {
    slot: Arc<SessionSlot>,
    qos: QoS,
    retain: bool,
    subscription_ids: Vec<u32>,
}

impl Broker {
    /// Subscribes `slot` to `filter`. Refusals are reason codes: 0x8F for a malformed filter,
    /// 0x9E for `$share` (shared subscriptions arrive with the MQTT 5 issue).
    pub fn subscribe(
        &self,
        slot: &Arc<SessionSlot>,
        filter: &str,
        options: SubscriptionOptions,
        subscription_id: Option<u32>,
    ) -> SubscribeOutcome {
        let refuse = |reason| SubscribeOutcome {
            reason,
            retained: Vec::new(),
        };
        if parse_shared(filter).is_some() {
            return refuse(ReasonCode::SHARED_SUBSCRIPTIONS_NOT_SUPPORTED);
        }
        if validate_filter(filter).is_err() {
            return refuse(ReasonCode::TOPIC_FILTER_INVALID);
        }
        let max_qos = QoS::from_bits(self.config().limits.max_qos).unwrap_or(QoS::ExactlyOnce);
        let granted = options.qos.min(max_qos);
        let options = SubscriptionOptions {
            qos: granted,
            ..options
        };
        let entry = SubEntry {
            slot: slot.clone(),
            options,
            subscription_id,
        };
        let existed = {
            let mut trie = self
                .inner
                .subscriptions
                .write()
                .unwrap_or_else(|e| e.into_inner());
            trie.insert(filter, slot.client_id.clone(), entry).is_some()
        };
        lock(&slot.state).filters.insert(filter.into());
        let send_retained = match options.retain_handling {
            RetainHandling::SendAtSubscribe => true,
            RetainHandling::SendIfNew => !existed,
            RetainHandling::DoNotSend => false,
        };
        let mut retained = Vec::new();
        if send_retained {
            lock(&self.inner.retained).for_each_match(filter, |m| {
                retained.push(Delivery {
                    message: m.clone(),
                    qos: m.qos.min(granted),
                    retain: true, // [MQTT-3.3.1-8]
                    subscription_ids: subscription_id.into_iter().collect(),
                });
            });
        }
        SubscribeOutcome {
            reason: ReasonCode(granted as u8),
            retained,
        }
    }

    /// Removes `slot`'s subscription to `filter`; false if there was none.
    pub fn unsubscribe(&self, slot: &Arc<SessionSlot>, filter: &str) -> bool {
        let removed = {
            let mut trie = self
                .inner
                .subscriptions
                .write()
                .unwrap_or_else(|e| e.into_inner());
            trie.remove(filter, &slot.client_id).is_some()
        };
        lock(&slot.state).filters.remove(filter);
        removed
    }

    pub(super) fn unsubscribe_all(&self, client_id: &Arc<str>, filters: &[Box<str>]) {
        if filters.is_empty() {
            return;
        }
        let mut trie = self
            .inner
            .subscriptions
            .write()
            .unwrap_or_else(|e| e.into_inner());
        for f in filters {
            trie.remove(f, client_id);
        }
    }

    /// Routes a message: updates the retained store if it is retained, then offers it to every
    /// matching session. Returns how many sessions it matched.
    pub fn publish(&self, message: Message) -> usize {
        let message = Arc::new(message);
        if message.retain && self.config().limits.retain_available {
            let mut retained = lock(&self.inner.retained);
            if message.payload.is_empty() {
                retained.remove(&message.topic); // [MQTT-3.3.1-10]
            } else {
                retained.insert(&message.topic, message.clone());
            }
        }
        let targets = self.match_targets(&message);
        let matched = targets.len();
        for t in targets {
            let delivery = Delivery {
                message: message.clone(),
                qos: t.qos,
                retain: t.retain,
                subscription_ids: t.subscription_ids,
            };
            let mut st = lock(&t.slot.state);
            let online = st.conn.is_some();
            let outcome = st.session.enqueue(delivery, online);
            drop(st);
            match outcome {
                Enqueued::Queued if online => t.slot.wake.notify_one(),
                Enqueued::Queued | Enqueued::Skipped => {}
                Enqueued::Dropped { first } => {
                    Metrics::inc(&self.metrics().messages_dropped);
                    if first {
                        tracing::warn!(
                            client_id = %t.slot.client_id,
                            "session queue full: dropping messages for this client until it drains"
                        );
                    }
                }
            }
        }
        matched
    }

    /// One target per session: overlapping subscriptions collapse to the highest granted QoS,
    /// carrying every matching Subscription Identifier [MQTT-3.3.5-1, MQTT-3.3.4-3..4].
    fn match_targets(&self, message: &Message) -> Vec<Target> {
        let trie = self
            .inner
            .subscriptions
            .read()
            .unwrap_or_else(|e| e.into_inner());
        let mut targets: Vec<Target> = Vec::new();
        trie.for_each_match(&message.topic, |client, e| {
            if e.options.no_local && *client == message.publisher {
                return; // [MQTT-3.8.3-3] of 5.0
            }
            targets.push(Target {
                slot: e.slot.clone(),
                qos: message.qos.min(e.options.qos),
                retain: e.options.retain_as_published && message.retain,
                subscription_ids: e.subscription_id.into_iter().collect(),
            });
        });
        drop(trie);
        // A session appears more than once only when several of its filters match. Sorting by
        // session and merging neighbours costs no allocation (a hash map did, per PUBLISH).
        if targets.len() > 1 {
            targets.sort_unstable_by_key(|t| Arc::as_ptr(&t.slot));
            targets.dedup_by(|dup, kept| {
                if !Arc::ptr_eq(&dup.slot, &kept.slot) {
                    return false;
                }
                kept.qos = kept.qos.max(dup.qos);
                kept.retain |= dup.retain;
                kept.subscription_ids.append(&mut dup.subscription_ids);
                true
            });
        }
        targets
    }
}
