//! One task per network connection: the CONNECT handshake, then a loop that reads and decodes
//! packets, dispatches them to the session and the broker, drains the session's queue into one
//! write buffer, and enforces the keep alive. The task owns its buffers; it takes the session's
//! mutex only for short synchronous steps, never across an `.await`.

mod alias;
mod close;
mod dispatch;
mod enhanced_auth;
mod handshake;
mod outbound;

pub use close::Close;

use crate::broker::{Broker, ConnectionLink, SessionSlot};
use crate::protocol::{Limits, ProtocolVersion, Will};
use bytes::{Buf, BytesMut};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

/// Stop filling the write buffer past this many bytes per round, so one busy subscriber's
/// buffer stays bounded; the rest waits in its session queue.
const WRITE_HIGH_WATER: usize = 64 * 1024;

/// Stop reading while this many bytes wait to be written: a client that sends without reading
/// (QoS 1 PUBLISHes, PINGREQs, SUBSCRIBEs) would otherwise grow the write buffer with their
/// answers without bound. It then waits, as TCP makes it, until it reads; one read's answers
/// is the most the buffer holds beyond this.
const WRITE_BACKLOG_MAX: usize = 2 * WRITE_HIGH_WATER;

/// Room made in the read buffer once a read fills all the room there was: a busy publisher's
/// packets then arrive many per syscall (with 1 KiB, reads returned ~13 small PUBLISHes each),
/// while an idle connection keeps its small buffer.
const READ_CHUNK: usize = 16 * 1024;

/// The first read of a quiet connection (which holds no read buffer) goes into this many bytes on
/// the stack: enough for a PINGREQ or a small PUBLISH. A read that fills it grows the buffer to
/// `READ_CHUNK`; once a read leaves nothing partial behind, the buffer is freed.
const IDLE_READ: usize = 64;

/// The state of an established connection.
struct Connection {
    broker: Broker,
    peer: SocketAddr,
    version: ProtocolVersion,
    slot: Arc<SessionSlot>,
    link: ConnectionLink,
    limits: Limits,
    /// Keep alive granted, in seconds; 0 when the client turned it off.
    keep_alive: u16,
    /// The will to publish if the connection ends other than by a normal DISCONNECT.
    will: Option<Box<Will>>,
    /// The largest packet the client accepts (v5 Maximum Packet Size).
    client_max_packet: u32,
    /// Whether the client wants Reason Strings (v5 Request Problem Information, 1 unless 0).
    problem_info: bool,
    /// Enhanced authentication and topic aliases, allocated once a client uses one.
    extras: Option<Box<Extras>>,
    /// Bytes read and not yet decoded.
    inbuf: BytesMut,
    /// Outgoing bytes not yet written.
    out: BytesMut,
}

/// What only some v5 clients use, boxed together: most connections use none of it, and one
/// pointer costs every connection 24 bytes less than three.
#[derive(Default)]
struct Extras {
    /// The method and user of a client that used enhanced authentication, for
    /// re-authentication.
    auth: Option<enhanced_auth::Session>,
    /// The client's topic aliases.
    aliases_in: alias::Inbound,
    /// Ours toward the client, if it accepts any.
    aliases_out: Option<alias::Outbound>,
}

