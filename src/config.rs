//! Configuration: one serde tree read from TOML, with unknown keys refused, validated once into
//! an `Arc<Config>` that every part of the broker shares. Never a global.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The whole configuration file. Every key is documented in `config/roost.toml`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// TCP listeners; the first one's port can be overridden with `--port`.
    pub listeners: Vec<Listener>,
    /// `[limits]`: per-connection limits.
    pub limits: Limits,
    /// `[sessions]`: session and queue policy.
    pub sessions: Sessions,
    /// `[shared_subscriptions]`: whether and how groups share messages.
    pub shared_subscriptions: SharedSubscriptions,
    /// `[mqtt5]`: MQTT 5 features an operator sets.
    pub mqtt5: Mqtt5,
    /// `[auth]`: who may connect.
    pub auth: Auth,
    /// `[log]`: logging.
    pub log: Log,
    /// `[persistence]`: what survives a restart.
    pub persistence: Persistence,
}

/// One network listener.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// Address and port, e.g. "127.0.0.1:1883". Port 0 picks a free port.
    pub bind: SocketAddr,
    /// Connections the kernel may hold completed but not yet accepted (`listen`'s backlog,
    /// capped by `net.core.somaxconn`). Beyond it a client's SYN is dropped and it retries a
    /// second later, so a reconnect storm needs room.
    #[serde(default = "Listener::default_backlog")]
    pub backlog: u32,
    /// MQTT over TCP, or over WebSocket.
    #[serde(default)]
    pub protocol: ListenerProtocol,
    /// The HTTP path a WebSocket listener upgrades on.
    #[serde(default = "Listener::default_ws_path")]
    pub ws_path: String,
    /// TLS on this listener; absent: plaintext.
    #[serde(default)]
    pub tls: Option<Tls>,
    /// `[auth]` keys this listener overrides; absent: `[auth]` as it is.
    #[serde(default)]
    pub auth: Option<ListenerAuth>,
    /// Behind a load balancer: every connection starts with a PROXY protocol header (v1 or v2)
    /// naming the client's real address; one without is closed.
    #[serde(default)]
    pub proxy_protocol: bool,
    /// Live connections this listener holds at most (0: only `limits.max_connections`); a
    /// further one is closed at once.
    #[serde(default)]
    pub max_connections: usize,
}

/// A listener's own `[listeners.auth]`: each key given replaces `[auth]`'s for this listener.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ListenerAuth {
    /// Replaces `auth.allow_anonymous`.
    pub allow_anonymous: Option<bool>,
    /// Replaces `auth.password_file` ("" for none).
    pub password_file: Option<PathBuf>,
    /// Replaces `auth.acl_file` ("" for none).
    pub acl_file: Option<PathBuf>,
}

/// What a listener speaks above TCP (and TLS).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ListenerProtocol {
    /// MQTT packets straight on the stream.
    #[default]
    Mqtt,
    /// MQTT packets in binary WebSocket frames (MQTT section 6).
    Ws,
}

impl Listener {
    /// A plaintext MQTT listener on `bind` with the default backlog.
    pub fn new(bind: SocketAddr) -> Self {
        Self {
            bind,
            backlog: Self::default_backlog(),
            protocol: ListenerProtocol::Mqtt,
            ws_path: Self::default_ws_path(),
            tls: None,
            auth: None,
            proxy_protocol: false,
            max_connections: 0,
        }
    }

    fn default_backlog() -> u32 {
        1024
    }

    fn default_ws_path() -> String {
        "/mqtt".into()
    }
}

