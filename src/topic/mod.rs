//! Topics: validation of topic filters, the subscription trie that routes a topic name to the
//! subscriptions matching it, and the retained-message tree that answers a new subscription.
//!
//! Sans-IO and unaware of sessions or sockets: keys and values are type parameters.

mod filter;
mod retained;
mod trie;

pub use filter::{FilterError, matches, parse_shared, validate_filter};
pub use retained::RetainedTree;
pub use trie::SubscriptionTrie;

/// Splits a topic name or filter into its levels (section 4.7.1: `/` separates levels, and
/// empty levels are levels too).
pub(crate) fn levels(s: &str) -> impl Iterator<Item = &str> {
    s.split('/')
}
