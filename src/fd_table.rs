//! The process's file descriptors, made ready for many connections before any thread starts:
//! the soft open-file limit raised to the hard one, and the kernel's descriptor table sized for
//! them up front (docs/decisions.md, "Descriptor table").
//!
//! Linux grows a process's descriptor table by doubling it, and when the table is shared by
//! several threads each growth waits for an RCU grace period (`synchronize_rcu` in
//! `expand_fdtable`), 5-30 ms here, with the accepting thread asleep. While 18,000 clients
//! connected, Roost's worker stalled at the 256th, 512th, ... 16,384th connection, seven
//! stalls that held CONNACKs up to 28 ms; single-threaded Mosquitto grows its table without
//! the wait. Grown while the process still has one thread, the table costs no grace period.

/// The descriptor table is sized for at most this many: 512 KiB of kernel memory (8 bytes a
/// slot). A process allowed more grows its table past this as the kernel usually does.
pub const RESERVE_MAX: u64 = 1 << 16;

/// What [`prepare`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prepared {
    /// The soft open-file limit before.
    pub limit_before: u64,
    /// The soft open-file limit now.
    pub limit: u64,
    /// Descriptor slots reserved in the kernel's table.
    pub reserved: u64,
}

/// Raises the soft open-file limit to the hard one (as Go's runtime does: the low soft limit
/// exists for `select`, which nothing here uses) and sizes the descriptor table for
/// `min(limit, RESERVE_MAX)` descriptors. Call it before any thread starts; called later it
/// still works but pays one grace period. Failures leave things as they were: the broker
/// works without it, only with fewer connections or the stalls. Linux only: elsewhere it
/// does nothing and reports zeros.
pub fn prepare() -> Prepared {
    let limit_before = imp::soft_limit();
    let limit = imp::raise_soft_limit().unwrap_or(limit_before);
    let reserved = reserve(limit.min(RESERVE_MAX));
    Prepared {
        limit_before,
        limit,
        reserved,
    }
}

/// Sizes the descriptor table to hold at least `n` descriptors (1 to the soft limit); returns
/// `n`, or 0 if it could not (`n` out of range, no /dev/null, not Linux).
pub fn reserve(n: u64) -> u64 {
    if imp::reserve(n) { n } else { 0 }
}

/// How many descriptors process `pid`'s table holds now (`FDSize` in /proc/PID/status).
pub fn table_size(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("FDSize:"))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(target_os = "linux")]
mod imp {
    use std::os::fd::AsRawFd;

    fn get() -> Option<libc::rlimit> {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes only the struct it is given.
        (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0).then_some(lim)
    }

    pub fn soft_limit() -> u64 {
        get().map_or(0, |l| l.rlim_cur)
    }

    pub fn raise_soft_limit() -> Option<u64> {
        let mut lim = get()?;
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            // SAFETY: setrlimit reads only the struct it is given.
            if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
                return None;
            }
        }
        Some(lim.rlim_cur)
    }

    pub fn reserve(n: u64) -> bool {
        let Some(top) = n.checked_sub(1).and_then(|t| libc::c_int::try_from(t).ok()) else {
            return false;
        };
        let Ok(null) = std::fs::File::open("/dev/null") else {
            return false;
        };
        // The lowest free descriptor at or above `top`: the kernel first grows the table to
        // hold it. F_DUPFD, not dup2, so that a descriptor already open there is left alone.
        // SAFETY: fcntl on a descriptor we own; the copy is closed at once, and nothing else
        // knows its number.
        let copy = unsafe { libc::fcntl(null.as_raw_fd(), libc::F_DUPFD_CLOEXEC, top) };
        if copy < 0 {
            return false;
        }
        // SAFETY: `copy` was just opened here and is closed once.
        unsafe { libc::close(copy) };
        true
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    pub fn soft_limit() -> u64 {
        0
    }

    pub fn raise_soft_limit() -> Option<u64> {
        None
    }

    pub fn reserve(_n: u64) -> bool {
        false
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn prepare_leaves_the_soft_limit_at_the_hard_one() {
        let p = prepare();
        assert!(p.limit >= p.limit_before);
        assert_eq!(p.limit, imp::soft_limit());
        assert_eq!(p.reserved, p.limit.min(RESERVE_MAX));
    }

    #[test]
    fn nothing_is_reserved_past_the_limit() {
        // At the hard limit already, so that no other test can raise it under this one.
        let limit = imp::raise_soft_limit().expect("the open-file limit is readable");
        assert_eq!(reserve(limit + 1), 0);
        assert_eq!(reserve(0), 0);
    }
}
