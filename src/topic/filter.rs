//! Topic filter syntax (section 4.7): where `+` and `#` may stand, and `$share/{group}/{filter}`.

/// Why a topic filter is refused. A v5 server answers with SUBACK 0x8F; 3.1.1 has no failure code
/// for it beyond 0x80.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// `#` that is not the last character or not alone in its level [MQTT-4.7.1-2].
    #[error("[MQTT-4.7.1-2] '#' must be the last level and alone in it")]
    MultiLevelWildcard,
    /// `+` that is not alone in its level [MQTT-4.7.1-3].
    #[error("[MQTT-4.7.1-3] '+' must occupy a whole level")]
    SingleLevelWildcard,
    /// An empty filter [MQTT-4.7.3-1].
    #[error("[MQTT-4.7.3-1] topic filter is empty")]
    Empty,
    /// `$share/` with an empty or wildcard group, or no filter after it (v5 section 4.8.2).
    #[error("[MQTT-4.8.2-1] shared subscription needs a group name without wildcards and a filter")]
    SharedSyntax,
}

/// Checks the wildcard rules of a topic filter.
pub fn validate_filter(filter: &str) -> Result<(), FilterError> {
    if filter.is_empty() {
        return Err(FilterError::Empty);
    }
    let mut levels = super::levels(filter).peekable();
    while let Some(level) = levels.next() {
        if level.contains('#') && (level != "#" || levels.peek().is_some()) {
            return Err(FilterError::MultiLevelWildcard);
        }
        if level.contains('+') && level != "+" {
            return Err(FilterError::SingleLevelWildcard);
        }
    }
    Ok(())
}

/// Splits `$share/{group}/{filter}` into group and filter; `None` for an ordinary filter.
pub fn parse_shared(filter: &str) -> Option<Result<(&str, &str), FilterError>> {
    let rest = filter.strip_prefix("$share/")?;
    Some(match rest.split_once('/') {
        Some((group, f)) if !group.is_empty() && !group.contains(['+', '#']) && !f.is_empty() => {
            validate_filter(f).map(|_| (group, f))
        }
        _ => Err(FilterError::SharedSyntax),
    })
}

/// Whether `filter` matches `topic`, by the rules of section 4.7 including the `$` rule
/// [MQTT-4.7.2-1]. The trie is the fast path; this is the readable definition it is tested
/// against.
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut t = super::levels(topic);
    for f in super::levels(filter) {
        match (f, t.next()) {
            ("#", _) => return true,
            ("+", Some(_)) => {}
            (f, Some(level)) if f == level => {}
            _ => return false,
        }
    }
    t.next().is_none()
}

/// Whether some topic matches both filters (the `$` rule included): two valid filters `a` and
/// `b`. Used to decide whether an ACL rule can say anything about a subscription.
pub(crate) fn overlaps(a: &str, b: &str) -> bool {
    let (mut a, mut b) = (super::levels(a), super::levels(b));
    let mut first = true;
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            // `x/#` matches `x` too [MQTT-4.7.1-2].
            (None, Some("#")) | (Some("#"), None) => return true,
            (None, Some(_)) | (Some(_), None) => return false,
            (Some(x), Some(y)) => {
                let dollar = first && (x.starts_with('$') || y.starts_with('$'));
                let wild = |l: &str| l == "#" || l == "+";
                if dollar && (wild(x) || wild(y)) {
                    return false; // [MQTT-4.7.2-1] wildcards never match a `$` level first
                }
                if x == "#" || y == "#" {
                    return true;
                }
                if x != "+" && y != "+" && x != y {
                    return false;
                }
            }
        }
        first = false;
    }
}

