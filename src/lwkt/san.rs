//! What AddressSanitizer and ThreadSanitizer must be told when a program
//! built with `-fsanitize=address` or `-fsanitize=thread` runs LWKT
//! threads. The library itself is not instrumented; the sanitizers see
//! the C program only, and without these calls they take every stack
//! switch for a wild jump of one kernel thread's stack pointer.
//!
//! - AddressSanitizer: every switch is announced with
//!   `__sanitizer_start_switch_fiber` (the new stack's bounds; NULL for
//!   the fake-stack slot when the thread is leaving for good) and
//!   completed on the new stack with `__sanitizer_finish_switch_fiber`;
//!   a stack is unpoisoned before a new thread is started on it (it may
//!   hold the redzones of an exited thread's frames).
//! - ThreadSanitizer: each LWKT thread is a TSan fiber (created on the
//!   first switch to it, destroyed after its exit), and `__tsan_release`
//!   / `__tsan_acquire` (`crate::san`) mark the hand-offs between cpus
//!   that go through the library: IPIs (which carry messages put on and
//!   replied to ports of other cpus, tokens handed over and threads
//!   scheduled), the MP lock and a virtual cpu's start.
//!
//! - LeakSanitizer (with `-fsanitize=address` or `=leak`) scans the
//!   stack a kernel thread runs on now, not the stacks of switched-out
//!   LWKT threads nor a virtual cpu's boot stack, which it left for good
//!   but whose frames stay live (they hold the kernel thread's start-up
//!   state): each of these is a root region ([`stack_mapped`],
//!   [`keep_boot_stack`]), so that a pointer held only there is no leak.
//!
//! The runtime functions are weak references in the C shim, looked up
//! once when cpu 0 is set up ([`init`]). A program without sanitizers
//! pays one load and a branch that is never taken on each switch.

use core::cell::{Cell, RefCell};
use core::ffi::{c_char, c_int, c_void};
use core::ptr;
use core::sync::atomic::{AtomicUsize, Ordering};
use std::collections::BTreeMap;

use super::arch;
use crate::abi::thread;
use crate::san::{self, ASAN, LSAN, TSAN};

unsafe extern "C" {
    fn libcaps_san_hooks() -> c_int;
    fn libcaps_asan_start_switch(fake: *mut *mut c_void, bottom: *const c_void, size: usize);
    fn libcaps_asan_finish_switch(fake: *mut c_void);
    fn libcaps_asan_unpoison(p: *mut c_void, size: usize);
    fn libcaps_tsan_current_fiber() -> *mut c_void;
    fn libcaps_tsan_create_fiber() -> *mut c_void;
    fn libcaps_tsan_destroy_fiber(fiber: *mut c_void);
    fn libcaps_tsan_switch_to_fiber(fiber: *mut c_void);
    fn libcaps_lsan_root(p: *const c_void, size: usize, add: c_int);
}

/// The stack of cpu 0's kernel thread, which `main`'s LWKT thread runs
/// on (it has no `td_kstack`): lowest address and size.
static MAIN_STACK: (AtomicUsize, AtomicUsize) = (AtomicUsize::new(0), AtomicUsize::new(0));

thread_local! {
    /// TSan fiber of each LWKT thread of this cpu (its kernel thread).
    static FIBERS: RefCell<BTreeMap<usize, usize>> = const { RefCell::new(BTreeMap::new()) };
    /// The fiber of a thread that exited, destroyed once off it.
    static DEAD_FIBER: Cell<usize> = const { Cell::new(0) };
    /// The kernel thread's own fiber (never destroyed).
    static NATIVE_FIBER: Cell<usize> = const { Cell::new(0) };
}

/// How the current thread leaves the cpu at a switch.
#[derive(Clone, Copy, PartialEq)]
pub enum Leave {
    /// It will be resumed.
    Suspend,
    /// It has exited: its stack and fiber are done with.
    Exit,
}

