//! The connection's loop against a stream that is not a socket: what it reads and writes when a
//! client misbehaves in ways a real socket makes slow to show.

use super::*;
use crate::broker::Broker;
use crate::config::Config;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A client that sends QoS 1 PUBLISHes as fast as they are read, up to `total` bytes and then
/// the end of the stream, and never reads: every write to it is pending, and nothing ever
/// wakes the writer.
struct Flood {
    chunk: Vec<u8>,
    total: usize,
    /// Bytes handed to the connection so far.
    read: Arc<AtomicUsize>,
}

impl AsyncRead for Flood {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        // Whole packets only: the chunk is a run of 9-byte PUBLISHes.
        let left = self.total - self.read.load(Ordering::Relaxed);
        let n = buf.remaining().min(self.chunk.len()).min(left) / 9 * 9;
        buf.put_slice(&self.chunk[..n]);
        self.read.fetch_add(n, Ordering::Relaxed);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Flood {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Pending
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Not a socket: it never parks.
impl Transport for Flood {}

/// A 3.1.1 connection of client "flood", through its handshake with a fresh broker.
fn connection(broker: &Broker) -> Box<Shell> {
    let mut engine = Engine::new(
        broker.clone(),
        "127.0.0.1:9".parse().expect("an address"),
        Instant::now(),
    );
    // CONNECT: MQTT 3.1.1, clean session, keep alive 0, client id "flood".
    let mut connect = BytesMut::from(
        &[
            0x10, 17, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 0, 0, 5, b'f', b'l', b'o', b'o',
            b'd',
        ][..],
    );
    let mut out = BytesMut::new();
    let opened = engine.receive(&mut connect, Instant::now(), &mut out);
    assert!(
        opened.is_ok() && engine.is_open(),
        "CONNECT accepted: {opened:?}"
    );
    assert_eq!(&out[..], [0x20, 2, 0, 0], "CONNACK");
    Box::new(Shell {
        engine,
        inbuf: BytesMut::new(),
        out: BytesMut::new(),
    })
}

/// A client that publishes at QoS 1 without reading its PUBACKs is not read from once its
/// answers back up: the write buffer stays bounded, and so does what it gets to publish.
#[tokio::test]
async fn a_client_that_never_reads_is_not_read_from_once_its_answers_back_up() {
    let broker = Broker::new(Arc::new(Config::default()));
    let mut conn = connection(&broker);
    // PUBLISH QoS 1 to "t", packet id 1, payload "xx": 9 bytes, a 4-byte PUBACK each.
    let publish = [0x32, 7, 0, 1, b't', 0, 1, b'x', b'x'];
    let read = Arc::new(AtomicUsize::new(0));
    let total = 4 * WRITE_BACKLOG_MAX;
    let mut io = Flood {
        chunk: publish.repeat(READ_CHUNK / publish.len()),
        total,
        read: read.clone(),
    };
    // The loop stops reading, and waits for the socket to take its PUBACKs: it never gets to
    // the end of what the client sent. (Without the limit it reads it all, then ends.)
    let run = tokio::time::timeout(Duration::from_secs(1), conn.run(&mut io)).await;
    assert!(
        run.is_err(),
        "read all {total} bytes while its answers backed up, then ended: {:?}",
        run.ok()
    );
    assert!(
        conn.out.len() < WRITE_BACKLOG_MAX + READ_CHUNK,
        "{} bytes wait to be written",
        conn.out.len()
    );
    // Each 9 bytes read add 4 to write: reading stopped near the backlog's limit.
    let read = read.load(Ordering::Relaxed);
    assert!(read < 4 * WRITE_BACKLOG_MAX, "{read} bytes read");
}

/// What an idle connection costs is decided here: its engine and buffers are one allocation of
/// at most 160 bytes (an allocator size class). A field that pushed it past would cost every
/// connection 32 bytes more.
#[test]
fn a_connections_engine_and_buffers_fit_in_160_bytes() {
    assert!(
        std::mem::size_of::<Shell>() <= 160,
        "Shell is {} bytes",
        std::mem::size_of::<Shell>()
    );
}
