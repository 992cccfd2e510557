//! Will messages: published when a connection ends without a normal DISCONNECT, at once or,
//! with a v5 Will Delay Interval, once the delay has passed or the session has ended, whichever
//! comes first; a reconnection to the session within the delay cancels it [MQTT-3.1.3-9].

use super::registry::{SessionSlot, SlotState};
use super::{Broker, Metrics, lock};
use crate::session::{Deadline, Message};
use std::sync::Arc;
use std::time::{Duration, Instant};

impl Broker {
    /// Publishes a will now. Its Message Expiry Interval counts from now, the moment it is
    /// published (5.0 section 3.1.3.2.4), not from when the client connected.
    pub(crate) fn publish_will(&self, mut will: Message) {
        will.expires_at = will
            .properties
            .message_expiry_interval
            .map(|secs| Deadline::after(Instant::now(), secs));
        Metrics::inc(&self.metrics().wills_published);
        self.publish(will);
    }

    /// Holds `will` for `delay_secs` on the session that connection `conn_id` is leaving (it
    /// is called before the connection detaches). If another connection has already resumed
    /// the session, the will is cancelled; if one ended it with Clean Start, it goes now.
    pub(super) fn defer_will(
        &self,
        slot: &Arc<SessionSlot>,
        conn_id: std::num::NonZeroU64,
        will: Message,
        delay_secs: u32,
    ) {
        let mut st = lock(&slot.state);
        match &st.conn {
            Some(c) if c.id == conn_id => {}
            // [MQTT-3.1.3-9] the client is back on this session before the delay passed.
            Some(_) => return,
            // A Clean Start connection took the session away and ended it: the session ended
            // first, so the will goes now.
            None => {
                drop(st);
                self.publish_will(will);
                return;
            }
        }
        // Checked under the slot's lock, which `begin_shutdown` takes after raising the flag:
        // a will is either held here before shutdown releases it, or published now. A
        // persistent session's will is kept (in the store) even then: its session outlives
        // the restart.
        if self.is_shutting_down() && !self.will_is_kept(slot, &st) {
            drop(st);
            self.publish_will(will);
            return;
        }
        let due = crate::store::now_unix_ms().saturating_add(u64::from(delay_secs) * 1000);
        self.persist_will(slot, &st, Some((&will, due)));
        self.arm_will(slot, &mut st, will, u64::from(delay_secs) * 1000);
    }

    /// Holds `will` on `slot` (under its lock, held by the caller as `st`) and publishes it
    /// after `delay_ms` unless a reconnection takes it away first.
    fn arm_will(&self, slot: &Arc<SessionSlot>, st: &mut SlotState, will: Message, delay_ms: u64) {
        let generation = st.generation();
        let broker = self.clone();
        let slot2 = slot.clone();
        let timer = tokio::spawn(async move {
            let slot = slot2;
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            let will = {
                let mut st = lock(&slot.state);
                // A kept will due while the server stops stays in the store for the next start,
                // as its session does.
                if broker.is_shutting_down() && broker.will_is_kept(&slot, &st) {
                    return;
                }
                // A reconnection bumped the generation and took the will away.
                let will = if st.generation() == generation {
                    st.take_will()
                } else {
                    None
                };
                if will.is_some() {
                    broker.persist_will(&slot, &st, None);
                }
                will
            };
            if let Some(will) = will {
                broker.publish_will(will);
            }
        });
        st.hold_will(will, timer.abort_handle());
    }

    /// Puts back a will read from the store, due in `left_ms` (start-up).
    pub(crate) fn hold_restored_will(&self, slot: &Arc<SessionSlot>, will: Message, left_ms: u64) {
        let mut st = lock(&slot.state);
        self.arm_will(slot, &mut st, will, left_ms);
    }

    /// Publishes the will a session was holding, if any: the server is stopping and its
    /// session ends. A will kept in the store stays there, held: its session outlives the
    /// restart, and its delay counts on.
    pub(super) fn release_will(&self, slot: &SessionSlot) {
        let will = {
            let mut st = lock(&slot.state);
            if self.will_is_kept(slot, &st) {
                None
            } else {
                st.take_will()
            }
        };
        if let Some(will) = will {
            self.publish_will(will);
        }
    }
}
