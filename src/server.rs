//! The running server: binds the configured TCP listeners, spawns one task per connection, and
//! shuts down gracefully (stop accepting, close every client with its due will, wait for them).

use crate::broker::Broker;
use crate::config::{self, Config};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::mpsc;

/// A started server. Dropping it without [`Server::shutdown`] leaves its tasks running.
pub struct Server {
    broker: Broker,
    local_addrs: Vec<SocketAddr>,
    /// Every connection task holds a clone; when all are gone, `recv` returns `None`.
    done_tx: mpsc::Sender<()>,
    done_rx: mpsc::Receiver<()>,
}

impl Server {
    /// Binds every listener and starts accepting. Fails if a listener cannot bind.
    pub async fn start(config: Config) -> std::io::Result<Self> {
        for warning in exposure_warnings(&config) {
            tracing::warn!("{warning}");
        }
        let broker = Broker::new(Arc::new(config));
        let (done_tx, done_rx) = mpsc::channel(1);
        let mut local_addrs = Vec::new();
        for l in &broker.config().listeners {
            let listener = bind(l).map_err(|e| {
                std::io::Error::new(e.kind(), format!("listeners: cannot bind {}: {e}", l.bind))
            })?;
            let addr = listener.local_addr()?;
            tracing::info!(%addr, "listening for MQTT over TCP");
            local_addrs.push(addr);
            tokio::spawn(accept_loop(listener, broker.clone(), done_tx.clone()));
        }
        Ok(Self {
            broker,
            local_addrs,
            done_tx,
            done_rx,
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

    /// Stops accepting, closes every connection (v5 clients get DISCONNECT 0x8B, wills that are
    /// due are published) and waits for all connection tasks to finish.
    pub async fn shutdown(self) {
        let Self {
            broker,
            done_tx,
            mut done_rx,
            ..
        } = self;
        broker.begin_shutdown();
        drop(done_tx);
        let _ = done_rx.recv().await;
        tracing::info!("server stopped");
    }
}

/// What an operator must hear about listeners reachable from other machines: anonymous clients
/// let in, and plaintext (every listener is plaintext until TLS comes). Loopback listeners, the
/// default, are quiet.
fn exposure_warnings(config: &Config) -> Vec<String> {
    let mut warnings = Vec::new();
    for l in config
        .listeners
        .iter()
        .filter(|l| !l.bind.ip().is_loopback())
    {
        if config.auth.allow_anonymous {
            warnings.push(format!(
                "SECURITY: listener {} is reachable from other machines and lets anonymous clients \
                 in; set auth.allow_anonymous = false and auth.password_file",
                l.bind
            ));
        }
        warnings.push(format!(
            "SECURITY: listener {} is reachable from other machines without TLS: user names, \
             passwords and messages cross the network in clear",
            l.bind
        ));
    }
    warnings
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

async fn accept_loop(listener: TcpListener, broker: Broker, done: mpsc::Sender<()>) {
    let mut shutdown = broker.shutdown_signal();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.changed() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                // Spawned as it is, not wrapped in another async block that would hold a second
                // copy of its arguments for the connection's whole life.
                let serve = crate::connection::serve(stream, peer, broker.clone(), done.clone());
                tokio::spawn(serve);
            }
            Err(e) => {
                // Typically EMFILE: back off briefly instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
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
            bind: "127.0.0.1:0".parse().unwrap(),
            backlog: 400,
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
