//! MQTT over WebSocket (MQTT 5.0 section 6, 3.1.1 section 6): the HTTP upgrade on a listener's
//! `ws_path` with the `mqtt` subprotocol, and the WebSocket as a byte stream for the connection
//! engine. MQTT packets may be split across binary frames and several may share one, both ways;
//! a text frame ends the connection [MQTT-6.0.0-1].

use bytes::{Buf, Bytes};
use futures_util::{Sink, Stream};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

/// The largest HTTP request head accepted for the upgrade.
const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// Headers parsed at most.
const MAX_HEADERS: usize = 32;
/// The subprotocols served, in order of preference: MQTT's registered name, and the one MQTT
/// 3.1 clients (and some older libraries) send.
const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];

/// Why an upgrade was refused: the HTTP status line and a reason for the body and the log.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    status: &'static str,
    why: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.status, self.why)
    }
}

fn refuse(status: &'static str, why: impl Into<String>) -> Refusal {
    Refusal {
        status,
        why: why.into(),
    }
}

/// What a valid upgrade request asks for.
#[derive(Debug, PartialEq, Eq)]
struct Upgrade {
    key: String,
    /// The subprotocol to answer with; `None` when the client offered none.
    protocol: Option<&'static str>,
}

/// Checks an upgrade request's head (everything up to the blank line).
fn check_request(head: &[u8], path: &str) -> Result<Upgrade, Refusal> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(refuse("400 Bad Request", "incomplete")),
        Err(e) => return Err(refuse("400 Bad Request", e.to_string())),
    }
    if request.method != Some("GET") {
        return Err(refuse(
            "405 Method Not Allowed",
            "a WebSocket upgrade is a GET",
        ));
    }
    let target = request.path.unwrap_or("");
    let target_path = target.split('?').next().unwrap_or("");
    if target_path != path {
        return Err(refuse(
            "404 Not Found",
            format!("MQTT is served on {path}, not {target_path}"),
        ));
    }
    let header = |name: &'static str| {
        request
            .headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .filter_map(|h| std::str::from_utf8(h.value).ok())
    };
    let has_token = |name: &'static str, token: &str| {
        header(name).any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    if !has_token("upgrade", "websocket") || !has_token("connection", "upgrade") {
        return Err(refuse(
            "400 Bad Request",
            "not a WebSocket upgrade (Upgrade: websocket and Connection: Upgrade are needed)",
        ));
    }
    if !header("sec-websocket-version").any(|v| v.trim() == "13") {
        return Err(refuse(
            "426 Upgrade Required",
            "WebSocket version 13 is needed",
        ));
    }
    let key = header("sec-websocket-key")
        .next()
        .map(|k| k.trim().to_owned())
        .filter(|k| !k.is_empty())
        .ok_or_else(|| refuse("400 Bad Request", "no Sec-WebSocket-Key"))?;
    let offered: Vec<&str> = header("sec-websocket-protocol")
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let protocol = if offered.is_empty() {
        // [MQTT-6.0.0-3] says a client offers "mqtt"; one that offers nothing is served all the
        // same (as Mosquitto does), and the answer names none.
        None
    } else {
        let chosen = SUBPROTOCOLS
            .iter()
            .find(|p| offered.iter().any(|o| o.eq_ignore_ascii_case(p)));
        match chosen {
            Some(p) => Some(*p),
            None => {
                return Err(refuse(
                    "400 Bad Request",
                    format!("subprotocol {offered:?} offered; this server speaks mqtt"),
                ));
            }
        }
    };
    Ok(Upgrade { key, protocol })
}

/// Reads the request head (bounded in size), answers the upgrade or refuses it with an HTTP
/// error, and returns the WebSocket as a byte stream. `Err` says why, for the log; the
/// connection is then closed.
pub(crate) async fn accept<S>(
    mut io: S,
    path: &str,
    max_message: usize,
) -> Result<WsStream<S>, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let end = loop {
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        if head.len() > MAX_REQUEST_HEAD {
            let refusal = refuse(
                "431 Request Header Fields Too Large",
                "request head over 8 KiB",
            );
            return Err(answer_refusal(&mut io, refusal).await);
        }
        let n = io.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed before the upgrade request was complete".into());
        }
        head.extend_from_slice(&buf[..n]);
    };
    let upgrade = match check_request(&head[..end], path) {
        Ok(u) => u,
        Err(refusal) => return Err(answer_refusal(&mut io, refusal).await),
    };
    let accept =
        tokio_tungstenite::tungstenite::handshake::derive_accept_key(upgrade.key.as_bytes());
    let mut response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n"
    );
    if let Some(p) = upgrade.protocol {
        response.push_str(&format!("Sec-WebSocket-Protocol: {p}\r\n"));
    }
    response.push_str("\r\n");
    io.write_all(response.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    // What the client sent after its request head is already WebSocket frames.
    let early = Bytes::copy_from_slice(&head[end..]);
    let config = WebSocketConfig::default()
        // Every frame goes out as it is written: the connection batches MQTT packets itself.
        .write_buffer_size(0)
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message));
    let ws =
        WebSocketStream::from_partially_read(io, early.to_vec(), Role::Server, Some(config)).await;
    Ok(WsStream {
        ws,
        reading: Bytes::new(),
        flushing: false,
    })
}

