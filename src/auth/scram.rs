//! SCRAM-SHA-256 (RFC 5802, RFC 7677), server side. CONNECT carries client-first-message, AUTH
//! 0x18 carries server-first-message back and client-final-message forth, and CONNACK carries
//! server-final-message, with which the client checks that the server knew its credentials.
//!
//! The server keeps only [`ScramCredentials`] (salt, iteration count, StoredKey, ServerKey),
//! never a password. Limitations: no channel binding (no -PLUS variant: "p=" is refused, "y" is
//! accepted as RFC 5802 section 6 allows), no authorisation identity, and no SASLprep: user
//! names and passwords must be printable ASCII, on which SASLprep changes nothing.
//!
//! Must never panic on client input, nor reveal before the proof whether a user exists.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Authenticator, Exchange, Step};

/// The Authentication Method name of SCRAM-SHA-256.
pub(crate) const SCRAM_SHA_256: &str = "SCRAM-SHA-256";

/// Iteration count of an unknown user's fake credentials when there are no users to imitate:
/// RFC 7677's minimum and PostgreSQL's default.
const DEFAULT_ITERATIONS: u32 = 4096;
/// Length of fake and generated salts, as PostgreSQL's.
const SALT_LEN: usize = 16;
/// Random bytes in a server nonce: 144 bits, 24 base64 characters without padding.
const NONCE_LEN: usize = 18;
const MALFORMED_FIRST: &str = "malformed client-first-message";
const MALFORMED_FINAL: &str = "malformed client-final-message";

/// A SHA-256 output, and so every SCRAM key and signature.
type Key = [u8; 32];

/// Errors building credentials or an authenticator. Client messages never cause one: they end
/// in `Step::Failure`.
#[derive(Debug, thiserror::Error)]
pub enum ScramError {
    /// A stored credential string or its parameters are invalid.
    #[error("invalid SCRAM credential: {0}")]
    Credential(&'static str),
    /// A configured user name is empty or not printable ASCII.
    #[error("user name {0:?} is empty or not printable ASCII (SASLprep is not supported)")]
    UserName(String),
    /// A password is not printable ASCII.
    #[error("password is not printable ASCII (SASLprep is not supported)")]
    Password,
    /// The operating system's random number generator failed.
    #[error("the OS random number generator failed: {0}")]
    Random(getrandom::Error),
}

/// What the server stores for one user: enough to check a proof, not to recover the password.
///
/// Parses from and prints as `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`
/// (base64, PostgreSQL's format), so a configuration never holds a plaintext password.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredentials {
    /// Sent to the client, which needs it to derive SaltedPassword.
    salt: Vec<u8>,
    /// PBKDF2 rounds, sent to the client: the cost of each password guess.
    iterations: u32,
    /// H(ClientKey): checks the client's proof without being able to forge one.
    stored_key: Key,
    /// Signs server-final-message, proving to the client that the server holds its credentials.
    server_key: Key,
}

impl ScramCredentials {
    /// Derives the credentials of `password` (RFC 5802 section 3).
    pub fn from_password(password: &str, salt: &[u8], iterations: u32) -> Result<Self, ScramError> {
        if !is_printable(password) {
            return Err(ScramError::Password);
        }
        if salt.is_empty() || iterations == 0 {
            return Err(ScramError::Credential("empty salt or zero iterations"));
        }
        let salted = salted_password(password, salt, iterations);
        Ok(Self {
            salt: salt.to_vec(),
            iterations,
            stored_key: Sha256::digest(hmac(&salted, b"Client Key")).into(),
            server_key: hmac(&salted, b"Server Key"),
        })
    }

    /// Like [`Self::from_password`] with a fresh random salt, for provisioning users.
    pub fn generate(password: &str, iterations: u32) -> Result<Self, ScramError> {
        let mut salt = [0; SALT_LEN];
        getrandom::fill(&mut salt).map_err(ScramError::Random)?;
        Self::from_password(password, &salt, iterations)
    }
}

