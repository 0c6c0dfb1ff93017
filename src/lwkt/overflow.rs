//! Stack overflow reports: a `SIGSEGV` handler, run on an alternate signal
//! stack of every kernel thread that runs LWKT threads (cpu 0 and every
//! virtual cpu), that recognises an overflow of the current thread's stack
//! (`lwkt::stack`), prints one line naming the thread, its stack size and
//! the fault address, and aborts (so a core dump still follows).
//!
//! A fault is an overflow when it lies in the guard region below the
//! stack, or when the interrupted code's stack pointer is below the stack
//! (by at most [`MAX_FRAME`]) and the fault lies between just under that
//! stack pointer and the stack: a frame larger than the guard (a big
//! local array, compiled without stack-clash probing) moved the stack
//! pointer past stack and guard in one go, and its first store or call
//! faulted far below the guard. Every other `SIGSEGV` goes to the disposition that
//! was in place when the library installed its handler: the program's
//! handler is called with the same arguments; the default action (or
//! `SIG_IGN`, which the kernel overrides for faults) is put back and the
//! fault happens again, or the signal is raised again when it was sent
//! rather than caused by a fault; a sent signal the program ignores is
//! ignored, and the handler stays.
//!
//! A program that installs its own `SIGSEGV` handler after the library
//! started replaces this one (and loses the reports).

use core::cell::UnsafeCell;
use core::ffi::{c_int, c_void};
use core::mem::MaybeUninit;
use core::ptr;
use core::sync::atomic::{AtomicBool, Ordering};

use super::stack::GUARD_SIZE;
use crate::cpu::mycpu_if_any;

/// The disposition of `SIGSEGV` before ours; written once, before our
/// handler is installed, and only read after.
struct Prev(UnsafeCell<MaybeUninit<libc::sigaction>>);
// SAFETY: see above: one write that happens before every read.
unsafe impl Sync for Prev {}
static PREV: Prev = Prev(UnsafeCell::new(MaybeUninit::uninit()));

/// How far below its stack a thread's stack pointer may be for a fault to
/// count as that thread's overflow: the largest frame recognised.
const MAX_FRAME: usize = 256 << 20;

/// How far below the stack pointer a fault may be and still come from the
/// frame (a call's return address, the x86-64 red zone, probes).
const SP_SLACK: usize = 4096;

/// Bytes of each kernel thread's alternate signal stack.
const ALTSTACK_SIZE: usize = 64 * 1024;

/// Make the calling kernel thread, which is about to run LWKT threads,
/// report stack overflows: give it an alternate signal stack unless it
/// has one, and install the process's handler if that is not done yet.
pub fn arm_kernel_thread() {
    altstack();
    static INSTALLED: AtomicBool = AtomicBool::new(false);
    if INSTALLED.swap(true, Ordering::AcqRel) {
        return;
    }
    // SAFETY: a zeroed sigaction is valid; the handler has the SA_SIGINFO
    // signature. PREV is filled by a first call that changes nothing, and
    // only then is our handler installed: one call doing both would let a
    // fault on another thread run the handler before PREV is written (the
    // kernel, then glibc, copy the old action out after installing the
    // new one).
    unsafe {
        let mut sa: libc::sigaction = core::mem::zeroed();
        sa.sa_sigaction = on_segv as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
        libc::sigemptyset(&mut sa.sa_mask);
        if libc::sigaction(libc::SIGSEGV, ptr::null(), (*PREV.0.get()).as_mut_ptr()) != 0
            || libc::sigaction(libc::SIGSEGV, &sa, ptr::null_mut()) != 0
        {
            crate::warn!(
                "uthread_init",
                "cannot install the SIGSEGV handler: stack overflows will not be reported"
            );
        }
    }
}

