//! Topics: validation of topic filters, the subscription trie that routes a topic name to the
//! subscriptions matching it, and the retained-message tree that answers a new subscription.
//!
//! Sans-IO and unaware of sessions or sockets: keys and values are type parameters.

mod filter;
mod retained;
mod trie;

pub use filter::{FilterError, matches, parse_shared, validate_filter};
pub(crate) use filter::{covers, overlaps};
pub use retained::RetainedTree;
pub use trie::SubscriptionTrie;

/// Splits a topic name or filter into its levels (section 4.7.1: `/` separates levels, and
/// empty levels are levels too).
pub(crate) fn levels(s: &str) -> std::str::Split<'_, char> {
    s.split('/')
}

/// Whether a topic name or filter is longer than `limits.max_topic_length` bytes or has more
/// than `limits.max_topic_levels` levels: refused at the door either way.
pub(crate) fn too_big(topic: &str, limits: &crate::config::Limits) -> bool {
    topic.len() > limits.max_topic_length || too_deep(topic, limits.max_topic_levels)
}

/// Whether a topic name or filter has more than `max` levels (`limits.max_topic_levels`).
/// Deep topics cost the trie memory and time on every message, so they are refused at the door.
pub fn too_deep(topic: &str, max: usize) -> bool {
    // `max` levels take `max - 1` separators: a string shorter than `max` bytes cannot have
    // more, so most topics are decided without a scan.
    topic.len() >= max && topic.bytes().filter(|&b| b == b'/').count() >= max
}
