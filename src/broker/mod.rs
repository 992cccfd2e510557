//! The shared state of the broker behind one cheap [`Broker`] handle: the session registry
//! (client id -> session, takeover, expiry), the router (subscription trie and fan-out) and the
//! retained store. Every lock here is a std mutex held for a few instructions and never across
//! an `.await`; nothing here parses bytes.

mod connect_rate;
mod disk_queue;
mod durable;
mod idle;
pub(crate) mod keep_alive;
mod link;
mod logins;
mod metrics;
mod pressure;
mod registry;
mod retained;
mod router;
mod shared;
#[cfg(test)]
mod tests;
mod will;

pub(crate) use durable::{Owner, RestoredWills};
pub(crate) use link::{ClientAck, Link};
pub use metrics::Metrics;
pub(crate) use metrics::OverloadLog;
pub(crate) use pressure::{Pressure, pressed_any};
pub(crate) use registry::{SessionSlot, TakenOver, owner_of};
pub(crate) use retained::IN_MEMORY as RETAINED_IN_MEMORY;
pub(crate) use shared::SharedGroup;

use crate::config::Config;
use crate::topic::SubscriptionTrie;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::watch;

/// A subscription as the router stores it in the trie.
#[derive(Debug, Clone)]
pub(crate) struct SubEntry {
    pub(crate) slot: Arc<SessionSlot>,
    pub(crate) options: crate::protocol::SubscriptionOptions,
    /// v5 Subscription Identifier, if the SUBSCRIBE carried one.
    pub(crate) subscription_id: Option<u32>,
    /// The subscriber's ACL, when it may read only some of the topics the filter matches.
    pub(crate) read_check: Option<crate::auth::SharedAcl>,
}

impl SubEntry {
    /// Whether the subscriber may read a message published to `topic`.
    pub(crate) fn may_read(&self, topic: &str) -> bool {
        self.read_check
            .as_ref()
            .is_none_or(|acl| acl.may_read(topic))
    }
}

/// Both subscription tries, behind one lock: a PUBLISH is matched against both.
#[derive(Debug, Default)]
struct Subscriptions {
    /// Non-shared subscriptions, keyed by client id.
    direct: SubscriptionTrie<Arc<str>, SubEntry>,
    /// Shared subscriptions, keyed by group name.
    shared: SubscriptionTrie<Arc<str>, SharedGroup>,
}

/// The broker's shared state. Clone freely: it is an `Arc`.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    config: Arc<Config>,
    /// Client id -> session. Taken only to find, insert or remove a slot.
    sessions: Mutex<HashMap<Arc<str>, Arc<SessionSlot>>>,
    /// Read on every PUBLISH, written on SUBSCRIBE/UNSUBSCRIBE and session end.
    subscriptions: RwLock<Subscriptions>,
    /// Taken to store a retained message, and by a connection (holding its slot's lock) to
    /// take a batch of a new subscription's retained messages.
    retained: Mutex<retained::RetainedStore>,
    metrics: Metrics,
    overload_log: OverloadLog,
    /// Flipped to true once when the server shuts down; the accept loops and connections still
    /// in their handshake watch it.
    shutdown: watch::Sender<bool>,
    /// The same, for established connections (see [`Broker::is_shutting_down`]).
    shutting_down: AtomicBool,
    /// The enhanced authentication methods enabled by the configuration, shared by every realm.
    methods: Arc<crate::auth::Methods>,
    /// `[auth]`: the password and ACL files of every listener without `[listeners.auth]`.
    realm: Arc<crate::auth::Realm>,
    /// Every connection's keep-alive deadline.
    keep_alives: keep_alive::KeepAlives,
    /// Failed logins per source address (see `broker/logins.rs`).
    logins: Mutex<logins::Logins>,
    /// CONNECTs per source address (see `broker/connect_rate.rs`).
    connect_rates: Mutex<connect_rate::ConnectRates>,
    /// Set once the idle sweeper runs (see `broker/idle.rs`).
    idle_sweeper: AtomicBool,
    /// The queue policy of every session (from `[sessions]`).
    queue_limits: Arc<crate::session::QueueLimits>,
    /// Retained bodies wait for the writer to move out of memory (see
    /// `RetainedStore::settle`): read without the retained lock.
    retained_spilling: AtomicBool,
    /// Where durable changes go (`[persistence]`), set once at start-up.
    store: std::sync::OnceLock<Arc<crate::store::Writer>>,
}

