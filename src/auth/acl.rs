//! Mosquitto's ACL file, read unchanged, and what it allows one client.
//!
//! ```text
//! # Lines before any `user` line are for clients without a user name.
//! topic read public/#
//! user alice
//! topic readwrite demo/#
//! topic deny demo/secret
//! pattern readwrite devices/%c/#     # every client; %u = user name, %c = client id
//! ```
//!
//! `topic [read|write|readwrite|deny] FILTER` (no access word: readwrite) belongs to the last
//! `user`; `pattern` lines belong to every client. A client may do what some rule grants and
//! no `deny` rule forbids (deny wins, as Mosquitto documents); with an ACL file, what no rule
//! grants is refused, and no client writes to `$SYS`. Wildcards follow the topic rules, so `#`
//! grants nothing under `$SYS`: only a rule naming `$SYS` does.

use crate::topic::{covers, matches, overlaps, validate_filter};
use std::collections::HashMap;
use std::fmt;

/// What a rule allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    Read,
    Write,
    ReadWrite,
    Deny,
}

impl Access {
    fn reads(self) -> bool {
        matches!(self, Access::Read | Access::ReadWrite)
    }

    fn writes(self) -> bool {
        matches!(self, Access::Write | Access::ReadWrite)
    }
}

/// One `topic` or `pattern` line.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    access: Access,
    filter: Box<str>,
}

/// A line of an ACL file that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AclLineError {
    /// 1-based.
    pub line: usize,
    pub why: String,
}

impl fmt::Display for AclLineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.why)
    }
}

/// The rules of an ACL file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AclFile {
    /// `topic` lines before any `user` line: for clients without a user name.
    anonymous: Vec<Rule>,
    /// `topic` lines by the `user` line above them.
    users: HashMap<String, Vec<Rule>>,
    /// `pattern` lines, for every client.
    patterns: Vec<Rule>,
}

impl AclFile {
    /// Parses an ACL file's text; also returns a warning for each `pattern` line that names
    /// neither `%u` nor `%c` (it applies to every client alike, which a `topic` line before any
    /// `user` line does not: probably not what was meant). Any line that is not blank, a
    /// comment, `user NAME`, `topic ...` or `pattern ...` is an error, so that a broken file is
    /// found at start-up.
    pub(crate) fn parse(text: &str) -> Result<(Self, Vec<String>), AclLineError> {
        let mut file = Self::default();
        let mut warnings = Vec::new();
        let mut user: Option<String> = None;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let error = |why: String| AclLineError { line: i + 1, why };
            let (keyword, rest) = line.split_once([' ', '\t']).unwrap_or((line, ""));
            let rest = rest.trim();
            match keyword {
                "user" if rest.is_empty() => return Err(error("`user` without a name".into())),
                "user" => user = Some(rest.to_owned()),
                "topic" | "pattern" => {
                    let rule = Rule::parse(rest).map_err(error)?;
                    if keyword == "pattern" {
                        if !rule.filter.contains("%u") && !rule.filter.contains("%c") {
                            warnings.push(format!(
                                "line {}: pattern `{}` names neither %u nor %c, so it applies \
                                 to every client alike",
                                i + 1,
                                rule.filter
                            ));
                        }
                        file.patterns.push(rule);
                    } else if let Some(user) = &user {
                        file.users.entry(user.clone()).or_default().push(rule);
                    } else {
                        file.anonymous.push(rule);
                    }
                }
                _ => {
                    return Err(error(format!(
                        "`{keyword}`: expected `user NAME`, `topic [read|write|readwrite|deny] \
                         FILTER` or `pattern [read|write|readwrite|deny] FILTER`"
                    )));
                }
            }
        }
        Ok((file, warnings))
    }

    /// Reads and parses the file at `path`.
    pub(crate) fn load(path: &std::path::Path) -> Result<(Self, Vec<String>), String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The rules for one client: its user's `topic` lines (or the anonymous ones) and every
    /// `pattern` with `%u` and `%c` filled in. A pattern whose user name or client id contains
    /// `+`, `#` or `/` would become a different filter than meant: it grants nothing, and a
    /// `deny` pattern then denies everything (as Mosquitto refuses such clients its patterns).
    /// A `%u` pattern grants nothing to a client without a user name.
    pub(crate) fn for_client(&self, user: Option<&str>, client_id: &str) -> ClientAcl {
        let mut acl = ClientAcl::default();
        let own = match user {
            Some(u) => self.users.get(u).map(Vec::as_slice).unwrap_or_default(),
            None => &self.anonymous,
        };
        for rule in own {
            acl.add(rule.access, rule.filter.clone());
        }
        let unsafe_name = |s: &str| s.contains(['+', '#', '/']);
        for rule in &self.patterns {
            let needs_user = rule.filter.contains("%u");
            let needs_id = rule.filter.contains("%c");
            let filled = match user {
                _ if needs_id && unsafe_name(client_id) => None,
                Some(u) if needs_user && unsafe_name(u) => None,
                None if needs_user => None,
                _ => Some(fill(&rule.filter, user.unwrap_or_default(), client_id)),
            };
            match filled {
                Some(filter) => acl.add(rule.access, filter.into()),
                None if rule.access == Access::Deny && !(needs_user && user.is_none()) => {
                    acl.deny_all = true;
                }
                None => {}
            }
        }
        acl
    }
}