impl fmt::Display for ScramCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (iterations, salt) = (self.iterations, BASE64.encode(&self.salt));
        let (stored, server) = (
            BASE64.encode(self.stored_key),
            BASE64.encode(self.server_key),
        );
        write!(f, "{SCRAM_SHA_256}${iterations}:{salt}${stored}:{server}")
    }
}

impl FromStr for ScramCredentials {
    type Err = ScramError;

    fn from_str(s: &str) -> Result<Self, ScramError> {
        let shape = ScramError::Credential(
            "expected SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>",
        );
        let parts = s
            .strip_prefix(SCRAM_SHA_256)
            .and_then(|s| s.strip_prefix('$'))
            .and_then(|s| s.split_once('$'))
            .and_then(|(params, keys)| Some((params.split_once(':')?, keys.split_once(':')?)));
        let Some(((iterations, salt), (stored, server))) = parts else {
            return Err(shape);
        };
        let iterations = iterations.parse().ok().filter(|&i| i > 0);
        let iterations = iterations.ok_or(ScramError::Credential("iterations must be > 0"))?;
        let salt = BASE64.decode(salt).ok().filter(|s| !s.is_empty());
        let salt = salt.ok_or(ScramError::Credential("salt is not non-empty base64"))?;
        let key = |k: &str| BASE64.decode(k).ok().and_then(|k| Key::try_from(k).ok());
        let bad_key = ScramError::Credential("keys must be 32 bytes in base64");
        match (key(stored), key(server)) {
            (Some(stored_key), Some(server_key)) => Ok(Self {
                salt,
                iterations,
                stored_key,
                server_key,
            }),
            _ => Err(bad_key),
        }
    }
}

impl fmt::Debug for ScramCredentials {
    /// Leaves the keys out: ServerKey lets whoever holds it impersonate the server.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramCredentials")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// SCRAM-SHA-256 over an in-memory user store; cheap to clone.
#[derive(Clone)]
pub(crate) struct ScramAuthenticator {
    /// Shared with every exchange, which outlives the call that started it.
    store: Arc<Store>,
}

struct Store {
    /// Credentials by user name, as decoded from the client's saslname.
    users: HashMap<String, ScramCredentials>,
    /// Derives an unknown user's fake salt: random, so it cannot be told from a real one, and
    /// keyed by name, so that asking twice gives the same salt as it would for a real user.
    fake_salt_key: Key,
    /// The iteration count most users have, which an unknown user is given too.
    fake_iterations: u32,
}

impl ScramAuthenticator {
    /// Serves `users`, keyed by user name (printable ASCII).
    pub(crate) fn new(users: HashMap<String, ScramCredentials>) -> Result<Self, ScramError> {
        if let Some(name) = users.keys().find(|u| !is_user_name(u)) {
            return Err(ScramError::UserName(name.clone()));
        }
        let mut fake_salt_key = [0; 32];
        getrandom::fill(&mut fake_salt_key).map_err(ScramError::Random)?;
        let mut counts = HashMap::new();
        for c in users.values() {
            *counts.entry(c.iterations).or_insert(0_usize) += 1;
        }
        let fake_iterations = counts.into_iter().max_by_key(|&(i, n)| (n, i));
        let fake_iterations = fake_iterations.map_or(DEFAULT_ITERATIONS, |(i, _)| i);
        let store = Arc::new(Store {
            users,
            fake_salt_key,
            fake_iterations,
        });
        Ok(Self { store })
    }

    /// An exchange using `server_nonce`, which tests choose; `None` fails the exchange.
    fn exchange(&self, server_nonce: Option<String>) -> ScramExchange {
        ScramExchange {
            store: Arc::clone(&self.store),
            server_nonce,
            state: State::Start { challenged: false },
        }
    }
}

impl Authenticator for ScramAuthenticator {
    fn start(&self, method: &str) -> Option<Box<dyn Exchange>> {
        (method == SCRAM_SHA_256).then(|| Box::new(self.exchange(fresh_nonce())) as _)
    }
}

impl fmt::Debug for ScramAuthenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let users = self.store.users.len();
        f.debug_struct("ScramAuthenticator")
            .field("users", &users)
            .finish()
    }
}

