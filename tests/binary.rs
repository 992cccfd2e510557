//! The `roost` binary itself, as `cargo run --release` starts it: the default config on an
//! ephemeral port, a client served, transparent huge pages off (docs/decisions.md,
//! "No transparent huge pages for the broker"), the open-file limit raised and the descriptor table sized at start
//! ("Descriptor table"), and a clean exit on SIGINT.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;
use support::frame;
// The broker's process, killed if a test fails before it exits by itself.
use support::process::{Process as Broker, binary};

/// The binary with the shipped defaults on port 0; returns it and the address it bound.
fn start() -> (Broker, SocketAddr) {
    start_with(|_| {})
}

/// As `start`, with `adjust` applied to the command first.
fn start_with(adjust: impl FnOnce(&mut Command)) -> (Broker, SocketAddr) {
    start_config(
        concat!(env!("CARGO_MANIFEST_DIR"), "/config/roost.toml"),
        adjust,
    )
}

/// As `start_with`, with the configuration file `config`, and a store of its own (the shipped
/// configuration persists, in `data` under the working directory, which every test shares).
fn start_config(config: &str, adjust: impl FnOnce(&mut Command)) -> (Broker, SocketAddr) {
    static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let data = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("binary-data-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    start_config_as_is(config, |c| {
        adjust(c);
        c.arg("--data-dir").arg(&data);
    })
}

/// As `start_config`, with the store where `config` puts it.
fn start_config_as_is(config: &str, adjust: impl FnOnce(&mut Command)) -> (Broker, SocketAddr) {
    let mut command = Command::new(binary());
    adjust(&mut command);
    command.args(["-c", config]).args(["--port", "0"]);
    support::process::spawn(command, None)
}

#[cfg(target_os = "linux")]
#[test]
fn the_binary_serves_with_huge_pages_off_and_exits_cleanly_on_sigint() {
    let (mut broker, addr) = start();
    let child = &mut broker.0;

    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    assert!(
        status
            .lines()
            .any(|l| l.split_whitespace().eq(["THP_enabled:", "0"])),
        "transparent huge pages are still on:\n{status}"
    );

    // A 3.1.1 CONNECT (clean session, keep alive 0, client id "b") gets CONNACK accepted.
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&[
        0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 0, 0, 1, b'b',
    ])
    .unwrap();
    let mut connack = [0u8; 4];
    s.read_exact(&mut connack).unwrap();
    assert_eq!(connack, [0x20, 2, 0, 0]);

    // SAFETY: kill(2) with the pid of our own child and a signal number; no memory is shared.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let exit = child.wait().unwrap();
    assert!(exit.success(), "roost exited with {exit} on SIGINT");
}

/// The soft and hard "Max open files" of process `pid`, from /proc.
#[cfg(target_os = "linux")]
fn open_file_limits(pid: u32) -> (u64, u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("/proc/PID/limits lists Max open files");
    let mut values = line["Max open files".len()..]
        .split_whitespace()
        .map(|v| v.parse().expect("a numeric open-file limit"));
    (values.next().unwrap(), values.next().unwrap())
}

