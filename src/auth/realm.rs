//! Who may connect through a listener and what they may do there: `[auth]`, or a listener's
//! `[listeners.auth]` over it. The password and ACL files are swapped whole on reload, so a
//! CONNECT reads one consistent file without a lock.

use super::{
    AclFile, AclSource, Authenticate, Begin, Credentials, LiveAcl, Methods, PasswordFile, SharedAcl,
};
use arc_swap::ArcSwapOption;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One set of authentication and authorization rules.
#[derive(Debug)]
pub(crate) struct Realm {
    /// Which rules these are: a hash of the settings that make them (`allow_anonymous` and the
    /// two files' paths), the same in every run and every build, whatever the order of the
    /// listeners. A session belongs to a user under one realm, and keeps that in the store.
    pub(crate) id: u64,
    /// Whether clients with nothing checkable (no user name, or one no file can check) get in.
    pub(crate) allow_anonymous: bool,
    /// Enhanced authentication (SCRAM), shared by every realm.
    methods: Arc<Methods>,
    password_path: PathBuf,
    passwords: ArcSwapOption<PasswordFile>,
    acl_path: PathBuf,
    /// Shared with every client's rules (`LiveAcl`), so that a reload reaches them.
    acl: Arc<AclSource>,
}

impl Realm {
    /// A realm with these files (an empty path: none), loaded now. The configuration was
    /// validated, so they loaded then; one that no longer does allows nothing (an empty file)
    /// rather than everything, and says so.
    pub(crate) fn new(
        allow_anonymous: bool,
        methods: Arc<Methods>,
        password_path: &Path,
        acl_path: &Path,
    ) -> Self {
        let realm = Self {
            id: stable_id(allow_anonymous, password_path, acl_path),
            allow_anonymous,
            methods,
            password_path: password_path.to_path_buf(),
            passwords: ArcSwapOption::empty(),
            acl_path: acl_path.to_path_buf(),
            acl: Arc::default(),
        };
        if !password_path.as_os_str().is_empty() {
            let file = realm.load_passwords().unwrap_or_else(|e| {
                tracing::error!("auth.password_file: {e}; refusing every user name");
                PasswordFile::default()
            });
            realm.passwords.store(Some(Arc::new(file)));
        }
        if !acl_path.as_os_str().is_empty() {
            let file = realm.load_acl().unwrap_or_else(|e| {
                tracing::error!("auth.acl_file: {e}; refusing every PUBLISH and SUBSCRIBE");
                AclFile::default()
            });
            realm.acl.store(file);
        }
        realm
    }

    fn load_passwords(&self) -> Result<PasswordFile, String> {
        let file = PasswordFile::load(&self.password_path)?;
        tracing::info!(
            users = file.len(),
            "auth.password_file {} loaded",
            self.password_path.display()
        );
        Ok(file)
    }

    fn load_acl(&self) -> Result<AclFile, String> {
        let (file, warnings) = AclFile::load(&self.acl_path)?;
        for w in warnings {
            tracing::warn!("auth.acl_file {}: {w}", self.acl_path.display());
        }
        tracing::info!("auth.acl_file {} loaded", self.acl_path.display());
        Ok(file)
    }

    /// Reads the password and ACL files again (SIGHUP). A file that does not load keeps the
    /// rules in use; the errors are logged and returned. New passwords apply to the next
    /// CONNECT (connected clients stay connected); new ACL rules apply to every check from now
    /// on, connected clients' and stored subscriptions' included, as in Mosquitto.
    pub(crate) fn reload(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if !self.password_path.as_os_str().is_empty() {
            match self.load_passwords() {
                Ok(file) => self.passwords.store(Some(Arc::new(file))),
                Err(e) => errors.push(format!("auth.password_file: {e}")),
            }
        }
        if !self.acl_path.as_os_str().is_empty() {
            match self.load_acl() {
                Ok(file) => self.acl.store(file),
                Err(e) => errors.push(format!("auth.acl_file: {e}")),
            }
        }
        for e in &errors {
            tracing::error!("{e}; the rules in use stay");
        }
        errors
    }

    /// What the ACL file allows a client with this user name and client id, now and after
    /// each reload; `None` when there is no ACL file (everything is allowed).
    pub(crate) fn acl_for(&self, user: Option<&str>, client_id: &str) -> Option<SharedAcl> {
        self.acl
            .is_loaded()
            .then(|| Arc::new(LiveAcl::new(self.acl.clone(), user, client_id)))
    }
}

/// The id of the rules these settings make (`Realm::id`): FNV-1a over them, written out here
/// rather than `DefaultHasher`, whose algorithm may change with the toolchain and would then
/// hand no stored session back to its owner.
fn stable_id(allow_anonymous: bool, password_path: &Path, acl_path: &Path) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    eat(&[u8::from(allow_anonymous), 0]);
    eat(password_path.as_os_str().as_encoded_bytes());
    eat(&[0]);
    eat(acl_path.as_os_str().as_encoded_bytes());
    h
}

/// The methods and the password file: one user store as a client sees it.
impl Authenticate for Realm {
    fn begin(&self, credentials: &Credentials<'_>) -> Begin {
        if credentials.method.is_some() {
            return self.methods.begin(credentials);
        }
        let passwords = self.passwords.load();
        match (credentials.username, passwords.as_ref()) {
            // A password without a user name (v5 allows it) names nobody.
            (None, _) => Begin::Anonymous,
            (Some(user), None) => Begin::Unchecked(user.to_owned()),
            (Some(user), Some(file)) => match credentials.password {
                Some(password) if file.costly(user) => Begin::Verify(super::VerifyJob {
                    file: file.clone(),
                    user: user.to_owned(),
                    password: password.to_vec(),
                }),
                Some(password) if file.verify(user, password) => Begin::User(user.to_owned()),
                Some(_) => Begin::Refused("wrong user name or password"),
                None => Begin::Refused("user name without a password"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_realm_id_depends_on_its_settings_only_and_never_changes() {
        let id = |anon, p: &str, a: &str| stable_id(anon, Path::new(p), Path::new(a));
        assert_eq!(id(true, "", ""), id(true, "", ""));
        assert_ne!(id(true, "", ""), id(false, "", ""));
        assert_ne!(id(false, "p", ""), id(false, "", "p"), "which file matters");
        // Fixed: a stored session names its realm by this value across builds.
        assert_eq!(
            id(false, "config/passwd", "config/acl"),
            0x3c9c_917f_db0d_e093
        );
    }
}
