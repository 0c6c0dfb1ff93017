//! Tests of shared types (several cpus allocate them): `ks_calls` counted
//! per cpu and folded (`calls`), and the limit on their fast path.

use core::ffi::c_void;
use std::sync::{Arc, Barrier, mpsc};
use std::time::{Duration, Instant};

use super::tests::{new_type, totals};
use super::*;
use crate::abi::{M_NULLOK, malloc_type};

/// Is `ty` in shared mode? (`OWNER_SHARED`, or `OWNER_SHARED_ATOMIC`
/// for a type registered after the tags ran out, which a whole test run
/// does.)
fn shared(ty: *mut malloc_type) -> bool {
    super::account::is_shared(owner(ty) as usize)
}

/// The totals once `ks_calls` reached `calls`, or after 3 s (30 periods
/// of the reclaimer, which folds within one).
fn settled(ty: *mut malloc_type, calls: i64) -> (isize, isize, i64) {
    let t0 = Instant::now();
    loop {
        let t = totals(ty);
        if t.2 == calls || t0.elapsed() > Duration::from_secs(3) {
            return t;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn owner(ty: *mut malloc_type) -> isize {
    // SAFETY: the owner word is `ks_reserved[1]` of a live test type.
    unsafe { core::ptr::read_volatile(&(*ty).ks_reserved[1]) as isize }
}

/// One allocation and free of `ty`.
fn one(ty: usize) {
    let ty = ty as *mut malloc_type;
    // SAFETY: valid type; the block is freed at once.
    unsafe { free(malloc(48, ty, 0), ty) };
}

/// Two threads take 10 turns at `ty` (a channel hands the turn over; 20
/// calls), which makes it shared; both have exited when this returns.
pub(super) fn make_shared(ty: *mut malloc_type) {
    take_turns(ty);
    assert!(shared(ty), "shared after taking turns");
}

/// The 20 calls of [`make_shared`].
fn take_turns(ty: *mut malloc_type) {
    let t = ty as usize;
    let (to_b, from_a) = mpsc::sync_channel::<()>(0);
    let (to_a, from_b) = mpsc::sync_channel::<()>(0);
    let b = std::thread::spawn(move || {
        while from_a.recv().is_ok() {
            one(t);
            to_a.send(()).unwrap();
        }
    });
    std::thread::spawn(move || {
        for _ in 0..10 {
            one(t);
            to_b.send(()).unwrap();
            from_b.recv().unwrap();
        }
    })
    .join()
    .unwrap();
    b.join().unwrap();
}

/// Every thread's counts are in `ks_calls` as soon as the threads are
/// joined (they fold at exit), without waiting for the reclaimer.
#[test]
fn calls_of_a_shared_type_are_exact_once_its_threads_are_joined() {
    const N: usize = 10_000;
    let ty = new_type(c"joined");
    make_shared(ty);
    both_at_once(ty, N);
    assert_eq!(totals(ty), (0, 0, (20 + 2 * N) as i64));
}

/// Two threads each make `n` calls of `ty` (random sizes below 900
/// bytes, each block freed at once), both at the same time; both have
/// exited when this returns.
fn both_at_once(ty: *mut malloc_type, n: usize) {
    let t = ty as usize;
    let go = Arc::new(Barrier::new(2));
    let hs: Vec<_> = (0..2)
        .map(|i| {
            let go = go.clone();
            std::thread::spawn(move || {
                let ty = t as *mut malloc_type;
                go.wait();
                for k in 0..n {
                    // SAFETY: valid type; the block is freed at once.
                    unsafe { free(malloc(1 + (k * 13 + i) % 900, ty, 0), ty) };
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
}

/// Calls of a thread that goes on living are folded by the reclaimer
/// within its period; `ks_calls` never runs ahead.
#[test]
fn calls_of_a_shared_type_are_folded_in_the_background() {
    let ty = new_type(c"background");
    make_shared(ty);
    for _ in 0..100 {
        one(ty as usize);
    }
    assert!(totals(ty).2 <= 120);
    let t0 = Instant::now();
    assert_eq!(settled(ty, 120), (0, 0, 120));
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
}

/// `slab_malloc_uninit` folds every cpu's counts of the type at once.
#[test]
fn uninit_folds_the_calls_of_every_cpu() {
    let ty = new_type(c"uninit");
    make_shared(ty);
    for _ in 0..100 {
        one(ty as usize);
    }
    // SAFETY: live test type, no block allocated.
    unsafe { types::unregister(ty) };
    // SAFETY: live test type.
    assert_eq!(unsafe { core::ptr::read_volatile(&(*ty).ks_calls) }, 120);
    // SAFETY: from `new_type`, unregistered, unused.
    drop(unsafe { Box::from_raw(ty) });
}

/// A shared type with a limit: two threads allocating at once both meet
/// it. The check is exact but not atomic with the allocation: each cpu
/// racing at the limit may take one chunk beyond it.
#[test]
fn limit_trips_for_a_shared_type() {
    const LIMIT: isize = 256 * 1024;
    let ty = new_type(c"shared limit");
    // SAFETY: live test type, not used yet.
    unsafe { (*ty).ks_limit = LIMIT as _ };
    make_shared(ty);
    let t = ty as usize;
    let go = Arc::new(Barrier::new(2));
    let hs: Vec<_> = (0..2)
        .map(|_| {
            let go = go.clone();
            std::thread::spawn(move || {
                let ty = t as *mut malloc_type;
                let mut v = Vec::new();
                go.wait();
                // Four times the limit if it did not hold.
                for _ in 0..512 {
                    // SAFETY: valid type.
                    let p = unsafe { malloc(1024, ty, M_NULLOK) };
                    if p.is_null() {
                        return (v, true);
                    }
                    v.push(p as usize);
                }
                (v, false)
            })
        })
        .collect();
    let res: Vec<_> = hs.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(res.iter().all(|r| r.1), "both threads met the limit");
    let (mem, n, _) = totals(ty);
    assert!(mem <= LIMIT + 2 * 1024, "{mem} bytes held");
    assert!(mem > LIMIT - 2 * 1024, "{mem} bytes held");
    assert_eq!(n as usize, res.iter().map(|r| r.0.len()).sum::<usize>());
    for (v, _) in res {
        for p in v {
            // SAFETY: live blocks of `ty`.
            unsafe { free(p as *mut c_void, ty) };
        }
    }
    assert!(shared(ty));
    assert_eq!(totals(ty).0, 0);
}

/// A type registered when the tags ran out (`TAG_UNCHECKED`, which has
/// no per-cpu counters) and allocated by several threads: its calls are
/// all in `ks_calls` once the threads are joined, none left in a counter
/// that no fold reads.
#[test]
fn calls_of_a_shared_unchecked_type_are_exact() {
    const N: usize = 5_000;
    let ty = new_type(c"unchecked");
    // SAFETY: live test type, not used by any thread yet; registered,
    // then given the tag of a type registered after the tags ran out.
    unsafe {
        types::check(ty, "test");
        let r = core::ptr::addr_of_mut!((*ty).ks_reserved[0]);
        core::ptr::write_volatile(
            r,
            (types::REG_SIG << 8 | types::TAG_UNCHECKED as isize) as _,
        );
    }
    take_turns(ty);
    both_at_once(ty, N);
    assert_eq!(totals(ty), (0, 0, (20 + 2 * N) as i64));
    assert_eq!(
        owner(ty),
        super::account::OWNER_SHARED_ATOMIC as isize,
        "shared, counted with atomic adds"
    );
}

/// `k` fresh types, each first used by two threads at once (one
/// `slab_malloc` each, both threads with allocator state already). Both
/// threads make a type shared on first use (`account::NO_HOME`: as
/// without `membarrier()`, or with a shared statistics slot). For type
/// `i`, thread `i % 2` spins `gap` times in `slab::malloc`'s fast path
/// between its loads of the registration and owner words. Returns how
/// many types lost a call from `ks_calls` (their blocks are not freed:
/// they may carry the wrong tag); the blocks of the others are freed,
/// which reports a wrong tag.
fn first_use_at_once(k: usize, gap: u32) -> usize {
    let tys: Vec<usize> = (0..k).map(|_| new_type(c"first use") as usize).collect();
    let warm = new_type(c"first use warm-up") as usize;
    // A spinning barrier: both threads leave it within a few cache
    // misses of each other (a sleeping one would wake too late).
    let go = Arc::new(core::sync::atomic::AtomicUsize::new(0));
    let hs: Vec<_> = (0..2)
        .map(|me| {
            let (go, tys) = (go.clone(), tys.clone());
            std::thread::spawn(move || {
                one(warm);
                super::account::NO_HOME.with(|f| f.set(true));
                let mut v = Vec::new();
                for (i, &t) in tys.iter().enumerate() {
                    super::account::GAP.with(|g| g.set(if i % 2 == me { gap } else { 0 }));
                    go.fetch_add(1, Ordering::Relaxed);
                    while go.load(Ordering::Relaxed) < 2 * (i + 1) {
                        core::hint::spin_loop();
                    }
                    // SAFETY: valid type; freed by the caller.
                    v.push(unsafe { malloc(48, t as *mut malloc_type, 0) } as usize);
                }
                v
            })
        })
        .collect();
    let blocks: Vec<Vec<usize>> = hs.into_iter().map(|h| h.join().unwrap()).collect();
    let mut lost = 0;
    for (i, &t) in tys.iter().enumerate() {
        let ty = t as *mut malloc_type;
        // Both threads have exited: their counts are folded.
        if totals(ty) != (96, 2, 2) {
            lost += 1;
            continue;
        }
        for b in &blocks {
            // SAFETY: a live block of `ty`.
            unsafe { free(b[i] as *mut c_void, ty) };
        }
        assert_eq!(totals(ty), (0, 0, 2));
    }
    lost
}

/// Two threads using a fresh type for the first time at once: the one
/// whose fast path read the registration word before the other
/// registered the type and made it shared must not count its call under
/// a stale tag (lost from `ks_calls`) nor tag its block with it (a false
/// "never allocated" or "wrong malloc_type" at `slab_free`).
#[test]
fn first_use_by_two_threads_at_once_counts_both_calls() {
    assert_eq!(first_use_at_once(16, 200_000), 0, "types that lost a call");
}
