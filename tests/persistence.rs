//! `[persistence]`: what survives a restart of the server, in this process, on a real redb file
//! in a temporary directory. So far: retained messages (issue 17 adds sessions, queues and
//! in-flight messages).

mod support;

use roost::config::{Config, SyncMode};
use roost::protocol::ProtocolVersion::V5;
use roost::protocol::{ByteStr, Packet, QoS, ReasonCode};
use std::path::{Path, PathBuf};
use support::*;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("roost-persist-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn persisting(dir: &Path, sync: SyncMode) -> impl FnOnce(&mut Config) + use<> {
    let dir = dir.to_path_buf();
    move |c: &mut Config| {
        c.persistence.enabled = true;
        c.persistence.dir = dir;
        c.persistence.sync = sync;
        c.persistence.sync_interval_ms = 50;
    }
}

#[tokio::test]
async fn retained_messages_survive_a_restart_with_their_properties() {
    for sync in [SyncMode::Always, SyncMode::Periodic] {
        let d = dir(&format!("retained-{sync:?}"));
        let b = start_with(persisting(&d, sync)).await;
        let mut p = Raw::connect(b.addr, V5, "publisher", true).await;
        p.publish_acked("a/1", b"one", QoS::AtLeastOnce, true, 1)
            .await;
        let mut two = publish_packet("a/2", b"two", QoS::AtLeastOnce, true, 2);
        {
            let props = two.properties.make_mut();
            props.content_type = Some(ByteStr::from_static("text/plain").unwrap());
            props.message_expiry_interval = Some(3600);
            props.user_properties.push((
                ByteStr::from_static("k").unwrap(),
                ByteStr::from_static("v").unwrap(),
            ));
        }
        p.send(&Packet::Publish(two)).await;
        assert!(matches!(p.recv().await, Packet::PubAck(a) if a.packet_id == 2));
        p.publish_acked("a/3", b"three", QoS::AtLeastOnce, true, 3)
            .await;
        // Cleared: an empty retained PUBLISH deletes the topic's message.
        p.publish_acked("a/3", b"", QoS::AtLeastOnce, true, 4).await;
        b.server.shutdown().await;

        let b = start_with(persisting(&d, sync)).await;
        let mut s = Raw::connect(b.addr, V5, "subscriber", true).await;
        s.subscribe("a/#", QoS::AtLeastOnce).await;
        let got = s.drain().await;
        assert_eq!(payloads(&got), ["one", "two"], "{sync:?}");
        assert!(got.iter().all(|m| m.retain), "{sync:?}: sent as retained");
        let two = &got[1];
        assert_eq!(
            two.properties.content_type.as_deref(),
            Some("text/plain"),
            "{sync:?}"
        );
        assert_eq!(two.properties.user_properties.len(), 1, "{sync:?}");
        let left = two.properties.message_expiry_interval.unwrap();
        assert!((3590..=3600).contains(&left), "{sync:?}: expiry {left}");
        b.server.shutdown().await;
        std::fs::remove_dir_all(&d).unwrap();
    }
}

#[tokio::test]
async fn a_damaged_store_stops_start_up_and_says_what_to_do() {
    let d = dir("damaged");
    std::fs::create_dir_all(&d).unwrap();
    let file = d.join(roost::store::FILE_NAME);
    std::fs::write(&file, b"this is not a store, and it must not be emptied").unwrap();
    let mut config = Config {
        listeners: vec![roost::config::Listener::new("127.0.0.1:0".parse().unwrap())],
        ..Config::default()
    };
    persisting(&d, SyncMode::Always)(&mut config);
    let e = match roost::Server::start(config).await {
        Ok(_) => panic!("started on a damaged store"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.starts_with("persistence: cannot open the store") && e.contains("roost.redb"),
        "{e}"
    );
    assert!(e.contains("move it aside"), "says what to do: {e}");
    assert_eq!(
        std::fs::read(&file).unwrap(),
        b"this is not a store, and it must not be emptied"
    );
    // `roost store check` says the same.
    let e = roost::store::check(&d).unwrap_err().to_string();
    assert!(e.contains("cannot open the store"), "{e}");
    std::fs::remove_dir_all(&d).unwrap();
}

#[tokio::test]
async fn store_check_counts_what_a_store_holds() {
    let d = dir("check");
    let b = start_with(persisting(&d, SyncMode::Always)).await;
    let mut p = Raw::connect(b.addr, V5, "publisher", true).await;
    for i in 0..3u16 {
        p.publish_acked(&format!("c/{i}"), b"x", QoS::AtLeastOnce, true, i + 1)
            .await;
    }
    b.server.shutdown().await;
    let summary = roost::store::check(&d).unwrap();
    assert!(summary.contains("3 retained messages"), "{summary}");
    std::fs::remove_dir_all(&d).unwrap();
}

#[tokio::test]
async fn without_persistence_nothing_is_written() {
    let d = dir("off");
    for enabled_but_off in [false, true] {
        let b = start_with(|c| {
            c.persistence.enabled = enabled_but_off;
            c.persistence.sync = SyncMode::Off;
            c.persistence.dir = d.clone();
        })
        .await;
        let mut p = Raw::connect(b.addr, V5, "publisher", true).await;
        let r = p
            .publish_acked("r/1", b"x", QoS::AtLeastOnce, true, 1)
            .await;
        assert_eq!(r, ReasonCode::NO_MATCHING_SUBSCRIBERS);
        b.server.shutdown().await;
        assert!(!d.exists(), "no store directory made");
    }
}
