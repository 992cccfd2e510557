//! Retained messages by topic name, looked up with a topic filter when a client subscribes.

use std::collections::HashMap;

/// One retained value per topic name, in a tree of topic levels.
#[derive(Debug)]
pub struct RetainedTree<V> {
    root: Node<V>,
    len: usize,
}

#[derive(Debug)]
struct Node<V> {
    children: HashMap<Box<str>, Node<V>>,
    value: Option<V>,
}

impl<V> Default for Node<V> {
    fn default() -> Self {
        Self {
            children: HashMap::new(),
            value: None,
        }
    }
}

impl<V> Default for RetainedTree<V> {
    fn default() -> Self {
        Self {
            root: Node::default(),
            len: 0,
        }
    }
}

impl<V> RetainedTree<V> {
    /// Number of retained messages.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is retained.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Stores `value` for `topic`, replacing what was there [MQTT-3.3.1-5].
    pub fn insert(&mut self, topic: &str, value: V) -> Option<V> {
        let mut node = &mut self.root;
        for level in super::levels(topic) {
            node = node.children.entry(level.into()).or_default();
        }
        let old = node.value.replace(value);
        self.len += usize::from(old.is_none());
        old
    }

    /// Removes the message retained for `topic` (an empty retained PUBLISH) [MQTT-3.3.1-6].
    pub fn remove(&mut self, topic: &str) -> Option<V> {
        let levels: Vec<&str> = super::levels(topic).collect();
        let old = remove_at(&mut self.root, &levels);
        self.len -= usize::from(old.is_some());
        old
    }

    /// Calls `f` for the message of every topic that `filter` matches.
    pub fn for_each_match<'a>(&'a self, filter: &str, mut f: impl FnMut(&'a V)) {
        let levels: Vec<&str> = super::levels(filter).collect();
        walk(&self.root, &levels, true, &mut f);
    }
}

fn walk<'a, V>(node: &'a Node<V>, filter: &[&str], root: bool, f: &mut impl FnMut(&'a V)) {
    let Some((first, rest)) = filter.split_first() else {
        if let Some(v) = &node.value {
            f(v);
        }
        return;
    };
    // [MQTT-4.7.2-1] a wildcard at the first level skips topics starting with '$'.
    let visible = |name: &str| !(root && name.starts_with('$'));
    match *first {
        "#" => {
            // `a/#` matches `a` itself.
            if let Some(v) = &node.value
                && !root
            {
                f(v);
            }
            for (name, child) in &node.children {
                if visible(name) {
                    all(child, f);
                }
            }
        }
        "+" => {
            for (name, child) in &node.children {
                if visible(name) {
                    walk(child, rest, false, f);
                }
            }
        }
        level => {
            if let Some(child) = node.children.get(level) {
                walk(child, rest, false, f);
            }
        }
    }
}

fn all<'a, V>(node: &'a Node<V>, f: &mut impl FnMut(&'a V)) {
    if let Some(v) = &node.value {
        f(v);
    }
    for child in node.children.values() {
        all(child, f);
    }
}

fn remove_at<V>(node: &mut Node<V>, levels: &[&str]) -> Option<V> {
    let Some((first, rest)) = levels.split_first() else {
        return node.value.take();
    };
    let child = node.children.get_mut(*first)?;
    let old = remove_at(child, rest);
    if child.value.is_none() && child.children.is_empty() {
        node.children.remove(*first);
    }
    old
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic::matches;

    #[test]
    fn agrees_with_the_definition() {
        let topics = [
            "a", "a/b", "a/b/c", "/", "/x", "", "$SYS/x", "$SYS", "a//c", "b",
        ];
        let mut t = RetainedTree::default();
        for topic in topics {
            t.insert(topic, topic);
        }
        for filter in [
            "#", "+", "a/#", "a/+", "+/+", "$SYS/#", "+/b/#", "/+", "a//+", "a/b", "+/#",
        ] {
            let mut got = Vec::new();
            t.for_each_match(filter, |v| got.push(*v));
            got.sort();
            let mut want: Vec<_> = topics
                .iter()
                .copied()
                .filter(|topic| matches(filter, topic))
                .collect();
            want.sort();
            assert_eq!(got, want, "filter {filter:?}");
        }
    }

    #[test]
    fn replace_and_remove() {
        let mut t = RetainedTree::default();
        assert_eq!(t.insert("a/b", 1), None);
        assert_eq!(t.insert("a/b", 2), Some(1));
        assert_eq!(t.len(), 1);
        assert_eq!(t.remove("a/b"), Some(2));
        assert_eq!(t.remove("a/b"), None);
        assert!(t.is_empty() && t.root.children.is_empty());
    }
}