/// An alternate signal stack for this kernel thread (kept for its life),
/// unless the program gave it one.
fn altstack() {
    // SAFETY: sigaltstack reads and writes the structures given; the
    // mapping is private to this thread's signal delivery from now on.
    unsafe {
        let mut old: libc::stack_t = core::mem::zeroed();
        if libc::sigaltstack(ptr::null(), &mut old) == 0 && old.ss_flags & libc::SS_DISABLE == 0 {
            return;
        }
        let size = ALTSTACK_SIZE.max(libc::SIGSTKSZ * 4);
        let map = libc::mmap(
            ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_STACK,
            -1,
            0,
        );
        if map == libc::MAP_FAILED {
            crate::warn!(
                "uthread_init",
                "cannot map an alternate signal stack: stack overflows will not be reported"
            );
            return;
        }
        let st = libc::stack_t {
            ss_sp: map,
            ss_flags: 0,
            ss_size: size,
        };
        libc::sigaltstack(&st, ptr::null_mut());
    }
}

/// The `SIGSEGV` handler. Async-signal-safe: reads the current thread,
/// formats into a local buffer, `write`, `sigaction`, `abort`.
extern "C" fn on_segv(sig: c_int, info: *mut libc::siginfo_t, ctx: *mut c_void) {
    // SAFETY: the kernel passes a valid siginfo; the cpu of this kernel
    // thread is valid once set, and so is its current thread once set
    // (a new cpu has none until `lwkt::idle::gdinit` runs; the fault
    // interrupted that thread).
    unsafe {
        let addr = (*info).si_addr() as usize;
        let gd = mycpu_if_any();
        let td = if gd.is_null() {
            ptr::null_mut()
        } else {
            (*gd).gd_curthread
        };
        if !td.is_null() && (*info).si_code > 0 {
            let map = (*td).td_mach.mtd_map as usize;
            if map != 0 && is_overflow(map, guard_len(), addr, stack_pointer(ctx)) {
                report(td, addr);
            }
        }
        forward(sig, info, ctx);
    }
}

/// Is a fault at `addr`, with the stack pointer at `sp` (0: unknown), an
/// overflow of the stack whose guard starts at `map` and is `guard`
/// bytes long (the usable stack starts right above it)?
fn is_overflow(map: usize, guard: usize, addr: usize, sp: usize) -> bool {
    let lo = map + guard;
    if addr >= map && addr < lo {
        return true;
    }
    sp != 0 && sp < lo && lo - sp <= MAX_FRAME && addr < lo && addr >= sp.saturating_sub(SP_SLACK)
}

/// The stack pointer of the interrupted code, from the handler's
/// `ucontext_t` (0 where it is not known).
///
/// # Safety
/// `ctx` is the third argument of an `SA_SIGINFO` handler.
unsafe fn stack_pointer(ctx: *mut c_void) -> usize {
    if ctx.is_null() {
        return 0;
    }
    let uc = ctx.cast::<libc::ucontext_t>();
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the kernel passes a valid ucontext_t.
    return unsafe { (*uc).uc_mcontext.gregs[libc::REG_RSP as usize] as usize };
    #[cfg(target_arch = "aarch64")]
    // SAFETY: the kernel passes a valid ucontext_t.
    return unsafe { (*uc).uc_mcontext.sp as usize };
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let _ = uc;
        0
    }
}

/// The guard's length as `stack::alloc` rounds it.
fn guard_len() -> usize {
    // SAFETY: sysconf has no preconditions and is async-signal-safe.
    let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
        n if n > 0 => n as usize,
        _ => 4096,
    };
    GUARD_SIZE.div_ceil(page) * page
}

/// Print the overflow line and abort with the default `SIGABRT` action.
///
/// # Safety
/// `td` is the current thread.
unsafe fn report(td: *const crate::abi::thread, addr: usize) -> ! {
    let mut line = Line::new();
    line.push(b"libcaps: thread \"");
    // SAFETY: td_comm is NUL-terminated within its array.
    for &c in unsafe { &(*td).td_comm } {
        if c == 0 {
            break;
        }
        line.push(&[c as u8]);
    }
    line.push(b"\" overflowed its ");
    // SAFETY: per the contract.
    line.decimal(unsafe { (*td).td_mach.mtd_stksize } / 1024);
    line.push(b" KiB stack (fault at 0x");
    line.hex(addr);
    line.push(b")\n");
    // SAFETY: write, sigaction, sigprocmask and abort are
    // async-signal-safe; the default SIGABRT action dumps core.
    unsafe {
        libc::write(2, line.buf.as_ptr().cast(), line.len);
        let mut dfl: libc::sigaction = core::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(libc::SIGABRT, &dfl, ptr::null_mut());
        let mut set: libc::sigset_t = core::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGABRT);
        libc::sigprocmask(libc::SIG_UNBLOCK, &set, ptr::null_mut());
        libc::abort()
    }
}

