//! Thread stacks: anonymous mappings with a [`GUARD_SIZE`] `PROT_NONE`
//! guard region below the usable area, so that an overflow faults instead
//! of running into another thread's memory: stacks are mapped next to each
//! other, and a guard of 64 KiB means that no frame smaller than 64 KiB
//! (a large local array, a VLA, compiled without stack-clash probing) can
//! jump from one stack into the next. The guard is part of the stack's
//! mapping (address space, no memory, no extra mapping beyond the
//! protection split); `lwkt::overflow` reports a fault in it. Each stack
//! is registered with valgrind (a no-op when not running under it) so that
//! its stack switches are understood.
//!
//! The size of the stacks `lwkt_create` maps is [`size`]: `THREAD_STACK`
//! (64 KiB) unless `LIBCAPS_STACK_SIZE` asked for more when the thread
//! package started ([`configure`]).
//!
//! Reuse is the thread cache's business (`lwkt::thread`): an exited thread
//! keeps its stack on the cpu's free list.

use core::ffi::{c_char, c_uint, c_void};
use core::ptr;
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::abi::{THREAD_STACK, md_thread};

/// Bytes of `PROT_NONE` below every stack (at least one page).
pub const GUARD_SIZE: usize = 64 * 1024;

/// Usable bytes of the stacks `lwkt_create` maps (see [`configure`]).
static SIZE: AtomicUsize = AtomicUsize::new(THREAD_STACK as usize);

/// Smallest and largest `LIBCAPS_STACK_SIZE` accepted.
const SIZE_MIN: usize = 16 * 1024;
const SIZE_MAX: usize = 1 << 30;

/// The usable size of a thread stack made by `lwkt_create`.
#[inline]
pub fn size() -> usize {
    SIZE.load(Ordering::Relaxed)
}

/// Read `LIBCAPS_STACK_SIZE` (bytes, or with a `K`/`M` suffix; 16 KiB to
/// 1 GiB) once, when the thread package starts; anything else keeps
/// `THREAD_STACK` and is reported.
pub fn configure() {
    // getenv, not std::env: std's environment lock, held by another
    // thread at a fork, could stop a child here.
    // SAFETY: a NUL-terminated name; the result is NULL or a C string
    // that stays valid while nobody changes the environment.
    let v = unsafe { libc::getenv(c"LIBCAPS_STACK_SIZE".as_ptr()) };
    if v.is_null() {
        return;
    }
    // SAFETY: as above.
    let text = unsafe { core::ffi::CStr::from_ptr(v) }.to_string_lossy();
    match parse_size(&text) {
        Some(n) if (SIZE_MIN..=SIZE_MAX).contains(&n) => SIZE.store(n, Ordering::Relaxed),
        _ => crate::warn!(
            "uthread_init",
            "LIBCAPS_STACK_SIZE={text:?} is not a size from 16K to 1024M: thread stacks stay {} KiB",
            THREAD_STACK / 1024
        ),
    }
}

/// `"65536"`, `"256K"`, `"1M"` (either case) in bytes.
fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim();
    let (digits, unit) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 1024),
        b'm' | b'M' => (&s[..s.len() - 1], 1024 * 1024),
        _ => (s, 1),
    };
    digits.parse::<usize>().ok()?.checked_mul(unit)
}

unsafe extern "C" {
    /// `VALGRIND_STACK_REGISTER(lo, hi)` (C shim); 0 outside valgrind.
    fn libcaps_vg_stack_register(lo: *mut c_void, hi: *mut c_void) -> c_uint;
    /// `VALGRIND_STACK_DEREGISTER(id)` (C shim).
    fn libcaps_vg_stack_deregister(id: c_uint);
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 { n as usize } else { 4096 }
}

