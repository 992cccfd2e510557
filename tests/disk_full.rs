//! A full disk (issue 17), made real: the broker runs with a file size limit (RLIMIT_FSIZE, so
//! the kernel fails its writes past it, as a full disk fails them), and SIGXFSZ ignored. New
//! QoS 1/2 messages are refused with 0x97 while its store cannot write; what it acknowledged
//! before is kept; once the limit is lifted (prlimit on the running process) it writes again,
//! and after a SIGKILL and a restart every message it acknowledged is there.

#![cfg(target_os = "linux")]

mod support;

use roost::protocol::ProtocolVersion::V5;
use roost::protocol::{Packet, QoS, ReasonCode};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use support::process::{self, Process};
use support::*;

/// Starts the binary on `config`, its files limited to `limit` bytes if given.
fn start(config: &Path, limit: Option<u64>) -> (Process, SocketAddr) {
    let mut command = Command::new(process::binary());
    command.arg("-c").arg(config);
    if let Some(limit) = limit {
        // SAFETY: between fork and exec only async-signal-safe calls (signal, setrlimit).
        unsafe {
            command.pre_exec(move || {
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                let lim = libc::rlimit {
                    rlim_cur: limit,
                    rlim_max: libc::RLIM_INFINITY,
                };
                if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    process::spawn(command, Some(config.with_extension("log")))
}

/// The other client's messages are counted from here, beside the filler's.
const OTHER: u16 = 10_000;

/// Notes that the other client's message `id` was acknowledged.
fn acked_other(acked: &mut BTreeSet<u16>, id: u16) {
    acked.insert(OTHER + id);
}

/// The next packet within `wait`, or `None`. (`Raw::recv` gives up after [`WAIT`]: it is
/// called again in shorter turns.)
async fn next(c: &mut Raw, wait: Duration) -> Option<Packet> {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        let turn = left.min(WAIT / 2);
        if let Ok(p) = tokio::time::timeout(turn, c.recv()).await {
            return Some(p);
        }
    }
}

#[tokio::test]
async fn a_full_disk_refuses_new_qos1_with_0x97_and_loses_nothing_acknowledged() {
    let dir = std::env::temp_dir().join(format!("roost-diskfull-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("roost.toml");
    std::fs::write(
        &config,
        format!(
            "[[listeners]]\nbind = \"127.0.0.1:0\"\n\n[persistence]\nenabled = true\ndir = \
             {:?}\nsync = \"always\"\n",
            dir.join("data")
        ),
    )
    .unwrap();
    let (broker, addr) = start(&config, Some(2 << 20));
    let mut p = Raw::connect(addr, V5, "filler", true).await;
    let payload = vec![7u8; 64 * 1024];
    // Retained messages of 64 KiB, one at a time, until one is not acknowledged: its PUBACK
    // waits for a commit the full disk refuses.
    let mut acked = BTreeSet::new();
    let mut held = None;
    for id in 1..=400u16 {
        p.publish(&format!("d/{id}"), &payload, QoS::AtLeastOnce, true, id)
            .await;
        match next(&mut p, Duration::from_secs(2)).await {
            Some(Packet::PubAck(a)) if a.packet_id == id && !a.reason.is_error() => {
                acked.insert(id);
            }
            None => {
                held = Some(id);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    let held = held.expect("the store filled its 2 MiB");
    // Meanwhile another client's QoS 1 message is refused at once: 0x97, not acknowledged as
    // kept when it cannot be.
    let mut q = Raw::connect(addr, V5, "other", true).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut id = 1;
    loop {
        assert!(
            Instant::now() < deadline,
            "0x97 while the store cannot write"
        );
        let reason = q
            .publish_acked(&format!("o/{id}"), b"x", QoS::AtLeastOnce, true, id)
            .await;
        if reason == ReasonCode::QUOTA_EXCEEDED {
            break;
        }
        assert!(!reason.is_error(), "{reason:?}");
        acked_other(&mut acked, id);
        id += 1;
    }
    // Room again: the held acknowledgement comes, and new messages are taken.
    let pid = broker.0.id() as libc::pid_t;
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: prlimit with a valid pid and a limit read by the kernel only.
    let lifted =
        unsafe { libc::prlimit(pid, libc::RLIMIT_FSIZE, &unlimited, std::ptr::null_mut()) };
    assert_eq!(lifted, 0, "{}", std::io::Error::last_os_error());
    match next(&mut p, Duration::from_secs(20)).await {
        Some(Packet::PubAck(a)) if a.packet_id == held && !a.reason.is_error() => {
            acked.insert(held);
        }
        other => panic!("the held PUBACK once the disk has room, got {other:?}"),
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(Instant::now() < deadline, "the broker takes QoS 1 again");
        id += 1;
        let reason = q
            .publish_acked(&format!("o/{id}"), b"x", QoS::AtLeastOnce, true, id)
            .await;
        if !reason.is_error() {
            acked_other(&mut acked, id);
            break;
        }
    }
    // Killed, restarted without a limit: every acknowledged message is there.
    drop(p);
    drop(broker);
    let (_broker, addr) = start(&config, None);
    let mut s = Raw::connect(addr, V5, "reader", true).await;
    s.subscribe("+/#", QoS::AtLeastOnce).await;
    let got: BTreeSet<u16> = s
        .drain()
        .await
        .iter()
        .map(|m| match m.topic.split_once('/') {
            Some(("d", id)) => id.parse().expect("d/<id>"),
            Some(("o", id)) => OTHER + id.parse::<u16>().expect("o/<id>"),
            _ => panic!("{}", &*m.topic),
        })
        .collect();
    let lost: Vec<&u16> = acked.difference(&got).collect();
    assert!(lost.is_empty(), "acknowledged, then lost: {lost:?}");
    println!(
        "full disk: message {held} held until there was room, the other client's refused \
         with 0x97 meanwhile; all {} acknowledged messages kept",
        acked.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
