//! The tokio shell around the sans-IO [`engine`]: a task per connection while it has something
//! to do, none while it is parked (see [`park`]). The shell owns the stream and its two buffers;
//! it reads bytes and hands them to the engine, asks the engine for what to send and writes it,
//! and sleeps until the socket or the session (through the waker the engine registers with it,
//! under the lock of its drain) has something. Every MQTT decision is the engine's. Generic over
//! any `AsyncRead + AsyncWrite` stream that implements [`Transport`] (one line for a stream that
//! does not park), so TLS and WebSocket byte streams are served by the same code.

mod close;
pub(crate) mod engine;
mod park;

pub(crate) use close::Close;

use bytes::{Buf, BytesMut};
pub(crate) use engine::Certified;
use engine::{Engine, Reading, WRITE_HIGH_WATER};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

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

/// Held by every connection until it ends: the server counts live connections by it.
pub(crate) type Guard = tokio::sync::mpsc::Sender<()>;

/// A byte stream a connection is served over.
pub(crate) trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Whether an idle connection on this transport can park (see [`park`]): a plain TCP
    /// socket can; a stream with state of its own above the socket (TLS, WebSocket) keeps its
    /// task.
    const PARKS: bool = false;

    /// Whether a write may leave bytes buffered in the stream (TLS records) that only a flush
    /// sends: the connection then flushes whenever it has nothing more to write.
    const FLUSHES: bool = false;

    /// Parks an idle connection on this transport, or gives it back (the default).
    fn park(self, shell: Box<Shell>, guard: Guard) -> park::Parking<Self>
    where
        Self: Sized,
    {
        park::Parking::Declined(shell, guard, self)
    }
}

impl Transport for tokio::net::TcpStream {
    const PARKS: bool = true;

    fn park(self, shell: Box<Shell>, guard: Guard) -> park::Parking<Self> {
        park::park(self, shell, guard)
    }
}

/// A TLS connection keeps its task: rustls holds state above the socket, and records a write
/// produced while the socket was full wait in it for a flush.
impl Transport for tokio_rustls::server::TlsStream<tokio::net::TcpStream> {
    const FLUSHES: bool = true;
}

/// A WebSocket connection keeps its task too (frames in progress, a Pong to send).
impl<S> Transport for crate::ws::WsStream<S> where S: AsyncRead + AsyncWrite + Unpin + Send + 'static
{}

/// How long the last bytes to a closing client may take to be written.
const FLUSH_AT_CLOSE: Duration = Duration::from_secs(1);

/// A connection's engine and buffers, boxed as one: the connection task's future then holds a
/// pointer, and an idle connection pays for one allocation.
pub(crate) struct Shell {
    engine: Engine,
    /// Bytes read and not yet decoded.
    inbuf: BytesMut,
    /// Bytes to write.
    out: BytesMut,
}

/// What a new connection brings to its handshake besides its stream.
pub(crate) type Arrival = engine::Door;

/// Serves one client connection until it closes. `guard` is dropped when it has (the server
/// counts live connections by it).
///
/// A function returning the future rather than an `async fn`: an `async fn` keeps its
/// arguments twice in its state (rust-lang/rust#62958), and this future's size is paid by
/// every idle connection for its whole life. For the same reason the stream is not split into
/// halves (that is one more allocation per connection): reads and writes are polled in turn.
pub(crate) fn serve<S: Transport>(
    stream: S,
    arrival: Arrival,
    guard: Guard,
) -> impl Future<Output = ()> + Send {
    // What only the handshake needs, boxed: a future keeps what it captures for its whole life.
    connection(stream, Start::New(Box::new(arrival)), guard)
}

/// Where [`connection`] starts.
enum Start {
    /// A new connection from this peer to this broker: the handshake first.
    New(Box<Arrival>),
    /// An open connection resumed from the parking lot.
    Resumed(Box<Shell>),
}

