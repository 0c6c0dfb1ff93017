//! The zone arena (`registry`): zones are carved from one reservation, so
//! that `slab_free` tells a zone by two compares; a zone given back stays
//! readable there (zeros, not resident) and its place is carved again.

use core::ffi::c_void;
use std::collections::HashSet;
use std::sync::Mutex;

use super::tests::{new_type, totals};
use super::*;

/// Held by the tests that look where zones go: the one that sets
/// `RLIMIT_AS` sends every new zone outside the arena meanwhile.
static WHERE: Mutex<()> = Mutex::new(());

/// Zone bases of `v`'s blocks.
fn bases(v: &[usize]) -> HashSet<usize> {
    let mask = !params().zone_mask;
    v.iter().map(|&p| p & mask).collect()
}

/// Is the page at `a` resident?
fn resident(a: usize) -> bool {
    let mut vec = 0u8;
    // SAFETY: `a` is page-aligned and mapped (the arena's carved part);
    // `vec` holds the one byte of one page.
    let r = unsafe { libc::mincore(a as *mut c_void, 4096, &mut vec) };
    assert_eq!(r, 0, "mincore of {a:#x}");
    vec & 1 != 0
}

#[test]
fn zones_are_carved_from_the_arena() {
    let _g = WHERE.lock().unwrap_or_else(|e| e.into_inner());
    std::thread::spawn(|| {
        let ty = new_type(c"arena");
        let v: Vec<usize> =
            // SAFETY: valid type.
            (0..20_000).map(|_| unsafe { malloc(1000, ty, 0) } as usize).collect();
        let zs = bases(&v);
        assert!(zs.len() > 100, "{} zones", zs.len());
        for &b in &zs {
            assert!(registry::in_arena(b), "zone {b:#x} is not in the arena");
            assert!(registry::is_zone(b), "zone {b:#x} is not recorded");
        }
        for p in v {
            // SAFETY: live blocks of `ty`.
            unsafe { free(p as *mut c_void, ty) };
        }
    })
    .join()
    .unwrap();
}

#[test]
fn a_zone_given_back_reads_as_none_and_its_place_is_carved_again() {
    let _g = WHERE.lock().unwrap_or_else(|e| e.into_inner());
    std::thread::spawn(|| {
        let ty = new_type(c"arena-back");
        let v: Vec<usize> =
            // SAFETY: valid type.
            (0..100_000).map(|_| unsafe { malloc(1000, ty, 0) } as usize).collect();
        let first = bases(&v);
        for p in v {
            // SAFETY: live blocks of `ty`.
            unsafe { free(p as *mut c_void, ty) };
        }
        // Beyond the zone cache the zones were given back: not recorded,
        // still in the carved part (so `slab_free` may read their header),
        // reading as zeros (no magic: the fast path sends a stale pointer
        // into one to `free_slow`, which reports it) and not resident.
        // Other tests may carve a place again at once: look at those not
        // recorded live again.
        let back: Vec<usize> = first
            .iter()
            .copied()
            .filter(|&b| !registry::is_zone(b))
            .collect();
        assert!(back.len() > 50, "{} zones given back", back.len());
        let mut quiet = 0;
        for &b in &back {
            assert!(registry::in_arena(b));
            // (Resident first: the read maps the zero page.)
            let gone = !resident(b);
            // SAFETY: the carved part of the arena stays readable.
            let magic = unsafe { core::ptr::read_volatile(&(*(b as *const zone::Zone)).f.magic) };
            if magic == 0 && gone {
                quiet += 1;
            }
        }
        assert!(
            quiet > back.len() / 2,
            "{quiet} of {} zones given back are zero and not resident",
            back.len()
        );
        // The next zones take those places first.
        let w: Vec<usize> =
            // SAFETY: valid type.
            (0..100_000).map(|_| unsafe { malloc(1000, ty, 0) } as usize).collect();
        let again = bases(&w)
            .intersection(&back.iter().copied().collect())
            .count();
        assert!(
            again > back.len() / 2,
            "{again} of {} places carved again",
            back.len()
        );
        for p in w {
            // SAFETY: live blocks of `ty`.
            unsafe { free(p as *mut c_void, ty) };
        }
    })
    .join()
    .unwrap();
}

