//! The running server: binds the configured TCP listeners, spawns one task per connection, and
//! shuts down gracefully (stop accepting, close every client with its due will, wait for them).

use crate::auth::Realm;
use crate::broker::Broker;
use crate::broker::Metrics;
use crate::config::{self, Config};
use crate::connection::{Arrival, Certified};
use crate::tls::TlsListener;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::mpsc;

/// A started server. Dropping it without [`Server::shutdown`] leaves its tasks running.
pub struct Server {
    broker: Broker,
    local_addrs: Vec<SocketAddr>,
    /// The TLS listeners' configurations, reloaded on SIGHUP.
    tls: Vec<Arc<TlsListener>>,
    /// `[auth]`'s rules, then each `[listeners.auth]`'s (each once), reloaded on SIGHUP.
    realms: Vec<Arc<Realm>>,
    /// One per listener: its accept loop and every connection it accepted hold a clone of the
    /// sender (the count of live connections), and once all are gone `recv` returns `None`.
    done: Vec<mpsc::Receiver<()>>,
}

impl Server {
    /// Binds every listener and starts accepting. Fails if a listener cannot bind.
    pub async fn start(config: Config) -> std::io::Result<Self> {
        for warning in exposure_warnings(&config) {
            tracing::warn!("{warning}");
        }
        let broker = Broker::new(Arc::new(config));
        // Each listener's rules, before the store: a restored session belongs to a user under
        // one of them.
        let listener_realms: Vec<Arc<Realm>> = (broker.config().listeners.iter())
            .map(|l| listener_realm(&broker, l))
            .collect();
        // Before any listener: a client must find what was kept.
        crate::store::start(&broker, &listener_realms)
            .map_err(|e| std::io::Error::other(format!("persistence: {e}")))?;
        let mut done = Vec::new();
        let mut local_addrs = Vec::new();
        let mut tls_listeners = Vec::new();
        let mut realms = vec![broker.realm().clone()];
        for (l, realm) in broker.config().listeners.iter().zip(listener_realms) {
            let tls = match &l.tls {
                Some(settings) => Some(Arc::new(TlsListener::new(settings, l.protocol).map_err(
                    |e| std::io::Error::other(format!("listeners.tls of {}: {e}", l.bind)),
                )?)),
                None => None,
            };
            let listener = bind(l).map_err(|e| {
                std::io::Error::new(e.kind(), format!("listeners: cannot bind {}: {e}", l.bind))
            })?;
            let addr = listener.local_addr()?;
            local_addrs.push(addr);
            let ws = (l.protocol == config::ListenerProtocol::Ws).then(|| Arc::from(&*l.ws_path));
            let over = match (&tls, &ws) {
                (None, None) => "TCP",
                (Some(_), None) => "TLS",
                (None, Some(_)) => "WebSocket",
                (Some(_), Some(_)) => "WebSocket over TLS",
            };
            tracing::info!(%addr, path = ws.as_deref().unwrap_or(""), "listening for MQTT over {over}");
            if let Some(tls) = &tls {
                tls_listeners.push(tls.clone());
                let mut shutdown = broker.shutdown_signal();
                let watch = crate::tls::watch(tls.clone(), addr);
                tokio::spawn(async move {
                    tokio::select! {
                        _ = watch => {}
                        _ = shutdown.wait_for(|down| *down) => {}
                    }
                });
            }
            if l.auth.is_some() {
                // Its own rules; the others share [auth]'s, already listed once.
                realms.push(realm.clone());
            }
            let proxy = l.proxy_protocol;
            let layers = Layers {
                proxy,
                tls,
                ws,
                realm,
            };
            let (done_tx, done_rx) = mpsc::channel(1);
            done.push(done_rx);
            let limit = l.max_connections;
            tokio::spawn(accept_loop(
                listener,
                layers,
                limit,
                broker.clone(),
                done_tx,
            ));
        }
        Ok(Self {
            broker,
            local_addrs,
            tls: tls_listeners,
            realms,
            done,
        })
    }

