//! Unit and property tests of the slab allocator core. Each test uses its
//! own malloc types, so the exact statistics checks hold while tests run
//! in parallel threads.

use core::ffi::c_void;
use core::ptr;
use std::collections::BTreeMap;
use std::sync::mpsc;

use super::*;
use crate::abi::{M_MAGIC, M_NULLOK, M_ZERO, NZONES, SMP_MAXCPU, malloc_type};

pub(super) fn new_type(name: &'static core::ffi::CStr) -> *mut malloc_type {
    // SAFETY: all-zero is a valid `malloc_type` (NULL pointers, zero counts).
    let mut t: Box<malloc_type> = Box::new(unsafe { core::mem::zeroed() });
    t.ks_magic = M_MAGIC;
    t.ks_shortdesc = name.as_ptr();
    Box::into_raw(t)
}

pub(super) fn totals(ty: *mut malloc_type) -> (isize, isize, i64) {
    // SAFETY: live test type.
    unsafe {
        let (m, n) = types::totals(ty);
        (m, n, core::ptr::read_volatile(&(*ty).ks_calls))
    }
}

/// xorshift64*: small, deterministic, good enough for test sequences.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn size(&mut self) -> usize {
        match self.below(20) {
            0 => 0,
            1 => 4096 * (1 + self.below(3) as usize),
            2 => 16384 + self.below(50000) as usize,
            3..=6 => 1 + self.below(16383) as usize,
            _ => 1 + self.below(1024) as usize,
        }
    }
}

/// Bytes a request of `n` is charged (and may use).
fn charged(n: usize) -> usize {
    let p = params();
    if n == 0 {
        0
    } else if is_oversized(n, &p) {
        n.div_ceil(p.os_page) * p.os_page
    } else {
        zoneindex(n).1
    }
}

#[test]
fn zoneindex_matches_spec_table() {
    assert_eq!(zoneindex(1), (0, 8));
    assert_eq!(zoneindex(8), (0, 8));
    assert_eq!(zoneindex(121), (15, 128));
    assert_eq!(zoneindex(128), (15, 128));
    assert_eq!(zoneindex(129), (16, 144));
    assert_eq!(zoneindex(255), (23, 256));
    assert_eq!(zoneindex(256), (23, 256));
    assert_eq!(zoneindex(1024), (39, 1024));
    assert_eq!(zoneindex(16383), (71, 16384));
    let mut last = (0, 8);
    for n in 1..16384 {
        let (i, c) = zoneindex(n);
        assert!(c >= n && i < NZONES);
        assert!(i >= last.0 && c >= last.1);
        if i == last.0 {
            assert_eq!(c, last.1, "one chunk size per class");
        }
        last = (i, c);
    }
    assert_eq!(last.0, NZONES - 1);
}

#[test]
fn small_class_table_matches_zoneindex() {
    for n in 1..=SMALL_MAX {
        let (i, c) = zoneindex(n);
        let k = SMALL_CLASS[(n - 1) / 8];
        assert_eq!((k.idx(), k.cs as usize), (i, c), "size {n}");
    }
}

#[test]
fn alignment_of_every_size_class() {
    let ty = new_type(c"align");
    let mut held = Vec::new();
    for n in 1..16384usize {
        // SAFETY: valid type.
        let p = unsafe { malloc(n, ty, 0) } as usize;
        let want = if n.is_power_of_two() { n.max(8) } else { 8 };
        assert_eq!(p % want, 0, "size {n} at {p:#x}");
        if n % 4096 == 0 {
            assert_eq!(p % 4096, 0, "page multiple {n}");
        }
        held.push(p);
        // Several chunks per class, so alignment holds past the first.
        if n.is_power_of_two() {
            for _ in 0..300 {
                // SAFETY: valid type.
                let q = unsafe { malloc(n, ty, 0) } as usize;
                assert_eq!(q % want, 0, "size {n} at {q:#x}");
                held.push(q);
            }
        }
    }
    for p in held {
        // SAFETY: allocated above with `ty`.
        unsafe { free(p as *mut c_void, ty) };
    }
    assert_eq!(totals(ty).1, 0);
}

fn fill(p: *mut c_void, n: usize, v: u8) {
    // SAFETY: `p` holds at least `n` bytes.
    unsafe { ptr::write_bytes(p.cast::<u8>(), v, n) };
}