/// `RLIMIT_AS` set (here to a finite value that limits nothing): new
/// zones are mapped one by one outside the arena, and their frees (the
/// registry's bitmap, `free_off_arena`) work as in the arena.
#[test]
fn zones_outside_the_arena_while_rlimit_as_is_set() {
    let _g = WHERE.lock().unwrap_or_else(|e| e.into_inner());
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid out-parameter.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut old) }, 0);
    if old.rlim_max != libc::RLIM_INFINITY {
        return; // the test runs under a limit already: nothing to set back
    }
    let set = libc::rlimit {
        rlim_cur: 1 << 62,
        rlim_max: old.rlim_max,
    };
    // SAFETY: valid rlimit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &set) }, 0);
    let r = std::thread::spawn(|| {
        let ty = new_type(c"arena-off");
        let v: Vec<usize> =
            // SAFETY: valid type.
            (0..20_000).map(|_| unsafe { malloc(1000, ty, 0) } as usize).collect();
        let out = bases(&v)
            .iter()
            .filter(|&&b| !registry::in_arena(b) && registry::is_zone(b))
            .count();
        for p in v {
            // SAFETY: live blocks of `ty`.
            unsafe { free(p as *mut c_void, ty) };
        }
        (out, totals(ty))
    })
    .join();
    // SAFETY: valid rlimit (the soft limit back to the hard one).
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &old) }, 0);
    let (out, t) = r.unwrap();
    assert!(out > 100, "{out} zones outside the arena");
    assert_eq!(t, (0, 0, 20_000), "totals after freeing all");
}

/// A program that lowers `RLIMIT_AS` after its first allocation (a
/// sandbox, `prlimit` from outside) to a size far above what it uses
/// still maps memory: the arena's reservation (up to 4 GiB, reserved
/// while the limit was off) must not count against a limit set later.
/// In a forked child: the limit is the child's only.
#[test]
fn a_limit_set_after_the_arena_was_reserved_leaves_room() {
    let _g = WHERE.lock().unwrap_or_else(|e| e.into_inner());
    let ty = new_type(c"arena-late-limit");
    // SAFETY: valid type.
    let p = unsafe { malloc(1000, ty, 0) };
    assert!(!p.is_null());
    let vm_kib = |s: &str| -> u64 {
        s.lines()
            .find(|l| l.starts_with("VmSize:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap()
            .parse()
            .unwrap()
    };
    let used = vm_kib(&std::fs::read_to_string("/proc/self/status").unwrap());
    // SAFETY: the child only makes system calls and exits.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // 8 GiB: far above what the process uses without the arena.
        let lim = libc::rlimit {
            rlim_cur: 8 << 30,
            rlim_max: libc::RLIM_INFINITY,
        };
        // SAFETY: plain system calls; the child exits at once.
        unsafe {
            libc::setrlimit(libc::RLIMIT_AS, &lim);
            let m = libc::mmap(
                core::ptr::null_mut(),
                1 << 20,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            libc::_exit(if m == libc::MAP_FAILED { 1 } else { 0 });
        }
    }
    let mut st = 0;
    // SAFETY: our child.
    unsafe { libc::waitpid(pid, &mut st, 0) };
    // SAFETY: a live block of `ty`.
    unsafe { free(p, ty) };
    assert_eq!(
        libc::WEXITSTATUS(st),
        0,
        "a 1 MiB mmap failed under an 8 GiB RLIMIT_AS (VmSize {} MiB)",
        used >> 10
    );
}

/// A thread's copy of the arena's bounds (in its TLS slot) is taken when
/// it gets its state, and the arena grows after that (any thread's new
/// zones). A chunk beyond the copy is freed all the same, through the
/// path that asks the bitmap, and the copy is taken again. (The copy is
/// made old here by hand: which zones another thread's allocations carve
/// depends on what earlier tests gave back.)
#[test]
fn a_free_beyond_the_threads_copy_of_the_arena_copies_it_again() {
    let _g = WHERE.lock().unwrap_or_else(|e| e.into_inner());
    std::thread::spawn(|| {
        let t = new_type(c"arena-copy");
        // SAFETY: valid type.
        let p = unsafe { malloc(64, t, 0) };
        let b = p as usize & !params().zone_mask;
        assert!(registry::in_arena(b), "zone {b:#x} is not in the arena");
        // A fresh copy (the state may have come before the arena).
        gd::set_current(tls::get());
        let (gd, now) = tls::get_arena();
        assert!(
            now.neg_lo.wrapping_add(b) < now.top,
            "zone beyond a fresh copy"
        );
        // A copy from before this zone was carved.
        let old = tls::Arena {
            top: now.neg_lo.wrapping_add(b),
            ..now
        };
        tls::set(tls::Slot {
            gd,
            small: SMALL_MAX,
            arena: old,
        });
        // SAFETY: a live block of `t`.
        unsafe { free(p, t) };
        let (_, after) = tls::get_arena();
        assert_eq!(after.top, now.top, "the copy was not taken again");
        let (mem, n, calls) = totals(t);
        assert_eq!((mem, n, calls), (0, 0, 1), "the type after the free");
    })
    .join()
    .unwrap();
}