    /// The address of the first listener (with the real port when the config asked for 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addrs[0]
    }

    /// Every listener's address.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// The broker's shared state.
    pub fn broker(&self) -> &Broker {
        &self.broker
    }

    /// Reloads what can change while clients stay connected (SIGHUP): the password files (for
    /// the next CONNECT), the ACL files (for every check from now on, connected clients'
    /// included) and each TLS listener's certificate, key and client CA. A file that does not load keeps the previous configuration and is logged; the
    /// errors are returned too.
    pub fn reload(&self) -> Vec<String> {
        let mut errors = Vec::new();
        for realm in &self.realms {
            errors.extend(realm.reload());
        }
        for (tls, addr) in self.tls.iter().zip(self.tls_addrs()) {
            match tls.reload() {
                Ok(()) => tracing::info!(listener = %addr, "TLS certificates reloaded"),
                Err(e) => {
                    tracing::error!(
                        listener = %addr,
                        "TLS certificates not reloaded, the previous ones stay in use: {e}"
                    );
                    errors.push(format!("{addr}: {e}"));
                }
            }
        }
        errors
    }

    /// The addresses of the TLS listeners, in the order of `self.tls`.
    fn tls_addrs(&self) -> impl Iterator<Item = &SocketAddr> {
        let listeners = &self.broker.config().listeners;
        listeners
            .iter()
            .zip(&self.local_addrs)
            .filter(|(l, _)| l.tls.is_some())
            .map(|(_, addr)| addr)
    }

    /// Stops accepting, closes every connection (v5 clients get DISCONNECT 0x8B, wills that are
    /// due are published), waits for all connection tasks to finish, and commits the store's
    /// last changes.
    pub async fn shutdown(self) {
        let Self {
            broker, mut done, ..
        } = self;
        // The accept loops stop and drop their senders; each connection drops its own as it ends.
        broker.begin_shutdown();
        for rx in &mut done {
            let _ = rx.recv().await;
        }
        // After the connections (their wills may be retained): the last changes, durably.
        if let Some(store) = broker.store().cloned() {
            let _ = tokio::task::spawn_blocking(move || store.close()).await;
        }
        tracing::info!("server stopped");
    }
}

/// What an operator must hear about listeners reachable from other machines: anonymous clients
/// let in, and plaintext. Loopback listeners, the default, are quiet.
fn exposure_warnings(config: &Config) -> Vec<String> {
    let mut warnings = Vec::new();
    for l in config
        .listeners
        .iter()
        .filter(|l| !l.bind.ip().is_loopback())
    {
        let anonymous = l.auth.as_ref().and_then(|a| a.allow_anonymous);
        if anonymous.unwrap_or(config.auth.allow_anonymous) {
            warnings.push(format!(
                "SECURITY: listener {} is reachable from other machines and lets anonymous clients \
                 in; set auth.allow_anonymous = false and auth.password_file",
                l.bind
            ));
        }
        if l.tls.is_none() {
            warnings.push(format!(
                "SECURITY: listener {} is reachable from other machines without TLS: user \
                 names, passwords and messages cross the network in clear",
                l.bind
            ));
        }
    }
    warnings
}

/// The rules of listener `l`: `[auth]`'s, or its own where `[listeners.auth]` overrides a key.
fn listener_realm(broker: &Broker, l: &config::Listener) -> Arc<Realm> {
    let Some(over) = &l.auth else {
        return broker.realm().clone();
    };
    let base = &broker.config().auth;
    Arc::new(Realm::new(
        over.allow_anonymous.unwrap_or(base.allow_anonymous),
        broker.methods().clone(),
        over.password_file.as_ref().unwrap_or(&base.password_file),
        over.acl_file.as_ref().unwrap_or(&base.acl_file),
    ))
}

/// A listening socket on `l.bind` with `l.backlog` (tokio's `TcpListener::bind` fixes 128).
fn bind(l: &config::Listener) -> std::io::Result<TcpListener> {
    let socket = if l.bind.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As `TcpListener::bind` does on Unix: a restart may bind while old connections linger.
    socket.set_reuseaddr(true)?;
    socket.bind(l.bind)?;
    socket.listen(l.backlog)
}

/// What a listener runs above TCP before MQTT, and its rules.
#[derive(Clone)]
struct Layers {
    /// A PROXY protocol header comes first.
    proxy: bool,
    tls: Option<Arc<TlsListener>>,
    /// The path of a WebSocket listener.
    ws: Option<Arc<str>>,
    /// `[auth]`, or the listener's `[listeners.auth]` over it.
    realm: Arc<Realm>,
}

