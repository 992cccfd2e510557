//! Mosquitto's password file, read unchanged: one `user:hash` line per user, as
//! `mosquitto_passwd` writes them.
//!
//! - `$7$<iterations>$<base64 salt>$<base64 PBKDF2-HMAC-SHA512, 64 bytes>`: Mosquitto 2.0's
//!   default (101 iterations, a 12-byte salt), and what `roost passwd` writes.
//! - `$6$<base64 salt>$<base64 SHA-512(password ++ salt)>`: Mosquitto 1.6's, still accepted.
//!
//! Comparison is constant-time, and a user the file does not know costs the same as a wrong
//! password, so timing says nothing about which names exist.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha512};
use std::collections::HashMap;
use std::fmt;
use subtle::ConstantTimeEq;

/// Iterations `roost passwd` uses, as `mosquitto_passwd` does.
const ITERATIONS: u32 = 101;
/// Salt bytes `roost passwd` uses, as `mosquitto_passwd` does.
const SALT_LEN: usize = 12;
/// The most PBKDF2 iterations a line may ask for: a file is trusted, but a typo of a few
/// digits must not make every login take minutes.
const MAX_ITERATIONS: u32 = 10_000_000;

/// The users of a password file and their hashes.
#[derive(Clone, Default)]
pub(crate) struct PasswordFile {
    users: HashMap<String, Hash>,
    /// How many users have argon2id lines (costly to check).
    argon2_users: usize,
    /// Picks, per unknown name, which kind of line it is checked against in vain (see
    /// [`PasswordFile::decoy_argon2`]): a hash of the file's text, so that a name gets the same
    /// answer time on every try while the file stays the same.
    decoy_key: u64,
}

/// One user's stored hash.
#[derive(Clone, PartialEq, Eq)]
enum Hash {
    /// `$7$`: PBKDF2-HMAC-SHA512.
    Pbkdf2 {
        iterations: u32,
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
    /// `$6$`: one round of SHA-512 over the password then the salt.
    Sha512 { salt: Vec<u8>, hash: Vec<u8> },
    /// `$argon2id$v=19$m=...,t=...,p=...$<salt>$<hash>` (Mosquitto 2.1's default, libargon2's
    /// encoded form): checked at load, verified off the runtime's threads (it is costly by
    /// design: 46 MiB and ~50 ms at Mosquitto's settings).
    Argon2 { phc: String },
}

/// A line of a password file that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LineError {
    /// 1-based.
    pub line: usize,
    pub why: &'static str,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.why)
    }
}

impl PasswordFile {
    /// Parses a password file's text. Blank lines and lines starting with `#` are skipped; any
    /// other line that is not `user:hash` in a known format is an error, so that a broken file
    /// is found at start-up rather than by a user who cannot log in.
    pub(crate) fn parse(text: &str) -> Result<Self, LineError> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let error = |why| LineError { line: i + 1, why };
            let (user, hash) = line
                .split_once(':')
                .ok_or_else(|| error("expected user:hash"))?;
            if user.is_empty() {
                return Err(error("empty user name"));
            }
            let hash = Hash::parse(hash).map_err(error)?;
            users.insert(user.to_owned(), hash);
        }
        let argon2_users = users
            .values()
            .filter(|h| matches!(h, Hash::Argon2 { .. }))
            .count();
        let mut key = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(text, &mut key);
        Ok(Self {
            users,
            argon2_users,
            decoy_key: std::hash::Hasher::finish(&key),
        })
    }

    /// Reads and parses the file at `path`.
    pub(crate) fn load(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Whether checking a password for `user` is costly (argon2id): then it must not run on
    /// the runtime's threads. A user the file does not know costs what the file's costly
    /// users cost, so that timing does not tell them apart.
    pub(crate) fn costly(&self, user: &str) -> bool {
        match self.users.get(user) {
            Some(hash) => matches!(hash, Hash::Argon2 { .. }),
            None => self.decoy_argon2(user).is_some(),
        }
    }

    /// The argon2id hash of the file's that unknown name `user` is verified against in vain,
    /// or `None` for the fast decoy: so that unknown names take as long as known ones. In a
    /// file of argon2id lines every unknown name is slow; in one that mixes them with `$7$`
    /// lines, the same share of unknown names is slow as of known ones, each name always the
    /// same way (a keyed hash picks), so that a fast or slow answer does not tell whether the
    /// name exists.
    fn decoy_argon2(&self, user: &str) -> Option<&Hash> {
        if self.argon2_users == 0 {
            return None;
        }
        let mut h = std::hash::DefaultHasher::new();
        std::hash::Hash::hash(&(self.decoy_key, user), &mut h);
        let pick = std::hash::Hasher::finish(&h) % self.users.len() as u64;
        if pick >= self.argon2_users as u64 {
            return None;
        }
        self.users
            .values()
            .find(|h| matches!(h, Hash::Argon2 { .. }))
    }

    /// Whether `password` is `user`'s.
    pub(crate) fn verify(&self, user: &str, password: &[u8]) -> bool {
        match self.users.get(user) {
            Some(hash) => hash.matches(password),
            None if let Some(decoy) = self.decoy_argon2(user) => {
                let _ = decoy.matches(password);
                false
            }
            None => {
                // As long as a wrong password takes, against a hash nobody has.
                let decoy = Hash::Pbkdf2 {
                    iterations: ITERATIONS,
                    salt: vec![0; SALT_LEN],
                    hash: vec![0; 64],
                };
                let _ = decoy.matches(password);
                false
            }
        }
    }

    /// Number of users.
    pub(crate) fn len(&self) -> usize {
        self.users.len()
    }
}

