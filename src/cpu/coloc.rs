//! Two cpus on one core. Each virtual cpu is a kernel thread, and the
//! machine's scheduler places them: now and then it puts two of them on
//! one core (a wakeup placed beside its waker, or a balancing move) and,
//! while both keep running, rarely moves one away again (a task that ran
//! within the last half millisecond is "cache hot" to the balancer, and a
//! cpu that spins always has). Waiting for a reply then costs a
//! `sched_yield` hand-off per hop instead of a cache line: 6-7 µs for a
//! cross-cpu `lwkt_domsg` round trip instead of 0.4 (issue 19: 1 % of one
//! repetition's round trips on a quiet machine; every round trip of
//! every repetition under load, both cpus seen on one core by
//! `sched_getcpu` in each of them).
//!
//! So each cpu writes down the core it runs on when its idle spin begins
//! ([`note_core`], one read of the `rseq` area through `sched_getcpu`, a
//! store only when it changed), and the spin of a cpu other than 0 that
//! is still waiting at its first look at the clock asks whether another
//! cpu that is awake sits on the same core ([`peer_on_my_core`]). If one
//! does, the cpu moves its kernel thread off that core ([`move_off`]: its
//! affinity without the core for a moment, then as it was) and spins
//! again from the core it lands on, while the peer gets the core it
//! waited for. A thread that cannot move (confined to that core) sleeps
//! in its event loop instead, which hands the core to the peer. Cpu 0 is
//! the program's `main` thread, whose affinity is the program's own: it
//! never moves, its peer does. On a machine with more runnable threads
//! than cores the two may well be put together again; the [`Backoff`] lets
//! only one wait in `2^k` move while they stay together (k grows to
//! [`BACKOFF_MAX_LOG`]), and starts over once they are apart.
//!
//! Measured (`vcpu_bench` with `sched_getcpu` recorded per round trip, a
//! private build, load average 12-13 on the 2 cores): before, 30-100 %
//! of each repetition's round trips had both cpus on one core (p50 7.2
//! µs); after, at most 95 in 100,000 (p50 1.1-1.4 µs, the floor 0.6-0.9
//! µs in the same runs), with 60-200 moves per 330,000 round trips.

use core::ffi::c_int;
use core::sync::atomic::Ordering;
use std::sync::OnceLock;

use super::{CpuPriv, cpu_priv, globaldata_find, live_cpus};

/// The largest `k` of [`Backoff`]: while two cpus stay on one core, at
/// most one wait in 1,024 ends in a move (two system calls and a
/// migration, tens of µs on a loaded machine; a yield hand-off costs some
/// 3 µs, so 1,024 of them make the moves a percent of the time).
pub const BACKOFF_MAX_LOG: u32 = 10;

/// How often a cpu that shares its core with a peer ends its spin to
/// move (owner state of a cpu).
#[derive(Default)]
pub struct Backoff {
    /// The current gap between two such moves, as a power of two.
    log: u32,
    /// Waits beside a peer left before the next move.
    skip: u32,
}

impl Backoff {
    /// A spin's first look at the clock found a peer on its core
    /// (`together`) or not: should the spin end, for a move? Apart,
    /// the gap starts over; together, the first wait moves, and after
    /// each move the gap doubles.
    pub fn move_now(&mut self, together: bool) -> bool {
        if !together {
            *self = Backoff::default();
            return false;
        }
        if self.skip > 0 {
            self.skip -= 1;
            return false;
        }
        self.skip = (1u32 << self.log) - 1;
        self.log = (self.log + 1).min(BACKOFF_MAX_LOG);
        true
    }
}

/// May the process's threads run on two cores or more? (Confined to one,
/// sharing a core is not a placement to undo.)
fn several_cores() -> bool {
    static SEVERAL: OnceLock<bool> = OnceLock::new();
    *SEVERAL.get_or_init(|| {
        // SAFETY: an all-zero cpu_set_t is an empty set; the call writes
        // at most its size.
        unsafe {
            let mut set: libc::cpu_set_t = core::mem::zeroed();
            libc::sched_getaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0
                && libc::CPU_COUNT(&set) >= 2
        }
    })
}

