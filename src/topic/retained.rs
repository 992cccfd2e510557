//! Retained messages by topic name, looked up with a topic filter when a client subscribes.
//!
//! A lookup is a walk in topic order that can stop after any message and later resume after
//! the topic where it stopped: a new subscriber to `#` over 100,000 retained messages takes them
//! as its connection can send them, a batch at a time, never all at once. Levels are kept in
//! byte order for that. Every walk is a loop, as in the subscription trie, whatever the depth.

use std::collections::BTreeMap;
use std::collections::btree_map;
use std::ops::{Bound, ControlFlow};

/// One retained value per topic name, in a tree of topic levels.
#[derive(Debug)]
pub struct RetainedTree<V> {
    root: Node<V>,
    len: usize,
}

#[derive(Debug)]
struct Node<V> {
    children: BTreeMap<Box<str>, Node<V>>,
    value: Option<V>,
}

impl<V> Default for Node<V> {
    fn default() -> Self {
        Self {
            children: BTreeMap::new(),
            value: None,
        }
    }
}

impl<V> Drop for Node<V> {
    /// Takes the subtree apart with a loop: the default drop recurses once per level.
    fn drop(&mut self) {
        if self.children.is_empty() {
            return;
        }
        let mut pending: Vec<Node<V>> = std::mem::take(&mut self.children).into_values().collect();
        while let Some(mut node) = pending.pop() {
            // Emptied first, so this node's own drop returns at once.
            pending.extend(std::mem::take(&mut node.children).into_values());
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

/// How a filter level selects the children of a node.
#[derive(Clone, Copy)]
enum Select<'f> {
    /// Every child (`+`, `#`, or below a `#`); at the root, `$` topics are skipped
    /// [MQTT-4.7.2-1].
    All { skip_dollar: bool },
    /// The one child with this name.
    One(&'f str),
    /// None: the filter ends above.
    Nothing,
}

/// A filter, split once for a walk.
struct Filter<'f> {
    levels: Vec<&'f str>,
    /// Where a trailing `#` stands: from that depth on, every node matches.
    hash_at: Option<usize>,
}

impl<'f> Filter<'f> {
    fn new(filter: &'f str) -> Self {
        let levels: Vec<&str> = super::levels(filter).collect();
        let hash_at = (levels.last() == Some(&"#")).then(|| levels.len() - 1);
        Self { levels, hash_at }
    }

    /// Whether the value of a node `depth` levels down matches. `a/#` matches `a` itself.
    fn matches_at(&self, depth: usize) -> bool {
        depth > 0 && (depth == self.levels.len() || self.hash_at.is_some_and(|h| depth >= h))
    }

    /// Which children of a node `depth` levels down the filter reaches.
    fn select(&self, depth: usize) -> Select<'f> {
        let skip_dollar = depth == 0;
        if self.hash_at.is_some_and(|h| depth >= h) {
            return Select::All { skip_dollar };
        }
        match self.levels.get(depth) {
            Some(&"+") => Select::All { skip_dollar },
            Some(&level) => Select::One(level),
            None => Select::Nothing,
        }
    }
}

/// The children of one node still to visit, in order.
enum Children<'a, V> {
    All {
        range: btree_map::Range<'a, Box<str>, Node<V>>,
        skip_dollar: bool,
    },
    One(Option<(&'a str, &'a Node<V>)>),
}

impl<'a, V> Children<'a, V> {
    /// The children `select` reaches, those named after `after` only.
    fn of(node: &'a Node<V>, select: Select, after: Option<&str>) -> Self {
        match select {
            Select::All { skip_dollar } => {
                let start = after.map_or(Bound::Unbounded, Bound::Excluded);
                Self::All {
                    range: node.children.range::<str, _>((start, Bound::Unbounded)),
                    skip_dollar,
                }
            }
            Select::One(level) => Self::One(
                node.children
                    .get_key_value(level)
                    .filter(|_| after.is_none_or(|a| level > a))
                    .map(|(name, node)| (&**name, node)),
            ),
            Select::Nothing => Self::One(None),
        }
    }
}

impl<'a, V> Iterator for Children<'a, V> {
    type Item = (&'a str, &'a Node<V>);

    fn next(&mut self) -> Option<(&'a str, &'a Node<V>)> {
        match self {
            Self::All { range, skip_dollar } => range
                .find(|(name, _)| !(*skip_dollar && name.starts_with('$')))
                .map(|(name, node)| (&**name, node)),
            Self::One(child) => child.take(),
        }
    }
}

