//! Enhanced authentication (MQTT 5.0 section 4.12): the challenge/response exchange carried by
//! the Authentication Method and Authentication Data of CONNECT, AUTH and CONNACK.
//!
//! Sans-IO: an [`Exchange`] takes the client's Authentication Data and says what to answer. It
//! never reads sockets, files or the clock, never logs, and knows nothing of packets or reason
//! codes: the connection task maps a [`Step`] to AUTH (0x18 Continue authentication), CONNACK or
//! DISCONNECT, and logs the [`Step::Failure`] reason. Re-authentication (AUTH 0x19) is a fresh
//! [`Exchange`]; checking that it names the same user is the connection's job.
//!
//! Methods: [`SCRAM_SHA_256`] ([`ScramAuthenticator`]).

mod acl;
mod live_acl;
mod password;
mod realm;
mod scram;

pub(crate) use acl::{AclFile, SubscribeCheck};
pub(crate) use live_acl::{AclSource, LiveAcl};

/// A client's rules, shared by its engine and its subscriptions; they follow the ACL file across
/// reloads.
pub(crate) type SharedAcl = std::sync::Arc<LiveAcl>;
pub(crate) use realm::Realm;

pub(crate) use password::PasswordFile;
pub use password::{delete_user, set_password};

use std::collections::HashMap;
use std::fmt;

pub(crate) use scram::{SCRAM_SHA_256, ScramAuthenticator};
pub use scram::{ScramCredentials, ScramError};

/// What a client's CONNECT (or AUTH 0x19) offers to be authenticated by.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Credentials<'a> {
    /// The User Name of CONNECT.
    pub(crate) username: Option<&'a str>,
    /// The Password of CONNECT.
    pub(crate) password: Option<&'a [u8]>,
    /// The v5 Authentication Method, for enhanced authentication.
    pub(crate) method: Option<&'a str>,
}

/// How authenticating a client begins (see [`Authenticate`]).
pub(crate) enum Begin {
    /// The client offered nothing to check: whether it may connect is the configuration's
    /// call (`auth.allow_anonymous`).
    Anonymous,
    /// The client is who it says: this user.
    User(String),
    /// A user name nothing could check (no password file): the configuration decides, as for
    /// an anonymous client (`auth.allow_anonymous`).
    Unchecked(String),
    /// The method needs an exchange of AUTH packets, driven by the connection.
    Exchange(Box<dyn Exchange>),
    /// The Authentication Method is not enabled (0x8C Bad authentication method).
    UnknownMethod,
    /// The credentials are wrong (0x86 Bad user name or password); the reason is for the log.
    Refused(&'static str),
    /// The password must be checked by a costly hash (argon2id): the connection runs the job
    /// off the runtime's threads and carries on with its answer.
    Verify(VerifyJob),
}

/// A costly password check, to run on a blocking thread (see [`Begin::Verify`]).
pub(crate) struct VerifyJob {
    file: std::sync::Arc<PasswordFile>,
    user: String,
    password: Vec<u8>,
}

/// At most this many costly checks run at once (each may take 46 MiB): more wait their turn.
pub(crate) static COSTLY_CHECKS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

impl VerifyJob {
    /// Checks the password: the user if it is theirs.
    pub(crate) fn run(self) -> Result<String, &'static str> {
        if self.file.verify(&self.user, &self.password) {
            Ok(self.user)
        } else {
            Err("wrong user name or password")
        }
    }
}

/// The one step of the CONNECT handshake that decides who a client is. Password files, client
/// certificates, SCRAM and external hooks are implementations of this: the handshake policy
/// takes the result, whatever produced it.
pub(crate) trait Authenticate: Send + Sync {
    /// Begins authenticating a client from what its CONNECT carries.
    fn begin(&self, credentials: &Credentials<'_>) -> Begin;
}

/// Starts per-connection exchanges for one or more Authentication Methods.
///
/// Object-safe and shared between connection tasks, hence `Send + Sync` and `&self`.
pub(crate) trait Authenticator: Send + Sync {
    /// Starts an exchange for `method`, or `None` when this authenticator does not serve it
    /// (the connection answers 0x8C Bad authentication method).
    fn start(&self, method: &str) -> Option<Box<dyn Exchange>>;
}

/// One connection's authentication exchange: a state machine fed the client's data in order.
pub(crate) trait Exchange: Send {
    /// Consumes the client's next Authentication Data: from CONNECT (empty when it had none),
    /// then from each AUTH 0x18. Once it has returned `Success` or `Failure` the exchange is
    /// finished and every further call returns `Failure`.
    fn step(&mut self, client_data: &[u8]) -> Step;
}

/// What the server answers to one [`Exchange::step`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// More is needed: send this as Authentication Data in AUTH 0x18 Continue authentication.
    Continue(Vec<u8>),
    /// The client is authenticated as `user`; `data`, if any, goes with the CONNACK (or the AUTH
    /// 0x00 that ends a re-authentication) so the client can authenticate the server in turn.
    Success {
        /// Final server data (SCRAM's server-final-message), for the client to verify.
        data: Option<Vec<u8>>,
        /// The authenticated user name, for authorisation and logs.
        user: String,
    },
    /// Authentication failed. The reason is for the server's log only: sending it would tell an
    /// attacker which guess was wrong.
    Failure(&'static str),
}

/// The enabled Authentication Methods, looked up by name.
///
/// It is an [`Authenticator`] itself, so the connection needs only a `&dyn Authenticator` and
/// tests can hand it a one-method stub.
#[derive(Default)]
pub(crate) struct Methods {
    /// Method name, compared exactly (the specification defines no case folding), to the
    /// authenticator that serves it; one authenticator may be registered under several names.
    by_name: HashMap<String, Box<dyn Authenticator>>,
}

impl Methods {
    /// An empty registry: every method is refused.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Enables `method`, served by `authenticator`, replacing any earlier registration.
    pub(crate) fn insert(
        &mut self,
        method: impl Into<String>,
        authenticator: Box<dyn Authenticator>,
    ) {
        self.by_name.insert(method.into(), authenticator);
    }

    /// The enabled method names, in no particular order.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }
}

impl Authenticator for Methods {
    fn start(&self, method: &str) -> Option<Box<dyn Exchange>> {
        self.by_name.get(method)?.start(method)
    }
}

/// Enhanced authentication by the enabled methods alone: a client without a method is taken
/// at its user name, unchecked.
impl Authenticate for Methods {
    fn begin(&self, credentials: &Credentials<'_>) -> Begin {
        match credentials.method {
            Some(method) => self
                .start(method)
                .map_or(Begin::UnknownMethod, Begin::Exchange),
            None => credentials
                .username
                .map_or(Begin::Anonymous, |user| Begin::Unchecked(user.to_owned())),
        }
    }
}

impl fmt::Debug for Methods {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.names()).finish()
    }
}