impl Broker {
    /// A broker with no sessions, subscriptions or retained messages.
    pub fn new(config: Arc<Config>) -> Self {
        let auth = auth_methods(&config);
        Self::with_methods(config, auth)
    }

    /// A broker whose enhanced authentication methods are `auth` rather than those the
    /// configuration enables.
    pub(crate) fn with_methods(config: Arc<Config>, methods: crate::auth::Methods) -> Self {
        let methods = Arc::new(methods);
        let a = &config.auth;
        let realm = Arc::new(crate::auth::Realm::new(
            a.allow_anonymous,
            methods.clone(),
            &a.password_file,
            &a.acl_file,
        ));
        let (shutdown, _) = watch::channel(false);
        let s = &config.sessions;
        let queue_limits = Arc::new(crate::session::QueueLimits {
            max_messages: s.max_queued_messages,
            max_bytes: s.max_queued_bytes,
            qos0_offline: s.queue_qos0_offline,
            overflow: s.overflow,
            memory: Arc::new(crate::session::MemoryBudget::new(
                config.limits.max_memory_bytes,
            )),
        });
        Self {
            inner: Arc::new(Inner {
                config,
                sessions: Mutex::default(),
                subscriptions: RwLock::default(),
                retained: Mutex::default(),
                metrics: Metrics::default(),
                overload_log: OverloadLog::default(),
                shutdown,
                shutting_down: AtomicBool::new(false),
                methods,
                realm,
                keep_alives: keep_alive::KeepAlives::default(),
                idle_sweeper: AtomicBool::new(false),
                logins: Mutex::default(),
                connect_rates: Mutex::default(),
                queue_limits,
                retained_spilling: AtomicBool::new(false),
                store: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Sends durable changes to `writer` from now on (start-up, after restoring).
    pub(crate) fn persist_to(&self, writer: Arc<crate::store::Writer>) {
        let _ = self.inner.store.set(writer);
    }

    /// The memory budget of the sessions' queues (`limits.max_memory_bytes`).
    pub(crate) fn memory(&self) -> &crate::session::MemoryBudget {
        &self.inner.queue_limits.memory
    }

    /// What the sessions' queues hold in memory, as counted against `limits.max_memory_bytes`.
    pub fn queued_memory_bytes(&self) -> usize {
        self.memory().used()
    }

    /// The store's writer, if state is persisted.
    pub(crate) fn store(&self) -> Option<&Arc<crate::store::Writer>> {
        self.inner.store.get()
    }

    /// The store's writer if acknowledgements wait for the disk (`sync = "always"`).
    pub(crate) fn durable_acks(&self) -> Option<&Arc<crate::store::Writer>> {
        // The store first: without one (the common case) every answer and read asks this, and
        // it must cost no configuration load.
        self.store()
            .filter(|_| self.config().persistence.sync == crate::config::SyncMode::Always)
    }

    /// Puts retained messages read from the store in place (start-up, before any listener
    /// opens, so nothing is written back): `messages` in memory, and the topics of those
    /// beyond the memory budget, `on_disk`, to be read back when they are sent.
    pub(crate) fn restore_retained(
        &self,
        messages: Vec<crate::session::Message>,
        on_disk: Vec<String>,
    ) {
        let mut retained = lock(&self.inner.retained);
        for m in messages {
            retained.restore(m, self.memory());
        }
        for topic in on_disk {
            retained.restore_on_disk(topic, self.memory());
        }
    }

    /// The enhanced authentication methods (MQTT 5.0 section 4.12) the configuration enables.
    pub(crate) fn methods(&self) -> &Arc<crate::auth::Methods> {
        &self.inner.methods
    }

    /// `[auth]`'s rules: those of every listener without `[listeners.auth]`.
    pub(crate) fn realm(&self) -> &Arc<crate::auth::Realm> {
        &self.inner.realm
    }

    /// Notes a failed login from `ip` at `now_ms`; returns how long to wait before refusing it.
    pub(crate) fn login_failed(&self, ip: std::net::IpAddr, now_ms: u64) -> std::time::Duration {
        let base_ms = self.config().auth.login_delay_ms;
        if base_ms == 0 {
            return std::time::Duration::ZERO;
        }
        lock(&self.inner.logins).failed(ip, now_ms, base_ms)
    }

    /// Whether a CONNECT from `ip` at `now_ms` is within `limits.max_connect_rate_per_address`
    /// (always, when that is 0); counts it.
    pub(crate) fn connect_allowed(&self, ip: std::net::IpAddr, now_ms: u64) -> bool {
        let per_sec = self.config().limits.max_connect_rate_per_address;
        per_sec == 0 || lock(&self.inner.connect_rates).allow(ip, now_ms, per_sec)
    }

    /// Failed logins counted for `ip` (and its IPv6 /64) since its last success.
    pub fn failed_logins(&self, ip: std::net::IpAddr) -> u32 {
        lock(&self.inner.logins).failures(ip)
    }

    /// Notes a successful login from `ip`: its failures are forgotten.
    pub(crate) fn login_succeeded(&self, ip: std::net::IpAddr) {
        lock(&self.inner.logins).succeeded(ip);
    }

    /// The configuration the broker runs with.
    pub fn config(&self) -> &Arc<Config> {
        &self.inner.config
    }

    /// Counters.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// A receiver that turns true when the server shuts down.
    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.inner.shutdown.subscribe()
    }

    /// Tells every connection to close (v5: DISCONNECT 0x8B) after sending due wills.
    pub(crate) fn begin_shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::Release);
        self.inner.shutdown.send_replace(true);
        let slots: Vec<_> = lock(&self.inner.sessions).values().cloned().collect();
        for slot in slots {
            let waker = lock(&slot.state).take_waker();
            if let Some(waker) = waker {
                waker.wake();
            }
            // Sessions end with the server: wills still waiting for their delay go out now.
            self.release_will(&slot);
        }
    }

    /// Whether [`Broker::begin_shutdown`] was called. Established connections check this on
    /// every turn of their loop instead of each holding a watch future.
    pub(crate) fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::Acquire)
    }

    /// Number of sessions (connected or not).
    pub fn session_count(&self) -> usize {
        lock(&self.inner.sessions).len()
    }

    /// Number of subscriptions: (filter, session) pairs, shared group memberships included.
    pub fn subscription_count(&self) -> usize {
        let subs = self.subscriptions();
        let mut n = subs.direct.len();
        subs.shared.for_each(|_, g| n += g.members.len());
        n
    }

    /// The client ids of subscriptions whose session is not the one the registry holds for
    /// that id. Every subscription belongs to a live or stored session, so this is empty unless
    /// there is a bug (a connection that went on subscribing after it was taken over, say).
    pub fn subscriptions_without_a_session(&self) -> Vec<String> {
        // The registry first: `attach` takes it before the subscriptions.
        let sessions = lock(&self.inner.sessions).clone();
        let mut orphans = Vec::new();
        let mut check = |e: &SubEntry| {
            let registered = sessions.get(&e.slot.client_id);
            if !registered.is_some_and(|s| Arc::ptr_eq(s, &e.slot)) {
                orphans.push(e.slot.client_id.to_string());
            }
        };
        let subs = self.subscriptions();
        subs.direct.for_each(|_, e| check(e));
        subs.shared
            .for_each(|_, g| g.members.iter().for_each(&mut check));
        orphans
    }

    /// Number of retained messages.
    pub fn retained_count(&self) -> usize {
        lock(&self.inner.retained).len()
    }
}

/// The methods `[auth]` enables. The configuration was validated, so a credential that does not
/// parse cannot occur; it is skipped with an error line rather than trusted.
fn auth_methods(config: &Config) -> crate::auth::Methods {
    use crate::auth::{Methods, SCRAM_SHA_256, ScramAuthenticator, ScramCredentials};
    let mut methods = Methods::new();
    let users = &config.auth.scram_users;
    if users.is_empty() {
        return methods;
    }
    let mut store = HashMap::new();
    for u in users {
        match u.credential.parse::<ScramCredentials>() {
            Ok(c) => {
                store.insert(u.user.clone(), c);
            }
            Err(e) => tracing::error!(user = %u.user, "auth.scram_users: {e}"),
        }
    }
    match ScramAuthenticator::new(store) {
        Ok(scram) => methods.insert(SCRAM_SHA_256, Box::new(scram)),
        Err(e) => tracing::error!("SCRAM-SHA-256 disabled: {e}"),
    }
    methods
}

/// Locks a std mutex, recovering the data if a panicking thread poisoned it: every critical
/// section here leaves the data consistent at each step, so the data is still valid.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