impl Layers {
    /// What a connection from `peer` brings to its handshake.
    fn arrival(&self, peer: SocketAddr, broker: &Broker, certified: Certified) -> Arrival {
        Arrival::new(peer, broker.clone(), certified, self.realm.clone())
    }
}

/// Accepts connections until shutdown. Beyond `limit` live connections on this listener (0: no
/// limit but the broker's) a new one is closed at once, as Mosquitto's per-listener
/// `max_connections` does: before TLS or a CONNECT costs anything.
async fn accept_loop(
    listener: TcpListener,
    layers: Layers,
    limit: usize,
    broker: Broker,
    done: mpsc::Sender<()>,
) {
    let mut shutdown = broker.shutdown_signal();
    loop {
        let accepted = tokio::select! {
            // `wait_for`, not `changed`: this task may first run after shutdown began (a server
            // shut down before it ever accepted), and `changed` would then wait for a second
            // change that never comes.
            _ = shutdown.wait_for(|down| *down) => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                // Every live connection holds a clone of `done`, and so does this loop.
                if limit > 0 && done.strong_count() > limit {
                    Metrics::inc(&broker.metrics().refused_listener_full);
                    tracing::debug!(%peer, "closed: the listener has its max_connections");
                    drop(stream);
                    continue;
                }
                let _ = stream.set_nodelay(true);
                if layers.proxy || layers.tls.is_some() || layers.ws.is_some() {
                    let serve =
                        serve_layered(layers.clone(), stream, peer, broker.clone(), done.clone());
                    tokio::spawn(serve);
                    continue;
                }
                // Spawned as it is, not wrapped in another async block that would hold a second
                // copy of its arguments for the connection's whole life.
                let arrival = layers.arrival(peer, &broker, Certified::NotAsked);
                tokio::spawn(crate::connection::serve(stream, arrival, done.clone()));
            }
            Err(e) => {
                // Typically EMFILE: back off briefly instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// A connection on a listener with more than MQTT over TCP: the PROXY header first if the
/// listener expects one, then TLS if it has it, then the WebSocket upgrade if it is one, then
/// MQTT.
///
/// The MQTT connection is spawned as a task of its own, and this one ends: a task's memory is
/// the largest state of its future for as long as it lives, and this future's largest states
/// (a TLS handshake in progress beside a WebSocket upgrade) would otherwise be paid by every
/// idle connection (10 KiB of the 17 KiB an idle TLS connection cost, measured with heaptrack).
async fn serve_layered(
    layers: Layers,
    mut stream: tokio::net::TcpStream,
    mut peer: SocketAddr,
    broker: Broker,
    guard: mpsc::Sender<()>,
) {
    if layers.proxy {
        let timeout = std::time::Duration::from_secs(broker.config().limits.connect_timeout_secs);
        match tokio::time::timeout(timeout, crate::proxy::read_header(&mut stream)).await {
            Ok(Ok(Some(client))) => peer = client,
            // The balancer's own connection (a health check): its address stands.
            Ok(Ok(None)) => {}
            Ok(Err(why)) => {
                tracing::info!(%peer, "connection closed: {why}");
                return;
            }
            Err(_) => {
                tracing::info!(%peer, "connection closed: no PROXY header within {timeout:?}");
                return;
            }
        }
    }
    match (&layers.tls, &layers.ws) {
        (None, Some(path)) => {
            let arrival = layers.arrival(peer, &broker, Certified::NotAsked);
            serve_ws(stream, path, arrival, guard).await
        }
        (Some(tls), ws) => {
            let Some((stream, certified)) = tls_handshake(tls, stream, peer, &broker).await else {
                return;
            };
            let arrival = layers.arrival(peer, &broker, certified);
            match ws {
                Some(path) => serve_ws(stream, path, arrival, guard).await,
                None => {
                    tokio::spawn(crate::connection::serve(stream, arrival, guard));
                }
            }
        }
        (None, None) => {
            let arrival = layers.arrival(peer, &broker, Certified::NotAsked);
            tokio::spawn(crate::connection::serve(stream, arrival, guard));
        }
    }
}

/// MQTT over a WebSocket on `stream`: the HTTP upgrade on `path` within the connect timeout (a
/// bad request gets an HTTP error and one log line), then the connection, spawned.
async fn serve_ws<S>(stream: S, path: &str, arrival: Arrival, guard: mpsc::Sender<()>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (peer, broker) = (arrival.peer, arrival.broker.clone());
    let timeout = std::time::Duration::from_secs(broker.config().limits.connect_timeout_secs);
    // A binary message may carry several packets: room for two of the largest.
    let max_message = (broker.config().limits.max_packet_size as usize).saturating_mul(2);
    let mut shutdown = broker.shutdown_signal();
    let upgraded = tokio::select! {
        u = tokio::time::timeout(timeout, crate::ws::accept(stream, path, max_message)) => u,
        _ = shutdown.wait_for(|down| *down) => return,
    };
    match upgraded {
        // A task of its own, as in `serve_layered`: the upgrade's state is not kept.
        Ok(Ok(ws)) => {
            tokio::spawn(crate::connection::serve(ws, arrival, guard));
        }
        Ok(Err(why)) => tracing::info!(%peer, "WebSocket upgrade refused: {why}"),
        Err(_) => tracing::info!(%peer, "WebSocket upgrade not completed within {timeout:?}"),
    }
}

/// The TLS handshake within the listener's timeout (a client that speaks plaintext MQTT, or
/// nothing, is closed without a CONNACK), and who the client's certificate says it is where the
/// listener asks. One log line for a failed handshake.
async fn tls_handshake(
    tls: &TlsListener,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    broker: &Broker,
) -> Option<(
    tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    Certified,
)> {
    let settings = tls.settings();
    let timeout = std::time::Duration::from_secs(settings.handshake_timeout_secs);
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.current());
    let mut shutdown = broker.shutdown_signal();
    let handshake = tokio::select! {
        h = tokio::time::timeout(timeout, acceptor.accept(stream)) => h,
        _ = shutdown.wait_for(|down| *down) => return None,
    };
    let stream = match handshake {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            let hint = match e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
                Some(rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType)) => {
                    " (not TLS: plaintext MQTT to a TLS port?)"
                }
                _ => "",
            };
            tracing::info!(%peer, "TLS handshake failed: {e}{hint}");
            return None;
        }
        Err(_) => {
            tracing::info!(%peer, "TLS handshake not completed within {timeout:?}");
            return None;
        }
    };
    let certified = if settings.use_identity_as_username {
        let (_, session) = stream.get_ref();
        let user = session
            .peer_certificates()
            .and_then(|certs| certs.first())
            .and_then(crate::tls::certificate_user);
        match user {
            Some(user) => Certified::User(user.into()),
            None => Certified::Missing,
        }
    } else {
        Certified::NotAsked
    };
    Some((stream, certified))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::net::TcpStream;

    #[test]
    fn listeners_beyond_loopback_are_warned_about() {
        let mut config = Config::default();
        assert!(exposure_warnings(&config).is_empty(), "loopback is quiet");
        config.listeners = vec![config::Listener::new("0.0.0.0:1883".parse().unwrap())];
        let warnings = exposure_warnings(&config);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("anonymous") && warnings[1].contains("without TLS"));
        config.auth.allow_anonymous = false;
        let warnings = exposure_warnings(&config);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("0.0.0.0:1883"));
        config.listeners[0].tls = Some(config::Tls::new("c.pem".into(), "k.pem".into()));
        assert!(
            exposure_warnings(&config).is_empty(),
            "TLS and no anonymous clients"
        );
    }

    #[tokio::test]
    async fn the_listener_holds_its_backlog_of_handshakes_before_any_accept() {
        // The kernel caps the backlog at somaxconn (4096 on current kernels).
        let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(4096);
        let n = somaxconn.min(300);
        let l = config::Listener {
            backlog: 400,
            ..config::Listener::new("127.0.0.1:0".parse().unwrap())
        };
        let listener = bind(&l).unwrap();
        let addr = listener.local_addr().unwrap();
        // Nothing accepts: every handshake must fit in the queue. With tokio's 128 the 130th
        // SYN would be dropped and its connect would not complete.
        let mut clients = Vec::with_capacity(n);
        for i in 0..n {
            let connect = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr));
            match connect.await {
                Ok(Ok(c)) => clients.push(c),
                Ok(Err(e)) => panic!("connection {i}: {e}"),
                Err(_) => panic!("connection {i} not completed: the backlog is below {n}"),
            }
        }
        assert_eq!(clients.len(), n);
    }
}
