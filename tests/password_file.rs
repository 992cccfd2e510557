//! `auth.password_file` (Mosquitto's format) and `auth.allow_anonymous`: a user name is let in
//! only with its password, and never on its own word where anonymous clients are not allowed.

mod support;

use bytes::Bytes;
use roost::protocol::ProtocolVersion::{self, V3_1_1, V5};
use roost::protocol::{ByteStr, Connect, Packet, ReasonCode};
use std::path::PathBuf;
use support::*;

/// Lines written by Debian's `mosquitto_passwd` 2.0.11: `-c -b pf alice secret` (here named
/// carol: the hash does not depend on the name) and `-H sha512 -b pf carol hunter2` (the legacy
/// `$6$` format, here named dave).
const MOSQUITTO_LINES: &str = "\
carol:$7$101$P4HT9Rn5KtMPRnRC$Qn976oqA2CEt9ysT2lGdpEtyELcEGrDrSkYcQbyUXM29p+y2eR5EVnG4oEMWOlrG8NXU9tXDsdPj4GgMeWjTKA==
dave:$6$NFGV1+vLvH3jKAOx$8CntKduXafpU27ZiC/aaKE932O4tT2jEKvfP0w8TaoSxaBM+LQAkRt3gGZsrf61AiheJn6dUO3QrxNz9NYML9Q==
";