/// Whether `select` reaches the child named `level`.
fn reaches(select: Select, level: &str) -> bool {
    match select {
        Select::All { skip_dollar } => !(skip_dollar && level.starts_with('$')),
        Select::One(name) => name == level,
        Select::Nothing => false,
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

    /// The message retained for `topic`, if any.
    pub fn get(&self, topic: &str) -> Option<&V> {
        let mut node = &self.root;
        for level in super::levels(topic) {
            node = node.children.get(level)?;
        }
        node.value.as_ref()
    }

    /// Removes the message retained for `topic` (an empty retained PUBLISH) [MQTT-3.3.1-6].
    /// Nodes left empty are pruned.
    pub fn remove(&mut self, topic: &str) -> Option<V> {
        // The deepest node on the path that keeps something else: if the topic's node ends up
        // empty, everything on the path below this one goes with it, in one cut.
        let mut keep = (0, "");
        let mut node = &self.root;
        for (depth, level) in super::levels(topic).enumerate() {
            if depth == 0 || node.value.is_some() || node.children.len() > 1 {
                keep = (depth, level);
            }
            node = node.children.get(level)?;
        }
        node.value.as_ref()?;
        let mut node = &mut self.root;
        for level in super::levels(topic) {
            node = node.children.get_mut(level)?;
        }
        let old = node.value.take();
        self.len -= usize::from(old.is_some());
        if node.children.is_empty() {
            let (depth, level) = keep;
            let mut parent = &mut self.root;
            for step in super::levels(topic).take(depth) {
                // The path was just walked; nothing on it changed but its last node.
                parent = parent.children.get_mut(step)?;
            }
            parent.children.remove(level);
        }
        old
    }

    /// Calls `f` for the message of every topic that `filter` matches.
    pub fn for_each_match<'a>(&'a self, filter: &str, mut f: impl FnMut(&'a V)) {
        self.walk(filter, None, usize::MAX, |v| {
            f(v);
            ControlFlow::Continue(())
        });
    }

    /// Calls `f` for the messages of the topics `filter` matches, in topic order (level by
    /// level, in byte order; a topic before the topics below it), from the first topic after
    /// `after` on, until `f` breaks or `budget` nodes of the tree have been visited (matching
    /// or not, so that a filter that matches little does not walk the whole tree at once).
    /// Returns `None` when it ran to the end, else the topic of the last node it visited: the
    /// next walk goes on after it.
    ///
    /// The tree may have changed since the topic `after` was handed out: the walk goes on from
    /// where that topic is or would be.
    pub fn walk<'a>(
        &'a self,
        filter: &str,
        after: Option<&str>,
        budget: usize,
        mut f: impl FnMut(&'a V) -> ControlFlow<()>,
    ) -> Option<String> {
        let filter = Filter::new(filter);
        // One entry per level being walked: the children of that level still to visit, and
        // the depth they are at.
        let mut stack: Vec<(usize, Children<'a, V>)> = Vec::new();
        // The levels of the node last visited (or of `after`, while it is sought).
        let mut path: Vec<&str> = Vec::new();
        let mut node = &self.root;
        let mut depth = 0;
        let mut at_after = true;
        if let Some(after) = after {
            // Down the path of `after`: at each level, the siblings after it are still to come.
            for level in super::levels(after) {
                let select = filter.select(depth);
                stack.push((depth + 1, Children::of(node, select, Some(level))));
                match node.children.get(level).filter(|_| reaches(select, level)) {
                    Some(child) => {
                        node = child;
                        depth += 1;
                        path.push(level);
                    }
                    None => {
                        at_after = false;
                        break;
                    }
                }
            }
        }
        if at_after {
            // Below the topic visited last (or the root): its children come next.
            stack.push((depth + 1, Children::of(node, filter.select(depth), None)));
        }
        let mut visited = 0;
        while let Some((depth, children)) = stack.last_mut() {
            let depth = *depth;
            let Some((name, child)) = children.next() else {
                stack.pop();
                continue;
            };
            path.truncate(depth - 1);
            path.push(name);
            visited += 1;
            let stop =
                filter.matches_at(depth) && child.value.as_ref().is_some_and(|v| f(v).is_break());
            if stop || visited >= budget {
                return Some(path.join("/"));
            }
            if !child.children.is_empty() {
                stack.push((depth + 1, Children::of(child, filter.select(depth), None)));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topic::matches;

    const TOPICS: &[&str] = &[
        "a", "a/b", "a/b/c", "/", "/x", "", "$SYS/x", "$SYS", "a//c", "b", "a/c", "a/b/d",
    ];

    const FILTERS: &[&str] = &[
        "#", "+", "a/#", "a/+", "+/+", "$SYS/#", "+/b/#", "/+", "a//+", "a/b", "+/#", "a/b/#",
        "+/+/+", "x/#",
    ];

    fn tree() -> RetainedTree<&'static str> {
        let mut t = RetainedTree::default();
        for topic in TOPICS {
            t.insert(topic, *topic);
        }
        t
    }

    /// What the definition says `filter` matches, in the walk's order.
    fn want(filter: &str) -> Vec<&'static str> {
        let mut want: Vec<_> = TOPICS
            .iter()
            .copied()
            .filter(|topic| matches(filter, topic))
            .collect();
        // Level by level in byte order, a topic before those below it.
        want.sort_by(|a, b| a.split('/').cmp(b.split('/')));
        want
    }

    #[test]
    fn agrees_with_the_definition_in_topic_order() {
        let t = tree();
        for filter in FILTERS {
            let mut got = Vec::new();
            t.for_each_match(filter, |v| got.push(*v));
            assert_eq!(got, want(filter), "filter {filter:?}");
        }
    }

    #[test]
    fn a_walk_resumes_after_any_topic_it_stopped_at() {
        let t = tree();
        for filter in FILTERS {
            let want = want(filter);
            // One message per walk, each resuming after the last one's topic.
            let mut got = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let mut this = None;
                let stopped = t.walk(filter, after.as_deref(), usize::MAX, |v| {
                    this = Some(*v);
                    ControlFlow::Break(())
                });
                match (this, stopped) {
                    (Some(v), Some(at)) => {
                        assert_eq!(at, v, "{filter:?}: it stopped at the topic it handed out");
                        got.push(v);
                        after = Some(at);
                    }
                    (None, None) => break,
                    other => panic!("{filter:?}: {other:?}"),
                }
            }
            assert_eq!(got, want, "filter {filter:?}");
            // One node at a time: the same messages, however many walks it takes.
            let mut got = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let stopped = t.walk(filter, after.as_deref(), 1, |v| {
                    got.push(*v);
                    ControlFlow::Continue(())
                });
                match stopped {
                    Some(at) => after = Some(at),
                    None => break,
                }
            }
            assert_eq!(got, want, "filter {filter:?}, one node per walk");
        }
    }

    #[test]
    fn a_walk_stops_when_its_budget_of_nodes_is_spent_even_without_a_match() {
        let t = tree();
        let none = |_: &&str| ControlFlow::Continue(());
        // "+/+/+" matches only "a/b/c" and "a/b/d", deep in the tree: one node is visited
        // ("", the first level in byte order) and the walk stops there.
        assert_eq!(t.walk("+/+/+", None, 1, none), Some(String::new()));
        assert_eq!(t.walk("+/+/+", Some(""), 1, none), Some("/".into()));
        assert_eq!(t.walk("+/+/+", None, usize::MAX, none), None);
    }

    #[test]
    fn a_walk_resumes_after_a_topic_removed_since() {
        let mut t = tree();
        t.remove("a/b");
        t.remove("a/b/c");
        let mut got = Vec::new();
        t.walk("#", Some("a/b"), usize::MAX, |v| {
            got.push(*v);
            ControlFlow::Continue(())
        });
        assert_eq!(got, ["a/b/d", "a/c", "b"]);
        let mut got = Vec::new();
        t.walk("#", Some("a/bb"), usize::MAX, |v| {
            got.push(*v);
            ControlFlow::Continue(())
        });
        assert_eq!(got, ["a/c", "b"], "after a topic that never existed");
    }

    #[test]
    fn replace_and_remove() {
        let mut t = RetainedTree::default();
        assert_eq!(t.insert("a/b", 1), None);
        assert_eq!(t.insert("a/b", 2), Some(1));
        assert_eq!(t.get("a/b"), Some(&2));
        assert_eq!(t.len(), 1);
        assert_eq!(t.remove("a/b"), Some(2));
        assert_eq!(t.remove("a/b"), None);
        assert!(t.is_empty() && t.root.children.is_empty());
    }

    #[test]
    fn removal_prunes_only_what_nothing_else_uses() {
        let mut t = tree();
        for (i, topic) in TOPICS.iter().enumerate().rev() {
            assert_eq!(t.remove(topic), Some(*topic));
            for other in &TOPICS[..i] {
                assert_eq!(t.get(other), Some(other), "{other} after removing {topic}");
            }
        }
        assert!(t.is_empty() && t.root.children.is_empty());
    }

    #[test]
    fn a_topic_a_hundred_thousand_levels_deep_is_stored_found_removed_and_dropped() {
        let deep = vec!["a"; 100_000].join("/");
        let mut t = RetainedTree::default();
        t.insert(&deep, 1);
        t.insert("a", 2);
        let mut got = Vec::new();
        t.for_each_match("#", |v| got.push(*v));
        assert_eq!(got, [2, 1]);
        let mut got = Vec::new();
        t.walk("a/#", Some(&deep[..deep.len() - 2]), usize::MAX, |v| {
            got.push(*v);
            ControlFlow::Continue(())
        });
        assert_eq!(got, [1]);
        assert_eq!(t.remove(&deep), Some(1));
        assert_eq!(t.len(), 1);
        t.insert(&deep, 3);
        drop(t);
    }
}