/// Serves one client connection until it closes. `guard` is dropped when it has (the server
/// counts live connections by it).
///
/// A function returning the future rather than an `async fn`: an `async fn` keeps its
/// arguments twice in its state (rust-lang/rust#62958), and this future's size is paid by
/// every idle connection for its whole life. For the same reason the stream is not split into
/// halves (that is one more allocation per connection): reads and writes are polled in turn.
pub fn serve<S, G>(
    mut stream: S,
    peer: SocketAddr,
    broker: Broker,
    guard: G,
) -> impl Future<Output = ()> + Send
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    G: Send + 'static,
{
    // What only the handshake needs, boxed: a future keeps what it captures for its whole life.
    let start = Box::new((peer, broker));
    async move {
        // Boxed, so the handshake's state is on the heap only while it runs.
        let conn = Box::pin(async {
            let (peer, broker) = *start;
            let mut inbuf = BytesMut::new();
            let mut shutdown = broker.shutdown_signal();
            // A connection still waiting for CONNECT must not hold up shutdown.
            let mut conn = tokio::select! {
                conn = handshake::accept(&mut stream, &mut inbuf, peer, &broker) => conn,
                _ = shutdown.wait_for(|down| *down) => None,
            }?;
            if !inbuf.is_empty() {
                // What the client sent after CONNECT; else the buffer is freed (an idle
                // connection would hold it, and the shared block its split left, for good).
                conn.inbuf = inbuf;
            }
            Some(conn)
        })
        .await;
        if let Some(mut conn) = conn {
            let close = conn.run(&mut stream).await;
            // Boxed for the same reason as the handshake: it runs once, at the end.
            Box::pin(conn.finish(close, &mut stream)).await;
        }
        drop(guard);
    }
}

/// What one turn of the connection's loop did.
enum Turn {
    /// Read `n` bytes into the read buffer, which had `room` bytes free.
    Read { n: usize, room: usize },
    /// Wrote some of the outgoing bytes.
    Wrote,
}

impl Connection {
    /// The client's id (its session's).
    fn client_id(&self) -> &Arc<str> {
        &self.slot.client_id
    }