/// A password file with carol ("secret", from mosquitto_passwd), dave ("hunter2", `$6$`) and
/// alice ("wonderland", written by Roost), in a directory of this test's own.
fn password_file(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("roost-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let path = dir.join("passwd");
    std::fs::write(&path, MOSQUITTO_LINES).expect("written");
    roost::passwords::set_password(&path, "alice", "wonderland").expect("alice added");
    path
}

/// A broker for password holders only: anonymous clients off, the password file at `path`,
/// failed logins answered at once (the slowing has its own test).
async fn closed_broker(path: &std::path::Path) -> TestBroker {
    start_with(|c| {
        c.auth.allow_anonymous = false;
        c.auth.password_file = path.to_path_buf();
        c.auth.login_delay_ms = 0;
    })
    .await
}

/// A clean CONNECT with an assigned client id and these credentials.
fn connect_as(version: ProtocolVersion, user: Option<&str>, password: Option<&str>) -> Connect {
    let mut connect = connect_packet(version, "", true);
    connect.username = user.map(|u| ByteStr::try_from(u).expect("a user name"));
    connect.password = password.map(|p| Bytes::copy_from_slice(p.as_bytes()));
    connect
}

/// The CONNACK reason code a client with these credentials gets.
async fn connack(
    b: &TestBroker,
    version: ProtocolVersion,
    user: Option<&str>,
    password: Option<&str>,
) -> ReasonCode {
    let mut c = Raw::open(b.addr, version).await;
    let connect = connect_as(version, user, password);
    c.send(&Packet::Connect(Box::new(connect))).await;
    match c.recv().await {
        Packet::ConnAck(a) => a.reason,
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

#[tokio::test]
async fn only_the_right_password_gets_in_in_both_versions() {
    let path = password_file("right");
    let b = closed_broker(&path).await;
    for v in [V3_1_1, V5] {
        let ok = ReasonCode::SUCCESS;
        assert_eq!(connack(&b, v, Some("alice"), Some("wonderland")).await, ok);
        assert_eq!(connack(&b, v, Some("carol"), Some("secret")).await, ok);
        assert_eq!(connack(&b, v, Some("dave"), Some("hunter2")).await, ok);
        // Wrong password, unknown user, no password: one answer for all, 0x86 (3.1.1: 0x04).
        let bad = ReasonCode::BAD_USER_NAME_OR_PASSWORD;
        assert_eq!(connack(&b, v, Some("alice"), Some("Wonderland")).await, bad);
        assert_eq!(
            connack(&b, v, Some("mallory"), Some("wonderland")).await,
            bad
        );
        assert_eq!(connack(&b, v, Some("alice"), None).await, bad);
        // No user name where anonymous clients are not allowed: 0x87 (3.1.1: 0x05).
        assert_eq!(connack(&b, v, None, None).await, ReasonCode::NOT_AUTHORIZED);
    }
    std::fs::remove_dir_all(path.parent().unwrap()).ok();
}

#[tokio::test]
async fn the_3_1_1_codes_on_the_wire_are_4_and_5() {
    let path = password_file("codes");
    let b = closed_broker(&path).await;
    // ReasonCode maps to 3.1.1's return codes when encoded; check the bytes themselves.
    for (user, password, code) in [(Some("alice"), Some("no"), 4), (None, None, 5)] {
        let mut c = Raw::open(b.addr, V3_1_1).await;
        let connect = connect_as(V3_1_1, user, password);
        c.send(&Packet::Connect(Box::new(connect))).await;
        let mut raw = [0u8; 4];
        tokio::io::AsyncReadExt::read_exact(&mut c.stream, &mut raw)
            .await
            .expect("a CONNACK");
        assert_eq!(raw, [0x20, 2, 0, code]);
    }
    std::fs::remove_dir_all(path.parent().unwrap()).ok();
}

/// The defect this closes: with anonymous clients off and no password file, any user name used
/// to get in. Now nothing can check it, so it is refused, as Mosquitto does.
#[tokio::test]
async fn a_user_name_alone_does_not_get_in_where_anonymous_clients_are_not_allowed() {
    let b = start_with(|c| c.auth.allow_anonymous = false).await;
    for v in [V3_1_1, V5] {
        let refused = connack(&b, v, Some("alice"), Some("definitely-wrong")).await;
        assert_eq!(refused, ReasonCode::NOT_AUTHORIZED, "{v:?}");
    }
}

#[tokio::test]
async fn with_anonymous_clients_allowed_a_user_name_given_is_still_checked() {
    let path = password_file("anon");
    let b = start_with(|c| {
        c.auth.password_file = path.clone();
        c.auth.login_delay_ms = 0;
    })
    .await;
    assert_eq!(connack(&b, V5, None, None).await, ReasonCode::SUCCESS);
    assert_eq!(
        connack(&b, V5, Some("alice"), Some("wrong")).await,
        ReasonCode::BAD_USER_NAME_OR_PASSWORD
    );
    assert_eq!(
        connack(&b, V5, Some("alice"), Some("wonderland")).await,
        ReasonCode::SUCCESS
    );
    std::fs::remove_dir_all(path.parent().unwrap()).ok();
}

/// Guessing takes time: each failed login from an address waits longer before its refusal.
#[tokio::test]
async fn failed_logins_from_one_address_are_answered_ever_more_slowly() {
    let path = password_file("slow");
    let b = start_with(|c| {
        c.auth.password_file = path.clone();
        c.auth.login_delay_ms = 100;
    })
    .await;
    let mut waited = Vec::new();
    for _ in 0..3 {
        let start = std::time::Instant::now();
        let reason = connack(&b, V5, Some("alice"), Some("guess")).await;
        assert_eq!(reason, ReasonCode::BAD_USER_NAME_OR_PASSWORD);
        waited.push(start.elapsed());
    }
    // 100, 200 and 400 ms at least (the broker adds no more than scheduling on top).
    for (i, least) in [100, 200, 400].into_iter().enumerate() {
        let least = std::time::Duration::from_millis(least);
        assert!(waited[i] >= least, "refusal {i} took {:?}", waited[i]);
    }
    std::fs::remove_dir_all(path.parent().unwrap()).ok();
}

#[test]
fn a_broken_password_file_stops_start_up_naming_the_key_and_the_line() {
    let dir = std::env::temp_dir().join(format!("roost-broken-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("passwd");
    std::fs::write(&path, "alice:$7$101$AAAA$short\n").unwrap();
    let mut config = roost::Config::default();
    config.auth.password_file = path.clone();
    let error = config.validate().expect_err("refused").to_string();
    assert!(error.contains("auth.password_file"), "{error}");
    assert!(error.contains("line 1"), "{error}");
    config.auth.password_file = dir.join("missing");
    let error = config.validate().expect_err("refused").to_string();
    assert!(error.contains("auth.password_file"), "{error}");
    std::fs::remove_dir_all(&dir).ok();
}

/// argon2id lines (Mosquitto 2.1's default), here at Mosquitto 2.1's parameters (m=47104, t=1,
/// p=1) in libargon2's encoded form: checked off the runtime's threads, the right password in,
/// anything else 0x86 (3.1.1: 0x04); a SUBSCRIBE sent right behind the CONNECT is served once
/// the check is done.
#[tokio::test]
async fn argon2id_lines_are_checked_off_the_runtime() {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let params = argon2::Params::new(47104, 1, 1, None).unwrap();
    let hasher = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = SaltString::encode_b64(b"mosquitto-2.1-salt").unwrap();
    let phc = hasher.hash_password(b"sesame", &salt).unwrap().to_string();
    assert!(phc.starts_with("$argon2id$v=19$m=47104,t=1,p=1$"), "{phc}");
    let dir = std::env::temp_dir().join(format!("roost-argon2-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("passwd");
    std::fs::write(&path, format!("erin:{phc}\n{MOSQUITTO_LINES}")).unwrap();
    let b = closed_broker(&path).await;
    let bad = ReasonCode::BAD_USER_NAME_OR_PASSWORD;
    for v in [V3_1_1, V5] {
        assert_eq!(
            connack(&b, v, Some("erin"), Some("sesame")).await,
            ReasonCode::SUCCESS
        );
        assert_eq!(
            connack(&b, v, Some("erin"), Some("Sesame")).await,
            bad,
            "{v:?}"
        );
        assert_eq!(
            connack(&b, v, Some("mallory"), Some("sesame")).await,
            bad,
            "{v:?}"
        );
        // The file's other lines are checked as before.
        assert_eq!(
            connack(&b, v, Some("carol"), Some("secret")).await,
            ReasonCode::SUCCESS
        );
    }
    // CONNECT and SUBSCRIBE in one write: the SUBSCRIBE waits for the check, then is served.
    let mut c = Raw::open(b.addr, V3_1_1).await;
    let mut bytes = bytes::BytesMut::new();
    let connect = connect_as(V3_1_1, Some("erin"), Some("sesame"));
    Packet::Connect(Box::new(connect))
        .encode(V3_1_1, &mut bytes)
        .unwrap();
    let subscribe = subscribe_packet(1, &[("t", sub_opts(roost::protocol::QoS::AtMostOnce))]);
    Packet::Subscribe(subscribe)
        .encode(V3_1_1, &mut bytes)
        .unwrap();
    c.send_bytes(&bytes).await;
    assert!(matches!(c.recv().await, Packet::ConnAck(a) if a.reason == ReasonCode::SUCCESS));
    assert!(matches!(c.recv().await, Packet::SubAck(_)));
}