/// Serves a connection until it closes or parks; a parked connection is resumed as a new task
/// running this again. One future for both, and a function returning it rather than an
/// `async fn` (see [`serve`]): every byte of it is paid by each connection that has a task.
#[expect(
    clippy::manual_async_fn,
    reason = "an async fn would keep its arguments twice (rust-lang/rust#62958)"
)]
fn connection<S: Transport>(
    mut stream: S,
    start: Start,
    mut guard: Guard,
) -> impl Future<Output = ()> + Send {
    async move {
        let (mut shell, mut park_now) = match start {
            Start::Resumed(shell) => (shell, false),
            Start::New(start) => {
                // Boxed, so the handshake's state is on the heap only while it runs.
                let handshake = handshake(&mut stream, start);
                let Some(shell) = Box::pin(handshake).await else {
                    return;
                };
                // Most devices say nothing for a while after CONNACK: park at once rather
                // than hold a task (and its memory) until the idle sweeper comes.
                // Not one waiting for full subscribers: its wait has a deadline to keep.
                let idle = shell.inbuf.is_empty()
                    && shell.engine.parks_when_idle()
                    && shell.engine.paused_until().is_none();
                (shell, idle)
            }
        };
        loop {
            let end = if std::mem::take(&mut park_now) {
                Ending::Park
            } else {
                shell.run(&mut stream).await
            };
            match end {
                Ending::Closed(close) => {
                    // Boxed for the same reason as the handshake: it runs once, at the end.
                    Box::pin(shell.finish(close, &mut stream)).await;
                    drop(guard);
                    return;
                }
                Ending::Park => match stream.park(shell, guard) {
                    park::Parking::Parked => return,
                    // Work came on the way: serve it.
                    park::Parking::Declined(s, g, back) => (shell, guard, stream) = (s, g, back),
                },
            }
        }
    }
}

/// How the open connection's loop ended.
#[derive(Debug)]
enum Ending {
    Closed(Close),
    /// The broker asked an idle connection to park, and it is idle.
    Park,
}

/// Runs the handshake to an open connection; `None` when it was refused or lost (answered,
/// logged and lingered over already).
async fn handshake<S>(io: &mut S, arrival: Box<Arrival>) -> Option<Box<Shell>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut shutdown = arrival.broker.shutdown_signal();
    let mut shell = Box::new(Shell {
        engine: Engine::arriving(arrival, Instant::now()),
        inbuf: BytesMut::new(),
        out: BytesMut::new(),
    });
    // A connection still in its handshake must not hold up shutdown.
    let result = tokio::select! {
        result = shell.exchange(io) => result,
        _ = shutdown.wait_for(|down| *down) => return None,
    };
    match result {
        Ok(()) => {
            if shell.inbuf.is_empty() {
                // Freed: an idle connection would hold it, and the shared block its split
                // left, for good.
                shell.inbuf = BytesMut::new();
            }
            if shell.out.is_empty() {
                shell.out = BytesMut::new();
            }
            Some(shell)
        }
        Err(close) => {
            if let Close::Refused { slow_down, .. } = &close
                && !slow_down.is_zero()
            {
                // A failed login waits before it hears so (not past shutdown).
                tokio::select! {
                    _ = tokio::time::sleep(*slow_down) => {}
                    _ = shutdown.wait_for(|down| *down) => {}
                }
            }
            // Answers waiting for the disk are not sent (see `finish`).
            let sendable = shell.engine.sendable(shell.out.len());
            shell.out.truncate(sendable);
            let linger = shell.engine.close(&close, Instant::now(), &mut shell.out);
            let _ = tokio::time::timeout(FLUSH_AT_CLOSE, async {
                io.write_all(&shell.out).await?;
                io.shutdown().await
            })
            .await;
            if linger {
                // A client that sent more behind its CONNECT still reads the CONNACK.
                drop(shell);
                close::linger(io).await;
            }
            None
        }
    }
}

/// What one turn of the connection's loop did.
enum Turn {
    /// Read `n` bytes into the read buffer, which had `room` bytes free.
    Read { n: usize, room: usize },
    /// Wrote some of the outgoing bytes.
    Wrote,
    /// A wait for full subscribers ended (see `engine/backpressure.rs`): what the read buffer
    /// holds is handled before anything more is read.
    Resume,
    /// Idle, and asked to park.
    Park,
}