/// Writes an HTTP error for a refused upgrade and closes; returns the reason for the log.
async fn answer_refusal<S: AsyncWrite + Unpin>(io: &mut S, refusal: Refusal) -> String {
    let body = format!("{}\n", refusal.why);
    let response = format!(
        "HTTP/1.1 {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        refusal.status,
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        io.write_all(response.as_bytes()).await?;
        io.shutdown().await
    })
    .await;
    refusal.to_string()
}

/// A WebSocket read and written as the bytes of its binary messages.
pub(crate) struct WsStream<S> {
    ws: WebSocketStream<S>,
    /// The unread rest of the last binary message.
    reading: Bytes,
    /// A frame was handed to the WebSocket and not yet flushed to the socket.
    flushing: bool,
}

fn ws_error(e: tokio_tungstenite::tungstenite::Error) -> io::Error {
    io::Error::other(e)
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsStream<S> {
    /// Moves a pending frame on to the socket; the connection's loop reads between writes, so
    /// a flush left pending by a write is finished here.
    fn poll_pending_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.flushing {
            ready!(Pin::new(&mut self.ws).poll_flush(cx)).map_err(ws_error)?;
            self.flushing = false;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        // A pending flush that cannot finish yet does not stop reading.
        if let Poll::Ready(Err(e)) = this.poll_pending_flush(cx) {
            return Poll::Ready(Err(e));
        }
        loop {
            if !this.reading.is_empty() {
                let n = this.reading.len().min(buf.remaining());
                buf.put_slice(&this.reading[..n]);
                this.reading.advance(n);
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut this.ws).poll_next(cx)) {
                Some(Ok(Message::Binary(data))) => this.reading = data,
                // Answered by the WebSocket itself (a Pong goes out with the next flush).
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {
                    this.flushing = true;
                    if let Poll::Ready(Err(e)) = this.poll_pending_flush(cx) {
                        return Poll::Ready(Err(e));
                    }
                }
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "a text frame: MQTT travels in binary frames only [MQTT-6.0.0-1]",
                    )));
                }
                // The client's Close frame, or the end of the stream: the end of the bytes.
                Some(Ok(Message::Close(_))) | None => return Poll::Ready(Ok(())),
                Some(Err(e)) => return Poll::Ready(Err(ws_error(e))),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.poll_pending_flush(cx))?;
        ready!(Pin::new(&mut this.ws).poll_ready(cx)).map_err(ws_error)?;
        Pin::new(&mut this.ws)
            .start_send(Message::Binary(Bytes::copy_from_slice(buf)))
            .map_err(ws_error)?;
        this.flushing = true;
        // Started now; finished here or by the next read or write.
        let _ = this.poll_pending_flush(cx);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        this.flushing = true;
        this.poll_pending_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // A Close frame, flushed: the WebSocket's way to end.
        Pin::new(&mut self.ws).poll_close(cx).map_err(ws_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(path: &str, extra: &str) -> String {
        format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        )
    }

    #[test]
    fn an_upgrade_is_checked_and_its_subprotocol_chosen() {
        let ok = check_request(
            request("/mqtt", "Sec-WebSocket-Protocol: mqtt\r\n").as_bytes(),
            "/mqtt",
        );
        assert_eq!(
            ok,
            Ok(Upgrade {
                key: "dGhlIHNhbXBsZSBub25jZQ==".into(),
                protocol: Some("mqtt")
            })
        );
        let old = request("/mqtt?x=1", "Sec-WebSocket-Protocol: mqttv3.1\r\n");
        assert_eq!(
            check_request(old.as_bytes(), "/mqtt").unwrap().protocol,
            Some("mqttv3.1")
        );
        let none = request("/mqtt", "");
        assert_eq!(
            check_request(none.as_bytes(), "/mqtt").unwrap().protocol,
            None
        );
        let refused = |req: String| check_request(req.as_bytes(), "/mqtt").unwrap_err().status;
        assert_eq!(refused(request("/other", "")), "404 Not Found");
        assert_eq!(
            refused(request("/mqtt", "Sec-WebSocket-Protocol: chat\r\n")),
            "400 Bad Request"
        );
        assert_eq!(
            refused("GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n".into()),
            "400 Bad Request"
        );
        assert_eq!(
            refused("POST /mqtt HTTP/1.1\r\n\r\n".into()),
            "405 Method Not Allowed"
        );
        assert_eq!(
            refused("\x10\x0c\0\x04MQTT\x04\x02\0<\r\n\r\n".into()),
            "400 Bad Request"
        );
        let v8 = request("/mqtt", "").replace("Version: 13", "Version: 8");
        assert_eq!(refused(v8), "426 Upgrade Required");
    }

    #[test]
    fn the_accept_key_is_rfc_6455s() {
        // RFC 6455 section 1.3's example.
        let key = tokio_tungstenite::tungstenite::handshake::derive_accept_key(
            b"dGhlIHNhbXBsZSBub25jZQ==",
        );
        assert_eq!(key, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }
}