/// A listener's TLS: its certificate and key, and whether and how clients present theirs.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// The server's certificate chain, PEM, leaf first.
    pub cert: PathBuf,
    /// The server's private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// Roots to verify client certificates against, PEM; empty: clients are not asked for one.
    #[serde(default)]
    pub client_ca: PathBuf,
    /// With `client_ca`: refuse a client without a valid certificate (otherwise one is
    /// verified if presented).
    #[serde(default)]
    pub require_client_cert: bool,
    /// With `client_ca`: the client certificate's Common Name (or first DNS name) is the user
    /// name, and no password is asked; a client without a certificate is refused.
    #[serde(default)]
    pub use_identity_as_username: bool,
    /// Seconds a client has to complete the TLS handshake.
    #[serde(default = "Tls::default_handshake_timeout")]
    pub handshake_timeout_secs: u64,
}

impl Tls {
    fn default_handshake_timeout() -> u64 {
        10
    }

    /// TLS with this certificate and key, no client certificates.
    pub fn new(cert: PathBuf, key: PathBuf) -> Self {
        Self {
            cert,
            key,
            client_ca: PathBuf::new(),
            require_client_cert: false,
            use_identity_as_username: false,
            handshake_timeout_secs: Self::default_handshake_timeout(),
        }
    }
}

/// Per-connection limits.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest packet accepted from a client, in bytes, fixed header included.
    pub max_packet_size: u32,
    /// Seconds a new connection has to send CONNECT.
    pub connect_timeout_secs: u64,
    /// Highest QoS granted to subscriptions and accepted on PUBLISH (0, 1 or 2).
    pub max_qos: u8,
    /// Outbound QoS 1/2 messages in flight per 3.1.1 client (v5 clients set their own Receive
    /// Maximum, capped by this).
    pub max_inflight: u16,
    /// Inbound QoS 2 messages a client may have awaiting PUBREL (v5 Receive Maximum we announce).
    pub receive_maximum: u16,
    /// Whether retained messages are stored (v5 Retain Available).
    pub retain_available: bool,
    /// Topic aliases a v5 client may use toward us (v5 Topic Alias Maximum); 0 = none.
    pub topic_alias_maximum: u16,
    /// Longest keep alive a client may ask for, in seconds. A v5 client asking for more (or
    /// for none) is told this value as Server Keep Alive; a 3.1.1 client asking for more is
    /// refused (CONNACK 0x02), as Mosquitto does. 65535 = no limit.
    pub max_keepalive: u16,
    /// Whether filters with `+` or `#` are accepted (v5 Wildcard Subscription Available).
    pub wildcard_subscription_available: bool,
    /// Whether SUBSCRIBE may carry a Subscription Identifier (v5 Subscription Identifiers
    /// Available).
    pub subscription_identifier_available: bool,
    /// Most levels in a topic name or filter (as Mosquitto's limit of 200). Deeper: a PUBLISH
    /// is refused (v5 0x90, 3.1.1 closed), a subscription gets SUBACK 0x8F (3.1.1: 0x80).
    pub max_topic_levels: usize,
    /// Longest topic name or filter, in bytes; longer ones are refused as deeper ones are.
    pub max_topic_length: usize,
    /// PUBLISHes a client may send a second (a second's worth at once); over it: v5
    /// DISCONNECT 0x96, 3.1.1 closed. 0 = no limit.
    pub max_publish_rate: u64,
    /// Payload bytes a client may publish a second, the same way. 0 = no limit.
    pub max_publish_bytes_rate: u64,
    /// CONNECTs one source address (IPv6: one /64) may make a second, a second's worth at
    /// once; over it: CONNACK 0x9F (3.1.1: 0x03). 0 = no limit.
    pub max_connect_rate_per_address: u64,
    /// Seconds a connection may be idle (nothing read, nothing sent) before it is parked: its
    /// task and reactor registration are freed, and its socket waits in one shared epoll set
    /// until the client sends or a message comes. 0 = never park.
    pub idle_park_secs: u64,
    /// Most clients connected at once; a CONNECT beyond it is refused (v5 0x97 Quota exceeded,
    /// 3.1.1 0x03 Server unavailable). 0 = no limit.
    pub max_connections: u64,
    /// Most subscriptions one session may hold; a new filter beyond it gets SUBACK 0x97 Quota
    /// exceeded (3.1.1: 0x80). 0 = no limit.
    pub max_subscriptions_per_client: usize,
    /// Memory the sessions' queued messages may take, all sessions together (payload plus a
    /// fixed cost each, as if each session held its own copy). Beyond it a persistent
    /// session's QoS 1/2 messages stay on disk only (with persistence on), and other messages
    /// are dropped and counted. Default: a quarter of the machine's memory. 0 = no limit.
    pub max_memory_bytes: u64,
}

