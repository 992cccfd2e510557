//! The broker killed with SIGKILL at random moments while a publisher sends QoS 1 and QoS 2
//! messages to an online and an offline persistent subscriber, and restarted on its store each
//! time (issue 17). Afterwards every message the broker acknowledged has reached both
//! subscribers, each QoS 2 one exactly once (the subscribers keep their own QoS 2 state across
//! the broker's restarts, as a client that stays up does).
//!
//! `cargo test` runs a short round against the debug binary; `.ci/run` runs a longer one against
//! the release build: `ROOST_BIN=target/release/roost CRASH_MESSAGES=1500 CRASH_KILLS=8`.

mod support;

use bytes::BytesMut;
use roost::protocol::ProtocolVersion::V3_1_1;
use roost::protocol::{
    ByteStr, Connect, DecodeLimits, Packet, PubResp, Publish, QoS, Subscribe, Subscription,
    SubscriptionOptions, decode,
};
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::process::{self, Process};

fn env_or(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Starts the broker on `config`; returns it and the address it listens on.
fn start(config: &Path) -> (Process, SocketAddr) {
    let mut command = Command::new(process::binary());
    command.arg("-c").arg(config);
    process::spawn(command, Some(config.with_extension("log")))
}

/// A blocking MQTT 3.1.1 connection.
struct Conn {
    stream: TcpStream,
    buf: BytesMut,
}

impl Conn {
    /// Connects as `client_id` with Clean Session 0; an error if the broker is not there (yet).
    fn open(addr: SocketAddr, client_id: &str) -> std::io::Result<(Self, bool)> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
        stream.set_nodelay(true)?;
        let mut c = Self {
            stream,
            buf: BytesMut::new(),
        };
        let connect = Connect {
            protocol: V3_1_1,
            clean_start: false,
            keep_alive: 0,
            properties: Default::default(),
            client_id: ByteStr::try_from(client_id).map_err(std::io::Error::other)?,
            will: None,
            username: None,
            password: None,
        };
        c.send(&Packet::Connect(Box::new(connect)))?;
        match c.recv(Duration::from_secs(10))? {
            Some(Packet::ConnAck(a)) if !a.reason.is_error() => Ok((c, a.session_present)),
            other => Err(std::io::Error::other(format!("CONNACK: {other:?}"))),
        }
    }

    /// Connects, retrying while the broker restarts (up to a minute).
    fn open_retrying(addr: &Mutex<SocketAddr>, client_id: &str) -> (Self, bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let at = *addr.lock().unwrap();
            match Self::open(at, client_id) {
                Ok(c) => return c,
                Err(e) if Instant::now() > deadline => panic!("{client_id}: cannot connect: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    fn send(&mut self, p: &Packet) -> std::io::Result<()> {
        let mut out = BytesMut::new();
        p.encode(V3_1_1, &mut out).map_err(std::io::Error::other)?;
        self.stream.write_all(&out)
    }

    /// The next packet; `None` if none came within `wait`; an error once the connection is
    /// gone.
    fn recv(&mut self, wait: Duration) -> std::io::Result<Option<Packet>> {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(p) = decode(&mut self.buf, V3_1_1, &DecodeLimits::default())
                .map_err(std::io::Error::other)?
            {
                return Ok(Some(p));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.stream.set_read_timeout(Some(left))?;
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Message `i` of the run: odd ones at QoS 2, even ones at QoS 1.
fn qos_of(i: u32) -> QoS {
    if i % 2 == 1 {
        QoS::ExactlyOnce
    } else {
        QoS::AtLeastOnce
    }
}

/// What a subscriber received: how many times each message, and its QoS 2 packet ids held
/// between PUBLISH and PUBREL (its exactly-once state, kept across reconnections).
#[derive(Default)]
struct Received {
    times: HashMap<u32, u32>,
    pending: HashSet<u16>,
}

impl Received {
    /// Handles one packet from the broker as a client does; returns whether it was a PUBLISH
    /// or PUBREL.
    fn handle(&mut self, c: &mut Conn, p: Packet) -> std::io::Result<bool> {
        match p {
            Packet::Publish(p) => {
                let i: u32 = std::str::from_utf8(&p.payload)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .expect("a message number");
                match p.qos {
                    QoS::ExactlyOnce => {
                        // Method B: a packet id held since its PUBLISH is a duplicate.
                        if self.pending.insert(p.packet_id) {
                            *self.times.entry(i).or_default() += 1;
                        }
                        c.send(&Packet::PubRec(PubResp::new(p.packet_id)))?;
                    }
                    QoS::AtLeastOnce => {
                        *self.times.entry(i).or_default() += 1;
                        c.send(&Packet::PubAck(PubResp::new(p.packet_id)))?;
                    }
                    QoS::AtMostOnce => panic!("message {i} came at QoS 0"),
                }
                Ok(true)
            }
            Packet::PubRel(r) => {
                self.pending.remove(&r.packet_id);
                c.send(&Packet::PubComp(PubResp::new(r.packet_id)))?;
                Ok(true)
            }
            Packet::PingResp => Ok(false),
            other => panic!("unexpected {other:?}"),
        }
    }

    /// Reads until two PINGREQ round trips in a row bring nothing else: the broker has nothing
    /// more for this client.
    fn drain(&mut self, c: &mut Conn) -> std::io::Result<()> {
        let mut quiet = 0;
        while quiet < 2 {
            quiet += 1;
            c.send(&Packet::PingReq)?;
            loop {
                match c.recv(Duration::from_secs(30))? {
                    Some(Packet::PingResp) => break,
                    Some(p) => {
                        if self.handle(c, p)? {
                            quiet = 0;
                        }
                    }
                    None => return Err(std::io::ErrorKind::TimedOut.into()),
                }
            }
        }
        Ok(())
    }
}

fn subscribe(c: &mut Conn) {
    let subscribe = Subscribe {
        packet_id: 1,
        properties: Default::default(),
        subscriptions: vec![Subscription {
            filter: ByteStr::from_static("crash/#").unwrap(),
            options: SubscriptionOptions {
                qos: QoS::ExactlyOnce,
                ..Default::default()
            },
        }],
    };
    c.send(&Packet::Subscribe(subscribe)).unwrap();
    assert!(matches!(
        c.recv(Duration::from_secs(10)).unwrap(),
        Some(Packet::SubAck(_))
    ));
}

/// Sends messages 0..n one at a time, each to the end of its handshake, resuming across the
/// broker's restarts as a client does (the same packet id again, DUP set; a PUBREL again once
/// PUBREC came). Returns the messages the broker acknowledged (PUBACK or PUBREC).
fn publish_all(addr: &Mutex<SocketAddr>, n: u32, progress: &AtomicU32) -> Vec<u32> {
    let mut acked = Vec::new();
    let (mut c, _) = Conn::open_retrying(addr, "crash-pub");
    let mut i = 0;
    // Whether message i was acknowledged (PUBREC for QoS 2): a PUBREL is what goes again.
    let mut recd = false;
    let mut dup = false;
    while i < n {
        let packet_id = (i % 65_535) as u16 + 1;
        let step = (|| -> std::io::Result<bool> {
            if recd {
                c.send(&Packet::PubRel(PubResp::new(packet_id)))?;
            } else {
                c.send(&Packet::Publish(Publish {
                    dup,
                    qos: qos_of(i),
                    retain: false,
                    topic: ByteStr::try_from(format!("crash/{}", i % 7).as_str()).expect("a topic"),
                    packet_id,
                    properties: Default::default(),
                    payload: i.to_string().into(),
                }))?;
            }
            loop {
                match c.recv(Duration::from_secs(30))? {
                    Some(Packet::PubAck(a)) if a.packet_id == packet_id => {
                        acked.push(i);
                        return Ok(true);
                    }
                    Some(Packet::PubRec(a)) if a.packet_id == packet_id => {
                        if !recd {
                            acked.push(i);
                        }
                        recd = true;
                        c.send(&Packet::PubRel(PubResp::new(packet_id)))?;
                    }
                    Some(Packet::PubComp(a)) if a.packet_id == packet_id => return Ok(true),
                    Some(other) => panic!("publisher got {other:?}"),
                    None => return Err(std::io::ErrorKind::TimedOut.into()),
                }
            }
        })();
        match step {
            Ok(_) => {
                i += 1;
                progress.store(i, Ordering::Release);
                (recd, dup) = (false, false);
            }
            Err(_) => {
                // The broker went: again, once it is back.
                dup = true;
                (c, _) = Conn::open_retrying(addr, "crash-pub");
            }
        }
    }
    acked
}

/// A persistent subscriber that stays connected (reconnecting after each kill) until `stop`,
/// then drains what is left.
fn stay_online(addr: &Mutex<SocketAddr>, stop: &AtomicBool) -> Received {
    let mut got = Received::default();
    let (mut c, _) = Conn::open_retrying(addr, "crash-online");
    loop {
        let result = (|| -> std::io::Result<bool> {
            if stop.load(Ordering::Acquire) {
                got.drain(&mut c)?;
                return Ok(true);
            }
            if let Some(p) = c.recv(Duration::from_millis(100))? {
                got.handle(&mut c, p)?;
            }
            Ok(false)
        })();
        match result {
            Ok(true) => return got,
            Ok(false) => {}
            Err(_) => (c, _) = Conn::open_retrying(addr, "crash-online"),
        }
    }
}

/// A small random number generator (no dependency for one test), seeded from the clock.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn acknowledged_messages_survive_sigkill() {
    let n = env_or("CRASH_MESSAGES", 300);
    let kills = env_or("CRASH_KILLS", 3);
    let dir: PathBuf = std::env::temp_dir().join(format!("roost-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("roost.toml");
    std::fs::write(
        &config,
        format!(
            "[[listeners]]\nbind = \"127.0.0.1:0\"\n\n[sessions]\nmax_queued_messages = \
             1000000\n\n[persistence]\nenabled = true\ndir = {:?}\nsync = {:?}\n\
             sync_interval_ms = 2000\n",
            dir.join("data"),
            // Only to see this test fail: "periodic" acknowledges what a kill may lose.
            std::env::var("CRASH_SYNC").unwrap_or_else(|_| "always".into())
        ),
    )
    .unwrap();
    let (mut broker, at) = start(&config);
    let addr = Arc::new(Mutex::new(at));
    // The offline subscriber: subscribed once, back only at the end.
    {
        let (mut c, _) = Conn::open_retrying(&addr, "crash-offline");
        subscribe(&mut c);
        c.send(&Packet::Disconnect(Default::default())).unwrap();
        let (mut c, _) = Conn::open_retrying(&addr, "crash-online");
        subscribe(&mut c);
        c.send(&Packet::Disconnect(Default::default())).unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let online = {
        let (addr, stop) = (addr.clone(), stop.clone());
        std::thread::spawn(move || stay_online(&addr, &stop))
    };
    let progress = Arc::new(AtomicU32::new(0));
    let publisher = {
        let (addr, progress) = (addr.clone(), progress.clone());
        std::thread::spawn(move || publish_all(&addr, n, &progress))
    };
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64 | 1);
    let mut rng = Rng(seed);
    let mut killed = 0;
    // Each kill at a random message of its share of the run (not at a random time: a fast
    // run could end before the first).
    let share = (n / kills.max(1)).max(1);
    for k in 0..kills {
        let at = k * share + rng.below(u64::from(share)) as u32;
        while progress.load(Ordering::Acquire) < at && !publisher.is_finished() {
            std::thread::sleep(Duration::from_millis(1));
        }
        if publisher.is_finished() {
            break;
        }
        let _ = broker.0.kill(); // SIGKILL
        let _ = broker.0.wait();
        killed += 1;
        let (b, at) = start(&config);
        broker = b;
        *addr.lock().unwrap() = at;
    }
    let acked = publisher.join().expect("the publisher finished");
    stop.store(true, Ordering::Release);
    let online = online.join().expect("the online subscriber finished");
    let mut offline = Received::default();
    let (mut c, present) = Conn::open_retrying(&addr, "crash-offline");
    assert!(present, "the offline session was kept");
    offline.drain(&mut c).unwrap();
    drop(broker);

    let q2 = acked
        .iter()
        .filter(|&&i| qos_of(i) == QoS::ExactlyOnce)
        .count();
    println!(
        "crash test: seed {seed}, {n} messages ({} QoS 1, {} QoS 2), broker killed {killed} \
         times; acknowledged {} ({q2} QoS 2); online received {} distinct, offline {} distinct",
        n - n / 2,
        n / 2,
        acked.len(),
        online.times.len(),
        offline.times.len()
    );
    for (who, got) in [("online", &online), ("offline", &offline)] {
        let lost: Vec<u32> = acked
            .iter()
            .copied()
            .filter(|i| !got.times.contains_key(i))
            .collect();
        assert!(
            lost.is_empty(),
            "{who}: acknowledged but never delivered: {lost:?}"
        );
        let twice: Vec<(u32, u32)> = got
            .times
            .iter()
            .filter(|(i, t)| qos_of(**i) == QoS::ExactlyOnce && **t > 1)
            .map(|(i, t)| (*i, *t))
            .collect();
        assert!(
            twice.is_empty(),
            "{who}: QoS 2 delivered more than once: {twice:?}"
        );
        let dups = got.times.values().filter(|&&t| t > 1).count();
        println!(
            "  {who}: {} messages, {dups} QoS 1 duplicates",
            got.times.len()
        );
    }
    assert!(
        killed > 0 || kills == 0,
        "the broker was killed at least once"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
