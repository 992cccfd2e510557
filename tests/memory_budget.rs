//! `limits.max_memory_bytes`: what the sessions' queues may hold in memory, all together. Over
//! it a persistent session's QoS 1/2 messages wait on disk only (a real redb file in a
//! temporary directory) and arrive whole and in order; without a store they are dropped, and
//! counted by cause.

mod support;

use roost::Metrics;
use roost::config::{Config, SyncMode};
use roost::protocol::ProtocolVersion::V5;
use roost::protocol::{Packet, Publish, QoS};
use std::path::{Path, PathBuf};
use support::*;

const BUDGET: u64 = 1 << 20;
/// What one queued message of `PAYLOAD` bytes counts (its payload and 64 bytes).
const PAYLOAD: usize = 1024;
const COST: usize = PAYLOAD + 64;
const MESSAGES: u16 = 2_000;
/// What a retained message of `PAYLOAD` bytes on a topic of up to 6 bytes counts in memory
/// (`broker/retained.rs`: topic, payload and 750 bytes).
const RETAINED: usize = PAYLOAD + 6 + 750;
/// What the topics of `MESSAGES` retained messages count beyond the budget at most: each topic
/// (`r/` and up to four digits) and 288 bytes, its node in the tree.
const INDEX: usize = MESSAGES as usize * (6 + 288);

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("roost-budget-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn budgeted(store: Option<(&Path, SyncMode)>) -> impl FnOnce(&mut Config) + use<> {
    let store = store.map(|(d, sync)| (d.to_path_buf(), sync));
    move |c: &mut Config| {
        c.limits.max_memory_bytes = BUDGET;
        c.sessions.max_queued_messages = 10_000;
        if let Some((dir, sync)) = store {
            c.persistence.enabled = true;
            c.persistence.dir = dir;
            c.persistence.sync = sync;
            c.persistence.sync_interval_ms = 20;
        }
    }
}

fn lasting(client_id: &str) -> roost::protocol::Connect {
    let mut c = connect_packet(V5, client_id, false);
    c.properties.make_mut().session_expiry_interval = Some(3600);
    c
}

/// Message `i`: its number, padded to `PAYLOAD` bytes.
fn payload(i: u16) -> Vec<u8> {
    let mut p = format!("m{i}:").into_bytes();
    p.resize(PAYLOAD, b'.');
    p
}

fn numbers(got: &[Publish]) -> Vec<u16> {
    got.iter()
        .map(|p| {
            let s = std::str::from_utf8(&p.payload).unwrap();
            s[1..s.find(':').unwrap()].parse().unwrap()
        })
        .collect()
}

/// Leaves a persistent session `id` subscribed to `n/#` at `qos`.
async fn leave_subscribed(addr: std::net::SocketAddr, id: &str, qos: QoS) {
    let (mut c, _) = Raw::connect_with(addr, lasting(id)).await;
    c.subscribe("n/#", qos).await;
    c.disconnect().await;
}

/// Resumes the persistent session `id` with `connect` and takes everything it has.
async fn resume(addr: std::net::SocketAddr, connect: roost::protocol::Connect) -> Vec<Publish> {
    let (mut c, ack) = Raw::connect_with(addr, connect).await;
    assert!(ack.session_present);
    let got = c.drain().await;
    c.disconnect().await;
    got
}

/// Subscribes a new session to `r/#` and takes the retained messages it is sent.
async fn subscribe_retained(addr: std::net::SocketAddr) -> Vec<Publish> {
    let mut s = Raw::connect(addr, V5, "sub", true).await;
    s.subscribe("r/#", QoS::AtLeastOnce).await;
    let got = s.drain().await;
    s.disconnect().await;
    got
}

/// Publishes `MESSAGES` messages to `n/0`..`n/2` at QoS 1 and 2 by turns, 100 at a time
/// before reading their acknowledgements.
async fn publish_all(addr: std::net::SocketAddr) {
    publish_each(addr, |i| format!("n/{}", i % 3), false).await;
}

