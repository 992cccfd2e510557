//! Shared subscriptions (MQTT 5.0 section 4.8.2, also offered to 3.1.1 clients as Mosquitto and
//! EMQX do): the members of `$share/{group}/{filter}` compete for its messages, each message
//! going to one of them, picked by the configured [`ShareStrategy`].

use super::router::{Beyond, Grant};
use super::{Broker, Metrics, SessionSlot, SubEntry, Subscriptions, lock};
use crate::config::ShareStrategy;
use crate::session::{Delivery, Enqueued, Message};
use crate::topic::parse_shared;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

/// One shared subscription: a group name and a filter, and the sessions subscribed to it.
#[derive(Debug)]
pub(crate) struct SharedGroup {
    /// The whole `$share/{group}/{filter}` string, carried by each delivery made through the
    /// group so that a member's unfinished messages can find their way back to it.
    pub(crate) name: Arc<str>,
    /// In subscription order; a session appears at most once.
    pub(crate) members: Vec<SubEntry>,
    /// Where the next round-robin pick starts.
    cursor: AtomicUsize,
}

impl SharedGroup {
    /// An empty group for `name`.
    pub(crate) fn new(name: Arc<str>) -> Self {
        Self {
            name,
            members: Vec::new(),
            cursor: AtomicUsize::new(0),
        }
    }

    /// Adds a member, or replaces its options if it is one already [MQTT-3.8.4-3].
    pub(crate) fn join(&mut self, entry: SubEntry) {
        match self
            .members
            .iter_mut()
            .find(|m| m.slot.client_id == entry.slot.client_id)
        {
            Some(m) => *m = entry,
            None => self.members.push(entry),
        }
    }

    /// Removes the member whose session is `slot`; false if it was not one.
    pub(crate) fn leave(&mut self, slot: &Arc<SessionSlot>) -> bool {
        let before = self.members.len();
        self.members.retain(|m| !Arc::ptr_eq(&m.slot, slot));
        self.members.len() != before
    }

    /// The member that gets a message of `topic` from `publisher`, skipping `exclude` (a member
    /// handing its messages back). A connected member is preferred; if none is connected, an
    /// offline one is picked by the same rule, and its session queues the message.
    pub(crate) fn pick(
        &self,
        strategy: ShareStrategy,
        publisher: &str,
        topic: &str,
        exclude: Option<&str>,
    ) -> Option<&SubEntry> {
        let n = self.members.len();
        if n == 0 {
            return None;
        }
        let start = match strategy {
            ShareStrategy::RoundRobin | ShareStrategy::Local => self.cursor.fetch_add(1, Relaxed),
            ShareStrategy::Random => random(),
            ShareStrategy::HashClientId => hash(publisher),
            ShareStrategy::HashTopic => hash(topic),
        };
        let candidates = (0..n)
            .map(|i| &self.members[(start.wrapping_add(i)) % n])
            .filter(|m| exclude != Some(&*m.slot.client_id));
        let mut first = None;
        for m in candidates {
            if m.slot.is_online() {
                return Some(m);
            }
            first.get_or_insert(m);
        }
        first
    }
}

/// A hash of `value` that is the same for the whole life of the process, so a hashing
/// strategy keeps sending one publisher's or one topic's messages to one member.
fn hash(value: &str) -> usize {
    static SEED: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    let h = SEED.get_or_init(Default::default).hash_one(value);
    // Truncation on 32-bit targets is fine: this only spreads picks.
    h as usize
}

/// A cheap pseudo-random number (xorshift64*): picking a member needs spread, not secrecy, so
/// two threads that race on the state and draw the same number do no harm.
fn random() -> usize {
    static STATE: AtomicU64 = AtomicU64::new(0x9E37_79B9_7F4A_7C15);
    let mut x = STATE.load(Relaxed);
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    STATE.store(x, Relaxed);
    x.wrapping_mul(0x2545_F491_4F6C_DD1D) as usize
}

impl Subscriptions {
    /// Removes the session `slot` from the group `group` of `filter`, and the group once it is
    /// empty; false if it was not a member.
    pub(super) fn leave_group(
        &mut self,
        filter: &str,
        group: &str,
        slot: &Arc<SessionSlot>,
    ) -> bool {
        let key: Arc<str> = group.into();
        let Some(g) = self.shared.get_mut(filter, &key) else {
            return false;
        };
        let left = g.leave(slot);
        if g.members.is_empty() {
            self.shared.remove(filter, &key);
        }
        left
    }
}