/// Hand a fault that is not an overflow to the previous disposition.
///
/// # Safety
/// Called from the handler with its arguments.
unsafe fn forward(sig: c_int, info: *mut libc::siginfo_t, ctx: *mut c_void) {
    // SAFETY: PREV was filled before the handler was installed.
    unsafe {
        let prev = (*PREV.0.get()).assume_init_ref();
        let h = prev.sa_sigaction;
        let sent = (*info).si_code <= 0;
        if h == libc::SIG_IGN && sent {
            // A signal sent to a program that ignores it: ignored, and
            // the handler stays for the overflows still to come.
        } else if h == libc::SIG_DFL || h == libc::SIG_IGN {
            // Back to the old disposition: a fault happens again on return
            // and takes it; a signal sent by kill() is raised again.
            libc::sigaction(libc::SIGSEGV, prev, ptr::null_mut());
            if sent {
                libc::raise(sig);
            }
        } else if prev.sa_flags & libc::SA_SIGINFO != 0 {
            let f: extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void) =
                core::mem::transmute(h);
            f(sig, info, ctx);
        } else {
            let f: extern "C" fn(c_int) = core::mem::transmute(h);
            f(sig);
        }
    }
}

/// A message line built without allocating.
struct Line {
    buf: [u8; 160],
    len: usize,
}

impl Line {
    fn new() -> Self {
        Line {
            buf: [0; 160],
            len: 0,
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.len < self.buf.len() {
                self.buf[self.len] = b;
                self.len += 1;
            }
        }
    }

    fn decimal(&mut self, mut n: usize) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.push(&digits[i..]);
    }

    fn hex(&mut self, n: usize) {
        let mut digits = [0u8; 16];
        let mut i = digits.len();
        let mut v = n;
        loop {
            i -= 1;
            digits[i] = b"0123456789abcdef"[v & 15];
            v >>= 4;
            if v == 0 {
                break;
            }
        }
        self.push(&digits[i..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_is_recognised_by_address_or_stack_pointer() {
        let (map, guard) = (0x1000_0000, 0x1_0000);
        let lo = map + guard;
        // In the guard, whatever the stack pointer.
        assert!(is_overflow(map, guard, map, 0));
        assert!(is_overflow(map, guard, lo - 1, lo + 100));
        // In the stack itself: not an overflow.
        assert!(!is_overflow(map, guard, lo, lo + 100));
        // A 512 KiB frame: stack pointer and fault far below the guard
        // (a call's return address, a store into the frame).
        let sp = lo - 512 * 1024;
        assert!(is_overflow(map, guard, sp - 8, sp));
        assert!(is_overflow(map, guard, sp + 100, sp));
        // A fault elsewhere (NULL, above the stack, far under the stack
        // pointer), or a stack pointer too far below: not this thread's.
        assert!(!is_overflow(map, guard, 0, sp));
        assert!(!is_overflow(map, guard, lo + 4096, sp));
        assert!(!is_overflow(map, guard, sp - 2 * SP_SLACK, sp));
        assert!(!is_overflow(map, guard, 8, 0));
        let far = lo - MAX_FRAME - 4096;
        assert!(!is_overflow(map, guard, far, far));
        // A stack pointer inside the stack: the fault is somebody else's.
        assert!(!is_overflow(map, guard, sp, lo + 64));
    }

    #[test]
    fn line_formats_numbers() {
        let mut l = Line::new();
        l.push(b"x ");
        l.decimal(0);
        l.push(b" ");
        l.decimal(65536 / 1024);
        l.push(b" 0x");
        l.hex(0x7f12_ab00);
        assert_eq!(&l.buf[..l.len], b"x 0 64 0x7f12ab00");
    }
}
