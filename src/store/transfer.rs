//! `roost store export FILE` and `roost store import FILE`: the store's records as JSON lines,
//! one object per record, to inspect a store, carry it to another machine or another store
//! engine, or rescue what can be read from a damaged one. Each line holds the record itself
//! (base64, exactly as stored, so nothing is lost in translation) and, beside it, what it says
//! in readable form, or why it does not decode.
//!
//! ```text
//! {"kind":"retained","key":"a/b","record":"AQAA...","topic":"a/b","payload_bytes":7,"qos":1}
//! {"kind":"session","key":"dev-1","record":"AQAA...","user":"alice","expiry":3600}
//! {"kind":"subscription","key":"dev-1\u0000a/+","record":"AQAAAAA=","client_id":"dev-1","filter":"a/+","qos":1}
//! {"kind":"message","key":"17","record":"AQAA...","topic":"a/b","payload_bytes":7}
//! {"kind":"delivery","key":"dev-1\u000000000003","record":"AQAA...","message":17,"qos":1}
//! {"kind":"inbound","key":"dev-1\u00000007","record":""}
//! ```

use super::{
    Change, RedbStore, Row, SessionRecord, Store, StoreError, decode_retained, decode_subscription,
    decode_will, split_entry_key, split_key, split_subscription_key,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use std::io::{BufRead, Write};
use std::path::Path;

/// Writes every record of the store in `dir` to `file`; returns a summary.
pub fn export(dir: &Path, file: &Path) -> Result<String, StoreError> {
    let store = RedbStore::open_existing(dir)?;
    let snapshot = store.load_raw()?;
    let io = |e: std::io::Error| StoreError::Io(format!("{}: {e}", file.display()));
    let mut out = std::io::BufWriter::new(std::fs::File::create(file).map_err(io)?);
    let now = std::time::Instant::now();
    let mut bad = 0;
    for (key, record) in &snapshot.retained {
        let mut line = json!({"kind": "retained", "key": key, "record": STANDARD.encode(record)});
        match decode_retained(record, now) {
            Ok(Some(m)) => {
                line["topic"] = json!(&*m.topic);
                line["payload_bytes"] = json!(m.payload.len());
                line["qos"] = json!(m.qos as u8);
            }
            Ok(None) => line["expired"] = json!(true),
            Err(why) => {
                bad += 1;
                line["error"] = json!(why);
            }
        }
        writeln!(out, "{line}").map_err(io)?;
    }
    for (key, record) in &snapshot.sessions {
        let mut line = json!({"kind": "session", "key": key, "record": STANDARD.encode(record)});
        match SessionRecord::decode(record) {
            Ok(s) => {
                line["user"] = json!(s.user);
                line["expiry"] = json!(s.expiry);
            }
            Err(why) => {
                bad += 1;
                line["error"] = json!(why);
            }
        }
        writeln!(out, "{line}").map_err(io)?;
    }
    for (key, row) in &snapshot.subscriptions {
        let mut line = json!({"kind": "subscription", "key": key, "record": STANDARD.encode(row)});
        if let Some((client_id, filter)) = split_subscription_key(key) {
            line["client_id"] = json!(client_id);
            line["filter"] = json!(filter);
        }
        match decode_subscription(row) {
            Ok((options, _)) => line["qos"] = json!(options.qos as u8),
            Err(why) => {
                bad += 1;
                line["error"] = json!(why);
            }
        }
        writeln!(out, "{line}").map_err(io)?;
    }
    for (id, record) in &snapshot.messages {
        let mut line =
            json!({"kind": "message", "key": id.to_string(), "record": STANDARD.encode(record)});
        match decode_retained(record, now) {
            Ok(Some(m)) => {
                line["topic"] = json!(&*m.topic);
                line["payload_bytes"] = json!(m.payload.len());
            }
            Ok(None) => line["expired"] = json!(true),
            Err(why) => {
                bad += 1;
                line["error"] = json!(why);
            }
        }
        writeln!(out, "{line}").map_err(io)?;
    }
    for (key, row) in &snapshot.entries {
        let mut line = json!({"kind": "delivery", "key": key, "record": STANDARD.encode(row)});
        match Row::decode(row) {
            Ok(r) => {
                line["message"] = json!(r.message);
                line["qos"] = json!(r.qos as u8);
            }
            Err(why) => {
                bad += 1;
                line["error"] = json!(why);
            }
        }
        writeln!(out, "{line}").map_err(io)?;
    }
    for (client_id, record) in &snapshot.wills {
        let mut line = json!({"kind": "will", "key": client_id, "record": STANDARD.encode(record)});
        match decode_will(record, now) {
            Ok((due, m)) => {
                line["topic"] = json!(&*m.topic);
                line["due_unix_ms"] = json!(due);
            }
            Err(why) => {
                bad += 1;
                line["error"] = json!(why);
            }
        }
        writeln!(out, "{line}").map_err(io)?;
    }
    for key in &snapshot.inbound {
        writeln!(
            out,
            "{}",
            json!({"kind": "inbound", "key": key, "record": ""})
        )
        .map_err(io)?;
    }
    out.flush().map_err(io)?;
    Ok(format!(
        "{} retained messages, {} sessions, {} subscriptions, {} deliveries of {} messages and \
         {} inbound QoS 2 ids, {} held wills written to {}{}",
        snapshot.retained.len(),
        snapshot.sessions.len(),
        snapshot.subscriptions.len(),
        snapshot.entries.len(),
        snapshot.messages.len(),
        snapshot.inbound.len(),
        snapshot.wills.len(),
        file.display(),
        if bad > 0 {
            format!("; {bad} records do not decode (their lines carry \"error\")")
        } else {
            String::new()
        }
    ))
}

/// Adds every record in `file` (as `export` writes) to the store in `dir`, made if missing,
/// replacing records with the same key, in one commit. A line that is not a record, or a
/// record that does not decode, stops the import before anything is written.
pub fn import(dir: &Path, file: &Path) -> Result<String, StoreError> {
    let io = |e: std::io::Error| StoreError::Io(format!("{}: {e}", file.display()));
    let input = std::io::BufReader::new(std::fs::File::open(file).map_err(io)?);
    let mut changes = Vec::new();
    let now = std::time::Instant::now();
    for (i, line) in input.lines().enumerate() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |why: String| StoreError::Io(format!("{} line {}: {why}", file.display(), i + 1));
        let v: Value = serde_json::from_str(&line).map_err(|e| bad(e.to_string()))?;
        let field = |name: &str| {
            v.get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| bad(format!("no \"{name}\"")))
        };
        let (kind, key) = (field("kind")?, field("key")?);
        let record = STANDARD
            .decode(field("record")?)
            .map_err(|e| bad(format!("\"record\" is not base64: {e}")))?;
        let change = match kind {
            "retained" => {
                // Stored under another topic, it would be found by the wrong subscriptions,
                // and a later message to its topic would not replace it. (An expired one is
                // dropped at the next start whatever its key.)
                let m = decode_retained(&record, now).map_err(&bad)?;
                if m.is_some_and(|m| &*m.topic != key) {
                    return Err(bad("the key is not the retained message's topic".into()));
                }
                Change::Retained {
                    topic: key.into(),
                    record: Some(record),
                }
            }
            "session" => {
                SessionRecord::decode(&record).map_err(&bad)?;
                Change::Session {
                    client_id: key.into(),
                    record: Some(record),
                }
            }
            "subscription" => {
                decode_subscription(&record).map_err(&bad)?;
                if split_subscription_key(key).is_none() {
                    return Err(bad("the key is not a client id, NUL, a filter".into()));
                }
                Change::Subscription {
                    key: key.into(),
                    record: Some(record),
                }
            }
            "message" => {
                decode_retained(&record, now).map_err(&bad)?;
                let id = key
                    .parse()
                    .map_err(|_| bad("the key is not a message id".into()))?;
                Change::Message { id, record }
            }
            "delivery" => {
                Row::decode(&record).map_err(&bad)?;
                if split_entry_key(key).is_none() {
                    return Err(bad(
                        "the key is not a client id, NUL, eight lowercase hex digits (not 0)"
                            .into(),
                    ));
                }
                Change::Entry {
                    key: key.into(),
                    row: Some(record),
                }
            }
            "will" => {
                decode_will(&record, now).map_err(&bad)?;
                Change::Will {
                    client_id: key.into(),
                    record: Some(record),
                }
            }
            "inbound" => {
                if split_key(key).is_none() {
                    return Err(bad("the key is not a client id, NUL, a number".into()));
                }
                Change::Inbound {
                    key: key.into(),
                    pending: true,
                }
            }
            other => return Err(bad(format!("unknown kind {other:?}"))),
        };
        changes.push(change);
    }
    let store = RedbStore::open(dir)?;
    // Message ids are the store's own: ones from elsewhere would point rows at the wrong
    // messages of a store that has some.
    let brings_messages = changes.iter().any(|c| matches!(c, Change::Message { .. }));
    if brings_messages && !store.load_raw()?.messages.is_empty() {
        return Err(StoreError::Io(format!(
            "{}: queued messages can only be imported into a store that has none; import \
             into a new --data-dir",
            file.display()
        )));
    }
    store.commit(&changes, true)?;
    Ok(format!(
        "{} records imported into {}",
        changes.len(),
        dir.join(super::FILE_NAME).display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_export_imports_into_an_empty_store_as_it_was() {
        let base = std::env::temp_dir().join(format!("roost-transfer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let (from, to) = (base.join("from"), base.join("to"));
        let now = std::time::Instant::now();
        let message = crate::session::Message {
            topic: crate::protocol::ByteStr::from_static("t/1").unwrap(),
            payload: bytes::Bytes::from_static(b"hello"),
            qos: crate::protocol::QoS::AtLeastOnce,
            retain: true,
            properties: Default::default(),
            publisher: std::sync::Arc::from("p"),
            expires_at: None,
        };
        let session = SessionRecord {
            expiry: 60,
            offline_since: 0,
            realm: 0,
            user: Some("alice".into()),
        };
        {
            let s = RedbStore::open(&from).unwrap();
            s.commit(
                &[
                    Change::Retained {
                        topic: "t/1".into(),
                        record: super::super::encode_retained(&message, now),
                    },
                    Change::Session {
                        client_id: "dev".into(),
                        record: Some(session.encode()),
                    },
                    Change::Subscription {
                        key: super::super::subscription_key("dev", "a/#").into(),
                        record: Some(super::super::encode_subscription(
                            Default::default(),
                            Some(3),
                        )),
                    },
                    Change::Message {
                        id: 5,
                        record: super::super::encode_retained(&message, now).unwrap(),
                    },
                    Change::Entry {
                        key: super::super::entry_key("dev", 1).into(),
                        row: Some(
                            Row {
                                message: 5,
                                qos: crate::protocol::QoS::AtLeastOnce,
                                retain: false,
                                released: false,
                                packet_id: 0,
                                extra: None,
                            }
                            .encode(),
                        ),
                    },
                    Change::Inbound {
                        key: super::super::inbound_key("dev", 7).into(),
                        pending: true,
                    },
                ],
                true,
            )
            .unwrap();
        }
        let file = base.join("export.jsonl");
        let said = export(&from, &file).unwrap();
        assert!(
            said.starts_with(
                "1 retained messages, 1 sessions, 1 subscriptions, 1 deliveries of 1 messages \
                 and 1 inbound QoS 2 ids, 0 held wills"
            ),
            "{said}"
        );
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.contains("\"topic\":\"t/1\"") && text.contains("\"user\":\"alice\""),
            "{text}"
        );
        import(&to, &file).unwrap();
        let (a, b) = (
            RedbStore::open(&from).unwrap().load_raw().unwrap(),
            RedbStore::open(&to).unwrap().load_raw().unwrap(),
        );
        assert_eq!(
            (a.retained, a.sessions, a.subscriptions),
            (b.retained, b.sessions, b.subscriptions)
        );
        assert_eq!(
            (a.messages, a.entries, a.inbound),
            (b.messages, b.entries, b.inbound)
        );
        let again = import(&to, &file).unwrap_err().to_string();
        assert!(again.contains("a store that has none"), "{again}");

        // A damaged line stops the import before anything is written.
        std::fs::write(
            &file,
            format!("{text}{{\"kind\":\"session\",\"key\":\"x\",\"record\":\"AA==\"}}\n"),
        )
        .unwrap();
        let e = import(&base.join("third"), &file).unwrap_err().to_string();
        assert!(e.contains("line 7"), "{e}");

        // A retained message under a key that is not its topic is refused.
        let moved: String = text
            .lines()
            .map(|l| {
                if l.contains("\"kind\":\"retained\"") {
                    l.replacen("\"key\":\"t/1\"", "\"key\":\"t/2\"", 1) + "\n"
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        assert_ne!(moved, text, "the export has the retained message of t/1");
        std::fs::write(&file, moved).unwrap();
        let e = import(&base.join("fourth"), &file).unwrap_err().to_string();
        assert!(e.contains("not the retained message's topic"), "{e}");
        std::fs::remove_dir_all(&base).unwrap();
    }
}
