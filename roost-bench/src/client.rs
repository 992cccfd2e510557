//! Setting up a raw MQTT client: TCP connect (optionally from a chosen source address), the
//! TLS handshake with `--tls-ca`, CONNECT/CONNACK and SUBSCRIBE/SUBACK, all decoded with Roost's codec so a refusal is
//! reported with its reason. The hot loops take the socket over afterwards (`publisher`,
//! `subscriber`); this module never counts messages.

use crate::stream::{Stream, Tls};
use anyhow::{Context, Result, anyhow, bail};
use bytes::BytesMut;
use roost::protocol::{
    ByteStr, Connect, DecodeLimits, Packet, ProtocolVersion, QoS, Subscribe, Subscription,
    SubscriptionOptions, decode,
};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};

/// Read buffer reserved per connection; a read takes up to this much at a time.
pub const READ_CHUNK: usize = 64 * 1024;

/// A connected MQTT client between handshake and hot loop.
pub struct Client {
    pub stream: Stream,
    pub version: ProtocolVersion,
    /// Bytes received but not yet consumed; handed to the hot loop with the socket.
    pub rbuf: BytesMut,
}

/// How long the two phases of a connection took.
#[derive(Debug, Clone, Copy)]
pub struct Phases {
    /// From before `socket` to a connected stream.
    pub tcp: Duration,
    /// The TLS handshake (zero without TLS).
    pub tls: Duration,
    /// From the connected (and secured) stream to a successful CONNACK (CONNECT sent in
    /// between).
    pub connack: Duration,
}

/// How to connect.
#[derive(Debug, Clone)]
pub struct Dial {
    pub addr: SocketAddr,
    /// Bind the socket to this address (port chosen by the kernel) before connecting.
    pub source: Option<IpAddr>,
    pub version: ProtocolVersion,
    /// Kept at 0 (off) by the scenarios: a bench client must not need PINGREQ timers.
    pub keep_alive: u16,
    /// TLS over the TCP connection (`--tls-ca`).
    pub tls: Option<Tls>,
    /// Keep the session after the connection (`--persistent`, for subscribers).
    pub persistent: bool,
}

impl Dial {
    /// The broker the command line names, from the default source address, keep alive off.
    pub fn broker(common: &crate::cli::Common) -> Self {
        Self {
            addr: common.addr(),
            source: None,
            version: common.version(),
            keep_alive: 0,
            tls: common.tls.clone(),
            persistent: false,
        }
    }
}

impl Client {
    /// TCP connect, CONNECT with a clean session, and a successful CONNACK.
    pub async fn connect(dial: Dial, client_id: &str) -> Result<Self> {
        Ok(Self::connect_timed(dial, client_id).await?.0)
    }

    /// As `connect`, and how long each phase of it took.
    pub async fn connect_timed(dial: Dial, client_id: &str) -> Result<(Self, Phases)> {
        let start = Instant::now();
        let tcp = tcp(dial.addr, dial.source).await?;
        tcp.set_nodelay(true)?;
        let connected = Instant::now();
        let stream = match &dial.tls {
            Some(tls) => tls.start(tcp, dial.addr.ip()).await?,
            None => Stream::Tcp(tcp),
        };
        let secured = Instant::now();
        let client = Self::handshake(stream, &dial, client_id).await?;
        let phases = Phases {
            tcp: connected - start,
            tls: secured - connected,
            connack: secured.elapsed(),
        };
        Ok((client, phases))
    }

    /// CONNECT on a connected stream (a clean session unless `dial.persistent`), and a
    /// successful CONNACK.
    async fn handshake(stream: Stream, dial: &Dial, client_id: &str) -> Result<Self> {
        let mut client = Self {
            stream,
            version: dial.version,
            rbuf: BytesMut::with_capacity(256),
        };
        let mut properties = roost::protocol::Props::default();
        if dial.persistent && dial.version.is_v5() {
            properties.make_mut().session_expiry_interval = Some(3600);
        }
        let connect = Connect {
            protocol: dial.version,
            clean_start: !dial.persistent,
            keep_alive: dial.keep_alive,
            properties,
            client_id: ByteStr::try_from(client_id).context("client id")?,
            will: None,
            username: None,
            password: None,
        };
        client.send(&Packet::Connect(Box::new(connect))).await?;
        match client.recv().await.context("waiting for CONNACK")? {
            Packet::ConnAck(ack) if !ack.reason.is_error() => Ok(client),
            Packet::ConnAck(ack) => bail!(
                "broker refused CONNECT of {client_id}: {:#04x} {}",
                ack.reason.0,
                ack.reason.name()
            ),
            other => bail!("expected CONNACK, broker sent {}", other.name()),
        }
    }

