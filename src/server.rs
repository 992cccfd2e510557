//! The running server: binds the configured TCP listeners, spawns one task per connection, and
//! shuts down gracefully (stop accepting, close every client with its due will, wait for them).

use crate::broker::Broker;
use crate::config::Config;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
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
        let broker = Broker::new(Arc::new(config));
        let (done_tx, done_rx) = mpsc::channel(1);
        let mut local_addrs = Vec::new();
        for l in &broker.config().listeners {
            let listener = TcpListener::bind(l.bind).await.map_err(|e| {
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