fn check(p: *mut c_void, n: usize, v: u8) {
    // SAFETY: `p` holds at least `n` initialised bytes.
    let s = unsafe { core::slice::from_raw_parts(p.cast::<u8>(), n) };
    assert!(
        s.iter().all(|b| *b == v),
        "contents of {p:p} ({n} bytes) lost"
    );
}

/// Random malloc/free/realloc against a model: contents survive, live
/// blocks never overlap, the statistics are exact after every step.
fn model_run(seed: u64, steps: usize, ty: *mut malloc_type) {
    let mut rng = Rng(seed | 1);
    // address -> (requested size, fill byte)
    let mut live: BTreeMap<usize, (usize, u8, usize, bool)> = BTreeMap::new();
    let mut zero_len = 0usize;
    let (mut calls, base_calls) = (0i64, totals(ty).2);
    let no_overlap = |live: &BTreeMap<usize, (usize, u8, usize, bool)>, p: usize, c: usize| {
        if let Some((&q, &(_, _, qc, _))) = live.range(..=p).next_back() {
            assert!(q + qc <= p, "{p:#x} overlaps block at {q:#x}");
        }
        if let Some((&q, _)) = live.range(p..).next() {
            assert!(p + c <= q, "{p:#x} overlaps block at {q:#x}");
        }
    };
    let mut prev = (0usize, 0usize);
    for step in 0..steps {
        let op = rng.below(10);
        if op < 5 || live.is_empty() {
            let n = rng.size();
            prev = (1, n);
            let zero = rng.below(4) == 0;
            // SAFETY: valid type.
            let p = unsafe { malloc(n, ty, if zero { M_ZERO } else { 0 }) };
            calls += 1;
            assert!(!p.is_null());
            if n == 0 {
                assert_eq!(p, ZERO_LENGTH_PTR);
                zero_len += 1;
                continue;
            }
            if zero {
                check(p, n, 0);
            }
            no_overlap(&live, p as usize, charged(n));
            let v = (step % 251) as u8 + 1;
            fill(p, n, v);
            live.insert(p as usize, (n, v, charged(n), is_oversized(n, &params())));
        } else {
            let k = rng.below(live.len() as u64) as usize;
            let (&p, &(n, v, pc, mapped)) = live.iter().nth(k).unwrap();
            check(p as *mut c_void, n, v);
            live.remove(&p);
            if op < 8 {
                // SAFETY: live block of `ty`.
                unsafe { free(p as *mut c_void, ty) };
            } else {
                let m = rng.size();
                prev = (n, m);
                // SAFETY: live block of `ty`.
                let q = unsafe { realloc(p as *mut c_void, m, ty, 0) };
                if m == 0 {
                    assert!(q.is_null());
                } else {
                    let pr = params();
                    let same = if mapped {
                        m.div_ceil(pr.os_page) * pr.os_page == pc
                    } else {
                        !is_oversized(m, &pr) && charged(m) == pc
                    };
                    let (qc, qm) = if same {
                        assert_eq!(q as usize, p, "realloc {n}->{m} should stay in place");
                        (pc, mapped)
                    } else {
                        calls += 1;
                        (charged(m), is_oversized(m, &pr))
                    };
                    check(q, n.min(m), v);
                    no_overlap(&live, q as usize, qc);
                    fill(q, m, v);
                    live.insert(q as usize, (m, v, qc, qm));
                }
            }
        }
        let (mem, inuse, c) = totals(ty);
        let want: usize = live.values().map(|b| b.2).sum();
        assert_eq!(inuse as usize, live.len(), "ks_inuse at step {step}");
        assert_eq!(mem as usize, want, "ks_memuse at step {step} op {prev:?}");
        assert_eq!(c - base_calls, calls, "ks_calls at step {step}");
    }
    for (&p, &(n, v, _, _)) in &live {
        check(p as *mut c_void, n, v);
        // SAFETY: live block of `ty`.
        unsafe { free(p as *mut c_void, ty) };
    }
    for _ in 0..zero_len {
        // SAFETY: the zero-length pointer is always accepted.
        unsafe { free(ZERO_LENGTH_PTR, ty) };
    }
    assert_eq!(totals(ty).0, 0);
    assert_eq!(totals(ty).1, 0);
}