/// Publishes `MESSAGES` messages, message `i` to `topic(i)`, as [`publish_all`] does.
async fn publish_each(addr: std::net::SocketAddr, topic: impl Fn(u16) -> String, retain: bool) {
    let mut p = Raw::connect(addr, V5, "pub", true).await;
    for start in (0..MESSAGES).step_by(100) {
        let end = (start + 100).min(MESSAGES);
        for i in start..end {
            let qos = if i % 2 == 0 {
                QoS::AtLeastOnce
            } else {
                QoS::ExactlyOnce
            };
            p.publish(&topic(i), &payload(i), qos, retain, i + 1).await;
        }
        let mut answered = start;
        while answered < end {
            match p.recv().await {
                Packet::PubAck(a) => assert!(!a.reason.is_error(), "{a:?}"),
                Packet::PubRec(r) => {
                    assert!(!r.reason.is_error(), "{r:?}");
                    p.send(&Packet::PubRel(roost::protocol::PubResp::new(r.packet_id)))
                        .await;
                }
                Packet::PubComp(_) => continue,
                other => panic!("expected PUBACK, PUBREC or PUBCOMP, got {other:?}"),
            }
            answered += 1;
        }
    }
    // The PUBCOMPs of the QoS 2 ones, and nothing else.
    while let Some(packet) = p.try_recv_for(std::time::Duration::from_millis(300)).await {
        assert!(matches!(packet, Packet::PubComp(_)), "{packet:?}");
    }
    p.disconnect().await;
}