/// A quarter of the machine's memory (`MemTotal` in /proc/meminfo), or 1 GiB where that
/// cannot be read.
pub fn default_memory_budget() -> u64 {
    let total_kib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        let line = m.lines().find(|l| l.starts_with("MemTotal:"))?;
        line.split_whitespace().nth(1)?.parse::<u64>().ok()
    });
    total_kib.map_or(1 << 30, |kib| kib * 1024 / 4)
}

/// MQTT 5 features an operator sets.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Mqtt5 {
    /// Answer a client's Request Response Information with this prefix followed by its client
    /// id and "/" (e.g. "responses/" gives "responses/sensor-7/"); "" sends none.
    pub response_information_prefix: String,
    /// Redirect every v5 client to this server ("host:port"); "" serves them here.
    pub server_reference: String,
    /// With `server_reference`: true answers 0x9D Server moved (permanent), false 0x9C Use
    /// another server (temporary).
    pub server_moved: bool,
}

/// Session and queue policy.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Sessions {
    /// Messages queued per session (offline, or online beyond the in-flight window). Beyond
    /// this, new messages for that session are dropped and counted.
    pub max_queued_messages: usize,
    /// Bytes of payload queued per session; 0 means no byte limit.
    pub max_queued_bytes: usize,
    /// Queue QoS 0 messages for offline persistent sessions (off by default, as in Mosquitto).
    pub queue_qos0_offline: bool,
    /// What a full queue does with a new message (see [`Overflow`]).
    pub overflow: Overflow,
    /// With `overflow = "backpressure"`: how long a subscriber may take nothing out of its full
    /// queue before it is given up on (it drops until it has room) and its publishers go on.
    /// A publisher waits at most 8 of these in all, and at most half its keep-alive grace
    /// between two looks.
    pub backpressure_max_wait_ms: u64,
}

/// What a session's full queue does with one more message. Either way the drop is counted.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Overflow {
    /// The new message is dropped (Mosquitto's behaviour).
    #[default]
    DropNew,
    /// The oldest queued message is dropped to make room: a device back from a long absence
    /// gets the latest state rather than the first messages of its absence.
    DropOldest,
    /// A connected subscriber's full QoS 1/2 queue takes the message and the publisher is not
    /// read again until there is room (or `backpressure_max_wait_ms` has passed: the
    /// subscriber then drops until it has room): nothing the publisher was told is accepted is
    /// dropped, at the cost of one slow subscriber slowing its publishers.
    Backpressure,
}

/// What survives a restart, and where it is kept.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Persistence {
    /// Keep state on disk (`dir`) and restore it at start-up (the default).
    pub enabled: bool,
    /// The store's directory, relative to the working directory; `roost --data-dir` overrides
    /// it. Created if missing.
    pub dir: PathBuf,
    /// When a change is on disk (see [`SyncMode`]).
    pub sync: SyncMode,
    /// For `sync = "periodic"`: the longest a change waits to be made durable.
    pub sync_interval_ms: u64,
}

/// When a change to durable state is made durable (fsync).
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// Each batch of changes is durable when its commit returns.
    Always,
    /// Changes are committed as they come and made durable every `sync_interval_ms`: a crash
    /// may lose that window.
    Periodic,
    /// Nothing is written: memory only.
    Off,
}

/// Shared subscriptions (`$share/{group}/{filter}`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SharedSubscriptions {
    /// Whether `$share/...` filters are accepted (v5 Shared Subscription Available).
    pub available: bool,
    /// How a group picks the member that gets each message.
    pub strategy: ShareStrategy,
}

