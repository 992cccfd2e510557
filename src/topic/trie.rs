//! The subscription trie: one node per topic level, with `+` and `#` children kept apart from
//! literal levels, so a lookup costs the topic's depth times the wildcard branching, not the
//! number of subscriptions.
//!
//! Every walk here is a loop, never a recursion: a client chooses how deep its topics and
//! filters go, and a recursion that deep overflows the stack of the thread that walks it (a
//! filter of 7,000 levels once aborted the whole broker). Dropping a node is a loop too.

use smallvec::SmallVec;
use std::collections::HashMap;
use std::hash::Hash;

/// Maps topic filters to subscribers. Each subscriber `K` holds at most one value `V` per filter
/// (subscribing again replaces it, MQTT-3.8.4-3).
#[derive(Debug)]
pub struct SubscriptionTrie<K, V> {
    root: Node<K, V>,
    len: usize,
}

#[derive(Debug)]
struct Node<K, V> {
    children: HashMap<Box<str>, Node<K, V>>,
    plus: Option<Box<Node<K, V>>>,
    /// Subscribers of the filter ending in `#` at this level.
    hash: HashMap<K, V>,
    /// Subscribers of the filter ending exactly at this level.
    here: HashMap<K, V>,
}

impl<K, V> Default for Node<K, V> {
    fn default() -> Self {
        Self {
            children: HashMap::new(),
            plus: None,
            hash: HashMap::new(),
            here: HashMap::new(),
        }
    }
}

impl<K, V> Drop for Node<K, V> {
    /// Takes the subtree apart with a loop: the default drop recurses once per level.
    fn drop(&mut self) {
        if self.children.is_empty() && self.plus.is_none() {
            return;
        }
        let mut pending: Vec<Node<K, V>> = Vec::new();
        let detach = |node: &mut Self, pending: &mut Vec<Self>| {
            pending.extend(node.children.drain().map(|(_, child)| child));
            if let Some(plus) = node.plus.take() {
                pending.push(*plus);
            }
        };
        detach(self, &mut pending);
        while let Some(mut node) = pending.pop() {
            // Emptied first, so this node's own drop returns at once.
            detach(&mut node, &mut pending);
        }
    }
}

/// A node still to visit in a lookup, and the rest of the topic from its level on (`None` once
/// every level is consumed).
type Visit<'a, 't, K, V> = (&'a Node<K, V>, Option<&'t str>);

/// One level of a filter on the way down the trie.
#[derive(Clone, Copy)]
enum Step<'f> {
    Plus,
    Level(&'f str),
}

impl<K, V> Node<K, V> {
    fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.plus.is_none()
            && self.hash.is_empty()
            && self.here.is_empty()
    }

    fn child(&self, step: Step) -> Option<&Self> {
        match step {
            Step::Plus => self.plus.as_deref(),
            Step::Level(level) => self.children.get(level),
        }
    }

    fn child_mut(&mut self, step: Step) -> Option<&mut Self> {
        match step {
            Step::Plus => self.plus.as_deref_mut(),
            Step::Level(level) => self.children.get_mut(level),
        }
    }

    /// Whether the node holds anything but one child: pruning below it must keep it.
    fn holds_more_than_one_child(&self) -> bool {
        !self.here.is_empty()
            || !self.hash.is_empty()
            || self.children.len() + usize::from(self.plus.is_some()) > 1
    }
}

/// A filter's levels down to the node that holds its subscribers, and whether it ends in `#`
/// (its subscribers are then in that node's `hash` set, else in `here`).
fn steps(filter: &str) -> (impl Iterator<Item = Step<'_>> + Clone, bool) {
    let hash = filter == "#" || filter.ends_with("/#");
    let path = if hash {
        &filter[..filter.len().saturating_sub(2)]
    } else {
        filter
    };
    // "#" alone has no level above it: an empty path, not one empty level.
    let levels = (!(hash && filter == "#")).then(|| super::levels(path));
    let steps = levels
        .into_iter()
        .flatten()
        .map(|l| if l == "+" { Step::Plus } else { Step::Level(l) });
    (steps, hash)
}

impl<K: Eq + Hash + Clone, V> Default for SubscriptionTrie<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Eq + Hash + Clone, V> SubscriptionTrie<K, V> {
    /// An empty trie.
    pub fn new() -> Self {
        Self {
            root: Node::default(),
            len: 0,
        }
    }

    /// Number of (filter, subscriber) entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is subscribed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds or replaces `key`'s subscription to `filter` (already validated); returns the value it
    /// replaced.
    pub fn insert(&mut self, filter: &str, key: K, value: V) -> Option<V> {
        let mut node = &mut self.root;
        let mut levels = super::levels(filter).peekable();
        while let Some(level) = levels.next() {
            if level == "#" && levels.peek().is_none() {
                let old = node.hash.insert(key, value);
                self.len += usize::from(old.is_none());
                return old;
            }
            node = if level == "+" {
                node.plus.get_or_insert_with(Box::default)
            } else {
                node.children.entry(level.into()).or_default()
            };
        }
        let old = node.here.insert(key, value);
        self.len += usize::from(old.is_none());
        old
    }

