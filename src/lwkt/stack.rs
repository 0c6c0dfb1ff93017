//! Thread stacks, each with a [`GUARD_SIZE`] guard region below the
//! usable area, so that an overflow faults instead of running into
//! another thread's memory: stacks lie next to each other, and a guard of
//! 64 KiB means that no frame smaller than 64 KiB (a large local array, a
//! VLA, compiled without stack-clash probing) can jump from one stack into
//! the next. `lwkt::overflow` reports a fault in the guard. Each stack is
//! registered with valgrind (a no-op when not running under it) so that
//! its stack switches are understood.
//!
//! Where the kernel has `MADV_GUARD_INSTALL` (Linux 6.13 and later) stacks
//! are slots of large shared mappings with guard pages inside them
//! (`arena`): a stack costs no mapping of its own, and a million of them
//! fit under the default `vm.max_map_count`. Elsewhere each stack is a
//! mapping of its own whose bottom is made `PROT_NONE`, two mappings per
//! stack. Which one is decided once ([`layout`]) and traced when the
//! thread package starts. Either way a stack holds no memory until it is
//! touched, and a released one gives its memory back.
//!
//! The size of the stacks `lwkt_create` makes is [`size`]: `THREAD_STACK`
//! (64 KiB) unless `LIBCAPS_STACK_SIZE` asked for more when the thread
//! package started ([`configure`]).
//!
//! Reuse is the thread cache's business (`lwkt::thread`): an exited thread
//! keeps its stack, pages and all, on the cpu's free list; a stack freed
//! beyond that goes back to its arena (or is unmapped).

mod arena;

use core::ffi::{c_char, c_uint, c_void};
use core::ptr;
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use crate::abi::{THREAD_STACK, md_thread};

/// Bytes of guard region below every stack (at least one page).
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

/// How stacks are laid out in memory (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Slots of shared mappings, guard pages by `MADV_GUARD_INSTALL`.
    Arenas,
    /// A mapping per stack, its guard made `PROT_NONE` by `mprotect`.
    Mappings,
}

/// [`Layout`] once decided: 0 not yet, 1 arenas, 2 mappings.
static LAYOUT: AtomicU8 = AtomicU8::new(0);

/// The layout of stacks in this process: arenas when the kernel knows
/// `MADV_GUARD_INSTALL`. The first call asks the kernel (every later one
/// reads the answer): `madvise` checks the advice before the range, so a
/// zero-length call fails with `EINVAL` exactly when the kernel lacks it.
pub fn layout() -> Layout {
    match LAYOUT.load(Ordering::Relaxed) {
        1 => return Layout::Arenas,
        2 => return Layout::Mappings,
        _ => {}
    }
    // SAFETY: a zero-length range at a page-aligned address: nothing is
    // changed.
    let r = unsafe { libc::madvise(page_size() as *mut c_void, 0, arena::MADV_GUARD_INSTALL) };
    LAYOUT.store(if r == 0 { 1 } else { 2 }, Ordering::Relaxed);
    if r == 0 {
        Layout::Arenas
    } else {
        Layout::Mappings
    }
}

/// When the thread package starts: read `LIBCAPS_STACK_SIZE` (bytes, or
/// with a `K`/`M` suffix; 16 KiB to 1 GiB; anything else keeps
/// `THREAD_STACK` and is reported), decide the [`layout`] and trace it.
pub fn configure() {
    read_size();
    arena::register_fork_handlers();
    let what = match layout() {
        Layout::Arenas => "slots of shared mappings, guard pages by madvise(MADV_GUARD_INSTALL)",
        Layout::Mappings => {
            "one mapping each, guard by mprotect (the kernel has no MADV_GUARD_INSTALL, Linux 6.13)"
        }
    };
    crate::trace!(
        "uthread_init",
        "thread stacks: {} KiB + {} KiB guard, {what}",
        size() / 1024,
        GUARD_SIZE / 1024
    );
}