/// A server nonce from the OS CSPRNG, or `None` if it failed: a guessable nonce would let a
/// recorded exchange be replayed, so the exchange fails instead.
fn fresh_nonce() -> Option<String> {
    let mut bytes = [0; NONCE_LEN];
    getrandom::fill(&mut bytes).ok()?;
    Some(BASE64.encode(bytes))
}

/// One connection's SCRAM-SHA-256 exchange.
struct ScramExchange {
    /// Where client-first-message's user is looked up.
    store: Arc<Store>,
    /// Taken when server-first-message is built; `None` if the OS gave no randomness.
    server_nonce: Option<String>,
    /// Which message comes next.
    state: State,
}

enum State {
    /// Waiting for client-first-message; `challenged` once an empty challenge asked for it.
    Start { challenged: bool },
    /// server-first-message sent; waiting for client-final-message.
    SentFirst(Box<Pending>),
    /// Succeeded or failed: nothing more to accept.
    Done,
}

/// What client-final-message is checked against.
struct Pending {
    /// The decoded user name, reported on success.
    user: String,
    /// `None` for an unknown user, who gets fake parameters and fails only at the proof.
    credentials: Option<ScramCredentials>,
    /// base64 of the gs2-header, which the "c=" attribute must repeat.
    channel_binding: String,
    /// Client nonce then server nonce, which the "r=" attribute must repeat.
    nonce: String,
    /// client-first-message-bare "," server-first-message: the start of AuthMessage.
    auth_message: String,
}

impl Exchange for ScramExchange {
    fn step(&mut self, client_data: &[u8]) -> Step {
        let result = match std::mem::replace(&mut self.state, State::Done) {
            // SASL's empty challenge: CONNECT had no client-first-message, so ask for it once.
            State::Start { challenged: false } if client_data.is_empty() => {
                self.state = State::Start { challenged: true };
                Ok(Step::Continue(Vec::new()))
            }
            State::Start { .. } => self.client_first(client_data),
            State::SentFirst(pending) => pending.client_final(client_data),
            State::Done => Err("SCRAM exchange already finished"),
        };
        result.unwrap_or_else(Step::Failure)
    }
}

impl ScramExchange {
    fn client_first(&mut self, data: &[u8]) -> Result<Step, &'static str> {
        let server_nonce = self.server_nonce.take();
        let server_nonce = server_nonce.ok_or("the OS random number generator failed")?;
        let msg = std::str::from_utf8(data).map_err(|_| MALFORMED_FIRST)?;
        let (flag, rest) = msg.split_once(',').ok_or(MALFORMED_FIRST)?;
        match flag {
            "n" | "y" => {}
            _ if flag.starts_with("p=") => return Err("channel binding is not supported"),
            _ => return Err(MALFORMED_FIRST),
        }
        let (authzid, bare) = rest.split_once(',').ok_or(MALFORMED_FIRST)?;
        if !authzid.is_empty() {
            return Err("authorisation identity is not supported");
        }
        let gs2_header = &msg[..msg.len() - bare.len()];
        let mut attrs = bare.split(',');
        let user = attrs.next().ok_or(MALFORMED_FIRST)?;
        if user.starts_with("m=") {
            return Err("mandatory extension is not supported");
        }
        let user = decode_user_name(user.strip_prefix("n=").ok_or(MALFORMED_FIRST)?)?;
        let client_nonce = attrs.next().and_then(|a| a.strip_prefix("r="));
        let client_nonce = client_nonce
            .filter(|n| is_nonce(n))
            .ok_or(MALFORMED_FIRST)?;
        // Any further attributes are extensions (RFC 5802 section 7), none defined: ignored.

