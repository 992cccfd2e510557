//! TLS listeners: rustls (TLS 1.2 and 1.3, the aws-lc-rs provider) built from a listener's PEM
//! files, swapped whole when the files change or on SIGHUP while connected clients keep the
//! session they negotiated, and the client certificate's name for `use_identity_as_username`.

use crate::config;
use arc_swap::ArcSwap;
use rustls::RootCertStore;
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// The ALPN protocol a listener offers to clients that ask: MQTT's registered id on an MQTT
/// listener; HTTP/1.1 on a WebSocket one, whose upgrade is an HTTP/1.1 request (a browser
/// offers h2 and http/1.1, and would be refused if only "mqtt" were on offer).
fn alpn(protocol: config::ListenerProtocol) -> &'static [u8] {
    match protocol {
        config::ListenerProtocol::Mqtt => b"mqtt",
        config::ListenerProtocol::Ws => b"http/1.1",
    }
}

/// Builds the rustls configuration of a listener's `[listeners.tls]` for a listener speaking
/// `protocol`. The error names the file and what is wrong with it.
pub(crate) fn server_config(
    tls: &config::Tls,
    protocol: config::ListenerProtocol,
) -> Result<Arc<ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let certs = certificates(&tls.cert)?;
    let key = PrivateKeyDer::from_pem_file(&tls.key)
        .map_err(|e| format!("key {}: {}", tls.key.display(), pem_error(e)))?;
    let has_ca = !tls.client_ca.as_os_str().is_empty();
    if (tls.require_client_cert || tls.use_identity_as_username) && !has_ca {
        return Err(
            "require_client_cert and use_identity_as_username need client_ca, the roots client \
             certificates are verified against"
                .into(),
        );
    }
    let verifier = if has_ca {
        let mut roots = RootCertStore::empty();
        for ca in certificates(&tls.client_ca)? {
            roots
                .add(ca)
                .map_err(|e| format!("client_ca {}: {e}", tls.client_ca.display()))?;
        }
        let builder = WebPkiClientVerifier::builder_with_provider(roots.into(), provider.clone());
        let builder = if tls.require_client_cert {
            builder
        } else {
            builder.allow_unauthenticated()
        };
        builder
            .build()
            .map_err(|e| format!("client_ca {}: {e}", tls.client_ca.display()))?
    } else {
        WebPkiClientVerifier::no_client_auth()
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| {
            format!(
                "cert {} and key {}: {e}",
                tls.cert.display(),
                tls.key.display()
            )
        })?;
    config.alpn_protocols = vec![alpn(protocol).to_vec()];
    Ok(Arc::new(config))
}

/// Every certificate in a PEM file; at least one.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {}", path.display(), pem_error(e)))?;
    if certs.is_empty() {
        return Err(format!("{}: no CERTIFICATE in it", path.display()));
    }
    Ok(certs)
}

fn pem_error(e: rustls_pki_types::pem::Error) -> String {
    match e {
        rustls_pki_types::pem::Error::Io(e) => e.to_string(),
        rustls_pki_types::pem::Error::NoItemsFound => "no PEM item of the expected kind".into(),
        other => format!("not valid PEM ({other:?})"),
    }
}

/// A listener's TLS configuration as it is now: replaced on reload, read by each new
/// connection's handshake.
pub(crate) struct TlsListener {
    settings: config::Tls,
    protocol: config::ListenerProtocol,
    current: ArcSwap<ServerConfig>,
    /// The files' modification times and lengths when last loaded.
    stamps: Mutex<Vec<Option<(SystemTime, u64)>>>,
}

impl TlsListener {
    /// Loads a listener's TLS configuration.
    pub(crate) fn new(
        settings: &config::Tls,
        protocol: config::ListenerProtocol,
    ) -> Result<Self, String> {
        let current = server_config(settings, protocol)?;
        Ok(Self {
            protocol,
            stamps: Mutex::new(stamps(settings)),
            settings: settings.clone(),
            current: ArcSwap::new(current),
        })
    }

    /// The configuration a new connection's handshake uses.
    pub(crate) fn current(&self) -> Arc<ServerConfig> {
        self.current.load_full()
    }

    /// The listener's settings.
    pub(crate) fn settings(&self) -> &config::Tls {
        &self.settings
    }

    /// Loads the files again (SIGHUP). A broken file keeps the configuration in use and says
    /// why; connected clients are not touched either way.
    pub(crate) fn reload(&self) -> Result<(), String> {
        // One reload at a time (SIGHUP and the file watcher): a slower, older load must not be
        // stored over a newer one.
        let mut stamps_now = self.stamps.lock().unwrap_or_else(|e| e.into_inner());
        self.load(&mut stamps_now)
    }

    /// Loads the files and stores the configuration, under the stamps' lock.
    fn load(&self, stamps_now: &mut Vec<Option<(SystemTime, u64)>>) -> Result<(), String> {
        *stamps_now = stamps(&self.settings);
        let config = server_config(&self.settings, self.protocol)?;
        self.current.store(config);
        Ok(())
    }

    /// Reloads if a file's modification time or length changed since the last load; returns
    /// what the reload did, if one was tried.
    pub(crate) fn reload_if_changed(&self) -> Option<Result<(), String>> {
        let mut stamps_now = self.stamps.lock().unwrap_or_else(|e| e.into_inner());
        (*stamps_now != stamps(&self.settings)).then(|| self.load(&mut stamps_now))
    }
}

/// The modification time and length of the cert, key and client CA files (`None` for one that
/// cannot be read, or is not configured).
fn stamps(tls: &config::Tls) -> Vec<Option<(SystemTime, u64)>> {
    [&tls.cert, &tls.key, &tls.client_ca]
        .into_iter()
        .map(|p| {
            let m = std::fs::metadata(p).ok()?;
            Some((m.modified().ok()?, m.len()))
        })
        .collect()
}

/// How often the certificate files are checked for changes.
pub(crate) const WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// Watches a TLS listener's files and reloads them when they change, until the broker shuts
/// down; logs each reload and each broken file (keeping the old configuration).
pub(crate) async fn watch(tls: Arc<TlsListener>, bind: std::net::SocketAddr) {
    let mut tick = tokio::time::interval(WATCH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match tls.reload_if_changed() {
            None => {}
            Some(Ok(())) => tracing::info!(listener = %bind, "TLS certificates reloaded"),
            Some(Err(e)) => tracing::error!(
                listener = %bind,
                "TLS certificates not reloaded, the previous ones stay in use: {e}"
            ),
        }
    }
}

/// The user name a client certificate stands for: its subject's Common Name, else its first
/// DNS name. `None` for a certificate that does not parse or names neither.
pub(crate) fn certificate_user(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    if let Some(cn) = cert
        .subject()
        .iter_common_name()
        .find_map(|cn| cn.as_str().ok())
    {
        return Some(cn.to_owned());
    }
    let san = cert.subject_alternative_name().ok().flatten()?;
    san.value.general_names.iter().find_map(|n| match n {
        x509_parser::extensions::GeneralName::DNSName(d) => Some((*d).to_owned()),
        _ => None,
    })
}