    /// `key`'s subscription to `filter`, if there is one.
    pub fn get(&self, filter: &str, key: &K) -> Option<&V> {
        let mut node = &self.root;
        let mut levels = super::levels(filter).peekable();
        while let Some(level) = levels.next() {
            if level == "#" && levels.peek().is_none() {
                return node.hash.get(key);
            }
            node = if level == "+" {
                node.plus.as_deref()?
            } else {
                node.children.get(level)?
            };
        }
        node.here.get(key)
    }

    /// `key`'s subscription to `filter`, mutably, if there is one.
    pub fn get_mut(&mut self, filter: &str, key: &K) -> Option<&mut V> {
        let mut node = &mut self.root;
        let mut levels = super::levels(filter).peekable();
        while let Some(level) = levels.next() {
            if level == "#" && levels.peek().is_none() {
                return node.hash.get_mut(key);
            }
            node = if level == "+" {
                node.plus.as_deref_mut()?
            } else {
                node.children.get_mut(level)?
            };
        }
        node.here.get_mut(key)
    }

    /// Removes `key`'s subscription to `filter`; returns its value if there was one. Nodes left
    /// empty are pruned so churn does not grow the trie.
    pub fn remove(&mut self, filter: &str, key: &K) -> Option<V> {
        let (steps, hash) = steps(filter);
        // The deepest node on the path that must stay whatever happens below it: if the
        // removal leaves the last node empty, every node under this one on the path holds
        // nothing else and goes with it, cut off in one step.
        let (mut keep, mut depth) = (0, 0);
        let mut node = &self.root;
        for step in steps.clone() {
            if node.holds_more_than_one_child() {
                keep = depth;
            }
            node = node.child(step)?;
            depth += 1;
        }
        let mut node = &mut self.root;
        for step in steps.clone() {
            node = node.child_mut(step)?;
        }
        let removed = if hash {
            node.hash.remove(key)
        } else {
            node.here.remove(key)
        }?;
        self.len -= 1;
        if node.is_empty() && depth > 0 {
            let mut steps = steps;
            let mut parent = &mut self.root;
            for step in steps.by_ref().take(keep) {
                // The path was just walked, and nothing on it changed but the last node.
                parent = parent.child_mut(step)?;
            }
            match steps.next()? {
                Step::Plus => parent.plus = None,
                Step::Level(level) => {
                    parent.children.remove(level);
                }
            }
        }
        Some(removed)
    }

