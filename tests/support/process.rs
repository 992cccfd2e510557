//! The `roost` binary as a child process: started on a command line, its address read from its
//! log, killed (SIGKILL) when dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The broker binary under test: `ROOST_BIN` if set (CI points it at the release build), else
/// the one Cargo built for these tests.
pub fn binary() -> String {
    std::env::var("ROOST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_roost").to_string())
}

/// The broker's process, killed if still running when dropped.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `command` (the binary and its arguments) and returns it with the address it logs it
/// listens on. Its log (stdout and stderr) is read to the end so it never blocks on a full
/// pipe, and appended to `log` if given.
pub fn spawn(mut command: Command, log: Option<PathBuf>) -> (Process, SocketAddr) {
    let mut child = command
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the roost binary starts");
    let (tx, rx) = std::sync::mpsc::channel();
    for pipe in [
        Box::new(child.stdout.take().expect("piped")) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().expect("piped")),
    ] {
        let (tx, log) = (tx.clone(), log.clone());
        std::thread::spawn(move || {
            let mut log = log.and_then(|p| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .ok()
            });
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if let Some(f) = log.as_mut() {
                    let _ = writeln!(f, "{line}");
                }
                let addr = line
                    .contains("listening for MQTT over")
                    .then(|| {
                        line.split("addr=")
                            .nth(1)?
                            .split_whitespace()
                            .next()?
                            .parse()
                            .ok()
                    })
                    .flatten();
                if let Some(addr) = addr {
                    let _ = tx.send(addr);
                }
            }
        });
    }
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the broker logs the address it listens on");
    (Process(child), addr)
}