    /// SUBSCRIBE to one filter and wait for a SUBACK that grants it.
    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> Result<()> {
        let subscribe = Subscribe {
            packet_id: 1,
            properties: Default::default(),
            subscriptions: vec![Subscription {
                filter: ByteStr::try_from(filter).context("topic filter")?,
                options: SubscriptionOptions {
                    qos,
                    ..SubscriptionOptions::default()
                },
            }],
        };
        self.send(&Packet::Subscribe(subscribe)).await?;
        let ack = match self.recv().await {
            Ok(Packet::SubAck(ack)) => ack,
            Ok(other) => bail!("expected SUBACK for {filter}, broker sent {}", other.name()),
            Err(e) => return Err(e.context(format!("broker gave no SUBACK for {filter}"))),
        };
        match ack.reason_codes.first() {
            Some(code) if !code.is_error() => Ok(()),
            Some(code) => bail!(
                "broker refused the subscription to {filter}: SUBACK {:#04x} ({})",
                code.0,
                if self.version.is_v5() {
                    code.name()
                } else {
                    "Failure"
                }
            ),
            None => bail!("SUBACK for {filter} carries no reason code"),
        }
    }

    /// Encodes and writes one packet.
    pub async fn send(&mut self, packet: &Packet) -> Result<()> {
        let mut out = BytesMut::new();
        packet
            .encode(self.version, &mut out)
            .context("encoding a packet")?;
        self.stream.send_all(&out).await.context("write")?;
        Ok(())
    }

    /// The next whole packet, fully decoded. Fails on close.
    pub async fn recv(&mut self) -> Result<Packet> {
        loop {
            if let Some(p) = decode(&mut self.rbuf, self.version, &DecodeLimits::default())
                .map_err(|e| anyhow!("broker sent a packet Roost's codec refuses: {e}"))?
            {
                return Ok(p);
            }
            if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                bail!("broker closed the connection");
            }
        }
    }
}

/// A TCP connection to `addr`, bound first to `source` when one is given.
async fn tcp(addr: SocketAddr, source: Option<IpAddr>) -> Result<TcpStream> {
    let Some(ip) = source else {
        return TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to {addr}"));
    };
    let socket = if ip.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // Lets a port still in TIME_WAIT from a previous run be bound again.
    socket.set_reuseaddr(true)?;
    socket
        .bind(SocketAddr::new(ip, 0))
        .with_context(|| format!("cannot bind to source address {ip}"))?;
    socket
        .connect(addr)
        .await
        .with_context(|| format!("cannot connect to {addr} from {ip}"))
}

/// The error for a packet a hot loop does not expect at the front of `buf`, decoded with the
/// codec to name it (and a v5 DISCONNECT's reason, the usual way a broker says why it quits).
pub fn unexpected(buf: &mut BytesMut, version: ProtocolVersion) -> anyhow::Error {
    match decode(buf, version, &DecodeLimits::default()) {
        Ok(Some(Packet::Disconnect(d))) => anyhow!(
            "broker sent DISCONNECT {:#04x} ({})",
            d.reason.0,
            d.reason.name()
        ),
        Ok(Some(p)) => anyhow!("broker sent an unexpected {}", p.name()),
        Ok(None) => anyhow!("broker sent an incomplete packet"),
        Err(e) => anyhow!("broker sent a packet Roost's codec refuses: {e}"),
    }
}

/// The DISCONNECT a client sends before closing (2 bytes in both versions: reason Success is
/// implied by an empty v5 body).
pub const DISCONNECT: [u8; 2] = [0xE0, 0x00];
