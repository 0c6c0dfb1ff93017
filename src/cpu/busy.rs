//! Is the machine oversubscribed? A waiter that spins (on a ring in
//! shared memory, or polling its sockets with `sched_yield`) wins when its
//! peer runs on another core and answers within the spin; when more
//! threads are runnable than there are cores, the peer may well be
//! waiting for the very core the spinner holds, and every spin takes cpu
//! time from a server or from other clients (with 128 CAPS clients on two
//! cores, the spinning clients starved the service and each other: issue
//! 17). The waits spin only while [`oversubscribed`] says no, and sleep at
//! once otherwise.
//!
//! The count of runnable threads is the kernel's (`/proc/loadavg`, the
//! fourth field: runnable/total, the reader included), read at most once
//! per [`REFRESH_NS`] by all the threads of a process together (the coarse
//! monotonic clock tells the time), or once per [`BUSY_REFRESH_NS`] while
//! the last read said oversubscribed. Reading it costs three system
//! calls: a client whose every round trip takes longer than that (64
//! clients asleep in turn on two cores) reads it once per round trip;
//! each of 128 clients reading it every 10 ms made 0.26 of the clients'
//! 2.26 system calls per round trip (`caps_scale`, issue 17).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// How long a verdict holds, in ns.
const REFRESH_NS: u64 = 10_000_000;
/// How long a verdict of "oversubscribed" holds: the waits sleep anyway
/// (one more sleep costs little), and the many processes of an
/// oversubscribed machine would each read the count every
/// [`REFRESH_NS`]. A machine that stops being oversubscribed has its
/// waits spin again within this time.
const BUSY_REFRESH_NS: u64 = 100_000_000;

/// The coarse clock's reading (ns) when `/proc/loadavg` was last read;
/// 0 before the first read.
static READ_AT: AtomicU64 = AtomicU64::new(0);
/// What that read said.
static BUSY: AtomicBool = AtomicBool::new(false);

/// Cores of the machine (online), the same scope as `/proc/loadavg`'s
/// count: a process confined to fewer by its affinity (`taskset`) still
/// shares them with the machine's other threads, and on one core a wait
/// that polls with `sched_yield` hands the core to its peer directly.
fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    // SAFETY: sysconf has no preconditions.
    *CORES.get_or_init(|| unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize)
}

fn coarse_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
        .max(1)
}

/// Runnable threads on the machine now (the caller included), from
/// `/proc/loadavg`; `None` if it cannot be read.
fn runnable() -> Option<usize> {
    let mut buf = [0u8; 128];
    // SAFETY: a NUL-terminated path; the descriptor is closed below and
    // `buf` is writable for its length.
    let n = unsafe {
        let fd = libc::open(c"/proc/loadavg".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return None;
        }
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
        n
    };
    if n <= 0 {
        return None;
    }
    running_of(&buf[..n as usize])
}

/// The runnable count of a `/proc/loadavg` line ("0.10 0.20 0.30 3/456 789").
fn running_of(line: &[u8]) -> Option<usize> {
    let field = std::str::from_utf8(line).ok()?.split_whitespace().nth(3)?;
    field.split('/').next()?.parse().ok()
}

/// `runnable` threads on the machine are too many to spin beside, for a
/// process on `cores` cores.
fn too_many(runnable: usize, cores: usize) -> bool {
    runnable > 2 * cores
}

/// Is a verdict `age` ns old (`busy`: it said oversubscribed) due to be
/// read again?
fn stale(age: u64, busy: bool) -> bool {
    age >= if busy { BUSY_REFRESH_NS } else { REFRESH_NS }
}

/// More than twice as many threads runnable as the machine has cores:
/// waits should sleep instead of spinning. (Twice: a client and its
/// service spinning on two cores are two runnable threads already, and
/// any third thread of the machine would otherwise stop both spinning
/// for `REFRESH_NS`.)
pub fn oversubscribed() -> bool {
    let now = coarse_ns();
    let at = READ_AT.load(Ordering::Relaxed);
    if stale(now.wrapping_sub(at), BUSY.load(Ordering::Relaxed))
        && READ_AT
            .compare_exchange(at, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        // Unreadable: spin as before.
        let busy = runnable().is_some_and(|r| too_many(r, cores()));
        BUSY.store(busy, Ordering::Relaxed);
        return busy;
    }
    BUSY.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runnable_count_is_the_fourth_field() {
        assert_eq!(running_of(b"0.45 1.36 2.10 3/456 12345\n"), Some(3));
        assert_eq!(running_of(b"0.45 1.36 2.10 130/456 12345"), Some(130));
        assert_eq!(running_of(b"0.45 1.36"), None);
        assert_eq!(running_of(b"a b c x/y z"), None);
    }

    /// A client and its service spinning on two cores, plus a third
    /// thread, still spin; five runnable threads on two cores do not.
    #[test]
    fn a_third_thread_does_not_stop_a_pair_spinning() {
        assert!(!too_many(3, 2));
        assert!(!too_many(4, 2));
        assert!(too_many(5, 2));
        assert!(too_many(3, 1));
    }

    /// An oversubscribed verdict holds ten times as long as a quiet one
    /// (issue 17: 128 sleeping clients each read `/proc/loadavg` every
    /// 10 ms).
    #[test]
    fn an_oversubscribed_verdict_holds_longer() {
        assert!(!stale(REFRESH_NS - 1, false));
        assert!(stale(REFRESH_NS, false));
        assert!(!stale(2 * REFRESH_NS, true));
        assert!(!stale(BUSY_REFRESH_NS - 1, true));
        assert!(stale(BUSY_REFRESH_NS, true));
    }

    #[test]
    fn this_machine_answers() {
        assert!(runnable().is_some_and(|r| r >= 1));
        // Twice in a row: the second is the cached verdict or a new read.
        let _ = oversubscribed();
        let _ = oversubscribed();
        assert!(READ_AT.load(Ordering::Relaxed) != 0);
    }
}
