//! The connection under a bench client: plain TCP, or TLS over it with `--tls-ca` (or
//! `--tls-insecure`).
//! Both read and write through the same calls, so the hot loops do not know which it is.

use anyhow::{Context, Result, bail};
use bytes::BytesMut;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::io;
use std::net::IpAddr;
use std::path::Path;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll, Waker};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A bench client's connection.
pub enum Stream {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// How to start TLS on a new connection: the trusted CA and the settings of every handshake.
#[derive(Clone)]
pub struct Tls {
    connector: TlsConnector,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

impl Tls {
    /// A client that trusts the certificates in the PEM file `ca`, or (`None`) any certificate
    /// without checking it or the handshake's signature: `--tls-insecure`, for measuring
    /// handshakes, where verifying an ECDSA signature costs the bench more than making it
    /// costs the broker and would cap the rate at the bench.
    ///
    /// Every connection makes a full handshake (no session resumption: a device that
    /// reconnects after a reboot has no ticket either, and a handshake benchmark must measure
    /// the server's signature) and offers X25519 only, the group OpenSSL-based brokers and
    /// clients use, so Roost does not pay for the post-quantum share rustls offers by default.
    pub fn new(ca: Option<&Path>) -> Result<Self> {
        let mut provider = rustls::crypto::aws_lc_rs::default_provider();
        provider.kx_groups = vec![rustls::crypto::aws_lc_rs::kx_group::X25519];
        let provider = Arc::new(provider);
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .context("TLS client settings")?;
        let mut config = match ca {
            Some(ca) => builder
                .with_root_certificates(roots(ca)?)
                .with_no_client_auth(),
            None => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Unchecked(provider)))
                .with_no_client_auth(),
        };
        config.resumption = rustls::client::Resumption::disabled();
        Ok(Self {
            connector: TlsConnector::from(Arc::new(config)),
        })
    }

    /// The TLS handshake on a connected socket, checking the certificate against `host` (the
    /// development certificates name 127.0.0.1 and localhost).
    pub async fn start(&self, tcp: TcpStream, host: IpAddr) -> Result<Stream> {
        let stream = self
            .connector
            .connect(ServerName::IpAddress(host.into()), tcp)
            .await
            .context("TLS handshake")?;
        Ok(Stream::Tls(Box::new(stream)))
    }
}

/// The trust roots in the PEM file `ca`.
fn roots(ca: &Path) -> Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca)
        .with_context(|| format!("--tls-ca: cannot read {}", ca.display()))?;
    for cert in certs {
        let cert = cert.with_context(|| format!("--tls-ca: {} is not PEM", ca.display()))?;
        roots
            .add(cert)
            .with_context(|| format!("--tls-ca: a certificate in {}", ca.display()))?;
    }
    if roots.is_empty() {
        bail!("--tls-ca: {} holds no certificate", ca.display());
    }
    Ok(roots)
}

/// `--tls-insecure`: accepts any certificate and any handshake signature.
#[derive(Debug)]
struct Unchecked(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl Stream {
    /// Writes all of `buf` and pushes it to the socket: TLS may keep written records in its
    /// own buffer until flushed.
    pub async fn send_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.write_all(buf).await?;
        if let Self::Tls(_) = self {
            self.flush().await?;
        }
        Ok(())
    }

    /// Reads what has already arrived without waiting; `WouldBlock` when nothing has.
    pub fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            Self::Tcp(s) => s.try_read_buf(buf),
            Self::Tls(_) => {
                // One poll with a waker that does nothing: the next real read polls again with
                // its own waker, which replaces this one in the socket's registration.
                let mut cx = TaskContext::from_waker(Waker::noop());
                match pin!(self.read_buf(buf)).poll(&mut cx) {
                    Poll::Ready(r) => r,
                    Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
                }
            }
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