impl Shell {
    /// Reads and writes until the engine has opened the connection (or ended it), within the
    /// connect timeout.
    async fn exchange<S>(&mut self, io: &mut S) -> Result<(), Close>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let deadline = self.engine.poll_timeout();
        loop {
            self.engine
                .receive(&mut self.inbuf, Instant::now(), &mut self.out)?;
            if let Some(job) = self.engine.take_verification() {
                // A costly hash (argon2id): on a blocking thread, a few at a time, so that
                // neither the runtime's workers nor memory are taken by a burst of logins; all
                // within the connect deadline. The slot goes with the job, so a check whose
                // client gave up still counts until it ends.
                let check = async {
                    let slot = crate::auth::COSTLY_CHECKS.acquire().await;
                    tokio::task::spawn_blocking(move || {
                        let _slot = slot;
                        job.run()
                    })
                    .await
                    .unwrap_or(Err("the password check did not complete"))
                };
                let result = match deadline {
                    Some(at) => tokio::time::timeout_at(at.into(), check)
                        .await
                        .map_err(|_| Close::ConnectTimeout)?,
                    None => check.await,
                };
                self.engine
                    .verified(result, Instant::now(), &mut self.out)?;
                // Packets the client sent behind its CONNECT are read now.
                continue;
            }
            // Up to answers that wait for the disk (packets that came behind the CONNECT):
            // those, and what follows them, are the open connection's to write.
            let sendable = self.engine.sendable(self.out.len());
            if sendable > 0 {
                io.write_all(&self.out[..sendable])
                    .await
                    .map_err(|e| Close::Io(e.kind()))?;
                self.engine.wrote(sendable);
                self.out.advance(sendable);
            }
            if self.engine.is_open() {
                return Ok(());
            }
            let read = io.read_buf(&mut self.inbuf);
            let read = match deadline {
                Some(at) => tokio::time::timeout_at(at.into(), read).await,
                None => Ok(read.await),
            };
            match read {
                Ok(Ok(0) | Err(_)) => return Err(Close::SocketClosed),
                Ok(Ok(_)) => {}
                Err(_) => {
                    let timeout = self.engine.handle_timeout(Instant::now());
                    return Err(timeout.err().unwrap_or(Close::ConnectTimeout));
                }
            }
        }
    }

    /// The open connection's loop, until something ends it (the caller then calls `finish`)
    /// or it parks.
    async fn run<S: Transport>(&mut self, io: &mut S) -> Ending {
        // Whether the last read filled the buffer: more is probably waiting.
        let mut busy = false;
        loop {
            let paused_until = self.engine.paused_until();
            let turn = std::future::poll_fn(|cx| self.poll_turn(cx, io, busy));
            let turn = match paused_until {
                // Waiting for full subscribers, for a bounded time (see `broker/pressure.rs`).
                // Boxed: the timer's state would otherwise be in every connection's future,
                // paused or not.
                Some(at) => match Box::pin(tokio::time::timeout_at(at.into(), turn)).await {
                    Ok(turn) => turn,
                    Err(_) if self.engine.expire_pressure(Instant::now()) => continue,
                    Err(_) => Ok(Turn::Resume),
                },
                None => turn.await,
            };
            match turn {
                Err(close) => break Ending::Closed(close),
                Ok(Turn::Park) => break Ending::Park,
                Ok(Turn::Wrote) => {}
                Ok(Turn::Resume) => {
                    if let Err(close) = self.receive() {
                        break Ending::Closed(close);
                    }
                }
                Ok(Turn::Read { n, room }) => {
                    busy = n >= room;
                    if let Err(close) = self.receive() {
                        break Ending::Closed(close);
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

    /// Hands what the read buffer holds to the engine.
    fn receive(&mut self) -> Result<(), Close> {
        self.engine
            .receive(&mut self.inbuf, Instant::now(), &mut self.out)
    }

    /// One turn: what the engine has to send into the write buffer, then a write if there is
    /// anything to write, else a read; pending until the socket or the session has something.
    /// The session wakes this task (new messages, takeover, a lapsed keep alive) through the
    /// waker the engine registered with it.
    fn poll_turn<S: Transport>(
        &mut self,
        cx: &mut Context<'_>,
        io: &mut S,
        busy: bool,
    ) -> Poll<Result<Turn, Close>> {
        let park = self
            .engine
            .poll_transmit(&mut self.out, Instant::now(), cx.waker())?;
        let reading = self.engine.poll_pressure(cx.waker());
        if reading == Reading::Resumed && !self.inbuf.is_empty() {
            return Poll::Ready(Ok(Turn::Resume));
        }
        // A wait that begins within this poll is bounded by the caller from its next turn on:
        // this one returns as soon as it has written or read.
        let paused = reading == Reading::Paused;
        if park && !paused && S::PARKS && self.out.is_empty() && self.inbuf.capacity() == 0 {
            // Nothing to write, nothing half read: the task can go.
            return Poll::Ready(Ok(Turn::Park));
        }
        // Answers waiting for the disk, and what follows them, stay in the buffer: the store's
        // writer wakes this task when they may go (see `engine/durable.rs`).
        let sendable = self.engine.sendable(self.out.len());
        if sendable > 0 {
            match Pin::new(&mut *io).poll_write(cx, &self.out[..sendable]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(Close::Io(std::io::ErrorKind::WriteZero)));
                }
                Poll::Ready(Ok(n)) => {
                    self.out.advance(n);
                    self.engine.wrote(n);
                    return Poll::Ready(Ok(Turn::Wrote));
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(Close::Io(e.kind()))),
                // Woken when the socket can take more.
                Poll::Pending if self.out.len() >= WRITE_BACKLOG_MAX => return Poll::Pending,
                Poll::Pending => {}
            }
        } else if !self.out.is_empty() {
            if S::FLUSHES
                && let Poll::Ready(Err(e)) = Pin::new(&mut *io).poll_flush(cx)
            {
                return Poll::Ready(Err(Close::Io(e.kind())));
            }
            if self.out.len() >= WRITE_BACKLOG_MAX {
                return Poll::Pending;
            }
        } else {
            if S::FLUSHES {
                // A stream that buffers what it was given (TLS records) writes it out here: a
                // write it accepted may still sit in its buffer when the socket was full.
                // Pending: woken when the socket takes more; reading goes on meanwhile.
                if let Poll::Ready(Err(e)) = Pin::new(&mut *io).poll_flush(cx) {
                    return Poll::Ready(Err(Close::Io(e.kind())));
                }
            }
            if self.out.capacity() > 0 {
                // Idle: hand the write buffer back rather than hold it per connection.
                self.out = BytesMut::new();
            }
        }
        if paused {
            // Woken when a full subscriber has room (or by the caller's deadline).
            return Poll::Pending;
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

    /// Ends the connection: the engine says goodbye (DISCONNECT, will, session, log line), its
    /// last bytes are written within [`FLUSH_AT_CLOSE`], and if the server ended it, the socket
    /// lingers until the client has closed its side (see [`close::linger`]).
    async fn finish<S: AsyncRead + AsyncWrite + Unpin>(
        mut self: Box<Self>,
        close: Close,
        io: &mut S,
    ) {
        // Answers still waiting for the disk are not sent: the client sends those packets
        // again, as it must for any it has no answer to.
        let sendable = self.engine.sendable(self.out.len());
        self.out.truncate(sendable);
        let linger = self.engine.close(&close, Instant::now(), &mut self.out);
        // Bounded: a client that stopped reading must not hold the task open.
        let flush = async {
            io.write_all(&self.out).await?;
            io.shutdown().await
        };
        let _ = tokio::time::timeout(FLUSH_AT_CLOSE, flush).await;
        if linger {
            drop(self);
            close::linger(io).await;
        }
    }
}

#[cfg(test)]
mod tests;