/// How a shared subscription group picks a member for each message. Whatever the strategy, a
/// member with a connection is preferred to one without.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ShareStrategy {
    /// Members in turn.
    RoundRobin,
    /// A member at random.
    Random,
    /// The same member for every message of one publisher (by its client id).
    HashClientId,
    /// The same member for every message of one topic, so a topic's messages stay in order.
    HashTopic,
    /// Reserved for clusters (prefer a member on the publisher's node); on one node it is
    /// round-robin.
    Local,
}

/// Who may connect.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Auth {
    /// Accept clients without a user name (or enhanced authentication).
    pub allow_anonymous: bool,
    /// Users of v5 enhanced authentication with SCRAM-SHA-256; none disables the method.
    pub scram_users: Vec<ScramUser>,
    /// Mosquitto's password file (`mosquitto_passwd` or `roost passwd` writes it): a client
    /// that sends a user name must send its password. Empty: no file.
    pub password_file: std::path::PathBuf,
    /// Mosquitto's ACL file: who may publish and subscribe to what. Empty: no file, everyone
    /// may do everything.
    pub acl_file: std::path::PathBuf,
    /// Milliseconds a failed login waits before it is refused, doubling with each further
    /// failure from the same address (32 times this at most); a success or ten quiet minutes
    /// reset it. 0 = no wait.
    pub login_delay_ms: u64,
}

/// One SCRAM-SHA-256 user: a name and its stored credential (never the password).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScramUser {
    /// The user name the client authenticates as.
    pub user: String,
    /// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, as printed by
    /// `roost --scram-credential` (which prompts for the password).
    pub credential: String,
}

/// Logging.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// A tracing filter, e.g. "info" or "roost=debug"; `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listeners: vec![Listener::new(SocketAddr::from(([127, 0, 0, 1], 1883)))],
            limits: Limits::default(),
            sessions: Sessions::default(),
            shared_subscriptions: SharedSubscriptions::default(),
            mqtt5: Mqtt5::default(),
            auth: Auth::default(),
            log: Log::default(),
            persistence: Persistence::default(),
        }
    }
}

impl Default for Persistence {
    fn default() -> Self {
        Self {
            enabled: true,
            dir: PathBuf::from("data"),
            sync: SyncMode::Always,
            sync_interval_ms: 100,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_packet_size: 1024 * 1024,
            connect_timeout_secs: 10,
            max_qos: 2,
            max_inflight: 20,
            receive_maximum: 100,
            retain_available: true,
            topic_alias_maximum: 10,
            max_keepalive: 65535,
            wildcard_subscription_available: true,
            subscription_identifier_available: true,
            max_topic_levels: 200,
            max_topic_length: 4096,
            max_publish_rate: 0,
            max_publish_bytes_rate: 0,
            max_connect_rate_per_address: 0,
            idle_park_secs: 5,
            max_connections: 60_000,
            max_subscriptions_per_client: 10_000,
            max_memory_bytes: default_memory_budget(),
        }
    }
}

impl Default for Sessions {
    fn default() -> Self {
        Self {
            max_queued_messages: 1000,
            max_queued_bytes: 0,
            queue_qos0_offline: false,
            overflow: Overflow::DropNew,
            backpressure_max_wait_ms: 1000,
        }
    }
}

impl Default for SharedSubscriptions {
    fn default() -> Self {
        Self {
            available: true,
            strategy: ShareStrategy::RoundRobin,
        }
    }
}

impl Default for Auth {
    fn default() -> Self {
        Self {
            allow_anonymous: true,
            scram_users: Vec::new(),
            password_file: std::path::PathBuf::new(),
            acl_file: std::path::PathBuf::new(),
            login_delay_ms: 250,
        }
    }
}

impl Default for Log {
    fn default() -> Self {
        Self {
            level: "info".into(),
        }
    }
}

