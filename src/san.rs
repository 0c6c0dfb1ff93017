//! Which sanitizer runtimes the program was built with, and the
//! ThreadSanitizer hand-off annotations (`__tsan_release` /
//! `__tsan_acquire`) that the virtual cpus (IPIs, the MP lock, a cpu's
//! start) and the LWKT core (tokens) need. Below `cpu` and `lwkt`: both
//! use it; the stack-switch announcements are in `lwkt::san`, which looks
//! the runtimes up ([`set_hooks`]) when cpu 0 is set up.
//!
//! A program without sanitizers pays one load and a branch that is never
//! taken per annotation.

use core::ffi::c_void;
use core::sync::atomic::{AtomicU8, Ordering};

unsafe extern "C" {
    fn libcaps_tsan_acquire(addr: *mut c_void);
    fn libcaps_tsan_release(addr: *mut c_void);
}

/// [`hooks`] bit: AddressSanitizer is there.
pub const ASAN: u8 = 1;
/// [`hooks`] bit: ThreadSanitizer is there.
pub const TSAN: u8 = 2;
/// [`hooks`] bit: LeakSanitizer is there.
pub const LSAN: u8 = 4;

/// Which runtimes are there ([`ASAN`], [`TSAN`], [`LSAN`] bits); set once
/// by [`set_hooks`] before the first switch.
static HOOKS: AtomicU8 = AtomicU8::new(0);

/// The runtimes found (bits [`ASAN`], [`TSAN`], [`LSAN`]). One load.
#[inline(always)]
pub fn hooks() -> u8 {
    HOOKS.load(Ordering::Relaxed)
}

/// Record the runtimes found (`lwkt::san::init`, on cpu 0's kernel
/// thread while it is set up).
pub fn set_hooks(hooks: u8) {
    HOOKS.store(hooks, Ordering::Release);
}

/// `__tsan_release(addr)` under ThreadSanitizer: what the current thread
/// did so far happens before whatever follows an [`acquire`] of `addr`.
#[inline(always)]
pub fn release<T>(addr: *const T) {
    if hooks() & TSAN != 0 {
        tsan_release(addr.cast());
    }
}

/// `__tsan_acquire(addr)` under ThreadSanitizer (see [`release`]).
#[inline(always)]
pub fn acquire<T>(addr: *const T) {
    if hooks() & TSAN != 0 {
        tsan_acquire(addr.cast());
    }
}

/// [`release`] for a path that must stay small where it is inlined (the
/// MP lock, inside the scheduler's pick): the test is out of line too.
#[cold]
#[inline(never)]
pub fn release_out_of_line<T>(addr: *const T) {
    release(addr)
}

#[cold]
#[inline(never)]
fn tsan_release(addr: *const c_void) {
    // SAFETY: TSan only records the address.
    unsafe { libcaps_tsan_release(addr.cast_mut()) }
}

#[cold]
#[inline(never)]
fn tsan_acquire(addr: *const c_void) {
    // SAFETY: TSan only records the address.
    unsafe { libcaps_tsan_acquire(addr.cast_mut()) }
}