/// The core the calling kernel thread runs on, written down in `p` (its
/// cpu's private state) when it changed; -1 when unknown.
#[inline(always)]
pub fn note_core(p: &CpuPriv) -> c_int {
    // SAFETY: no preconditions (glibc reads the thread's rseq area).
    let core = unsafe { libc::sched_getcpu() };
    if p.core.load(Ordering::Relaxed) != core {
        p.core.store(core, Ordering::Relaxed);
    }
    core
}

/// Is another live cpu than `me`, awake (not asleep in its event loop),
/// last seen on `core`?
pub fn peer_on_my_core(me: c_int, core: c_int) -> bool {
    if core < 0 || !several_cores() {
        return false;
    }
    live_cpus().filter(|&c| c != me).any(|c| {
        // SAFETY: live cpus are started; the fields read are atomic.
        let q = unsafe { &*cpu_priv(globaldata_find(c)) };
        !q.sleeping.load(Ordering::Relaxed) && q.core.load(Ordering::Relaxed) == core
    })
}

/// Move the calling kernel thread off `core`, where it runs: its
/// affinity without that core for a moment (the kernel moves a running
/// thread before the call returns), then as it was. True when it now
/// runs on another core.
pub fn move_off(core: c_int) -> bool {
    let size = core::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: all-zero cpu_set_t values are empty sets; the calls read
    // and write at most `size` bytes of them; the bit index is checked
    // against the set's size first.
    unsafe {
        let mut was: libc::cpu_set_t = core::mem::zeroed();
        if core < 0
            || core as usize >= 8 * size
            || libc::sched_getaffinity(0, size, &mut was) != 0
            || !libc::CPU_ISSET(core as usize, &was)
        {
            return false;
        }
        let mut without = was;
        libc::CPU_CLR(core as usize, &mut without);
        if libc::CPU_COUNT(&without) == 0 {
            return false;
        }
        let moved = libc::sched_setaffinity(0, size, &without) == 0;
        libc::sched_setaffinity(0, size, &was);
        moved && libc::sched_getcpu() != core
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Together, the waits that end in a move are the 1st, 2nd, 4th,
    /// 8th, ... (gaps 1, 2, 4, ... up to 2^BACKOFF_MAX_LOG); apart once,
    /// the next wait together moves at once.
    #[test]
    fn the_moves_beside_a_peer_back_off_and_start_over_once_apart() {
        let mut b = Backoff::default();
        let moved: Vec<u32> = (1..=16).filter(|_| b.move_now(true)).collect();
        assert_eq!(moved, [1, 2, 4, 8, 16]); // waits 1, 2, 4, 8, 16
        let mut gaps = Vec::new();
        let mut since = 0u32;
        for _ in 0..5 * (1 << BACKOFF_MAX_LOG) {
            since += 1;
            if b.move_now(true) {
                gaps.push(since);
                since = 0;
            }
        }
        assert_eq!(gaps[..7], [16, 32, 64, 128, 256, 512, 1024]);
        assert!(gaps[7..].iter().all(|&g| g == 1 << BACKOFF_MAX_LOG));
        assert!(!b.move_now(false));
        assert!(b.move_now(true));
        assert!(b.move_now(true));
        assert!(!b.move_now(true));
    }

    /// The calling thread's affinity.
    fn affinity() -> libc::cpu_set_t {
        // SAFETY: an all-zero set is empty; the call writes at most its
        // size.
        unsafe {
            let mut set: libc::cpu_set_t = core::mem::zeroed();
            assert_eq!(
                libc::sched_getaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), &mut set),
                0
            );
            set
        }
    }

    /// A thread moved off its core is elsewhere when the call returns
    /// (when it may run on another core at all), with its affinity as it
    /// was; a core it does not run on, or no core, moves nothing.
    #[test]
    fn a_thread_moved_off_its_core_runs_elsewhere_its_affinity_kept() {
        std::thread::spawn(|| {
            let was = affinity();
            // SAFETY: no preconditions.
            let core = unsafe { libc::sched_getcpu() };
            // SAFETY: reads the set.
            let several = unsafe { libc::CPU_COUNT(&was) } >= 2;
            assert_eq!(move_off(core), several);
            let now = affinity();
            // SAFETY: comparing two plain sets byte for byte.
            let same = unsafe {
                libc::memcmp(
                    (&raw const was).cast(),
                    (&raw const now).cast(),
                    core::mem::size_of::<libc::cpu_set_t>(),
                )
            } == 0;
            assert!(same);
            assert!(!move_off(-1));
        })
        .join()
        .unwrap();
    }
}