/// `filter` with `%u` and `%c` replaced in one pass, so that a user name containing "%c" is not
/// then filled with the client id.
fn fill(filter: &str, user: &str, client_id: &str) -> String {
    let mut out = String::with_capacity(filter.len() + user.len() + client_id.len());
    let mut rest = filter;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        if let Some(tail) = after.strip_prefix("%u") {
            out.push_str(user);
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("%c") {
            out.push_str(client_id);
            rest = tail;
        } else {
            out.push('%');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    out
}

impl Rule {
    /// `[read|write|readwrite|deny] FILTER` (the filter may contain spaces, as Mosquitto's).
    fn parse(rest: &str) -> Result<Self, String> {
        let (word, tail) = rest.split_once([' ', '\t']).unwrap_or((rest, ""));
        let (access, filter) = match word {
            "read" => (Access::Read, tail.trim()),
            "write" => (Access::Write, tail.trim()),
            "readwrite" => (Access::ReadWrite, tail.trim()),
            "deny" => (Access::Deny, tail.trim()),
            _ => (Access::ReadWrite, rest),
        };
        if filter.is_empty() {
            return Err("a rule without a topic filter".into());
        }
        // `%u`/`%c` stand for one whole level once filled in: check the filter as if they had.
        let check = filter.replace("%u", "u").replace("%c", "c");
        if validate_filter(&check).is_err() {
            return Err(format!("`{filter}` is not a valid topic filter"));
        }
        Ok(Self {
            access,
            filter: filter.into(),
        })
    }
}

/// What one client may do: the filters it may read and write, and those denied.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ClientAcl {
    read: Vec<Box<str>>,
    write: Vec<Box<str>>,
    deny: Vec<Box<str>>,
    /// A `deny` pattern could not be filled in for this client: it is denied everything.
    deny_all: bool,
}

/// What an ACL says of a subscription.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SubscribeCheck {
    /// Nothing it could match may be read: refused.
    Refused,
    /// Every topic it matches may be read: no check per message.
    Whole,
    /// Some of what it matches may be read: each message is checked.
    Filtered,
}

impl ClientAcl {
    fn add(&mut self, access: Access, filter: Box<str>) {
        match access {
            Access::Deny => self.deny.push(filter),
            _ => {
                if access.reads() {
                    self.read.push(filter.clone());
                }
                if access.writes() {
                    self.write.push(filter);
                }
            }
        }
    }

    fn denied(&self, topic: &str) -> bool {
        self.deny_all || self.deny.iter().any(|f| matches(f, topic))
    }

    /// Whether the client may publish to `topic`. Never to `$SYS`: those are the broker's.
    pub(crate) fn may_write(&self, topic: &str) -> bool {
        !topic.starts_with("$SYS")
            && !self.denied(topic)
            && self.write.iter().any(|f| matches(f, topic))
    }

    /// Whether the client may receive a message published to `topic`.
    pub(crate) fn may_read(&self, topic: &str) -> bool {
        !self.denied(topic) && self.read.iter().any(|f| matches(f, topic))
    }