        let credentials = self.store.users.get(&user).cloned();
        let (salt, iterations) = match &credentials {
            Some(c) => (c.salt.clone(), c.iterations),
            None => {
                let fake = hmac(&self.store.fake_salt_key, user.as_bytes());
                (fake[..SALT_LEN].to_vec(), self.store.fake_iterations)
            }
        };
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!("r={nonce},s={},i={iterations}", BASE64.encode(salt));
        self.state = State::SentFirst(Box::new(Pending {
            user,
            credentials,
            channel_binding: BASE64.encode(gs2_header),
            nonce,
            auth_message: format!("{bare},{server_first}"),
        }));
        Ok(Step::Continue(server_first.into_bytes()))
    }
}

impl Pending {
    fn client_final(self, data: &[u8]) -> Result<Step, &'static str> {
        let msg = std::str::from_utf8(data).map_err(|_| MALFORMED_FINAL)?;
        let (without_proof, proof) = msg.rsplit_once(',').ok_or(MALFORMED_FINAL)?;
        let proof = proof.strip_prefix("p=").ok_or(MALFORMED_FINAL)?;
        let mut attrs = without_proof.split(',');
        let binding = attrs.next().and_then(|a| a.strip_prefix("c="));
        let nonce = attrs.next().and_then(|a| a.strip_prefix("r="));
        let (Some(binding), Some(nonce)) = (binding, nonce) else {
            return Err(MALFORMED_FINAL);
        };
        if binding != self.channel_binding {
            return Err("channel binding does not repeat the gs2-header");
        }
        if nonce != self.nonce {
            return Err("nonce does not match");
        }
        let proof = BASE64
            .decode(proof)
            .ok()
            .and_then(|p| Key::try_from(p).ok());
        let proof = proof.ok_or("client proof is not 32 bytes in base64")?;

        // An unknown user goes through the same work with zero keys, so that timing does not
        // tell it from a wrong password.
        let (stored_key, server_key) = match &self.credentials {
            Some(c) => (c.stored_key, c.server_key),
            None => ([0; 32], [0; 32]),
        };
        let auth_message = format!("{},{without_proof}", self.auth_message);
        let signature = hmac(&stored_key, auth_message.as_bytes());
        let client_key: Key = std::array::from_fn(|i| proof[i] ^ signature[i]);
        let valid = Sha256::digest(client_key).as_slice().ct_eq(&stored_key);
        if self.credentials.is_none() {
            return Err("unknown user");
        }
        if !bool::from(valid) {
            return Err("invalid client proof (wrong password?)");
        }
        let verifier = hmac(&server_key, auth_message.as_bytes());
        Ok(Step::Success {
            data: Some(format!("v={}", BASE64.encode(verifier)).into_bytes()),
            user: self.user,
        })
    }
}

/// Undoes RFC 5802's saslname escaping ("=2C" for ',', "=3D" for '='); any other '=' is an
/// error, as the RFC requires.
fn decode_user_name(escaped: &str) -> Result<String, &'static str> {
    let mut user = String::with_capacity(escaped.len());
    let mut rest = escaped;
    while let Some(at) = rest.find('=') {
        user.push_str(&rest[..at]);
        match rest.get(at..at + 3) {
            Some("=2C") => user.push(','),
            Some("=3D") => user.push('='),
            _ => return Err("malformed escape in user name"),
        }
        rest = &rest[at + 3..];
    }
    user.push_str(rest);
    if !is_user_name(&user) {
        return Err("user name is empty or not printable ASCII (SASLprep is not supported)");
    }
    Ok(user)
}

/// SaltedPassword := Hi(password, salt, i), which is PBKDF2-HMAC-SHA-256.
fn salted_password(password: &str, salt: &[u8], iterations: u32) -> Key {
    pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password.as_bytes(), salt, iterations)
}

fn hmac(key: &[u8], data: &[u8]) -> Key {
    // HMAC hashes or pads a key of any length, so the InvalidLength error cannot happen.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Printable ASCII, on which SASLprep (RFC 4013) is the identity.
fn is_printable(s: &str) -> bool {
    s.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

fn is_user_name(s: &str) -> bool {
    !s.is_empty() && is_printable(s)
}

/// RFC 5802's nonce characters: printable ASCII except ','.
fn is_nonce(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

#[cfg(test)]
mod tests;
