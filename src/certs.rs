//! Development certificates (`roost certs --out DIR`, and the tests' own): a CA, a server
//! certificate for localhost and 127.0.0.1, and client certificates, ECDSA P-256 (or RSA-2048
//! with `--key-type rsa`, to measure what most deployments still run), made with rcgen. For development and tests only: a real deployment's certificates come from its own CA
//! or a public one.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256, RsaKeySize,
    date_time_ymd,
};
use std::path::{Path, PathBuf};

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PEM (PKCS#8).
    pub key_pem: String,
}

/// The kind of key every certificate of an `Authority` gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum KeyType {
    /// ECDSA on P-256 with SHA-256: small and fast; what the tests use.
    #[default]
    EcdsaP256,
    /// RSA-2048 with PKCS#1 v1.5 SHA-256 signatures: still the common server key.
    Rsa2048,
}

impl KeyType {
    fn generate(self) -> Result<KeyPair, rcgen::Error> {
        match self {
            Self::EcdsaP256 => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256),
            Self::Rsa2048 => KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048),
        }
    }
}

/// A certificate authority that issues server and client certificates.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    keys: KeyType,
}

/// The calendar year now (UTC), from the system clock.
fn this_year() -> i32 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // 365.2425 days a year: right to the day except at the turn of a year, which the validity
    // periods below leave room for.
    1970 + (secs / 31_556_952) as i32
}

fn params(common_name: &str, names: &[&str]) -> Result<CertificateParams, rcgen::Error> {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let mut p = CertificateParams::new(names)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    p.distinguished_name = dn;
    // Valid from the start of last year to the end of the year after next.
    let year = this_year();
    p.not_before = date_time_ymd(year - 1, 1, 1);
    p.not_after = date_time_ymd(year + 2, 12, 31);
    Ok(p)
}

impl Authority {
    /// A new self-signed ECDSA P-256 CA named `name`.
    pub fn new(name: &str) -> Result<Self, rcgen::Error> {
        Self::with_keys(name, KeyType::EcdsaP256)
    }

    /// A new self-signed CA named `name` whose own key and every issued one are of `keys`.
    pub fn with_keys(name: &str, keys: KeyType) -> Result<Self, rcgen::Error> {
        let mut p = params(name, &[])?;
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = keys.generate()?;
        let cert_pem = p.self_signed(&key)?.pem();
        Ok(Self {
            issuer: Issuer::new(p, key),
            cert_pem,
            keys,
        })
    }

    /// The CA's certificate, PEM: what clients trust, and a listener's `client_ca`.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A server certificate for these DNS names and IP addresses.
    pub fn server(&self, names: &[&str]) -> Result<Issued, rcgen::Error> {
        let mut p = params(names.first().copied().unwrap_or("server"), names)?;
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(p)
    }

    /// A client certificate whose Common Name is `name`.
    pub fn client(&self, name: &str) -> Result<Issued, rcgen::Error> {
        let mut p = params(name, &[])?;
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(p)
    }

    /// A client certificate valid only from `from` to `to` (years, 1 January each): one that
    /// has expired, for tests.
    pub fn client_valid(&self, name: &str, from: i32, to: i32) -> Result<Issued, rcgen::Error> {
        let mut p = params(name, &[])?;
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.not_before = date_time_ymd(from, 1, 1);
        p.not_after = date_time_ymd(to, 1, 1);
        self.issue(p)
    }

    fn issue(&self, p: CertificateParams) -> Result<Issued, rcgen::Error> {
        let key = self.keys.generate()?;
        let cert = p.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// Writes a development CA (`ca.pem`), a server certificate for localhost and 127.0.0.1
/// (`server.pem`, `server.key`) and a client certificate named `client` (`client.pem`,
/// `client.key`) into `dir`, creating it, all with keys of `keys`. Keys are written readable by
/// their owner only. Returns the files written.
pub fn write_dev_certs(dir: &Path, client: &str, keys: KeyType) -> std::io::Result<Vec<PathBuf>> {
    let fail = |e: rcgen::Error| std::io::Error::other(e.to_string());
    let ca = Authority::with_keys("Roost development CA", keys).map_err(fail)?;
    let server = ca
        .server(&["localhost", "127.0.0.1", "::1"])
        .map_err(fail)?;
    let client = ca.client(client).map_err(fail)?;
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    for (name, text, secret) in [
        ("ca.pem", ca.cert_pem(), false),
        ("server.pem", &server.cert_pem, false),
        ("server.key", &server.key_pem, true),
        ("client.pem", &client.cert_pem, false),
        ("client.key", &client.key_pem, true),
    ] {
        let path = dir.join(name);
        write(&path, text, secret)?;
        written.push(path);
    }
    Ok(written)
}

/// Writes `text` to `path`; a secret is created with mode 0600 on Unix.
fn write(path: &Path, text: &str, secret: bool) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options.open(path)?;
    #[cfg(unix)]
    if secret {
        // The mode above applies only to a file created now: an older one is narrowed too.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_files_are_written_and_the_keys_kept_private() {
        for keys in [KeyType::EcdsaP256, KeyType::Rsa2048] {
            written_and_loaded(keys);
        }
    }

    fn written_and_loaded(keys: KeyType) {
        let dir = std::env::temp_dir().join(format!("roost-certs-{}-{keys:?}", std::process::id()));
        let files = write_dev_certs(&dir, "dev-client", keys).unwrap();
        assert_eq!(files.len(), 5);
        for f in &files {
            let text = std::fs::read_to_string(f).unwrap();
            assert!(text.starts_with("-----BEGIN"), "{}", f.display());
        }
        let key = std::fs::read_to_string(dir.join("server.key")).unwrap();
        let parsed = KeyPair::from_pem(&key).unwrap();
        let want = match keys {
            KeyType::EcdsaP256 => &PKCS_ECDSA_P256_SHA256,
            KeyType::Rsa2048 => &PKCS_RSA_SHA256,
        };
        assert!(
            parsed.is_compatible(want),
            "{keys:?}: server.key is {:?}",
            parsed.algorithm()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("server.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "server.key is the owner's only");
        }
        // The server's certificate and key load as a TLS listener's.
        let tls = crate::config::Tls::new(dir.join("server.pem"), dir.join("server.key"));
        crate::tls::server_config(&tls, crate::config::ListenerProtocol::Mqtt)
            .expect("a listener loads them");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