impl fmt::Debug for PasswordFile {
    /// The user names only: hashes stay out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.users.keys()).finish()
    }
}

impl Hash {
    fn parse(s: &str) -> Result<Self, &'static str> {
        let b64 = |part: &str| STANDARD.decode(part).map_err(|_| "not valid base64");
        if let Some(rest) = s.strip_prefix("$7$") {
            let mut parts = rest.split('$');
            let (Some(iterations), Some(salt), Some(hash), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err("expected $7$<iterations>$<salt>$<hash>");
            };
            let iterations: u32 = iterations
                .parse()
                .map_err(|_| "iterations is not a number")?;
            if !(1..=MAX_ITERATIONS).contains(&iterations) {
                return Err("iterations out of range (1 to 10,000,000)");
            }
            let (salt, hash) = (b64(salt)?, b64(hash)?);
            if hash.len() != 64 {
                return Err("a $7$ hash is 64 bytes of PBKDF2-HMAC-SHA512");
            }
            return Ok(Self::Pbkdf2 {
                iterations,
                salt,
                hash,
            });
        }
        if let Some(rest) = s.strip_prefix("$6$") {
            let Some((salt, hash)) = rest.split_once('$') else {
                return Err("expected $6$<salt>$<hash>");
            };
            let (salt, hash) = (b64(salt)?, b64(hash)?);
            if hash.len() != 64 {
                return Err("a $6$ hash is 64 bytes of SHA-512");
            }
            return Ok(Self::Sha512 { salt, hash });
        }
        if s.starts_with("$argon2") {
            let parsed = argon2::PasswordHash::new(s).map_err(|_| "not a valid argon2 hash")?;
            if parsed.algorithm.as_str() != "argon2id" {
                return Err("only argon2id of the argon2 family is accepted");
            }
            if parsed.salt.is_none() || parsed.hash.is_none() {
                return Err("an argon2id hash needs its salt and hash");
            }
            // The parameters must be ones argon2 can run (a typo must fail here, not at login).
            argon2::Params::try_from(&parsed).map_err(|_| "argon2 parameters out of range")?;
            return Ok(Self::Argon2 { phc: s.to_owned() });
        }
        Err("unknown hash format (expected $7$, $6$ or $argon2id$, as mosquitto_passwd writes)")
    }

    fn matches(&self, password: &[u8]) -> bool {
        use argon2::PasswordVerifier;
        let computed = match self {
            Self::Argon2 { phc } => {
                // Parsed at load; the verifier compares in constant time.
                return argon2::PasswordHash::new(phc).is_ok_and(|h| {
                    argon2::Argon2::default()
                        .verify_password(password, &h)
                        .is_ok()
                });
            }
            Self::Pbkdf2 {
                iterations, salt, ..
            } => {
                let mut out = [0u8; 64];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, *iterations, &mut out);
                out.to_vec()
            }
            Self::Sha512 { salt, .. } => {
                let mut h = Sha512::new();
                h.update(password);
                h.update(salt);
                h.finalize().to_vec()
            }
        };
        let stored = match self {
            Self::Pbkdf2 { hash, .. } | Self::Sha512 { hash, .. } => hash,
            Self::Argon2 { .. } => return false,
        };
        computed.ct_eq(stored).into()
    }
}

/// A password file line for `user` and `password`: `$7$`, 101 iterations, a fresh 12-byte salt,
/// as `mosquitto_passwd` writes it (Mosquitto reads it, and so does Roost).
fn hash_line(user: &str, password: &str) -> Result<String, getrandom::Error> {
    let mut salt = [0u8; SALT_LEN];
    getrandom::fill(&mut salt)?;
    let mut hash = [0u8; 64];
    pbkdf2::pbkdf2_hmac::<Sha512>(password.as_bytes(), &salt, ITERATIONS, &mut hash);
    Ok(format!(
        "{user}:$7${ITERATIONS}${}${}",
        STANDARD.encode(salt),
        STANDARD.encode(hash)
    ))
}