    /// What the ACL says of a subscription to `filter` (for `$share/{group}/{f}`, pass `f`).
    pub(crate) fn subscribe(&self, filter: &str) -> SubscribeCheck {
        if self.deny_all
            || self.deny.iter().any(|d| covers(d, filter))
            || !self.read.iter().any(|r| overlaps(r, filter))
        {
            SubscribeCheck::Refused
        } else if self.read.iter().any(|r| covers(r, filter))
            && !self.deny.iter().any(|d| overlaps(d, filter))
        {
            SubscribeCheck::Whole
        } else {
            SubscribeCheck::Filtered
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
# anonymous clients
topic read public/#

user alice
topic readwrite demo/#
topic deny demo/secret
topic write will/alice
topic $SYS/broker/#
user bob smith
topic room/+
pattern readwrite users/%u/#
pattern read devices/%c/in
pattern write shared/status
";

    fn file() -> AclFile {
        AclFile::parse(FILE).expect("parses").0
    }

    #[test]
    fn topic_lines_belong_to_the_user_above_them_and_patterns_to_everyone() {
        let (f, warnings) = AclFile::parse(FILE).unwrap();
        assert_eq!(f.anonymous.len(), 1);
        assert_eq!(f.users["alice"].len(), 4);
        assert_eq!(f.users["bob smith"][0].access, Access::ReadWrite);
        assert_eq!(f.patterns.len(), 3);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].starts_with("line 13: pattern `shared/status`"));
    }

    #[test]
    fn a_user_may_do_what_a_rule_grants_and_no_deny_forbids() {
        let alice = file().for_client(Some("alice"), "phone");
        assert!(alice.may_write("demo/x") && alice.may_read("demo/x/y"));
        assert!(!alice.may_read("demo/secret") && !alice.may_write("demo/secret"));
        assert!(alice.may_write("will/alice") && !alice.may_read("will/alice"));
        assert!(
            !alice.may_read("public/news"),
            "anonymous lines are not hers"
        );
        assert!(alice.may_read("users/alice/inbox") && !alice.may_read("users/bob/inbox"));
        assert!(alice.may_read("devices/phone/in") && !alice.may_write("devices/phone/in"));
        assert!(alice.may_read("$SYS/broker/uptime"));
        assert!(!alice.may_write("$SYS/broker/uptime"), "nobody writes $SYS");
        let anonymous = file().for_client(None, "x");
        assert!(anonymous.may_read("public/news") && !anonymous.may_write("public/news"));
        assert!(
            !anonymous.may_read("users//inbox"),
            "%u grants nothing without a name"
        );
        let carol = file().for_client(Some("carol"), "c");
        assert!(!carol.may_read("demo/x") && carol.may_read("users/carol/x"));
    }

    #[test]
    fn wildcards_grant_nothing_under_sys() {
        let (f, _) = AclFile::parse("user root\ntopic #\n").unwrap();
        let root = f.for_client(Some("root"), "r");
        assert!(root.may_read("a/b"));
        assert!(!root.may_read("$SYS/broker/uptime"));
        assert_eq!(root.subscribe("$SYS/#"), SubscribeCheck::Refused);
    }

    #[test]
    fn a_name_with_wildcards_or_slashes_fills_no_pattern() {
        let (f, _) = AclFile::parse("pattern readwrite users/%u/#\npattern deny x/%c\n").unwrap();
        assert_eq!(fill("a/%u/%c/%x", "u%c", "id"), "a/u%c/id/%x", "one pass");
        let sneaky = f.for_client(Some("#"), "ok");
        assert!(!sneaky.may_read("users/bob/inbox"));
        assert!(!sneaky.may_read("users/#/inbox"));
        let slash = f.for_client(Some("a"), "a/b");
        assert!(
            slash.deny_all,
            "a deny pattern it cannot fill denies everything"
        );
        assert!(!slash.may_read("users/a/x"));
    }

    #[test]
    fn a_subscription_is_refused_whole_or_filtered() {
        let alice = file().for_client(Some("alice"), "phone");
        assert_eq!(alice.subscribe("demo/+/x"), SubscribeCheck::Whole);
        assert_eq!(
            alice.subscribe("demo/#"),
            SubscribeCheck::Filtered,
            "deny inside"
        );
        assert_eq!(alice.subscribe("#"), SubscribeCheck::Filtered);
        assert_eq!(alice.subscribe("demo/secret"), SubscribeCheck::Refused);
        assert_eq!(alice.subscribe("other/#"), SubscribeCheck::Refused);
        assert_eq!(
            alice.subscribe("will/alice"),
            SubscribeCheck::Refused,
            "write only"
        );
        assert_eq!(alice.subscribe("users/alice/#"), SubscribeCheck::Whole);
    }

    #[test]
    fn a_broken_line_is_named() {
        for (text, line) in [
            ("topic read a/#\nuser\n", 2),
            ("\n\ntopic read\n", 3),
            ("topic read a/#/b\n", 1),
            ("topics a\n", 1),
            ("pattern deny a/+b\n", 1),
        ] {
            let e = AclFile::parse(text).expect_err(text);
            assert_eq!(e.line, line, "{text:?}: {e}");
        }
    }
}