#[cfg(target_os = "linux")]
#[test]
fn the_binary_raises_its_open_file_limit_and_sizes_its_descriptor_table() {
    let hard = open_file_limits(std::process::id()).1;
    let low = 64;
    assert!(
        hard > low,
        "this test needs a hard open-file limit above {low}, not {hard}"
    );
    let (broker, addr) = start_with(|c| {
        use std::os::unix::process::CommandExt;
        // SAFETY: between fork and exec only setrlimit runs, a bare syscall wrapper: nothing
        // allocates or takes a lock, and the closure holds two copied integers.
        unsafe {
            c.pre_exec(move || {
                let lim = libc::rlimit {
                    rlim_cur: low,
                    rlim_max: hard,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    });
    let pid = broker.0.id();
    assert_eq!(
        open_file_limits(pid),
        (hard, hard),
        "the soft limit was not raised"
    );
    let table = roost::fd_table::table_size(pid).expect("FDSize in /proc/PID/status");
    let want = hard.min(roost::fd_table::RESERVE_MAX);
    assert!(
        table >= want,
        "descriptor table holds {table}, want at least {want}"
    );
    // And it serves.
    TcpStream::connect(addr).expect("the broker accepts a connection");
}

/// Reads one whole packet; returns its first byte and body.
fn read_packet(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut first = [0u8; 1];
    s.read_exact(&mut first).expect("a packet");
    let (mut len, mut shift) = (0usize, 0);
    loop {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).expect("a remaining length");
        len |= usize::from(b[0] & 0x7F) << shift;
        shift += 7;
        if b[0] & 0x80 == 0 {
            break;
        }
    }
    let mut body = vec![0; len];
    s.read_exact(&mut body).expect("the packet body");
    (first[0], body)
}

/// Subscribes `filter` as client `id` (3.1.1 for level 4, 5.0 for level 5) and returns the
/// SUBACK's reason code; the socket is dropped without DISCONNECT.
fn subscribe_and_drop(addr: SocketAddr, level: u8, id: &str, filter: &str) -> u8 {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // CONNECT, clean session, keep alive 0 (5.0: no properties).
    let mut connect = vec![0, 4, b'M', b'Q', b'T', b'T', level, 0x02, 0, 0];
    if level == 5 {
        connect.push(0);
    }
    connect.extend_from_slice(&(id.len() as u16).to_be_bytes());
    connect.extend_from_slice(id.as_bytes());
    s.write_all(&frame(0x10, &connect)).unwrap();
    assert_eq!(read_packet(&mut s).0, 0x20, "CONNACK");
    let mut subscribe = vec![0, 1];
    if level == 5 {
        subscribe.push(0);
    }
    subscribe.extend_from_slice(&(filter.len() as u16).to_be_bytes());
    subscribe.extend_from_slice(filter.as_bytes());
    subscribe.push(0x01);
    s.write_all(&frame(0x82, &subscribe)).unwrap();
    let (first, body) = read_packet(&mut s);
    assert_eq!(first, 0x90, "SUBACK");
    *body.last().expect("a reason code")
}

/// Asserts that the broker still serves a new client and has not exited.
fn still_serves(broker: &mut Broker, addr: SocketAddr) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&frame(
        0x10,
        &[0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 0, 0, 1, b'c'],
    ))
    .unwrap();
    assert_eq!(read_packet(&mut s), (0x20, vec![0, 0]));
    assert!(broker.0.try_wait().unwrap().is_none(), "the broker exited");
}

/// Issue 14, section 0: a SUBSCRIBE to "a/" 7,000 times (14 KB) followed by a dropped socket
/// once aborted the whole broker with a stack overflow. With the shipped configuration the
/// filter is refused at the door (SUBACK 0x80 in 3.1.1, 0x8F in 5.0); with the level limit
/// raised it is granted, and removing it when the socket drops no longer recurses.
#[test]
fn the_binary_survives_a_filter_seven_thousand_levels_deep() {
    let filter = "a/".repeat(7_000);
    let (mut broker, addr) = start();
    for (level, failure) in [(4u8, 0x80), (5, 0x8F)] {
        assert_eq!(subscribe_and_drop(addr, level, "deep", &filter), failure);
    }
    still_serves(&mut broker, addr);

    let dir = std::env::temp_dir().join(format!("roost-deep-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("roost.toml");
    let shipped = include_str!("../config/roost.toml");
    let raised = shipped
        .replace("max_topic_levels = 200", "max_topic_levels = 100000")
        .replace("max_topic_length = 4096", "max_topic_length = 65535");
    assert_eq!(
        raised.len(),
        shipped.len() + 4,
        "the shipped config sets max_topic_levels = 200 and max_topic_length = 4096"
    );
    std::fs::write(&config, raised).unwrap();
    let (mut broker, addr) = start_config(config.to_str().unwrap(), |_| {});
    for level in [4u8, 5] {
        assert_eq!(subscribe_and_drop(addr, level, "deep", &filter), 0x01);
    }
    still_serves(&mut broker, addr);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `config/examples/auth.toml` as the README shows it: the user `demo` (password `demo`) gets
/// in and may publish under `demo/`, not elsewhere; a wrong password is refused.
#[test]
fn the_auth_example_lets_demo_in_and_only_under_demo() {
    let (_broker, addr) = start_config(
        concat!(env!("CARGO_MANIFEST_DIR"), "/config/examples/auth.toml"),
        |c| {
            c.current_dir(env!("CARGO_MANIFEST_DIR"));
        },
    );
    let connect = |password: &[u8]| {
        let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 5, 0xC2, 0, 0, 0, 0, 1, b'e'];
        body.extend_from_slice(&[0, 4, b'd', b'e', b'm', b'o', 0, password.len() as u8]);
        body.extend_from_slice(password);
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(&frame(0x10, &body)).unwrap();
        let (kind, connack) = read_packet(&mut s);
        assert_eq!(kind, 0x20);
        (s, connack[1])
    };
    assert_eq!(connect(b"wrong").1, 0x86, "Bad User Name or Password");
    let (mut s, reason) = connect(b"demo");
    assert_eq!(reason, 0);
    let publish = |topic: &[u8], id: u8| {
        let mut body = vec![0, topic.len() as u8];
        body.extend_from_slice(topic);
        body.extend_from_slice(&[0, id, 0, b'h', b'i']);
        frame(0x32, &body)
    };
    s.write_all(&publish(b"demo/x", 1)).unwrap();
    // Allowed: 0x10, No matching subscribers.
    assert_eq!(read_packet(&mut s), (0x40, vec![0, 1, 0x10]));
    s.write_all(&publish(b"other/x", 2)).unwrap();
    assert_eq!(
        read_packet(&mut s),
        (0x40, vec![0, 2, 0x87]),
        "Not authorized"
    );
}

/// `roost certs` writes what `config/examples/mtls.toml` names, and the binary serves mutual
/// TLS with it: a client with the client certificate gets a CONNACK, one without gets no TLS
/// session; SIGHUP reloads rather than ends the process.
#[cfg(target_os = "linux")]
#[test]
fn roost_certs_and_the_mtls_example_work_together() {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use std::sync::Arc;

    let dir = std::env::temp_dir().join(format!("roost-bin-mtls-{}", std::process::id()));
    let status = Command::new(binary())
        .args(["certs", "--out"])
        .arg(dir.join("certs"))
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let (mut broker, addr) = start_config(
        concat!(env!("CARGO_MANIFEST_DIR"), "/config/examples/mtls.toml"),
        |c| {
            c.current_dir(&dir);
        },
    );
    let certs = dir.join("certs");
    let client = |with_cert: bool| {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(certs.join("ca.pem")).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = if with_cert {
            let chain = CertificateDer::pem_file_iter(certs.join("client.pem"))
                .unwrap()
                .map(|c| c.unwrap())
                .collect();
            let key = PrivateKeyDer::from_pem_file(certs.join("client.key")).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        } else {
            builder.with_no_client_auth()
        };
        let name = "localhost".try_into().unwrap();
        let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        // A 3.1.1 CONNECT, client id "m"; what comes back.
        tls.write_all(&[
            0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 60, 0, 1, b'm',
        ])?;
        let mut connack = [0u8; 4];
        tls.read_exact(&mut connack)?;
        Ok::<_, std::io::Error>(connack)
    };
    assert_eq!(client(true).unwrap(), [0x20, 2, 0, 0]);
    assert!(client(false).is_err(), "no client certificate, no session");
    // SAFETY: kill(2) with the pid of our own child and a signal number; no memory is shared.
    assert_eq!(unsafe { libc::kill(broker.0.id() as i32, libc::SIGHUP) }, 0);
    assert_eq!(
        client(true).unwrap(),
        [0x20, 2, 0, 0],
        "still serving after SIGHUP"
    );
    assert!(broker.0.try_wait().unwrap().is_none());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `[persistence]` through the binary: a retained message kept across SIGINT, then `roost
/// store check`, `export` and `import` on the store it left.
#[cfg(target_os = "linux")]
#[test]
fn the_store_outlives_the_process_and_roost_store_reads_it() {
    let d = std::env::temp_dir().join(format!("roost-bin-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let data = d.join("data");
    let config = d.join("roost.toml");
    std::fs::write(
        &config,
        format!(
            "[[listeners]]\nbind = \"127.0.0.1:1883\"\n[persistence]\nenabled = true\ndir = \"{}\"\n",
            data.display()
        ),
    )
    .unwrap();
    let (mut broker, addr) = start_config_as_is(config.to_str().unwrap(), |_| {});
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&[
        0x10, 13, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 0, 0, 1, b'p',
    ])
    .unwrap();
    assert_eq!(read_packet(&mut s), (0x20, vec![0, 0]));
    // A retained QoS 1 PUBLISH to "kept", packet id 1, payload "hi".
    s.write_all(&frame(
        0x33,
        &[0, 4, b'k', b'e', b'p', b't', 0, 1, b'h', b'i'],
    ))
    .unwrap();
    assert_eq!(read_packet(&mut s), (0x40, vec![0, 1]));
    // SAFETY: kill(2) with the pid of our own child and a signal number; no memory is shared.
    assert_eq!(unsafe { libc::kill(broker.0.id() as i32, libc::SIGINT) }, 0);
    assert!(broker.0.wait().unwrap().success());

    let roost = |args: &[&str]| {
        let out = Command::new(binary()).args(args).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    let data_arg = data.to_str().unwrap();
    let (ok, said) = roost(&["store", "check", "--data-dir", data_arg]);
    assert!(ok && said.contains("1 retained messages"), "{said}");
    let export = d.join("export.jsonl");
    let (ok, said) = roost(&[
        "store",
        "export",
        export.to_str().unwrap(),
        "--data-dir",
        data_arg,
    ]);
    assert!(ok, "{said}");
    let lines = std::fs::read_to_string(&export).unwrap();
    assert!(lines.contains("\"topic\":\"kept\""), "{lines}");
    let other = d.join("other");
    let (ok, said) = roost(&[
        "store",
        "import",
        export.to_str().unwrap(),
        "--data-dir",
        other.to_str().unwrap(),
    ]);
    assert!(ok && said.contains("1 records imported"), "{said}");
    let (ok, said) = roost(&["store", "check", "--data-dir", other.to_str().unwrap()]);
    assert!(ok && said.contains("1 retained messages"), "{said}");
    // A directory with no store is said so, and none is made there.
    let (ok, said) = roost(&[
        "store",
        "check",
        "--data-dir",
        d.join("nothing").to_str().unwrap(),
    ]);
    assert!(!ok && said.contains("there is no store there"), "{said}");
    assert!(!d.join("nothing").exists());
    std::fs::remove_dir_all(&d).unwrap();
}