/// Look the sanitizer runtimes up. Called on cpu 0's kernel thread while
/// it is set up, before any switch.
#[cold]
pub fn init() {
    // SAFETY: the shim only tests weak symbols.
    let hooks = unsafe { libcaps_san_hooks() } as u8;
    if hooks & (ASAN | LSAN) != 0 {
        let (lo, size) = current_kernel_stack();
        MAIN_STACK.0.store(lo, Ordering::Relaxed);
        MAIN_STACK.1.store(size, Ordering::Relaxed);
    }
    san::set_hooks(hooks);
    super::sched::choose_bodies(active());
    // main's frames while another thread runs on cpu 0.
    let (lo, size) = (
        MAIN_STACK.0.load(Ordering::Relaxed),
        MAIN_STACK.1.load(Ordering::Relaxed),
    );
    lsan_root(lo as *const c_void, size, true);
}

/// A thread stack (usable part, `lo .. lo + size`) was mapped: under
/// LeakSanitizer it is a root region until [`stack_unmapped`].
pub fn stack_mapped(lo: *const c_void, size: usize) {
    lsan_root(lo, size, true);
}

/// The stack given to [`stack_mapped`] is about to be unmapped.
pub fn stack_unmapped(lo: *const c_void, size: usize) {
    lsan_root(lo, size, false);
}

/// The calling kernel thread (a virtual cpu) leaves its boot stack for
/// good, but not its frames: under LeakSanitizer the stack stays a root.
pub fn keep_boot_stack() {
    if san::hooks() & LSAN != 0 {
        let (lo, size) = current_kernel_stack();
        lsan_root(lo as *const c_void, size, true);
    }
}

fn lsan_root(lo: *const c_void, size: usize, add: bool) {
    if san::hooks() & LSAN != 0 && size != 0 {
        // SAFETY: LeakSanitizer only records (or forgets) the range; it
        // scans only the parts that are mapped readable.
        unsafe { libcaps_lsan_root(lo, size, c_int::from(add)) }
    }
}

/// Lowest address and size of the calling kernel thread's stack.
fn current_kernel_stack() -> (usize, usize) {
    // SAFETY: pthread_getattr_np fills `attr` for the calling thread;
    // it is destroyed after the query.
    unsafe {
        let mut attr: libc::pthread_attr_t = core::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return (0, 0);
        }
        let mut lo: *mut c_void = ptr::null_mut();
        let mut size = 0usize;
        libc::pthread_attr_getstack(&attr, &mut lo, &mut size);
        libc::pthread_attr_destroy(&mut attr);
        (lo as usize, size)
    }
}

/// Must stack switches be announced (AddressSanitizer or
/// ThreadSanitizer there)? One load.
#[inline(always)]
pub fn active() -> bool {
    san::hooks() & (ASAN | TSAN) != 0
}

/// The stack a thread runs on: lowest address and size.
///
/// # Safety
/// `td` must be a valid thread.
unsafe fn stack_of(td: *mut thread) -> (*const c_void, usize) {
    // SAFETY: per the contract.
    unsafe {
        if (*td).td_kstack.is_null() {
            (
                MAIN_STACK.0.load(Ordering::Relaxed) as *const c_void,
                MAIN_STACK.1.load(Ordering::Relaxed),
            )
        } else {
            ((*td).td_kstack.cast(), (*td).td_mach.mtd_stksize)
        }
    }
}

