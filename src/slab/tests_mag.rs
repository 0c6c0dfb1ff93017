//! The magazine (`mag`): a free by the owning cpu keeps the chunk for
//! the next allocation of its class, bounded, exact in the statistics,
//! and given back with the cpu's free memory.

use core::ffi::c_void;

use super::tests::{new_type, totals};
use super::*;

/// Chunks in the calling thread's magazines.
fn held() -> usize {
    // SAFETY: this thread's own state, read between calls (no window of
    // it is open, and only this thread touches its magazines).
    unsafe { mag::held(current_gd()) }
}

#[test]
fn a_freed_chunk_is_the_next_one_allocated() {
    std::thread::spawn(|| {
        let ty = new_type(c"mag-pair");
        // SAFETY: valid type.
        let p = unsafe { malloc(64, ty, 0) };
        let before = held();
        // SAFETY: live block of `ty`.
        unsafe { free(p, ty) };
        assert_eq!(held(), before + 1, "the free did not go to the magazine");
        assert_eq!(
            totals(ty),
            (0, 0, 1),
            "a chunk in the magazine is not in use"
        );
        // SAFETY: valid type.
        let q = unsafe { malloc(64, ty, 0) };
        assert_eq!(q, p, "the magazine's chunk was not taken first");
        assert_eq!(held(), before);
        assert_eq!(totals(ty), (64, 1, 2));
        // Its tag was set again: the free is accepted (a stale tag would
        // abort as a double free).
        // SAFETY: live block of `ty`.
        unsafe { free(q, ty) };
        assert_eq!(totals(ty), (0, 0, 2));
    })
    .join()
    .unwrap();
}

#[test]
fn magazines_are_bounded_and_given_back() {
    std::thread::spawn(|| {
        let ty = new_type(c"mag-bound");
        let gd = current_gd();
        // SAFETY: this thread's state, no window open.
        let zones = || unsafe { (*gd).ZoneInfo.ks_inuse[0] };
        // A pooled state may hold other tests' blocks.
        let before = zones();
        let sizes = [8usize, 64, 1000, 8000];
        let mut blocks = Vec::new();
        for &n in &sizes {
            for _ in 0..500 {
                // SAFETY: valid type.
                blocks.push((unsafe { malloc(n, ty, 0) }, n));
            }
        }
        for &(p, _) in &blocks {
            // SAFETY: live blocks of `ty`.
            unsafe { free(p, ty) };
        }
        assert_eq!(totals(ty), (0, 0, 2000));
        // At most `mag::MAX` chunks a class, and at most about 16 KiB for
        // large chunks (8000-byte chunks: 2).
        let bound: usize = sizes
            .iter()
            .map(|&n| (16384 / zoneindex(n).1).clamp(2, mag::MAX as usize))
            .sum();
        assert!(held() <= bound, "{} chunks held, bound {bound}", held());
        assert!(held() >= 2, "nothing kept in the magazines");
        // SAFETY: this thread's state, no window open.
        unsafe { zone::release_free(gd) };
        assert_eq!(held(), 0, "giving back left chunks in the magazines");
        // Every zone this test filled is free again and unmapped (a
        // chunk lost from a magazine would keep its zone).
        assert!(
            zones() <= before,
            "{} zones mapped, {before} before",
            zones()
        );
        // The chunks went back whole: the zones serve again.
        // SAFETY: valid type.
        let p = unsafe { malloc(64, ty, 0) };
        // SAFETY: live block of `ty`.
        unsafe { free(p.cast::<c_void>(), ty) };
        assert_eq!(totals(ty), (0, 0, 2001));
    })
    .join()
    .unwrap();
}