impl Broker {
    /// Adds a session to the group `group` of `filter` (`name` is the whole `$share/...` filter).
    pub(super) fn join_group(&self, name: &str, group: &str, filter: &str, entry: SubEntry) {
        let key: Arc<str> = group.into();
        let mut subs = self.subscriptions_mut();
        match subs.shared.get_mut(filter, &key) {
            Some(g) => g.join(entry),
            None => {
                let mut g = SharedGroup::new(name.into());
                g.join(entry);
                subs.shared.insert(filter, key, g);
            }
        }
    }

    /// Gives each message of a run to one member of every shared subscription it matches; a
    /// member is picked per message, so a run is spread over the group as single messages
    /// would be. Returns how many groups the topic matched.
    pub(super) fn route_shared(&self, run: &[Arc<Message>], beyond: Beyond) -> usize {
        let strategy = self.config().shared_subscriptions.strategy;
        let mut picks: Vec<(Arc<SessionSlot>, Grant)> = Vec::new();
        let mut groups = 0;
        for m in run {
            {
                let subs = self.subscriptions();
                if subs.shared.is_empty() {
                    return 0;
                }
                subs.shared.for_each_match(&m.topic, |_, g| {
                    if let Some(e) = g.pick(strategy, &m.publisher, &m.topic, None) {
                        // A member the ACL does not let read this topic: the group's message
                        // is withheld (members of a group are usually one user, alike).
                        if e.may_read(&m.topic) {
                            picks.push((e.slot.clone(), Grant::of(e, Some(g.name.clone()))));
                        } else {
                            Metrics::inc(&self.metrics().dropped_not_authorized);
                        }
                    }
                });
            }
            groups = groups.max(picks.len());
            for (slot, grant) in picks.drain(..) {
                self.offer_run(&slot, std::slice::from_ref(m), None, grant, beyond);
            }
        }
        groups
    }

    /// Gives a leaving member's unfinished shared deliveries to other members of their groups.
    /// A delivery whose group has no other member stays with `slot` if its session lives on
    /// (`keep`), else it is dropped and counted.
    pub(super) fn hand_back(&self, slot: &Arc<SessionSlot>, deliveries: Vec<Delivery>, keep: bool) {
        let strategy = self.config().shared_subscriptions.strategy;
        let mut stay = Vec::new();
        for d in deliveries {
            let Some(name) = d.shared().cloned() else {
                continue;
            };
            let other = match parse_shared(&name) {
                Some(Ok((group, filter))) => {
                    let subs = self.subscriptions();
                    subs.shared.get(filter, &Arc::from(group)).and_then(|g| {
                        let m = &d.message;
                        g.pick(strategy, &m.publisher, &m.topic, Some(&slot.client_id))
                            .map(|e| (e.slot.clone(), Grant::of(e, Some(name.clone()))))
                    })
                }
                _ => None,
            };
            match other {
                Some((to, grant)) => {
                    // Accepted already, and handed on: taken past a full member's limits (as
                    // many as the leaving one held), with no publisher to hold back.
                    let m = std::slice::from_ref(&d.message);
                    self.offer_run(&to, m, None, grant, Beyond::Take);
                }
                None => stay.push(d),
            }
        }
        if stay.is_empty() {
            return;
        }
        if keep {
            let mut st = lock(&slot.state);
            let (mut full, mut over_budget, mut spilled) = (0, 0, 0);
            for d in stay {
                match st.session.enqueue(d, false) {
                    Enqueued::Dropped { .. } => full += 1,
                    Enqueued::Displaced { dropped, .. } => full += u64::from(dropped),
                    Enqueued::OverBudget => over_budget += 1,
                    Enqueued::Spilled => spilled += 1,
                    Enqueued::Queued | Enqueued::Skipped | Enqueued::Pressed => {}
                }
            }
            drop(st);
            self.count_queue_full(full);
            self.count_memory(over_budget, spilled);
        } else {
            let metrics = self.metrics();
            Metrics::add(&metrics.messages_dropped, stay.len() as u64);
            Metrics::add(&metrics.dropped_no_member, stay.len() as u64);
        }
    }
}
