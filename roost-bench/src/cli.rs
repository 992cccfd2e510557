//! The command line: one subcommand per scenario, the options every scenario shares, and the
//! checks clap cannot make. Parsing only; nothing here opens a socket.

use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand};
use roost::protocol::{ProtocolVersion, QoS};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// roost-bench: an MQTT load generator for any broker (Mosquitto is the yardstick).
///
/// Each run warms up for 1 s (excluded from the figures), measures for --duration seconds,
/// drains for at most 2 s, prints a progress line per second on stderr and the figures on
/// stdout. Pin it away from the broker: `taskset -c 1 roost-bench ...`.
#[derive(Parser, Debug)]
#[command(version)]
pub struct Cli {
    #[command(subcommand)]
    pub scenario: Scenario,
    #[command(flatten)]
    pub common: Common,
}

/// Options every scenario takes (before or after the scenario name).
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Broker address.
    #[arg(long, global = true, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Broker port.
    #[arg(long, global = true, default_value_t = 1883)]
    pub port: u16,
    /// QoS of every PUBLISH and subscription: 0, 1 or 2.
    #[arg(long, global = true, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,
    /// Payload size in bytes (at least 8 for `latency`, which stamps the send time in it).
    #[arg(long, global = true, default_value_t = 64)]
    pub payload: usize,
    /// Seconds measured, after the 1 s warm-up.
    #[arg(long, global = true, default_value_t = 10)]
    pub duration: u64,
    /// Total publish rate in msg/s over all publishers; 0 = as fast as the broker takes them.
    #[arg(long, global = true, default_value_t = 0)]
    pub rate: u64,
    /// MQTT protocol level: 4 (3.1.1) or 5 (5.0).
    #[arg(long, global = true, default_value_t = 4, value_parser = clap::value_parser!(u8).range(4..=5))]
    pub mqtt_version: u8,
    /// Messages per second each subscriber handles at most: a slow reader (a phone on a slow
    /// link), to see what a broker's overflow policy does; 0 = as fast as it can.
    #[arg(long, global = true, default_value_t = 0)]
    pub sub_rate: u64,
    /// QoS 1/2 PUBLISHes in flight per publisher (unacknowledged).
    #[arg(long, global = true, default_value_t = 100)]
    pub window: u32,
    /// Print one JSON object instead of the table.
    #[arg(long, global = true)]
    pub json: bool,
    /// Subscribers (and `handshakes` clients) keep their sessions (3.1.1 Clean Session 0; 5.0
    /// Session Expiry of an hour), so a broker that persists writes what it queues for them to
    /// disk; each handshake then leaves an offline session behind.
    #[arg(long, global = true)]
    pub persistent: bool,
    /// The broker's process id: adds its CPU use (and RSS for `conns` and `retained`) from /proc.
    #[arg(long, global = true)]
    pub broker_pid: Option<u32>,
    /// Connect over TLS, trusting the CA certificates in this PEM file (`roost certs` writes
    /// one). Every connection makes a full handshake (no resumption) with X25519.
    #[arg(long, global = true)]
    pub tls_ca: Option<std::path::PathBuf>,
    /// Connect over TLS without checking the broker's certificate or its handshake signature:
    /// for `handshakes`, where the bench's own ECDSA verification would cost it more than
    /// the broker's signing and cap the rate at the bench.
    #[arg(long, global = true, conflicts_with = "tls_ca")]
    pub tls_insecure: bool,
    /// Built from --tls-ca or --tls-insecure by `main` after parsing.
    #[arg(skip)]
    pub tls: Option<crate::stream::Tls>,
    /// Tokio worker threads; 1 runs everything on the calling thread. Default: the CPUs this
    /// process may run on (1 under `taskset -c 1`).
    #[arg(long, global = true)]
    pub threads: Option<usize>,
}