/// Sets `user`'s password in the password file at `path`, creating the file (mode 0600) if it
/// does not exist: the user's line is replaced, or added at the end; every other line is kept as
/// it was. Written to a temporary file and renamed, so a reader never sees half a file.
pub fn set_password(path: &std::path::Path, user: &str, password: &str) -> std::io::Result<()> {
    if user.is_empty() || user.contains(':') || user.contains('\n') {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "a user name must not be empty or contain ':' or a line break",
        ));
    }
    let line = hash_line(user, password).map_err(std::io::Error::other)?;
    rewrite(path, |lines| {
        match lines
            .iter_mut()
            .find(|l| l.split_once(':').is_some_and(|(u, _)| u == user))
        {
            Some(existing) => *existing = line,
            None => lines.push(line),
        }
        true
    })
    .map(|_| ())
}

/// Removes `user` from the password file at `path`; whether it was there.
pub fn delete_user(path: &std::path::Path, user: &str) -> std::io::Result<bool> {
    rewrite(path, |lines| {
        let before = lines.len();
        lines.retain(|l| l.split_once(':').is_none_or(|(u, _)| u != user));
        lines.len() != before
    })
}

/// Applies `change` to the file's lines (none if it does not exist) and writes them back if it
/// says it changed something.
fn rewrite(
    path: &std::path::Path,
    change: impl FnOnce(&mut Vec<String>) -> bool,
) -> std::io::Result<bool> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut lines: Vec<String> = match std::fs::read_to_string(path) {
        Ok(text) => text.lines().map(str::to_owned).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    if !change(&mut lines) {
        return Ok(false);
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    for line in &lines {
        writeln!(f, "{line}")?;
    }
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written by Debian's `mosquitto_passwd` 2.0.11: `-c -b pf alice secret`,
    /// `-b pf bob 'p@ss w0rd'`, and `-H sha512 -b pf carol hunter2`.
    const MOSQUITTO: &str = "\
alice:$7$101$P4HT9Rn5KtMPRnRC$Qn976oqA2CEt9ysT2lGdpEtyELcEGrDrSkYcQbyUXM29p+y2eR5EVnG4oEMWOlrG8NXU9tXDsdPj4GgMeWjTKA==
bob:$7$101$RbDNUber17xRyatB$BVrwZcMT+C78az9j++abWnOyPh95LtmQ8/kyG4ZRSz1wzh523lA9IE5HIcPnUx+ECm8KFnmOoR1IYeVFRgpX6Q==
carol:$6$NFGV1+vLvH3jKAOx$8CntKduXafpU27ZiC/aaKE932O4tT2jEKvfP0w8TaoSxaBM+LQAkRt3gGZsrf61AiheJn6dUO3QrxNz9NYML9Q==
";

    #[test]
    fn mosquitto_passwd_lines_verify_their_passwords_and_nothing_else() {
        let f = PasswordFile::parse(MOSQUITTO).expect("mosquitto_passwd's file parses");
        assert_eq!(f.len(), 3);
        assert!(f.verify("alice", b"secret"));
        assert!(f.verify("bob", b"p@ss w0rd"));
        assert!(f.verify("carol", b"hunter2"), "the legacy $6$ format");
        for (user, wrong) in [
            ("alice", &b"Secret"[..]),
            ("alice", b""),
            ("bob", b"p@ss w0rd "),
            ("carol", b"hunter"),
            ("dave", b"secret"),
            ("", b"secret"),
        ] {
            assert!(!f.verify(user, wrong), "{user} / {wrong:?}");
        }
    }

    #[test]
    fn a_line_we_write_verifies_and_has_mosquittos_shape() {
        let line = hash_line("erin", "correct horse").expect("a salt");
        let f = PasswordFile::parse(&line).expect("parses");
        assert!(f.verify("erin", b"correct horse"));
        assert!(!f.verify("erin", b"correct horse battery"));
        let parts: Vec<&str> = line.split('$').collect();
        assert_eq!(parts[0], "erin:");
        assert_eq!(parts[1], "7");
        assert_eq!(parts[2], "101");
        assert_eq!(STANDARD.decode(parts[3]).unwrap().len(), 12);
        assert_eq!(STANDARD.decode(parts[4]).unwrap().len(), 64);
        let again = hash_line("erin", "correct horse").expect("a salt");
        assert_ne!(line, again, "a fresh salt each time");
    }

    #[test]
    fn set_and_delete_keep_the_other_lines() {
        let dir = std::env::temp_dir().join(format!("roost-passwd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("passwd");
        std::fs::write(&path, format!("# ours\n{MOSQUITTO}")).unwrap();
        set_password(&path, "alice", "new secret").unwrap();
        set_password(&path, "dave", "d4ve").unwrap();
        let f = PasswordFile::load(&path).unwrap();
        assert!(f.verify("alice", b"new secret") && !f.verify("alice", b"secret"));
        assert!(f.verify("bob", b"p@ss w0rd") && f.verify("carol", b"hunter2"));
        assert!(f.verify("dave", b"d4ve"));
        assert!(delete_user(&path, "bob").unwrap());
        assert!(!delete_user(&path, "bob").unwrap(), "already gone");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# ours\nalice:$7$101$"), "{text}");
        assert!(!text.contains("bob:"));
        assert_eq!(PasswordFile::load(&path).unwrap().len(), 3);
        assert!(set_password(&path, "a:b", "x").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_broken_line_is_named_with_its_number() {
        let text = "# users\n\nalice:$7$101$P4HT9Rn5KtMPRnRC$Qn97\nbob\n";
        assert_eq!(
            PasswordFile::parse(text).unwrap_err(),
            LineError {
                line: 3,
                why: "a $7$ hash is 64 bytes of PBKDF2-HMAC-SHA512"
            }
        );
        for (text, why) in [
            ("bob", "expected user:hash"),
            (":$6$a$b", "empty user name"),
            (
                "u:plain",
                "unknown hash format (expected $7$, $6$ or $argon2id$, as mosquitto_passwd writes)",
            ),
            ("u:$7$x$a$b", "iterations is not a number"),
            (
                "u:$7$0$AA==$AA==",
                "iterations out of range (1 to 10,000,000)",
            ),
            ("u:$7$101$!!$AA==", "not valid base64"),
            (
                "u:$argon2i$v=19$m=47104,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
                "only argon2id of the argon2 family is accepted",
            ),
            (
                "u:$argon2id$v=19$m=47104,t=1,p=1",
                "an argon2id hash needs its salt and hash",
            ),
            (
                "u:$argon2id$v=19$m=47104,t=1,p=1$c2FsdHNhbHQ$!!!",
                "not a valid argon2 hash",
            ),
            (
                "u:$argon2id$v=19$m=1,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
                "argon2 parameters out of range",
            ),
        ] {
            match PasswordFile::parse(text) {
                Ok(_) => panic!("{text} was accepted"),
                Err(e) => assert_eq!(e.why, why, "{text}"),
            }
        }
    }

    /// An argon2id line in libargon2's encoded form (as Mosquitto 2.1 writes, here with small
    /// parameters so the test is quick): the right password matches, a wrong one does not,
    /// and checking it (or an unknown user, in a file that has such lines) is costly.
    #[test]
    fn argon2id_lines_are_verified() {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let params = argon2::Params::new(64, 1, 1, None).unwrap();
        let hasher =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let salt = SaltString::encode_b64(b"sixteen byte salt").unwrap();
        let phc = hasher.hash_password(b"secret", &salt).unwrap().to_string();
        assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{phc}");
        let file = PasswordFile::parse(&format!("alice:{phc}\nbob:$6$NFGV1+vLvH3jKAOx$8CntKduXafpU27ZiC/aaKE932O4tT2jEKvfP0w8TaoSxaBM+LQAkRt3gGZsrf61AiheJn6dUO3QrxNz9NYML9Q==\n")).unwrap();
        assert!(file.verify("alice", b"secret"));
        assert!(!file.verify("alice", b"Secret"));
        assert!(file.costly("alice") && !file.costly("bob"));
        assert!(!file.verify("mallory", b"secret"));

        // Only argon2id lines: every unknown name costs what a known one does.
        let only = PasswordFile::parse(&format!("alice:{phc}\n")).unwrap();
        assert!((0..100).all(|i| only.costly(&format!("nobody-{i}"))));
        // Half and half: about half of the unknown names are slow, each always the same way.
        let slow = (0..1000)
            .filter(|i| file.costly(&format!("nobody-{i}")))
            .count();
        assert!(
            (400..=600).contains(&slow),
            "{slow} of 1000 unknown names slow"
        );
        assert!((0..1000).all(|i| {
            let name = format!("nobody-{i}");
            file.costly(&name) == file.costly(&name)
        }));
        // No argon2id line: no unknown name is slow.
        let fast = PasswordFile::parse("bob:$6$NFGV1+vLvH3jKAOx$8CntKduXafpU27ZiC/aaKE932O4tT2jEKvfP0w8TaoSxaBM+LQAkRt3gGZsrf61AiheJn6dUO3QrxNz9NYML9Q==\n").unwrap();
        assert!((0..100).all(|i| !fast.costly(&format!("nobody-{i}"))));
    }
}
