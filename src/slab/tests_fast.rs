//! The fast paths' shortcuts: `slab_free(NULL)` through the slow path,
//! and the registry's shared empty leaf.

use core::ptr;

use super::tests::{new_type, totals};
use super::*;

#[test]
fn freeing_null_does_nothing() {
    std::thread::spawn(|| {
        let ty = new_type(c"free-null");
        // No allocator state on this thread yet, the type never used.
        // SAFETY: valid type; NULL is never freed.
        unsafe { free(ptr::null_mut(), ty) };
        assert!(tls::get().is_null(), "freeing NULL set up a state");
        assert_eq!(totals(ty), (0, 0, 0));
        // SAFETY: valid type.
        let p = unsafe { malloc(64, ty, 0) };
        // With a state and a registered type: the fast path's zone base
        // of NULL is 0, no zone.
        // SAFETY: as above.
        unsafe { free(ptr::null_mut(), ty) };
        assert_eq!(totals(ty), (64, 1, 1), "freeing NULL changed the counts");
        let other = new_type(c"free-null-unused");
        // SAFETY: valid type, never used.
        unsafe { free(ptr::null_mut(), other) };
        assert_eq!(totals(other), (0, 0, 0));
        // SAFETY: live block of `ty`.
        unsafe { free(p, ty) };
        assert_eq!(totals(ty), (0, 0, 1));
    })
    .join()
    .unwrap();
}

/// Two 4 GiB stretches far from where the kernel maps anything here, at
/// the same offset: recording a zone in one must not make the other,
/// whose top entry still points at the shared empty leaf, have one.
#[test]
fn a_zone_in_one_stretch_is_not_in_another() {
    let a = 0x7e00_0000_0000usize + (5 << 15);
    let b = 0x7d00_0000_0000usize + (5 << 15);
    assert!(!registry::is_zone(a) && !registry::is_zone(b));
    // Forgetting a zone of a stretch with no leaf changes nothing.
    assert!(registry::set(b, false));
    assert!(registry::set(a, true));
    assert!(registry::is_zone(a), "the zone was not recorded");
    assert!(!registry::is_zone(b), "a stretch without zones has one");
    assert!(
        !registry::is_zone(a + (1 << 15)),
        "the next grain is a zone"
    );
    assert!(registry::set(a, false));
    assert!(!registry::is_zone(a), "the zone was not forgotten");
}