/// The TSan fiber to switch to for `ntd`, made on first use; the current
/// thread `td`'s fiber is forgotten (and destroyed once off it) when it
/// exits.
fn tsan_fibers(td: *mut thread, ntd: *mut thread, leave: Leave) -> *mut c_void {
    FIBERS.with_borrow_mut(|fibers| {
        fibers.entry(td as usize).or_insert_with(|| {
            // A thread we never switched to runs on the kernel thread's
            // own fiber (main on cpu 0).
            // SAFETY: a TSan query.
            let native = unsafe { libcaps_tsan_current_fiber() } as usize;
            NATIVE_FIBER.set(native);
            native
        });
        let target = *fibers.entry(ntd as usize).or_insert_with(|| {
            // SAFETY: a TSan call.
            unsafe { libcaps_tsan_create_fiber() as usize }
        });
        if leave == Leave::Exit
            && let Some(f) = fibers.remove(&(td as usize))
            && f != NATIVE_FIBER.get()
        {
            DEAD_FIBER.set(f);
        }
        target as *mut c_void
    })
}

/// [`arch::switch`] from `td` to `ntd` with the sanitizers told.
///
/// # Safety
/// As `arch::switch`; `td` is the current thread, `ntd` a thread of the
/// current cpu that is not running.
#[cold]
#[inline(never)]
pub unsafe fn switch(td: *mut thread, ntd: *mut thread, leave: Leave) {
    let hooks = san::hooks();
    // AddressSanitizer's fake stack of this thread while it is away; it
    // lives in this frame, on the thread's own stack.
    let mut fake: *mut c_void = ptr::null_mut();
    // SAFETY: per the contract; the runtimes only record the switch.
    unsafe {
        if hooks & ASAN != 0 {
            let (lo, size) = stack_of(ntd);
            let save = if leave == Leave::Exit {
                ptr::null_mut()
            } else {
                &raw mut fake
            };
            libcaps_asan_start_switch(save, lo, size);
        }
        if hooks & TSAN != 0 {
            libcaps_tsan_switch_to_fiber(tsan_fibers(td, ntd, leave));
        }
        if leave == Leave::Exit {
            arch::switch_threads_exit(td, ntd);
        } else {
            arch::switch_threads(td, ntd);
        }
        arrived(fake);
    }
}

/// First thing on a stack just switched to: the end of [`switch`] in a
/// resumed thread (`fake`: the fake stack it saved), or the start of a new
/// thread (`fake` NULL).
///
/// # Safety
/// Called right after a switch, on the new stack.
pub unsafe fn arrived(fake: *mut c_void) {
    let hooks = san::hooks();
    // SAFETY: per the contract.
    unsafe {
        if hooks & ASAN != 0 {
            libcaps_asan_finish_switch(fake);
        }
        if hooks & TSAN != 0 {
            let dead = DEAD_FIBER.replace(0);
            if dead != 0 {
                libcaps_tsan_destroy_fiber(dead as *mut c_void);
            }
        }
    }
}

/// A virtual cpu's kernel thread leaves its boot stack for good for the
/// idle thread `idle`.
///
/// # Safety
/// As [`switch`], from the boot stack; `boot_sp` receives the boot
/// stack's pointer.
#[cold]
pub unsafe fn switch_from_boot(boot_sp: *mut *mut c_char, idle: *mut thread) {
    let hooks = san::hooks();
    // SAFETY: per the contract.
    unsafe {
        if hooks & ASAN != 0 {
            let (lo, size) = stack_of(idle);
            libcaps_asan_start_switch(ptr::null_mut(), lo, size);
        }
        if hooks & TSAN != 0 {
            let f = libcaps_tsan_create_fiber();
            FIBERS.with_borrow_mut(|fibers| fibers.insert(idle as usize, f as usize));
            libcaps_tsan_switch_to_fiber(f);
        }
        arch::switch(boot_sp, (*idle).td_sp);
    }
}

/// A stack is about to carry a new thread: forget what AddressSanitizer
/// knew of the frames of the thread that used it before.
///
/// # Safety
/// `lo .. lo + size` must be a thread stack nobody runs on.
#[cold]
pub unsafe fn fresh_stack(lo: *mut c_char, size: usize) {
    if san::hooks() & ASAN != 0 {
        // SAFETY: per the contract.
        unsafe { libcaps_asan_unpoison(lo.cast(), size) }
    }
}
