//! The subscription trie: one node per topic level, with `+` and `#` children kept apart from
//! literal levels, so a lookup costs the topic's depth times the wildcard branching, not the
//! number of subscriptions.

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

impl<K, V> Node<K, V> {
    fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.plus.is_none()
            && self.hash.is_empty()
            && self.here.is_empty()
    }
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

    /// Removes `key`'s subscription to `filter`; returns its value if there was one. Empty nodes
    /// are pruned so churn does not grow the trie.
    pub fn remove(&mut self, filter: &str, key: &K) -> Option<V> {
        let levels: Vec<&str> = super::levels(filter).collect();
        let removed = remove_at(&mut self.root, &levels, key);
        self.len -= usize::from(removed.is_some());
        removed
    }

    /// Calls `f` for every subscription whose filter matches `topic` (a valid topic name).
    ///
    /// Returns how many filters' subscriber sets matched. Each set holds a key at most once, so
    /// a key can be seen twice only when this is above 1: callers skip deduplication otherwise.
    pub fn for_each_match<'a>(&'a self, topic: &str, mut f: impl FnMut(&'a K, &'a V)) -> usize {
        // [MQTT-4.7.2-1] wildcards at the first level do not match topics starting with '$'.
        let dollar = topic.starts_with('$');
        let mut sets = 0;
        walk(&self.root, Some(topic), dollar, &mut sets, &mut f);
        sets
    }
}

/// `rest` is the topic from this level on; `None` once every level is consumed. Walking the
/// string instead of a collected `Vec` of levels keeps a lookup free of allocation.
fn walk<'a, K, V>(
    node: &'a Node<K, V>,
    rest: Option<&str>,
    skip_wild: bool,
    sets: &mut usize,
    f: &mut impl FnMut(&'a K, &'a V),
) {
    if !skip_wild && !node.hash.is_empty() {
        // `a/#` matches `a` itself and everything below it.
        *sets += 1;
        node.hash.iter().for_each(|(k, v)| f(k, v));
    }
    let Some(rest) = rest else {
        if !node.here.is_empty() {
            *sets += 1;
            node.here.iter().for_each(|(k, v)| f(k, v));
        }
        return;
    };
    let (first, rest) = match rest.split_once('/') {
        Some((first, tail)) => (first, Some(tail)),
        None => (rest, None),
    };
    if let Some(child) = node.children.get(first) {
        walk(child, rest, false, sets, f);
    }
    if !skip_wild && let Some(plus) = &node.plus {
        walk(plus, rest, false, sets, f);
    }
}

fn remove_at<K: Eq + Hash, V>(node: &mut Node<K, V>, levels: &[&str], key: &K) -> Option<V> {
    match levels {
        [] => node.here.remove(key),
        ["#"] => node.hash.remove(key),
        [first, rest @ ..] => {
            if *first == "+" {
                let child = node.plus.as_deref_mut()?;
                let removed = remove_at(child, rest, key);
                if child.is_empty() {
                    node.plus = None;
                }
                removed
            } else {
                let child = node.children.get_mut(*first)?;
                let removed = remove_at(child, rest, key);
                if child.is_empty() {
                    node.children.remove(*first);
                }
                removed
            }
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
        "a//c", "/+", "a/b/c/#",
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
            "a/b/c/d",
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
}