/// Whether every topic `inner` matches is matched by `outer` too (the `$` rule included): two
/// valid filters. Used to decide whether an ACL rule covers a whole subscription.
pub(crate) fn covers(outer: &str, inner: &str) -> bool {
    let (mut o, mut i) = (super::levels(outer), super::levels(inner));
    let mut first = true;
    loop {
        match (o.next(), i.next()) {
            (None, None) | (Some("#"), None) => return true,
            (None, Some(_)) | (Some(_), None) => return false,
            (Some(x), Some(y)) => {
                if first && y.starts_with('$') && (x == "#" || x == "+") {
                    return false; // a `$` topic the wildcard cannot match
                }
                match (x, y) {
                    ("#", _) => return true,
                    // A `#` first matches every topic of one level or more, as `+/#` does; a
                    // later one matches its parent too, which only a `#` there matches.
                    ("+", "#") if first => return o.next() == Some("#") && o.next().is_none(),
                    (_, "#") => return false,
                    ("+", _) => {}
                    (_, "+") => return false,
                    (x, y) if x != y => return false,
                    _ => {}
                }
            }
        }
        first = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_syntax() {
        for ok in [
            "#",
            "+",
            "a/#",
            "a/+/b",
            "+/+",
            "/",
            "a//b",
            "$SYS/#",
            "+/tennis/#",
        ] {
            assert_eq!(validate_filter(ok), Ok(()), "{ok}");
        }
        assert_eq!(
            validate_filter("a/#/b"),
            Err(FilterError::MultiLevelWildcard)
        );
        assert_eq!(validate_filter("a#"), Err(FilterError::MultiLevelWildcard));
        assert_eq!(
            validate_filter("a/b#"),
            Err(FilterError::MultiLevelWildcard)
        );
        assert_eq!(validate_filter("a+"), Err(FilterError::SingleLevelWildcard));
        assert_eq!(
            validate_filter("a/+b/c"),
            Err(FilterError::SingleLevelWildcard)
        );
        assert_eq!(validate_filter(""), Err(FilterError::Empty));
    }

    #[test]
    fn spec_examples_of_section_4_7() {
        assert!(matches("sport/tennis/player1/#", "sport/tennis/player1"));
        assert!(matches(
            "sport/tennis/player1/#",
            "sport/tennis/player1/ranking"
        ));
        assert!(matches(
            "sport/tennis/player1/#",
            "sport/tennis/player1/score/wimbledon"
        ));
        assert!(matches("sport/#", "sport"));
        assert!(matches("sport/tennis/+", "sport/tennis/player1"));
        assert!(!matches("sport/tennis/+", "sport/tennis/player1/ranking"));
        assert!(!matches("sport/+", "sport"));
        assert!(matches("sport/+", "sport/"));
        assert!(matches("+/+", "/finance"));
        assert!(matches("/+", "/finance"));
        assert!(!matches("+", "/finance"));
        assert!(!matches("#", "$SYS/x"));
        assert!(!matches("+/monitor/Clients", "$SYS/monitor/Clients"));
        assert!(matches("$SYS/#", "$SYS/monitor/Clients"));
        assert!(matches("$SYS/monitor/+", "$SYS/monitor/Clients"));
        assert!(!matches("ACCOUNTS", "Accounts"), "case sensitive");
        assert!(!matches("a", "a "), "no normalisation");
    }

    #[test]
    fn shared_filters() {
        assert_eq!(parse_shared("a/b"), None);
        assert_eq!(parse_shared("$share/g/a/+"), Some(Ok(("g", "a/+"))));
        assert_eq!(
            parse_shared("$share/g/"),
            Some(Err(FilterError::SharedSyntax))
        );
        assert_eq!(
            parse_shared("$share//a"),
            Some(Err(FilterError::SharedSyntax))
        );
        assert_eq!(
            parse_shared("$share/g+/a"),
            Some(Err(FilterError::SharedSyntax))
        );
        assert_eq!(
            parse_shared("$share/g/a#"),
            Some(Err(FilterError::MultiLevelWildcard))
        );
    }

    /// `overlaps` and `covers` against their definitions over a set of topics: some topic
    /// matches both, every topic matched by the inner is matched by the outer.
    #[test]
    fn overlaps_and_covers_agree_with_matching() {
        let filters = [
            "#", "+", "a", "a/#", "a/+", "a/b", "a/b/#", "a/+/c", "+/b", "+/+", "+/#", "$SYS/#",
            "$SYS/+", "$SYS", "+/b/#", "a/b/c", "/", "/#", "+/", "a//b",
        ];
        // Every topic of one to four levels over these (the filters have at most three levels
        // before a `#`).
        let words = ["", "a", "b", "c", "x", "$SYS"];
        let mut topics: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        let mut last = topics.clone();
        for _ in 1..4 {
            last = last
                .iter()
                .flat_map(|t| words.iter().map(move |w| format!("{t}/{w}")))
                .collect();
            topics.extend(last.iter().cloned());
        }
        for a in filters {
            for b in filters {
                let both = topics.iter().any(|t| matches(a, t) && matches(b, t));
                assert_eq!(overlaps(a, b), both, "overlaps({a:?}, {b:?})");
                let within = topics.iter().all(|t| !matches(b, t) || matches(a, t));
                assert_eq!(covers(a, b), within, "covers({a:?}, {b:?})");
            }
        }
    }
}