/// A configuration that cannot be used, with the key and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {err}")]
    Read {
        /// The file, as named on the command line.
        path: String,
        /// Why reading failed.
        err: std::io::Error,
    },
    /// The text is not TOML, or not the shape of [`Config`] (an unknown key, a wrong type).
    #[error("{path}: {message}")]
    Parse {
        /// The file, or "config" for text that came from no file.
        path: String,
        /// The TOML parser's account, on one line.
        message: String,
    },
    /// A value serde accepted but [`Config::validate`] does not.
    #[error("{key}: {message}")]
    Invalid {
        /// The offending key, e.g. "limits.max_qos".
        key: &'static str,
        /// What the value must be instead.
        message: String,
    },
}

impl Config {
    /// Reads and validates a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError::Read {
            path: path.display().to_string(),
            err,
        })?;
        Self::from_toml(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.display().to_string(),
                message,
            },
            other => other,
        })
    }

    /// Parses and validates TOML text.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: "config".into(),
            // toml's message names the key and shows the line; keep it on one line for logs.
            message: e.to_string().replace('\n', " ").trim().to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the values serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: &str| {
            Err(ConfigError::Invalid {
                key,
                message: message.into(),
            })
        };
        let p = &self.persistence;
        if p.enabled && p.sync != SyncMode::Off && p.dir.as_os_str().is_empty() {
            return invalid(
                "persistence.dir",
                "is empty: name a directory for the store (\"data\"), or set enabled = false",
            );
        }
        if p.enabled && p.sync == SyncMode::Periodic && p.sync_interval_ms == 0 {
            return invalid(
                "persistence.sync_interval_ms",
                "must be at least 1 with sync = \"periodic\" (or use sync = \"always\")",
            );
        }
        let passwords = &self.auth.password_file;
        if !passwords.as_os_str().is_empty()
            && let Err(e) = crate::auth::PasswordFile::load(passwords)
        {
            return Err(ConfigError::Invalid {
                key: "auth.password_file",
                message: format!(
                    "{e} (write it with `roost passwd FILE USER` or mosquitto_passwd)"
                ),
            });
        }
        let acl = &self.auth.acl_file;
        if !acl.as_os_str().is_empty()
            && let Err(e) = crate::auth::AclFile::load(acl)
        {
            return Err(ConfigError::Invalid {
                key: "auth.acl_file",
                message: format!("{e} (the file is in Mosquitto's acl_file format)"),
            });
        }
        if self.listeners.is_empty() {
            return invalid(
                "listeners",
                "at least one [[listeners]] entry with a bind address is needed",
            );
        }
        for l in &self.listeners {
            let over = l.auth.clone().unwrap_or_default();
            if let Some(path) = over.password_file.filter(|p| !p.as_os_str().is_empty())
                && let Err(e) = crate::auth::PasswordFile::load(&path)
            {
                return Err(ConfigError::Invalid {
                    key: "listeners.auth.password_file",
                    message: format!("the listener on {}: {e}", l.bind),
                });
            }
            if let Some(path) = over.acl_file.filter(|p| !p.as_os_str().is_empty())
                && let Err(e) = crate::auth::AclFile::load(&path)
            {
                return Err(ConfigError::Invalid {
                    key: "listeners.auth.acl_file",
                    message: format!("the listener on {}: {e}", l.bind),
                });
            }
            if l.protocol == ListenerProtocol::Ws && !l.ws_path.starts_with('/') {
                return Err(ConfigError::Invalid {
                    key: "listeners.ws_path",
                    message: format!(
                        "the listener on {}: `{}` must be an absolute path such as \"/mqtt\"",
                        l.bind, l.ws_path
                    ),
                });
            }
            if let Some(tls) = &l.tls
                && let Err(e) = crate::tls::server_config(tls, l.protocol)
            {
                return Err(ConfigError::Invalid {
                    key: "listeners.tls",
                    message: format!("the listener on {}: {e}", l.bind),
                });
            }
        }
        if self
            .listeners
            .iter()
            .any(|l| !(1..=65535).contains(&l.backlog))
        {
            return invalid("listeners.backlog", "must be between 1 and 65535");
        }
        if self.limits.max_qos > 2 {
            return invalid("limits.max_qos", "must be 0, 1 or 2");
        }
        if self.limits.max_packet_size < 64 {
            return invalid("limits.max_packet_size", "must be at least 64 bytes");
        }
        if self.limits.max_inflight == 0 {
            return invalid("limits.max_inflight", "must be at least 1");
        }
        if self.limits.receive_maximum == 0 {
            return invalid(
                "limits.receive_maximum",
                "must be at least 1 (MQTT 5.0 forbids 0)",
            );
        }
        if self.limits.connect_timeout_secs == 0 {
            return invalid("limits.connect_timeout_secs", "must be at least 1 second");
        }
        if self.limits.max_keepalive == 0 {
            return invalid(
                "limits.max_keepalive",
                "must be at least 1 second (65535 means no limit)",
            );
        }
        if self.limits.max_topic_length == 0 {
            return invalid("limits.max_topic_length", "must be at least 1");
        }
        if self.limits.max_memory_bytes != 0 && self.limits.max_memory_bytes < 1 << 20 {
            return invalid(
                "limits.max_memory_bytes",
                "must be 0 (no limit) or at least 1048576 (1 MiB)",
            );
        }
        if self.limits.max_topic_levels == 0 {
            return invalid("limits.max_topic_levels", "must be at least 1");
        }
        if self.mqtt5.server_moved && self.mqtt5.server_reference.is_empty() {
            return invalid(
                "mqtt5.server_moved",
                "needs mqtt5.server_reference, the server clients are sent to",
            );
        }
        for u in &self.auth.scram_users {
            if u.user.is_empty() || !u.user.chars().all(|c| c == ' ' || c.is_ascii_graphic()) {
                return invalid(
                    "auth.scram_users.user",
                    "must be printable ASCII (SASLprep is not supported yet)",
                );
            }
            if u.credential
                .parse::<crate::auth::ScramCredentials>()
                .is_err()
            {
                return invalid(
                    "auth.scram_users.credential",
                    "not a SCRAM-SHA-256 credential: make one with `roost --scram-credential`",
                );
            }
        }
        if self.sessions.max_queued_messages == 0 {
            return invalid("sessions.max_queued_messages", "must be at least 1");
        }
        if !(1..=3_600_000).contains(&self.sessions.backpressure_max_wait_ms) {
            return invalid(
                "sessions.backpressure_max_wait_ms",
                "must be 1 to 3600000 (an hour): a publisher's wait for a full subscriber must end",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_default_file_equals_the_built_in_defaults() {
        let text = include_str!("../config/roost.toml");
        assert_eq!(Config::from_toml(text).unwrap(), Config::default());
    }

    #[test]
    fn unknown_key_is_named() {
        let e = Config::from_toml("[limits]\nmax_packet_sise = 10\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_packet_sise"), "{e}");
        assert!(
            e.contains("max_packet_size"),
            "the message lists the allowed keys: {e}"
        );
    }

    #[test]
    fn bad_values_name_the_key_and_the_fix() {
        let e = Config::from_toml("[limits]\nmax_qos = 3\n")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "limits.max_qos: must be 0, 1 or 2");
        let e = Config::from_toml("[[listeners]]\nbind = \"nope\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("bind"), "{e}");
        let e = Config::from_toml("[[listeners]]\nbind = \"127.0.0.1:1\"\nbacklog = 0\n")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "listeners.backlog: must be between 1 and 65535");
        let e = Config::from_toml("listeners = []\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("listeners:"), "{e}");
        let e = Config::from_toml("[shared_subscriptions]\nstrategy = \"fastest\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("strategy") && e.contains("round_robin"), "{e}");
    }
}