    /// Calls `f` for every subscription whose filter matches `topic` (a valid topic name).
    ///
    /// Returns how many filters' subscriber sets matched. Each set holds a key at most once, so
    /// a key can be seen twice only when this is above 1: callers skip deduplication otherwise.
    pub fn for_each_match<'a>(&'a self, topic: &str, mut f: impl FnMut(&'a K, &'a V)) -> usize {
        // The branches not yet taken: a node's `+` child while its literal child is walked.
        // Inline room for the common case, so a lookup allocates nothing.
        let mut pending: SmallVec<[Visit<'a, '_, K, V>; 8]> = SmallVec::new();
        let mut sets = 0;
        // [MQTT-4.7.2-1] wildcards at the first level do not match topics starting with '$'.
        let mut skip_wild = topic.starts_with('$');
        let mut at = Some((&self.root, Some(topic)));
        while let Some((node, rest)) = at.take().or_else(|| pending.pop()) {
            if !skip_wild && !node.hash.is_empty() {
                // `a/#` matches `a` itself and everything below it.
                sets += 1;
                node.hash.iter().for_each(|(k, v)| f(k, v));
            }
            // `rest` is the topic from this level on; `None` once every level is consumed.
            // Walking the string instead of a collected `Vec` of levels allocates nothing.
            let Some(rest) = rest else {
                if !node.here.is_empty() {
                    sets += 1;
                    node.here.iter().for_each(|(k, v)| f(k, v));
                }
                skip_wild = false;
                continue;
            };
            let (first, tail) = match rest.split_once('/') {
                Some((first, tail)) => (first, Some(tail)),
                None => (rest, None),
            };
            let plus = if skip_wild {
                None
            } else {
                node.plus.as_deref()
            };
            skip_wild = false;
            match (node.children.get(first), plus) {
                (Some(child), Some(plus)) => {
                    pending.push((plus, tail));
                    at = Some((child, tail));
                }
                (Some(next), None) | (None, Some(next)) => at = Some((next, tail)),
                (None, None) => {}
            }
        }
        sets
    }

    /// Calls `f` for every subscription in the trie, in no particular order.
    pub fn for_each(&self, mut f: impl FnMut(&K, &V)) {
        let mut pending = vec![&self.root];
        while let Some(node) = pending.pop() {
            node.here
                .iter()
                .chain(&node.hash)
                .for_each(|(k, v)| f(k, v));
            pending.extend(node.children.values());
            pending.extend(node.plus.as_deref());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic::matches;

    fn matched(t: &SubscriptionTrie<u32, &'static str>, topic: &str) -> Vec<&'static str> {
        let mut out = Vec::new();
        t.for_each_match(topic, |_, v| out.push(*v));
        out.sort();
        out
    }

    const FILTERS: &[&str] = &[
        "#", "+", "a", "a/#", "a/+", "a/b", "a/+/c", "+/b/#", "/", "+/+", "$SYS/#", "$SYS/+",
        "a//c", "/+", "a/b/c/#", "+/+/c", "a/+/+", "+/b/c",
    ];

    #[test]
    fn get_finds_exactly_what_was_inserted() {
        let mut t = SubscriptionTrie::new();
        for (i, f) in FILTERS.iter().enumerate() {
            t.insert(f, i as u32, *f);
        }
        for (i, f) in FILTERS.iter().enumerate() {
            assert_eq!(t.get(f, &(i as u32)), Some(f));
            assert_eq!(t.get(f, &99), None);
            *t.get_mut(f, &(i as u32)).unwrap() = "changed";
            assert_eq!(t.get(f, &(i as u32)), Some(&"changed"));
        }
        assert_eq!(t.get("a/b/c", &0), None);
        assert_eq!(t.get("x/#", &0), None);
    }

    #[test]
    fn trie_agrees_with_the_definition() {
        let mut t = SubscriptionTrie::new();
        for (i, f) in FILTERS.iter().enumerate() {
            t.insert(f, i as u32, *f);
        }
        for topic in [
            "a", "a/b", "a/b/c", "a/x/c", "/", "", "$SYS/x", "$SYS", "a//c", "/b", "x/b/y/z",
            "a/b/c/d", "x/b/c", "$SYS/b/c",
        ] {
            let mut want: Vec<_> = FILTERS
                .iter()
                .copied()
                .filter(|f| matches(f, topic))
                .collect();
            want.sort();
            assert_eq!(matched(&t, topic), want, "topic {topic:?}");
            // One key per filter here, so as many sets matched as filters.
            assert_eq!(t.for_each_match(topic, |_, _| {}), want.len(), "{topic:?}");
        }
    }

    #[test]
    fn insert_replaces_and_remove_prunes() {
        let mut t = SubscriptionTrie::new();
        assert_eq!(t.insert("a/+/c", 1, "x"), None);
        assert_eq!(t.insert("a/+/c", 1, "y"), Some("x"));
        t.insert("a/#", 2, "z");
        assert_eq!(t.len(), 2);
        assert_eq!(matched(&t, "a/b/c"), ["y", "z"]);
        assert_eq!(t.remove("a/+/c", &1), Some("y"));
        assert_eq!(t.remove("a/+/c", &1), None);
        assert_eq!(t.remove("a/#", &2), Some("z"));
        assert!(t.is_empty());
        assert!(t.root.is_empty(), "nodes were pruned");
    }

    #[test]
    fn removal_prunes_only_what_nothing_else_uses() {
        let mut t = SubscriptionTrie::new();
        let filters = [
            "a/b/c/d",
            "a/b",
            "a/b/c/e",
            "a/+/c/d",
            "#",
            "a/b/c/d/#",
            "x",
        ];
        for (i, f) in filters.iter().enumerate() {
            t.insert(f, i as u32, *f);
        }
        // Remove in an order that leaves each shared prefix in use for a while.
        for (i, f) in filters.iter().enumerate().rev() {
            assert_eq!(t.remove(f, &(i as u32)), Some(*f));
            for (j, g) in filters.iter().enumerate().take(i) {
                assert_eq!(t.get(g, &(j as u32)), Some(g), "{g} after removing {f}");
            }
        }
        assert!(t.root.is_empty(), "nodes were pruned");
        assert_eq!(t.remove("a/b", &1), None);
    }

    #[test]
    fn for_each_sees_every_entry_once() {
        let mut t = SubscriptionTrie::new();
        for (i, f) in FILTERS.iter().enumerate() {
            t.insert(f, i as u32, *f);
        }
        let mut seen = Vec::new();
        t.for_each(|k, v| seen.push((*k, *v)));
        seen.sort();
        let want: Vec<_> = FILTERS
            .iter()
            .enumerate()
            .map(|(i, f)| (i as u32, *f))
            .collect();
        assert_eq!(seen, want);
    }

    #[test]
    fn a_filter_a_hundred_thousand_levels_deep_is_inserted_matched_removed_and_dropped() {
        let levels = 100_000;
        let deep = vec!["a"; levels].join("/");
        let wild = format!("{}/#", vec!["+"; levels - 1].join("/"));
        let mut t = SubscriptionTrie::new();
        t.insert(&deep, 1, "deep");
        t.insert(&wild, 2, "wild");
        t.insert("a/#", 3, "shallow");
        assert_eq!(matched(&t, &deep), ["deep", "shallow", "wild"]);
        assert_eq!(t.remove(&deep, &1), Some("deep"));
        assert_eq!(matched(&t, &deep), ["shallow", "wild"]);
        // Dropped with the wildcard chain still in it.
        drop(t);
        let mut t = SubscriptionTrie::new();
        t.insert(&deep, 1, "deep");
        assert_eq!(t.remove(&wild, &1), None);
        assert_eq!(t.remove(&deep, &1), Some("deep"));
        assert!(t.root.is_empty());
    }
}