    /// The connection's loop, until something ends it; the caller then calls `finish`.
    async fn run<S>(&mut self, io: &mut S) -> Close
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        // [MQTT-3.1.2-24 of 3.1.1] 1.5 times the keep alive without a packet closes it; the
        // broker's sweeper watches that (see `broker/keep_alive.rs`).
        if self.keep_alive > 0 {
            let grace = Duration::from_millis(u64::from(self.keep_alive) * 1500);
            self.broker
                .watch_keep_alive(&self.slot, self.link.id, grace);
        }
        // Whether the last read filled the buffer: more is probably waiting.
        let mut busy = false;
        loop {
            let turn = std::future::poll_fn(|cx| self.poll_turn(cx, io, busy)).await;
            match turn {
                Err(close) => break close,
                Ok(Turn::Wrote) => {}
                Ok(Turn::Read { n, room }) => {
                    busy = n >= room;
                    if self.keep_alive > 0 {
                        self.slot.heard_from(crate::clock::now_ms());
                    }
                    if let Err(close) = self.handle_input() {
                        break close;
                    }
                    if n >= READ_CHUNK / 2 {
                        // A big read means more is probably waiting, but let the other tasks
                        // have a turn first: a flooding publisher would otherwise read and
                        // route until tokio's budget ran out (128 full reads, ~25,000 small
                        // messages) while its subscribers waited to drain them. Small reads (a
                        // subscriber's PUBACKs) go straight on.
                        tokio::task::yield_now().await;
                    }
                    if self.inbuf.is_empty() && !busy {
                        // Nothing partial is waiting: free the read buffer while the client is
                        // quiet (the next read allocates a small one).
                        self.inbuf = BytesMut::new();
                    }
                }
            }
        }
    }

    /// One turn: queued messages into the write buffer, then a write if there is anything to
    /// write, else a read; pending until the socket or the session has something. The
    /// session wakes this task (new messages, takeover, a lapsed keep alive) through the waker
    /// registered with it.
    fn poll_turn<S>(
        &mut self,
        cx: &mut Context<'_>,
        io: &mut S,
        busy: bool,
    ) -> Poll<Result<Turn, Close>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if self.broker.is_shutting_down() {
            return Poll::Ready(Err(Close::ServerShutdown));
        }
        self.fill_outbound(cx.waker())?;
        if !self.out.is_empty() {
            match Pin::new(&mut *io).poll_write(cx, &self.out) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(Close::Io(std::io::ErrorKind::WriteZero)));
                }
                Poll::Ready(Ok(n)) => {
                    self.out.advance(n);
                    return Poll::Ready(Ok(Turn::Wrote));
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(Close::Io(e.kind()))),
                // Woken when the socket can take more.
                Poll::Pending if self.out.len() >= WRITE_BACKLOG_MAX => return Poll::Pending,
                Poll::Pending => {}
            }
        } else if self.out.capacity() > 0 {
            // Idle: hand the write buffer back rather than hold it per connection.
            self.out = BytesMut::new();
        }
        let inbuf = &mut self.inbuf;
        if inbuf.capacity() == 0 {
            // A quiet connection waits with no read buffer: the first bytes land on the stack
            // and are copied into a buffer only once they have come.
            let mut first = [MaybeUninit::<u8>::uninit(); IDLE_READ];
            let mut first = ReadBuf::uninit(&mut first);
            return match Pin::new(&mut *io).poll_read(cx, &mut first) {
                Poll::Ready(Ok(())) if first.filled().is_empty() => {
                    Poll::Ready(Err(Close::SocketClosed))
                }
                Poll::Ready(Ok(())) => {
                    inbuf.extend_from_slice(first.filled());
                    let n = first.filled().len();
                    Poll::Ready(Ok(Turn::Read { n, room: IDLE_READ }))
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(Close::Io(e.kind()))),
                Poll::Pending => Poll::Pending,
            };
        }
        if busy && inbuf.capacity() - inbuf.len() < READ_CHUNK / 4 {
            inbuf.reserve(READ_CHUNK);
        }
        let room = inbuf.capacity() - inbuf.len();
        match std::pin::pin!(io.read_buf(inbuf)).poll(cx) {
            Poll::Ready(Ok(0)) => Poll::Ready(Err(Close::SocketClosed)),
            Poll::Ready(Ok(n)) => Poll::Ready(Ok(Turn::Read { n, room })),
            Poll::Ready(Err(e)) => Poll::Ready(Err(Close::Io(e.kind()))),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Decodes and handles every whole packet in the read buffer.
    /// The messages among them are routed in runs (see `flush_run`); every run is routed before
    /// this returns, also when a bad packet ends the connection.
    fn handle_input(&mut self) -> Result<(), Close> {
        // Taken out while its packets are dispatched (which borrows all of `self`); an empty
        // `BytesMut` costs no allocation.
        let mut inbuf = std::mem::take(&mut self.inbuf);
        let result = loop {
            match crate::protocol::decode(&mut inbuf, self.version, &self.limits) {
                Ok(Some(_)) if !self.slot.is_attached_to(self.link.id) => {
                    // Taken over: nothing read from here on may change any session. (The
                    // steps that change this session check again under its lock.)
                    break Err(Close::TakenOver);
                }
                Ok(Some(packet)) => {
                    if let Err(close) = self.dispatch(packet) {
                        break Err(close);
                    }
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(Close::Decode(e)),
            }
        };
        self.inbuf = inbuf;
        self.flush_run();
        result
    }

    /// Ends the connection: tells a v5 client why (when the server closes it), publishes the
    /// will if due, detaches from the session and logs one line; then, if the server ended it,
    /// lingers until the client has closed its side (see [`close::linger`]).
    async fn finish<S: AsyncRead + AsyncWrite + Unpin>(
        mut self: Box<Self>,
        close: Close,
        io: &mut S,
    ) {
        if let Some(reason) = close.disconnect_reason()
            && self.version.is_v5()
        {
            self.send_disconnect(reason, close.reason_string());
        }
        // Bounded: a client that stopped reading must not hold the task open.
        let flush = async {
            io.write_all(&self.out).await?;
            io.shutdown().await
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), flush).await;
        if close.publishes_will() {
            self.publish_will(&close);
        }
        self.broker.detach(&self.slot, self.link.id);
        close.log(self.client_id(), self.peer);
        if close.by_server() {
            // After the session is let go: the linger delays only the socket's close.
            drop(self);
            close::linger(io).await;
        }
    }
}

#[cfg(test)]
mod tests;