/// Map a stack with `size` usable bytes (rounded up to pages) and
/// [`GUARD_SIZE`] bytes of guard below it. Returns the lowest usable address and fills `mach`, or
/// NULL when the kernel refuses the mapping (`vm.max_map_count`, memory).
///
/// # Safety
/// `mach` must be writable.
pub unsafe fn alloc(size: usize, mach: *mut md_thread) -> *mut c_char {
    let page = page_size();
    let usable = size.div_ceil(page) * page;
    let guard = GUARD_SIZE.div_ceil(page) * page;
    let len = usable + guard;
    // SAFETY: anonymous private mapping, no address hint.
    let map = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_STACK,
            -1,
            0,
        )
    };
    if map == libc::MAP_FAILED {
        return ptr::null_mut();
    }
    // SAFETY: the guard belongs to the mapping just made.
    if unsafe { libc::mprotect(map, guard, libc::PROT_NONE) } != 0 {
        // SAFETY: unmapping what was mapped above.
        unsafe { libc::munmap(map, len) };
        return ptr::null_mut();
    }
    // SAFETY: `map + guard .. map + len` is the usable part of the mapping.
    let lo = unsafe { map.cast::<c_char>().add(guard) };
    // SAFETY: `lo + usable` is the end of the mapping.
    let hi = unsafe { lo.add(usable) };
    // SAFETY: the shim only issues a valgrind client request.
    let vg = unsafe { libcaps_vg_stack_register(lo.cast(), hi.cast()) };
    super::san::stack_mapped(lo.cast(), usable);
    // SAFETY: the caller guarantees `mach` is writable.
    unsafe {
        (*mach).mtd_stksize = usable;
        (*mach).mtd_map = map;
        (*mach).mtd_maplen = len;
        (*mach).mtd_vgstack = vg;
    }
    lo
}

/// Unmap a stack made by [`alloc`] and clear `mach`. Does nothing for a
/// thread whose stack is not ours.
///
/// # Safety
/// Nobody may run on the stack any more.
pub unsafe fn free(mach: *mut md_thread) {
    // SAFETY: the caller guarantees `mach` is valid and the stack unused.
    unsafe {
        if (*mach).mtd_map.is_null() {
            return;
        }
        libcaps_vg_stack_deregister((*mach).mtd_vgstack);
        let lo = (*mach)
            .mtd_map
            .cast::<u8>()
            .add((*mach).mtd_maplen - (*mach).mtd_stksize);
        super::san::stack_unmapped(lo.cast(), (*mach).mtd_stksize);
        libc::munmap((*mach).mtd_map, (*mach).mtd_maplen);
        (*mach).mtd_map = ptr::null_mut();
        (*mach).mtd_maplen = 0;
        (*mach).mtd_stksize = 0;
        (*mach).mtd_vgstack = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_sizes_parse() {
        assert_eq!(parse_size("65536"), Some(65536));
        assert_eq!(parse_size("256K"), Some(256 * 1024));
        assert_eq!(parse_size("2m"), Some(2 << 20));
        assert_eq!(parse_size("12x"), None);
        assert_eq!(parse_size(""), None);
    }

    #[test]
    fn stack_has_guard_region_below_and_is_writable() {
        // SAFETY: a zeroed md_thread is a valid value (NULL, zeros).
        let mut mach: md_thread = unsafe { core::mem::zeroed() };
        // SAFETY: `mach` is a local.
        let lo = unsafe { alloc(10000, &mut mach) };
        assert!(!lo.is_null());
        assert_eq!(mach.mtd_stksize % page_size(), 0);
        assert!(mach.mtd_stksize >= 10000);
        // SAFETY: the usable range was just mapped read/write.
        unsafe {
            *lo = 1;
            *lo.add(mach.mtd_stksize - 1) = 2;
        }
        // The guard page answers mincore-style probes through mprotect: it
        // must not be readable. msync on it still succeeds (it is mapped),
        // so check the protection via /proc/self/maps.
        let guard = mach.mtd_map as usize;
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let line = maps
            .lines()
            .find(|l| l.starts_with(&format!("{guard:x}-")))
            .expect("guard page mapping present");
        assert!(
            line.split_whitespace().nth(1).unwrap().starts_with("---p"),
            "{line}"
        );
        // The whole 64 KiB below the usable area is the guard.
        let range = line.split_whitespace().next().unwrap();
        let (a, b) = range.split_once('-').unwrap();
        let glen = usize::from_str_radix(b, 16).unwrap() - usize::from_str_radix(a, 16).unwrap();
        assert!(glen >= GUARD_SIZE, "{line}");
        assert_eq!(
            lo as usize - guard,
            GUARD_SIZE.div_ceil(page_size()) * page_size()
        );
        // SAFETY: the stack is not in use.
        unsafe { free(&mut mach) };
        assert!(mach.mtd_map.is_null());
    }
}