/// `LIBCAPS_STACK_SIZE` into [`SIZE`] (see [`configure`]).
fn read_size() {
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

/// Make a stack with `size` usable bytes (rounded up to pages) and
/// [`GUARD_SIZE`] bytes of guard below it, in the process's [`layout`].
/// Returns the lowest usable address and fills `mach` (`mtd_map` and
/// `mtd_maplen`: the stack's region, guard included), or NULL when the
/// kernel gives no memory, address space or mapping for it.
///
/// # Safety
/// `mach` must be writable.
pub unsafe fn alloc(size: usize, mach: *mut md_thread) -> *mut c_char {
    let page = page_size();
    let usable = size.div_ceil(page) * page;
    let guard = GUARD_SIZE.div_ceil(page) * page;
    let map = match layout() {
        Layout::Arenas => arena::take(guard, usable),
        Layout::Mappings => map_own(guard, usable),
    };
    let Some(map) = map else {
        return ptr::null_mut();
    };
    let lo = (map + guard) as *mut c_char;
    // SAFETY: `lo + usable` is the end of the stack's region.
    let hi = unsafe { lo.add(usable) };
    // SAFETY: the shim only issues a valgrind client request.
    let vg = unsafe { libcaps_vg_stack_register(lo.cast(), hi.cast()) };
    super::san::stack_mapped(lo.cast(), usable);
    // SAFETY: the caller guarantees `mach` is writable.
    unsafe {
        (*mach).mtd_stksize = usable;
        (*mach).mtd_map = map as *mut c_void;
        (*mach).mtd_maplen = guard + usable;
        (*mach).mtd_vgstack = vg;
    }
    lo
}

/// Why [`alloc`] just failed, for the caller's one line: the stack size
/// and the `errno` the kernel gave.
pub fn no_stack_reason() -> String {
    let err = std::io::Error::last_os_error();
    format!(
        "no memory, address space or mapping left for a {} KiB stack ({err})",
        size() / 1024
    )
}

/// A new private anonymous read/write mapping of `len` bytes for stacks
/// (no memory until touched, no swap reserved): its base.
fn map_stacks(len: usize) -> Option<*mut c_void> {
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
    (map != libc::MAP_FAILED).then_some(map)
}

/// A mapping of its own for a stack, its lowest `guard` bytes
/// `PROT_NONE`: its base.
fn map_own(guard: usize, usable: usize) -> Option<usize> {
    let len = guard + usable;
    let map = map_stacks(len)?;
    // SAFETY: the guard belongs to the mapping just made.
    if unsafe { libc::mprotect(map, guard, libc::PROT_NONE) } != 0 {
        // SAFETY: unmapping what was mapped above.
        unsafe { libc::munmap(map, len) };
        return None;
    }
    Some(map as usize)
}

/// Release a stack made by [`alloc`] and clear `mach`: its memory goes
/// back to the kernel, its region back to its arena (or is unmapped).
/// Does nothing for a thread whose stack is not ours.
///
/// # Safety
/// Nobody may run on the stack any more.
pub unsafe fn free(mach: *mut md_thread) {
    // SAFETY: the caller guarantees `mach` is valid and the stack unused.
    unsafe {
        let map = (*mach).mtd_map;
        if map.is_null() {
            return;
        }
        libcaps_vg_stack_deregister((*mach).mtd_vgstack);
        let (len, usable) = ((*mach).mtd_maplen, (*mach).mtd_stksize);
        let guard = len - usable;
        super::san::stack_unmapped(map.cast::<u8>().add(guard).cast(), usable);
        match layout() {
            Layout::Arenas => arena::give_back(map as usize, guard, usable),
            Layout::Mappings => {
                libc::munmap(map, len);
            }
        }
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

    /// Can the kernel read the byte at `p`? A write(2) from it to a
    /// pipe fails with EFAULT, without a signal, when it cannot.
    fn readable(p: usize) -> bool {
        let mut fds = [0; 2];
        // SAFETY: a pipe of our own, written to and closed here.
        unsafe {
            assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
            let n = libc::write(fds[1], p as *const c_void, 1);
            libc::close(fds[0]);
            libc::close(fds[1]);
            n == 1
        }
    }

    /// The stack at `lo` described by `mach`: writable from end to end,
    /// the whole guard below it inaccessible.
    fn check_stack(lo: *mut c_char, mach: &md_thread, want: usize) {
        let guard = GUARD_SIZE.div_ceil(page_size()) * page_size();
        assert_eq!(mach.mtd_stksize % page_size(), 0);
        assert!(mach.mtd_stksize >= want);
        assert_eq!(mach.mtd_maplen, guard + mach.mtd_stksize);
        assert_eq!(lo as usize - mach.mtd_map as usize, guard);
        // SAFETY: the usable range was just made read/write.
        unsafe {
            *lo = 1;
            *lo.add(mach.mtd_stksize - 1) = 2;
        }
        assert!(readable(lo as usize));
        let map = mach.mtd_map as usize;
        for off in (0..guard).step_by(page_size()) {
            assert!(!readable(map + off), "guard page at +{off:#x} is readable");
        }
    }

    #[test]
    fn stack_has_guard_region_below_and_is_writable() {
        // SAFETY: a zeroed md_thread is a valid value (NULL, zeros).
        let mut mach: md_thread = unsafe { core::mem::zeroed() };
        // SAFETY: `mach` is a local.
        let lo = unsafe { alloc(10000, &mut mach) };
        assert!(!lo.is_null());
        check_stack(lo, &mach, 10000);
        // SAFETY: the stack is not in use.
        unsafe { free(&mut mach) };
        assert!(mach.mtd_map.is_null());
    }

    #[test]
    fn own_mapping_has_protected_guard() {
        let page = page_size();
        let guard = GUARD_SIZE.div_ceil(page) * page;
        let map = map_own(guard, 4 * page).unwrap();
        // SAFETY: a zeroed md_thread is a valid value.
        let mut mach: md_thread = unsafe { core::mem::zeroed() };
        mach.mtd_map = map as *mut c_void;
        mach.mtd_maplen = guard + 4 * page;
        mach.mtd_stksize = 4 * page;
        check_stack((map + guard) as *mut c_char, &mach, 4 * page);
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let line = maps
            .lines()
            .find(|l| l.starts_with(&format!("{map:x}-")))
            .expect("guard mapping present");
        assert!(
            line.split_whitespace().nth(1).unwrap().starts_with("---p"),
            "{line}"
        );
        // SAFETY: mapped above, not in use.
        unsafe { libc::munmap(map as *mut c_void, mach.mtd_maplen) };
    }

    #[test]
    fn kernels_with_guard_pages_get_arenas() {
        // Linux 6.13 and later have MADV_GUARD_INSTALL: there the layout
        // must be arenas (an older kernel may have it backported).
        // SAFETY: a zeroed utsname is a valid value; uname fills it.
        let mut uts: libc::utsname = unsafe { core::mem::zeroed() };
        // SAFETY: as above.
        assert_eq!(unsafe { libc::uname(&mut uts) }, 0);
        // SAFETY: a NUL-terminated field.
        let rel = unsafe { core::ffi::CStr::from_ptr(uts.release.as_ptr()) }.to_string_lossy();
        let mut v = rel
            .split(|c: char| !c.is_ascii_digit())
            .map(|n| n.parse::<u32>().unwrap_or(0));
        if (v.next().unwrap_or(0), v.next().unwrap_or(0)) >= (6, 13) {
            assert_eq!(layout(), Layout::Arenas, "kernel {rel}");
        }
    }
}
