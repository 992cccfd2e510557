//! Topic aliases (MQTT 5.0 section 3.3.2.3.4), one table per direction and connection: the
//! client's aliases for the topics it publishes to, up to the Topic Alias Maximum we announce,
//! and ours for the topics we send it, up to the maximum it announced, reused least recently
//! used first so that a client's hot topics keep theirs.

use crate::protocol::ByteStr;
use std::collections::HashMap;

/// Why an inbound alias cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AliasError {
    /// 0, or above the maximum we announced [MQTT-3.3.2-8, MQTT-3.3.2-9]: 0x94.
    OutOfRange,
    /// An empty topic with an alias nobody set on this connection: 0x82.
    Unknown,
}

/// The client's aliases. Allocated on first use, so a connection that never uses one pays
/// nothing for it.
#[derive(Debug, Default)]
pub(crate) struct Inbound {
    /// A boxed slice, not a vector: 8 bytes less on every connection.
    slots: Box<[Option<ByteStr>]>,
}

impl Inbound {
    /// The topic a PUBLISH is for: its own topic, which (re)sets `alias` if it carries one
    /// [MQTT-3.3.2-12], or the topic the alias stands for when its topic is empty.
    pub(crate) fn resolve(
        &mut self,
        topic: ByteStr,
        alias: u16,
        maximum: u16,
    ) -> Result<ByteStr, AliasError> {
        if alias == 0 || alias > maximum {
            return Err(AliasError::OutOfRange);
        }
        let i = usize::from(alias - 1);
        if topic.is_empty() {
            return self
                .slots
                .get(i)
                .and_then(Clone::clone)
                .ok_or(AliasError::Unknown);
        }
        if self.slots.len() <= i {
            let mut slots = std::mem::take(&mut self.slots).into_vec();
            slots.resize(usize::from(maximum), None);
            self.slots = slots.into_boxed_slice();
        }
        self.slots[i] = Some(topic.clone());
        Ok(topic)
    }
}

/// How a PUBLISH to the client names its topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Naming {
    /// The topic in full, with no alias (the client allows none).
    Topic,
    /// An empty topic and this alias, which the client already knows.
    Alias(u16),
    /// The topic in full and this alias, which it now stands for.
    Assign(u16),
}

/// Our aliases for the client, least recently used reused first.
#[derive(Debug, Default)]
pub(crate) struct Outbound {
    /// The client's Topic Alias Maximum; 0 = it accepts none.
    maximum: u16,
    /// Topic -> (alias, when last used).
    map: HashMap<ByteStr, (u16, u64)>,
    clock: u64,
}

impl Outbound {
    /// A table for a client that accepts up to `maximum` aliases.
    pub(crate) fn new(maximum: u16) -> Self {
        Self {
            maximum,
            ..Self::default()
        }
    }

    /// How to name `topic` in the next PUBLISH, without changing the table: the caller may
    /// still discard the packet (too large for the client), and an alias must only be
    /// assigned by a packet the client receives.
    pub(crate) fn plan(&self, topic: &ByteStr) -> Naming {
        if self.maximum == 0 {
            return Naming::Topic;
        }
        if let Some(&(alias, _)) = self.map.get(topic) {
            return Naming::Alias(alias);
        }
        if self.map.len() < usize::from(self.maximum) {
            // Aliases are handed out 1, 2, 3... and never given back, only reused.
            return Naming::Assign(u16::try_from(self.map.len() + 1).unwrap_or(self.maximum));
        }
        let lru = self.map.values().min_by_key(|(_, used)| *used);
        lru.map_or(Naming::Topic, |&(alias, _)| Naming::Assign(alias))
    }

    /// Records that a PUBLISH named `topic` as `naming` planned.
    pub(crate) fn commit(&mut self, topic: &ByteStr, naming: Naming) {
        self.clock += 1;
        match naming {
            Naming::Topic => {}
            Naming::Alias(_) => {
                if let Some(entry) = self.map.get_mut(topic) {
                    entry.1 = self.clock;
                }
            }
            Naming::Assign(alias) => {
                self.map.retain(|_, (a, _)| *a != alias);
                // A copy of the topic: a slice would keep the publisher's whole read buffer
                // alive for as long as the alias lives.
                let own = ByteStr::from_validated(bytes::Bytes::copy_from_slice(topic.as_bytes()));
                self.map.insert(own, (alias, self.clock));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &'static str) -> ByteStr {
        ByteStr::from_static(s).unwrap()
    }

    #[test]
    fn inbound_sets_then_resolves_and_checks_the_range() {
        let mut a = Inbound::default();
        assert_eq!(a.resolve(t(""), 1, 3), Err(AliasError::Unknown));
        assert_eq!(a.resolve(t("x/y"), 1, 3), Ok(t("x/y")));
        assert_eq!(a.resolve(t(""), 1, 3), Ok(t("x/y")));
        assert_eq!(
            a.resolve(t("z"), 1, 3),
            Ok(t("z")),
            "reset to another topic"
        );
        assert_eq!(a.resolve(t(""), 1, 3), Ok(t("z")));
        assert_eq!(a.resolve(t("q"), 0, 3), Err(AliasError::OutOfRange));
        assert_eq!(a.resolve(t("q"), 4, 3), Err(AliasError::OutOfRange));
        assert_eq!(a.resolve(t(""), 3, 3), Err(AliasError::Unknown));
    }

    #[test]
    fn outbound_assigns_then_reuses_the_least_recently_used() {
        let mut o = Outbound::new(2);
        let send = |o: &mut Outbound, topic: &'static str| {
            let n = o.plan(&t(topic));
            o.commit(&t(topic), n);
            n
        };
        assert_eq!(send(&mut o, "a"), Naming::Assign(1));
        assert_eq!(send(&mut o, "b"), Naming::Assign(2));
        assert_eq!(send(&mut o, "a"), Naming::Alias(1));
        // "b" is now the least recently used: "c" takes its alias.
        assert_eq!(send(&mut o, "c"), Naming::Assign(2));
        assert_eq!(send(&mut o, "a"), Naming::Alias(1));
        assert_eq!(
            send(&mut o, "b"),
            Naming::Assign(2),
            "b lost its alias to c"
        );
        assert_eq!(send(&mut o, "c"), Naming::Assign(1), "a was least recent");
    }

    #[test]
    fn a_plan_not_committed_changes_nothing() {
        let mut o = Outbound::new(1);
        assert_eq!(o.plan(&t("a")), Naming::Assign(1));
        assert_eq!(o.plan(&t("a")), Naming::Assign(1));
        o.commit(&t("a"), Naming::Assign(1));
        assert_eq!(o.plan(&t("a")), Naming::Alias(1));
        assert_eq!(Outbound::new(0).plan(&t("a")), Naming::Topic);
    }
}