#[test]
fn model_random_sequences() {
    for seed in 1..=8u64 {
        let ty = new_type(c"model");
        model_run(seed.wrapping_mul(0x9E3779B97F4A7C15), 3000, ty);
    }
}

#[test]
fn model_in_parallel_threads() {
    let hs: Vec<_> = (0..4u64)
        .map(|i| {
            std::thread::spawn(move || {
                let ty = new_type(c"model-mt");
                model_run(i + 77, 3000, ty);
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
}

#[test]
fn shared_type_across_threads_keeps_exact_totals() {
    let ty = new_type(c"shared") as usize;
    let hs: Vec<_> = (0..4)
        .map(|i| {
            std::thread::spawn(move || {
                let ty = ty as *mut malloc_type;
                let mut v = Vec::new();
                for k in 0..20000usize {
                    // SAFETY: valid type.
                    v.push(unsafe { malloc(1 + (k * 7 + i) % 700, ty, 0) } as usize);
                    if k % 3 == 0 {
                        let p = v.swap_remove(k % v.len());
                        // SAFETY: live block of `ty`.
                        unsafe { free(p as *mut c_void, ty) };
                    }
                }
                v
            })
        })
        .collect();
    let blocks: Vec<usize> = hs.into_iter().flat_map(|h| h.join().unwrap()).collect();
    let ty = ty as *mut malloc_type;
    let (_, inuse, calls) = totals(ty);
    assert_eq!(calls, 4 * 20000);
    assert_eq!(inuse as usize, blocks.len());
    // Free everything from this thread: all cross-thread frees.
    for p in blocks {
        // SAFETY: live blocks of `ty`.
        unsafe { free(p as *mut c_void, ty) };
    }
    assert_eq!(totals(ty).0, 0);
    assert_eq!(totals(ty).1, 0);
}

/// A limit set on a type that was used without one counts what the type
/// already holds (its loose sum was not kept while it had no limit).
#[test]
fn limit_set_after_use_counts_what_is_held() {
    let ty = new_type(c"late limit");
    // SAFETY: valid type; the blocks are freed below.
    let held: Vec<_> = (0..10).map(|_| unsafe { malloc(1024, ty, 0) }).collect();
    // SAFETY: live test type; C programs set the field the same way.
    unsafe { (*ty).ks_limit = 12 * 1024 };
    // SAFETY: valid type.
    let big = unsafe { malloc(4000, ty, M_NULLOK) };
    assert!(big.is_null(), "10 KiB held + 4 KiB is over a 12 KiB limit");
    // SAFETY: valid type.
    let small = unsafe { malloc(1024, ty, M_NULLOK) };
    assert!(!small.is_null(), "11 KiB is within it");
    // SAFETY: live blocks of `ty`.
    unsafe {
        free(small, ty);
        for p in held {
            free(p, ty);
        }
    }
    assert_eq!(totals(ty).0, 0);
}

/// A type allocated by one thread only is counted with plain stores (its
/// home); when other threads start allocating it while the home is busy
/// with it, the moves to another home and the switch to atomic counting
/// lose no call. Many fresh types, so they race with the home's update
/// many times.
#[test]
fn home_to_shared_switch_loses_no_count() {
    use std::sync::Barrier;
    use std::sync::atomic::AtomicBool;
    const ROUNDS: usize = 200;
    for round in 0..ROUNDS {
        let ty = new_type(c"switch") as usize;
        // Stretch this type's home updates.
        account::WIDEN.store(ty, Ordering::Relaxed);
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let go = std::sync::Arc::new(Barrier::new(3));
        let home = {
            let (stop, go) = (stop.clone(), go.clone());
            std::thread::spawn(move || {
                let ty = ty as *mut malloc_type;
                let mut n = 0i64;
                // SAFETY: valid type; the block is freed at once.
                let first = unsafe { malloc(24, ty, 0) };
                // SAFETY: live block of `ty`.
                unsafe { free(first, ty) };
                n += 1;
                // SAFETY: the owner word is `ks_reserved[1]`.
                let own = unsafe { core::ptr::read_volatile(&(*ty).ks_reserved[1]) };
                assert_eq!(
                    own as usize,
                    current_gd() as usize,
                    "first allocator is home"
                );
                go.wait();
                while !stop.load(Ordering::Relaxed) || n < 1000 {
                    // SAFETY: valid type.
                    let p = unsafe { malloc(24, ty, 0) };
                    // SAFETY: live block of `ty`.
                    unsafe { free(p, ty) };
                    n += 1;
                }
                n
            })
        };
        let others: Vec<_> = (0..2)
            .map(|_| {
                let go = go.clone();
                std::thread::spawn(move || {
                    let ty = ty as *mut malloc_type;
                    go.wait();
                    for _ in 0..500 {
                        // SAFETY: valid type.
                        let p = unsafe { malloc(40, ty, 0) };
                        // SAFETY: live block of `ty`.
                        unsafe { free(p, ty) };
                    }
                    500i64
                })
            })
            .collect();
        let mut want: i64 = others.into_iter().map(|h| h.join().unwrap()).sum();
        stop.store(true, Ordering::Relaxed);
        want += home.join().unwrap();
        let ty = ty as *mut malloc_type;
        let (mem, inuse, calls) = totals(ty);
        assert_eq!(calls, want, "ks_calls in round {round}");
        assert_eq!((mem, inuse), (0, 0));
        // SAFETY: `ty` came from `new_type` and nothing uses it any more.
        unsafe {
            types::unregister(ty);
            drop(Box::from_raw(ty));
        }
    }
    account::WIDEN.store(0, Ordering::Relaxed);
}

/// A type one thread sets up and another then uses moves to the user: it
/// keeps plain counting. Two threads taking turns make it shared after a
/// few moves.
#[test]
fn a_type_moves_to_its_new_user_then_becomes_shared() {
    let ty = new_type(c"moving") as usize;
    let owner = |ty: usize| {
        // SAFETY: the owner word is `ks_reserved[1]` of a live test type.
        unsafe { core::ptr::read_volatile(&(*(ty as *mut malloc_type)).ks_reserved[1]) as usize }
    };
    let one = |ty: usize| {
        let ty = ty as *mut malloc_type;
        // SAFETY: valid type; the block is freed at once.
        unsafe { free(malloc(32, ty, 0), ty) };
        current_gd() as usize
    };
    let first = std::thread::spawn(move || one(ty)).join().unwrap();
    assert_eq!(owner(ty), first);
    let user = std::thread::spawn(move || {
        let me = one(ty);
        for _ in 0..100 {
            one(ty);
        }
        me
    })
    .join()
    .unwrap();
    assert_eq!(owner(ty), user, "moved to the thread that uses it");
    // Two threads taking turns.
    super::tests_shared::make_shared(ty as *mut malloc_type);
    let ty = ty as *mut malloc_type;
    assert_eq!(totals(ty), (0, 0, 1 + 101 + 20));
}

/// Registration clears whatever a C program left in the owner word, so a
/// garbage value is never taken for a cpu state.
#[test]
fn registration_resets_the_owner_word() {
    let ty = new_type(c"garbage");
    // SAFETY: live test type, not registered yet.
    unsafe { (*ty).ks_reserved[1] = 0x5a5a_5a5a_5a5a };
    // SAFETY: valid type.
    let p = unsafe { malloc(100, ty, 0) };
    // SAFETY: live block of `ty`; the type is still valid.
    unsafe {
        free(p, ty);
        assert_eq!((*ty).ks_reserved[1] as usize, current_gd() as usize);
        assert_eq!((*ty).ks_calls, 1);
    }
}

/// `slab_malloc_uninit` clears the owner word too: `slab_malloc`'s fast
/// path takes a type whose owner word is its cpu state (or shared) for a
/// registered one without testing the registration word, so a type used
/// again after `slab_malloc_uninit` must go through registration again.
#[test]
fn uninit_resets_the_owner_word() {
    std::thread::spawn(|| {
        let ty = new_type(c"uninit-owner");
        // SAFETY: valid type; the block is freed before the type goes.
        unsafe { free(malloc(100, ty, 0), ty) };
        // SAFETY: live test type.
        let own = unsafe { (*ty).ks_reserved[1] } as usize;
        assert_eq!(own, current_gd() as usize);
        // SAFETY: a registered type with nothing allocated.
        unsafe { types::unregister(ty) };
        // SAFETY: live test type.
        assert_eq!(unsafe { (*ty).ks_reserved[1] }, 0, "owner word kept");
        // Used again: registered again, its chunks tagged with its new tag.
        // SAFETY: valid type.
        let p = unsafe { malloc(100, ty, 0) };
        // SAFETY: live test type.
        let tag = unsafe { types::registered_tag(ty) }.expect("registered again");
        let base = p as usize & !params().zone_mask;
        let z = base as *mut zone::Zone;
        // SAFETY: `p` is a live chunk of the live zone `z`.
        let got = unsafe {
            let off = p as usize - (*z).f.base;
            zone::tag(z, off / (*z).f.cs as usize).load(core::sync::atomic::Ordering::Relaxed)
        };
        assert_eq!(got, tag, "chunk tag");
        // SAFETY: live block of `ty`.
        unsafe { free(p, ty) };
        assert_eq!(totals(ty), (0, 0, 2), "both calls counted");
    })
    .join()
    .unwrap();
}

#[test]
fn cross_thread_frees_return_to_the_owner() {
    let ty = new_type(c"xfree") as usize;
    let (tx, rx) = mpsc::sync_channel::<usize>(1024);
    let consumer = std::thread::spawn(move || {
        let ty = ty as *mut malloc_type;
        while let Ok(p) = rx.recv() {
            check(p as *mut c_void, 256, 0xab);
            // SAFETY: block of `ty` handed over by the producer.
            unsafe { free(p as *mut c_void, ty) };
        }
    });
    let ty = ty as *mut malloc_type;
    let gd = current_gd();
    for _ in 0..200_000 {
        // SAFETY: valid type.
        let p = unsafe { malloc(256, ty, 0) };
        fill(p, 256, 0xab);
        tx.send(p as usize).unwrap();
    }
    drop(tx);
    consumer.join().unwrap();
    assert_eq!(totals(ty).1, 0);
    // 200000 x 256 bytes is 50 MB; if remote frees came back, a few zones
    // did the job.
    // SAFETY: this thread's state.
    let zones = unsafe { (*gd).ZoneInfo.ks_inuse[0] };
    assert!(zones < 40, "{zones} zones mapped: remote frees not reused");
}

#[test]
fn blocks_outlive_the_thread_that_allocated_them() {
    let ty = new_type(c"orphan") as usize;
    let blocks: Vec<usize> = (0..3)
        .flat_map(|_| {
            std::thread::spawn(move || {
                (0..5000)
                    // SAFETY: valid type.
                    .map(|k| unsafe { malloc(16 + k % 300, ty as *mut malloc_type, 0) } as usize)
                    .collect::<Vec<_>>()
            })
            .join()
            .unwrap()
        })
        .collect();
    let ty = ty as *mut malloc_type;
    assert_eq!(totals(ty).1, 15000);
    for p in blocks {
        // SAFETY: live blocks of `ty`.
        unsafe { free(p as *mut c_void, ty) };
    }
    assert_eq!(totals(ty), (0, 0, 15000));
    // The pooled states are adopted by new threads and work.
    std::thread::spawn(move || model_run(5, 500, new_type(c"adopter")))
        .join()
        .unwrap();
}

#[test]
fn free_zones_are_unmapped() {
    std::thread::spawn(|| {
        let ty = new_type(c"rss");
        let gd = current_gd();
        // SAFETY: this thread's state.
        let zones = || unsafe { (*gd).ZoneInfo.ks_inuse[0] };
        let before = zones();
        let v: Vec<usize> =
            // SAFETY: valid type.
            (0..100_000).map(|_| unsafe { malloc(1000, ty, 0) } as usize).collect();
        let peak = zones();
        assert!(peak - before > 100);
        for p in v {
            // SAFETY: live blocks.
            unsafe { free(p as *mut c_void, ty) };
        }
        let after = zones();
        assert!(
            after - before <= ZONE_CACHE_MAX as i64 + 1,
            "{after} zones still mapped"
        );
    })
    .join()
    .unwrap();
}

#[test]
fn zone_cache_grows_under_churn_and_shrinks_back() {
    std::thread::spawn(|| {
        let ty = new_type(c"churn");
        let gd = current_gd();
        // `ks_calls` of `ZoneInfo` counts zone mappings, `ks_inuse[0]`
        // mapped zones.
        // SAFETY: this thread's state.
        let maps = || unsafe { (*gd).ZoneInfo.ks_calls };
        // SAFETY: this thread's state.
        let zones = || unsafe { (*gd).ZoneInfo.ks_inuse[0] };
        // SAFETY: this thread's state.
        let cap = || unsafe { (*gd).sl_CacheMax };
        assert_eq!(cap(), ZONE_CACHE_MAX);
        // This thread's state may be a pooled one that an exited thread
        // of another test left with zones of live blocks (blocks outlive
        // their thread): only the zones this test adds must go.
        let held = zones();
        // 40 zones' worth of 1000-byte blocks, allocated and freed in turn:
        // more than the initial cache holds.
        let round = |n: usize| {
            let v: Vec<usize> =
                // SAFETY: valid type.
                (0..n).map(|_| unsafe { malloc(1000, ty, 0) } as usize).collect();
            for p in v {
                // SAFETY: live blocks.
                unsafe { free(p as *mut c_void, ty) };
            }
        };
        let per_round = 40 * params().zone_size / 1024;
        for _ in 0..4 {
            round(per_round);
        }
        assert!(cap() > ZONE_CACHE_MAX, "cache did not grow: {}", cap());
        assert!(cap() <= ZONE_CACHE_HIGH);
        let before = maps();
        for _ in 0..4 {
            round(per_round);
        }
        assert_eq!(maps(), before, "zones mapped again in steady state");
        // A large free-all phase: the cache shrinks back and the zones go.
        round(100_000);
        assert_eq!(cap(), ZONE_CACHE_MAX);
        assert!(
            zones() <= held + ZONE_CACHE_MAX as i64 + 1,
            "{} zones mapped ({held} held by others' blocks at the start)",
            zones()
        );
    })
    .join()
    .unwrap();
}

#[test]
fn limit_is_enforced() {
    let ty = new_type(c"limited");
    // SAFETY: live test type.
    unsafe { (*ty).ks_limit = 10_000 };
    let mut v = Vec::new();
    loop {
        // SAFETY: valid type.
        let p = unsafe { malloc(1000, ty, M_NULLOK) };
        if p.is_null() {
            break;
        }
        v.push(p);
    }
    assert_eq!(v.len(), 9, "1024-byte chunks under a 10000-byte limit");
    assert!(totals(ty).0 <= 10_000);
    // SAFETY: valid type.
    assert!(unsafe { malloc(50_000, ty, M_NULLOK) }.is_null());
    for p in v.drain(..) {
        // SAFETY: live blocks.
        unsafe { free(p, ty) };
    }
    // SAFETY: valid type.
    let p = unsafe { malloc(1000, ty, M_NULLOK) };
    assert!(!p.is_null(), "limit frees up again");
    // SAFETY: live block.
    unsafe { free(p, ty) };
}

#[test]
fn stats_slots_are_in_range() {
    let gd = current_gd();
    // SAFETY: this thread's state.
    let s = unsafe { (*gd).sl_Slot };
    assert!((0..SMP_MAXCPU as i32).contains(&s));
}

#[test]
fn chunk_index_by_reciprocal_is_exact() {
    // Every chunk size, every offset of the largest zone.
    let mut sizes: Vec<usize> = (1..ZALLOC_ZONE_LIMIT as usize)
        .map(|n| zoneindex(n).1)
        .collect();
    sizes.dedup();
    assert_eq!(sizes.len(), NZONES);
    for cs in sizes {
        let r = zone::recip(cs);
        for off in 0..ZALLOC_MAX_ZONE_SIZE as usize {
            assert_eq!(
                zone::index(off, r),
                (off / cs, off % cs == 0),
                "chunk size {cs}, offset {off}"
            );
        }
    }
}

/// Owners allocate, check and free while a consumer frees half their
/// blocks remotely and another thread runs reclaimer passes back to back:
/// states are parked and taken back while their owners are busy, and no
/// block is handed out twice, no content lost, no count off.
#[test]
fn reclaimer_races_busy_owners_without_loss() {
    use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let stop = Arc::new(AtomicBool::new(false));
    let states = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let reaper = {
        let (stop, states) = (stop.clone(), states.clone());
        std::thread::spawn(move || {
            reclaim::STRETCH.with(|s| s.set(true));
            while !stop.load(Ordering::Relaxed) {
                // Real passes, and the owners' states taken back
                // whether or not a pass would have chosen them.
                reclaim::pass();
                for s in states.iter() {
                    let gd = s.load(Ordering::Acquire) as *mut SLGlobalData;
                    if !gd.is_null() {
                        // SAFETY: a cpu state (never freed).
                        unsafe { reclaim::reclaim_now(gd) };
                    }
                }
                std::thread::yield_now();
            }
        })
    };
    let parks0 = reclaim::PARKS.load(Ordering::Relaxed);
    let owners: Vec<_> = (0..2usize)
        .map(|o| {
            let states = states.clone();
            std::thread::spawn(move || {
                let ty = new_type(c"reclaim-race");
                let gd = current_gd();
                states[o].store(gd as usize, Ordering::Release);
                // SAFETY: this thread's state (maybe a pooled one that
                // holds other tests' blocks).
                let zones = || unsafe { (*gd).ZoneInfo.ks_inuse[0] };
                let before = zones();
                let (tx, rx) = mpsc::sync_channel::<(usize, usize, u8)>(4096);
                let tyu = ty as usize;
                let consumer = std::thread::spawn(move || {
                    while let Ok((p, n, v)) = rx.recv() {
                        check(p as *mut c_void, n, v);
                        // SAFETY: live block of the owner's type, handed over.
                        unsafe { free(p as *mut c_void, tyu as *mut malloc_type) };
                    }
                });
                let mut rng = Rng(o as u64 * 1000 + 3);
                let mut calls = 0i64;
                for round in 0..400usize {
                    let mut mine = Vec::new();
                    for k in 0..500usize {
                        let n = 8 + rng.below(2000) as usize;
                        // SAFETY: valid type.
                        let p = unsafe { malloc(n, ty, 0) };
                        calls += 1;
                        let v = ((round * 7 + k) % 251) as u8 + 1;
                        fill(p, n, v);
                        if k % 2 == 0 {
                            tx.send((p as usize, n, v)).unwrap();
                        } else {
                            mine.push((p as usize, n, v));
                        }
                    }
                    for (p, n, v) in mine {
                        check(p as *mut c_void, n, v);
                        // SAFETY: live block of `ty`.
                        unsafe { free(p as *mut c_void, ty) };
                    }
                }
                drop(tx);
                consumer.join().unwrap();
                let (mem, n, c) = totals(ty);
                assert_eq!((mem, n), (0, 0), "blocks left counted");
                assert_eq!(c, calls);
                // Every zone this test filled is free again: a chunk lost
                // from a free list would keep its zone mapped.
                // SAFETY: this thread's state.
                unsafe { zone::release_free(gd) };
                assert!(zones() <= before, "{} zones left, {before} before", zones());
            })
        })
        .collect();
    for h in owners {
        h.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    reaper.join().unwrap();
    eprintln!(
        "reclaimer_races_busy_owners_without_loss: {} parks",
        reclaim::PARKS.load(Ordering::Relaxed) - parks0
    );
    assert!(
        reclaim::PARKS.load(Ordering::Relaxed) > parks0,
        "no state was parked: the race was not exercised"
    );
}

/// Blocks of a thread that then sleeps, freed by another thread: the
/// reclaimer thread unmaps the sleeper's zones within its bound (two
/// periods and a pass; a generous wait here), and the sleeper allocates
/// normally afterwards.
#[test]
fn remote_frees_into_a_sleeping_owner_are_unmapped() {
    let ty = new_type(c"dormant") as usize;
    let (tx, rx) = mpsc::channel::<(usize, i64, Vec<usize>)>();
    let (wake_tx, wake_rx) = mpsc::channel::<()>();
    let owner = std::thread::spawn(move || {
        let ty = ty as *mut malloc_type;
        let gd = current_gd();
        // SAFETY: this thread's state (it may be a pooled one holding
        // other tests' blocks).
        let before = unsafe { (*gd).ZoneInfo.ks_inuse[0] };
        // SAFETY: valid type.
        let v = (0..40_000)
            .map(|_| unsafe { malloc(1000, ty, 0) } as usize)
            .collect();
        tx.send((gd as usize, before, v)).unwrap();
        wake_rx.recv().unwrap();
        model_run(9, 500, ty);
    });
    let (gd, before, blocks) = rx.recv().unwrap();
    let gd = gd as *mut SLGlobalData;
    // SAFETY: the owner's state is never freed; a racy read of a counter
    // for a test.
    let zones = || unsafe { core::ptr::read_volatile(&(*gd).ZoneInfo.ks_inuse[0]) };
    let peak = zones();
    assert!(peak - before > 200, "{peak} zones");
    for p in blocks {
        // SAFETY: live blocks of `ty`.
        unsafe { free(p as *mut c_void, ty as *mut malloc_type) };
    }
    let t0 = std::time::Instant::now();
    while zones() > before + 2 && t0.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let left = zones();
    let waited = t0.elapsed();
    wake_tx.send(()).unwrap();
    owner.join().unwrap();
    assert!(
        left <= before + 2,
        "{left} of {peak} zones still mapped after {waited:?} ({before} before)"
    );
}

/// While a pass holds an owner's state parked, the owner's `free` and
/// `malloc` wait for it instead of touching the zones; both go on when
/// the pass is done.
#[test]
fn owner_waits_while_its_state_is_parked() {
    use core::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};
    let ty = new_type(c"parked") as usize;
    let step = Arc::new(AtomicUsize::new(0));
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (ready_tx, ready_rx) = mpsc::channel::<usize>();
    let owner = {
        let step = step.clone();
        std::thread::spawn(move || {
            let ty = ty as *mut malloc_type;
            // SAFETY: valid type.
            let (p, q) = unsafe { (malloc(100, ty, 0), malloc(100, ty, 0)) };
            ready_tx.send(current_gd() as usize).unwrap();
            go_rx.recv().unwrap();
            // SAFETY: live block of `ty`.
            unsafe { free(p, ty) };
            step.store(1, Ordering::SeqCst);
            go_rx.recv().unwrap();
            // SAFETY: valid type.
            let r = unsafe { malloc(100, ty, 0) };
            step.store(2, Ordering::SeqCst);
            // SAFETY: live blocks of `ty`.
            unsafe {
                free(q, ty);
                free(r, ty);
            }
        })
    };
    let gd = ready_rx.recv().unwrap() as *mut SLGlobalData;
    let wait_for = |n: usize| {
        let t0 = Instant::now();
        while step.load(Ordering::SeqCst) < n && t0.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(1));
        }
        step.load(Ordering::SeqCst)
    };
    for n in 1..=2 {
        // SAFETY: the owner's state; its owner waits on the channel.
        let held = unsafe { reclaim::hold_parked(gd) }.expect("owner idle, state parks");
        go_tx.send(()).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(
            step.load(Ordering::SeqCst),
            n - 1,
            "the owner went on (step {n}) while its state was parked"
        );
        drop(held);
        assert_eq!(wait_for(n), n, "the owner did not go on after the pass");
    }
    owner.join().unwrap();
    assert_eq!(totals(ty as *mut malloc_type).1, 0);
}

/// Without a working `membarrier()` the reclaimer cannot exclude the
/// owner (the owner's window store and its flag load may pass each other
/// in its cpu's store buffer): the state must not be parked, its zones
/// stay the owner's alone.
#[test]
fn no_park_without_membarrier() {
    let ty = new_type(c"nobarrier") as usize;
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (ready_tx, ready_rx) = mpsc::channel::<usize>();
    let owner = std::thread::spawn(move || {
        let ty = ty as *mut malloc_type;
        // SAFETY: valid type.
        let p = unsafe { malloc(100, ty, 0) };
        ready_tx.send(current_gd() as usize).unwrap();
        go_rx.recv().unwrap();
        // SAFETY: live block of `ty`.
        unsafe { free(p, ty) };
    });
    let gd = ready_rx.recv().unwrap() as *mut SLGlobalData;
    account::FAIL_BARRIER.with(|f| f.set(true));
    // SAFETY: the owner's state; its owner waits on the channel.
    let held = unsafe { reclaim::hold_parked(gd) };
    account::FAIL_BARRIER.with(|f| f.set(false));
    let parked_then = held.is_some();
    drop(held);
    // SAFETY: a cpu state.
    let parked_now = unsafe { reclaim::parked(gd) };
    go_tx.send(()).unwrap();
    owner.join().unwrap();
    assert!(!parked_then, "parked although membarrier() failed");
    assert!(!parked_now, "the flag was left set");
    assert_eq!(totals(ty as *mut malloc_type).1, 0);
}