/// What to measure.
#[derive(Subcommand, Debug, Clone)]
pub enum Scenario {
    /// P publishers on bench/<i> -> one subscriber on bench/#: accepted, delivered, dropped.
    Fanin {
        /// Publishers, each on its own topic.
        #[arg(long, default_value_t = 8)]
        publishers: usize,
    },
    /// One publisher on bench/fanout -> N subscribers: deliveries/s summed over subscribers.
    Fanout {
        /// Subscribers to the one topic.
        #[arg(long, default_value_t = 1000)]
        subscribers: usize,
    },
    /// A paced publisher stamping the send time in the payload; p50/p99/p999/max in us.
    /// --rate 0 (the default) means 1000 msg/s here.
    Latency,
    /// N idle connections from 127.0.0.1..127.0.0.S: time to connect, broker RSS per connection.
    /// Held for --duration seconds. Needs an open-file limit above N here and in the broker.
    Conns {
        /// Connections to open and hold.
        #[arg(long, default_value_t = 18_000)]
        connections: usize,
        /// Source addresses 127.0.0.1 ..= 127.0.0.S (each gives ~28k ephemeral ports).
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u8).range(1..=254))]
        source_ips: u8,
        /// Handshakes (TCP connect + CONNECT/CONNACK) in progress at once. Keep it under the
        /// broker's listen backlog (Mosquitto: 100): beyond it SYNs are dropped and retried.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
    },
    /// Offline queues: S persistent sessions subscribed to offline/all (QoS --qos) are left,
    /// then M messages of --payload bytes published to it: time, and broker RSS per session
    /// and per queued message (--broker-pid).
    Offline {
        /// Persistent sessions to leave.
        #[arg(long, default_value_t = 100_000)]
        sessions: usize,
        /// Messages each of them then holds.
        #[arg(long, default_value_t = 100)]
        messages: usize,
        /// Source addresses 127.0.0.1 ..= 127.0.0.S, in turn.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u8).range(1..=254))]
        source_ips: u8,
        /// Sessions being made at once.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
    /// New connections per second: C loops each connect (TCP, TLS with --tls-ca, CONNECT/
    /// CONNACK), DISCONNECT and start over, from 127.0.0.1..127.0.0.S: handshakes/s, socket to
    /// CONNACK p50/p99, the broker's CPU per handshake.
    Handshakes {
        /// Handshakes in progress at once.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Source addresses 127.0.0.1 ..= 127.0.0.S, in turn.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u8).range(1..=254))]
        source_ips: u8,
    },
    /// One publisher on bench/shared -> N consumers of $share/g/bench/shared: per-consumer counts.
    Shared {
        /// Consumers in the share group.
        #[arg(long, default_value_t = 4)]
        subscribers: usize,
    },
    /// One publisher stores N retained messages on bench/retained/<i>, then a new subscriber
    /// takes bench/retained/# at --qos: how many arrive, how fast, broker RSS after storing and
    /// at its peak. Stored at QoS 1 (2 with --qos 2), --window at a time; no --duration.
    Retained {
        /// Retained messages to store, each on its own topic.
        #[arg(long, default_value_t = 100_000)]
        messages: usize,
    },
}

impl Scenario {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Fanin { .. } => "fanin",
            Self::Fanout { .. } => "fanout",
            Self::Latency => "latency",
            Self::Conns { .. } => "conns",
            Self::Shared { .. } => "shared",
            Self::Retained { .. } => "retained",
            Self::Handshakes { .. } => "handshakes",
            Self::Offline { .. } => "offline",
        }
    }
}

/// Largest --payload: MQTT allows 256 MB, but each publisher keeps a 64 KiB batch of copies
/// and every subscriber a read buffer, so a bench payload stays modest.
const MAX_PAYLOAD: usize = 16 * 1024 * 1024;

impl Common {
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }

    pub fn version(&self) -> ProtocolVersion {
        if self.mqtt_version == 5 {
            ProtocolVersion::V5
        } else {
            ProtocolVersion::V3_1_1
        }
    }

    pub fn qos(&self) -> QoS {
        QoS::from_bits(self.qos).unwrap_or(QoS::AtMostOnce)
    }

    pub fn duration(&self) -> Duration {
        Duration::from_secs(self.duration)
    }

    /// The checks clap's attributes cannot express; each message names the flag.
    pub fn validate(&self, scenario: &Scenario) -> Result<()> {
        if self.duration == 0 {
            bail!("--duration must be at least 1 second");
        }
        if self.payload > MAX_PAYLOAD {
            bail!("--payload must be at most {MAX_PAYLOAD} bytes");
        }
        if self.window == 0 || self.window > 32_768 {
            bail!("--window must be 1..=32768 (packet ids are 16 bits and reused in order)");
        }
        if self.threads == Some(0) {
            bail!("--threads must be at least 1");
        }
        let positive = |name: &str, n: usize| {
            if n == 0 {
                bail!("--{name} must be at least 1");
            }
            Ok(())
        };
        match scenario {
            Scenario::Fanin { publishers } => positive("publishers", *publishers),
            Scenario::Fanout { subscribers } | Scenario::Shared { subscribers } => {
                positive("subscribers", *subscribers)
            }
            Scenario::Latency if self.payload < 8 => {
                bail!("--payload must be at least 8 bytes for latency (the timestamp)")
            }
            Scenario::Latency => Ok(()),
            Scenario::Conns {
                connections,
                concurrency,
                ..
            } => positive("connections", *connections)
                .and_then(|_| positive("concurrency", *concurrency)),
            Scenario::Retained { .. } if self.payload == 0 => {
                bail!(
                    "--payload must be at least 1 byte for retained: an empty retained PUBLISH \
                     deletes the topic's retained message instead of storing one"
                )
            }
            Scenario::Retained { messages } => positive("messages", *messages),
            Scenario::Handshakes { concurrency, .. } => positive("concurrency", *concurrency),
            Scenario::Offline { .. } if self.qos == 0 => {
                bail!("--qos must be 1 or 2 for offline: offline queues hold QoS 1 and 2")
            }
            Scenario::Offline {
                sessions,
                messages,
                concurrency,
                ..
            } => positive("sessions", *sessions)
                .and_then(|_| positive("messages", *messages))
                .and_then(|_| positive("concurrency", *concurrency)),
        }
    }
}
