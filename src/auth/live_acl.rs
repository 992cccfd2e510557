//! A client's ACL rules that follow the ACL file across reloads, as Mosquitto's do: every check
//! reads the rules of the file loaded now, so a SIGHUP that takes a topic away stops its
//! messages to clients already subscribed (and their PUBLISHes to it) at once, offline
//! sessions' stored subscriptions included.
//!
//! The rules for one client are worked out from the file once and cached beside a generation
//! number; a reload bumps the source's generation, and the next check of each client works
//! them out again. A check costs one atomic load and one `ArcSwap` load more than a fixed rule
//! set.

use super::acl::{AclFile, ClientAcl, SubscribeCheck};
use arc_swap::{ArcSwap, ArcSwapOption};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A realm's ACL file as loaded now, and how many times it has been loaded.
#[derive(Debug, Default)]
pub(crate) struct AclSource {
    file: ArcSwapOption<AclFile>,
    generation: AtomicU64,
}

impl AclSource {
    /// Puts `file` in use for every client's next check.
    pub(crate) fn store(&self, file: AclFile) {
        self.file.store(Some(Arc::new(file)));
        // After the file: a check that sees the new generation reads the new file.
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Whether a file is loaded (none: everything is allowed).
    pub(crate) fn is_loaded(&self) -> bool {
        self.file.load().is_some()
    }
}

/// One client's rules under a realm's ACL file, kept current across reloads.
#[derive(Debug)]
pub(crate) struct LiveAcl {
    source: Arc<AclSource>,
    user: Option<Box<str>>,
    client_id: Box<str>,
    rules: ArcSwap<Versioned>,
}

/// The same client under the same file: what a stored cursor's equality needs.
impl PartialEq for LiveAcl {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.source, &other.source)
            && self.user == other.user
            && self.client_id == other.client_id
    }
}

/// Rules worked out from the file of one generation.
#[derive(Debug)]
struct Versioned {
    generation: u64,
    rules: ClientAcl,
}

impl LiveAcl {
    /// The rules for a client with this user name and client id.
    pub(crate) fn new(source: Arc<AclSource>, user: Option<&str>, client_id: &str) -> Self {
        let rules = ArcSwap::from_pointee(work_out(&source, user, client_id));
        Self {
            source,
            user: user.map(Into::into),
            client_id: client_id.into(),
            rules,
        }
    }

    /// The rules of the file in use now.
    fn current(&self) -> arc_swap::Guard<Arc<Versioned>> {
        let rules = self.rules.load();
        if rules.generation == self.source.generation.load(Ordering::Acquire) {
            return rules;
        }
        // Two threads may both work them out after a reload: the same rules either way.
        let fresh = work_out(&self.source, self.user.as_deref(), &self.client_id);
        self.rules.store(Arc::new(fresh));
        self.rules.load()
    }

    /// Whether the client may publish to `topic`.
    pub(crate) fn may_write(&self, topic: &str) -> bool {
        self.current().rules.may_write(topic)
    }

    /// Whether the client may receive a message published to `topic`.
    pub(crate) fn may_read(&self, topic: &str) -> bool {
        self.current().rules.may_read(topic)
    }

    /// What the rules in use say of a subscription to `filter`.
    pub(crate) fn subscribe(&self, filter: &str) -> SubscribeCheck {
        self.current().rules.subscribe(filter)
    }
}

/// The rules the source's file gives this client, with the generation they come from. With no
/// file (a realm always has one once it has an `AclSource` in use), nothing is allowed.
fn work_out(source: &AclSource, user: Option<&str>, client_id: &str) -> Versioned {
    // The generation first: a reload between the two reads leaves these rules marked older
    // than the file they came from, and the next check works them out again.
    let generation = source.generation.load(Ordering::Acquire);
    let rules = source
        .file
        .load()
        .as_ref()
        .map(|f| f.for_client(user, client_id))
        .unwrap_or_default();
    Versioned { generation, rules }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> AclFile {
        AclFile::parse(text).unwrap().0
    }

    #[test]
    fn a_reload_reaches_rules_already_handed_out() {
        let source = Arc::new(AclSource::default());
        source.store(file("user alice\ntopic readwrite demo/#\n"));
        let alice = LiveAcl::new(source.clone(), Some("alice"), "c1");
        assert!(alice.may_read("demo/a") && alice.may_write("demo/a"));
        assert_eq!(alice.subscribe("demo/#"), SubscribeCheck::Whole);

        source.store(file(
            "user alice\ntopic read demo/#\ntopic deny demo/secret\n",
        ));
        assert!(!alice.may_write("demo/a"), "write taken away");
        assert!(alice.may_read("demo/a"));
        assert!(!alice.may_read("demo/secret"), "denied from now on");
        assert_eq!(alice.subscribe("demo/#"), SubscribeCheck::Filtered);

        source.store(file("user bob\ntopic read demo/#\n"));
        assert!(!alice.may_read("demo/a"), "alice is no longer in the file");
        assert_eq!(alice.subscribe("demo/#"), SubscribeCheck::Refused);
    }

    #[test]
    fn patterns_are_filled_in_again_after_a_reload() {
        let source = Arc::new(AclSource::default());
        source.store(file("pattern read devices/%c/#\n"));
        let acl = LiveAcl::new(source.clone(), None, "d7");
        assert!(acl.may_read("devices/d7/t") && !acl.may_read("devices/d8/t"));
        source.store(file("pattern read fleet/%c/#\n"));
        assert!(acl.may_read("fleet/d7/t") && !acl.may_read("devices/d7/t"));
    }
}
