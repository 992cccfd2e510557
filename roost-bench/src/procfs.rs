//! What /proc says about a process: CPU time (utime + stime), resident memory (now and peak),
//! the open-file limit. Linux only; reads files, never writes.

use anyhow::{Context, Result, bail};
use std::time::Instant;

/// Clock ticks per second of /proc/<pid>/stat. Linux reports these fields in USER_HZ, which
/// is 100 on every architecture it exposes to user space (x86, arm64, ...); asking `sysconf`
/// would need libc for one constant.
const TICKS_PER_SEC: f64 = 100.0;

/// Which process: ourselves or another one by pid.
#[derive(Debug, Clone, Copy)]
pub enum Proc {
    SelfProc,
    Pid(u32),
}

impl Proc {
    fn path(self, file: &str) -> String {
        match self {
            Self::SelfProc => format!("/proc/self/{file}"),
            Self::Pid(pid) => format!("/proc/{pid}/{file}"),
        }
    }

    /// User plus system CPU time so far, in clock ticks (all threads).
    pub fn cpu_ticks(self) -> Result<u64> {
        let path = self.path("stat");
        let stat = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        // The command name (field 2) is in parentheses and may hold spaces; count after it.
        let after = stat
            .rfind(')')
            .map(|i| &stat[i + 1..])
            .with_context(|| format!("{path}: no command name"))?;
        let fields: Vec<&str> = after.split_whitespace().collect();
        // Fields 14 and 15 of the whole line are 12 and 13 after "pid (comm)".
        let field = |i: usize| -> Result<u64> {
            fields
                .get(i)
                .and_then(|f| f.parse().ok())
                .with_context(|| format!("{path}: field {} is not a number", i + 3))
        };
        Ok(field(11)? + field(12)?)
    }

    /// Resident set size (VmRSS) in KiB.
    pub fn rss_kib(self) -> Result<u64> {
        self.status_kib("VmRSS")
    }

    /// The highest resident set size since the process started (VmHWM) in KiB: catches a
    /// peak between two readings of VmRSS.
    pub fn peak_rss_kib(self) -> Result<u64> {
        self.status_kib("VmHWM")
    }

    /// A "Name:   123 kB" line of /proc/<pid>/status.
    fn status_kib(self, name: &str) -> Result<u64> {
        let path = self.path("status");
        let status =
            std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("{path}: no {name} line"))
    }

    /// The soft limit on open files ("Max open files"), `None` if unlimited or unreadable.
    pub fn open_file_limit(self) -> Option<u64> {
        let limits = std::fs::read_to_string(self.path("limits")).ok()?;
        let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
        line.split_whitespace().nth(3)?.parse().ok()
    }
}

/// CPU use of one process over an interval, as a percent of one core.
#[derive(Debug, Clone, Copy)]
pub struct CpuMeter {
    proc: Proc,
    ticks: u64,
    at: Instant,
}

impl CpuMeter {
    /// Starts measuring now.
    pub fn start(proc: Proc) -> Result<Self> {
        Ok(Self {
            proc,
            ticks: proc.cpu_ticks()?,
            at: Instant::now(),
        })
    }

    /// Percent of one core used since `start` (200 = two cores busy).
    pub fn percent(&self) -> Result<f64> {
        let busy = self.busy_secs()?;
        let wall = self.at.elapsed().as_secs_f64();
        if wall <= 0.0 {
            bail!("no time has passed");
        }
        Ok(busy / wall * 100.0)
    }

    /// CPU seconds used since `start`, for a share of a shorter interval than `percent`'s.
    pub fn busy_secs(&self) -> Result<f64> {
        let ticks = self.proc.cpu_ticks()?;
        Ok((ticks.saturating_sub(self.ticks)) as f64 / TICKS_PER_SEC)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_our_own_figures() {
        let me = Proc::SelfProc;
        let rss = me.rss_kib().unwrap();
        assert!(rss > 0);
        // Read after: the peak only grows.
        assert!(me.peak_rss_kib().unwrap() >= rss);
        let meter = CpuMeter::start(me).unwrap();
        let t = Instant::now();
        let mut x = 0u64;
        while t.elapsed().as_millis() < 50 {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(x > 0);
        let pct = meter.percent().unwrap();
        assert!((0.0..=400.0).contains(&pct), "{pct}");
    }
}