#[tokio::test]
async fn over_the_budget_a_persistent_sessions_messages_wait_on_disk_and_arrive_in_order() {
    for sync in [SyncMode::Always, SyncMode::Periodic] {
        let d = dir(&format!("spill-{sync:?}"));
        let b = start_with(budgeted(Some((&d, sync)))).await;
        leave_subscribed(b.addr, "phone", QoS::AtLeastOnce).await;
        leave_subscribed(b.addr, "tablet", QoS::ExactlyOnce).await;
        publish_all(b.addr).await;

        let broker = b.server.broker();
        let metrics = broker.metrics();
        let spilled = Metrics::get(&metrics.messages_spilled);
        // Two sessions of 2,000 messages of 1 KiB: 4.3 MB counted, four times the budget.
        assert!(spilled > 2_000, "{sync:?}: {spilled} held on disk");
        assert_eq!(Metrics::get(&metrics.messages_dropped), 0, "{sync:?}");
        let used = broker.queued_memory_bytes();
        assert!(
            used <= BUDGET as usize + COST,
            "{sync:?}: {used} bytes counted in memory"
        );
        let want: Vec<u16> = (0..MESSAGES).collect();
        let got = resume(b.addr, lasting("phone")).await;
        assert_eq!(numbers(&got), want, "{sync:?}: every one, in order");
        assert!(got.iter().all(|m| m.payload.len() == PAYLOAD && !m.dup));
        assert!(
            broker.queued_memory_bytes() < used,
            "{sync:?}: what was taken out is counted no more"
        );

        // What waits on disk survives a restart too.
        b.server.shutdown().await;
        let b = start_with(budgeted(Some((&d, sync)))).await;
        let got = resume(b.addr, lasting("tablet")).await;
        assert_eq!(numbers(&got), want, "{sync:?}: tablet after a restart");
        let qos: Vec<QoS> = got.iter().map(|m| m.qos).collect();
        assert!(
            qos.iter().enumerate().all(|(i, q)| *q
                == if i % 2 == 0 {
                    QoS::AtLeastOnce
                } else {
                    QoS::ExactlyOnce
                }),
            "{sync:?}: each at the QoS it was published with"
        );
        b.server.shutdown().await;
        let summary = roost::store::check(&d).unwrap();
        assert!(
            summary.contains("0 queued or in-flight deliveries of 0 stored messages"),
            "{sync:?}: {summary}"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }
}

#[tokio::test]
async fn over_the_budget_without_a_store_new_messages_are_dropped_and_counted() {
    let b = start_with(budgeted(None)).await;
    leave_subscribed(b.addr, "phone", QoS::AtLeastOnce).await;
    publish_all(b.addr).await;

    let broker = b.server.broker();
    let metrics = broker.metrics();
    let dropped = Metrics::get(&metrics.dropped_memory);
    let kept = usize::from(MESSAGES) - dropped as usize;
    // The budget holds what fits in it, and not one message more.
    assert_eq!(kept, (BUDGET as usize).div_ceil(COST), "dropped {dropped}");
    assert_eq!(Metrics::get(&metrics.messages_dropped), dropped);
    assert_eq!(Metrics::get(&metrics.dropped_queue_full), 0);
    assert_eq!(Metrics::get(&metrics.messages_spilled), 0);
    let got = resume(b.addr, lasting("phone")).await;
    let want: Vec<u16> = (0..kept as u16).collect();
    assert_eq!(numbers(&got), want, "the first ones, in order");
    // Taken out and acknowledged: the budget is free again, and new messages are taken.
    assert_eq!(broker.queued_memory_bytes(), 0);
}

#[tokio::test]
async fn a_budget_below_one_mebibyte_is_refused_at_start_up_naming_the_key() {
    let e = Config::from_toml("[limits]\nmax_memory_bytes = 1000\n")
        .and_then(|c| c.validate().map(|()| c))
        .unwrap_err()
        .to_string();
    assert!(e.contains("limits.max_memory_bytes"), "{e}");
    assert!(e.contains("1048576"), "{e}");
    let c = Config::from_toml("[limits]\nmax_memory_bytes = 0\n").unwrap();
    assert!(c.validate().is_ok(), "0 = no limit");
}

#[tokio::test]
async fn retained_messages_over_the_budget_stay_on_disk_and_are_sent_whole() {
    let d = dir("retained");
    let b = start_with(budgeted(Some((&d, SyncMode::Always)))).await;
    publish_each(b.addr, |i| format!("r/{i}"), true).await;
    let broker = b.server.broker();
    let used = broker.queued_memory_bytes();
    // 2,000 retained messages of 1 KiB: 3.5 MB counted, over three times the budget. Over
    // it, a message goes to disk only once the writer has committed it, seen at the next
    // retained message or subscription: what the last two rounds of 100 published is over the
    // budget here. Each topic stays in memory, with or without its message (`INDEX` each).
    assert!(
        used <= BUDGET as usize + 200 * RETAINED + INDEX,
        "{used} bytes counted in memory"
    );

    let mut want: Vec<u16> = (0..MESSAGES).collect();
    // In topic order: r/0, r/1, r/10, r/100, ...
    want.sort_by_key(|i| i.to_string());
    let got = subscribe_retained(b.addr).await;
    assert_eq!(numbers(&got), want, "every one, whole");
    assert!(got.iter().all(|m| m.retain && m.payload.len() == PAYLOAD));
    let after = broker.queued_memory_bytes();
    assert!(
        after <= BUDGET as usize + INDEX,
        "{after} after the subscription"
    );

    // At start-up, those beyond half the budget stay on disk.
    b.server.shutdown().await;
    let b = start_with(budgeted(Some((&d, SyncMode::Always)))).await;
    let used = b.server.broker().queued_memory_bytes();
    assert!(
        used <= BUDGET as usize / 2 + RETAINED + INDEX,
        "{used} bytes counted after the restart"
    );
    let got = subscribe_retained(b.addr).await;
    assert_eq!(numbers(&got), want, "every one, after a restart");
    assert!(got.iter().all(|m| m.retain && m.payload.len() == PAYLOAD));
    b.server.shutdown().await;
    std::fs::remove_dir_all(&d).unwrap();
}

/// A session resumed without an expiry stops being persistent: its record goes at once (a
/// crash must not bring it back), its rows when it ends; meanwhile it reads what waited on
/// disk, and every message still arrives, once.
#[tokio::test]
async fn a_session_resumed_without_expiry_still_gets_what_waited_on_disk() {
    let d = dir("unkeep");
    let b = start_with(budgeted(Some((&d, SyncMode::Always)))).await;
    leave_subscribed(b.addr, "phone", QoS::AtLeastOnce).await;
    publish_all(b.addr).await;
    assert!(Metrics::get(&b.server.broker().metrics().messages_spilled) > 0);
    // Clean Start 0 and no Session Expiry Interval: resumed, to end with this connection.
    let got = resume(b.addr, connect_packet(V5, "phone", false)).await;
    assert_eq!(numbers(&got), (0..MESSAGES).collect::<Vec<_>>());
    assert_eq!(
        Metrics::get(&b.server.broker().metrics().messages_dropped),
        0
    );
    b.server.shutdown().await;
    let summary = roost::store::check(&d).unwrap();
    assert!(
        summary.contains("0 persistent sessions")
            && summary.contains("0 queued or in-flight deliveries of 0 stored messages")
            && !summary.contains("ids of no session"),
        "{summary}"
    );
    std::fs::remove_dir_all(&d).unwrap();
}
