//! `<libcaps/globaldata.h>`: start-up, cpus and the MP lock.

use core::ffi::c_int;
use core::sync::atomic::Ordering;

use crate::abi::globaldata_t;
use crate::cpu;
use crate::fatal;
use crate::lwkt::{boot, mplock};

/// Start libcaps on the calling kernel thread: it becomes cpu 0, the code
/// that runs `main()` becomes the current thread (a system thread,
/// priority `TDPRI_KERN_DAEMON`, outside any critical section, holding
/// the MP lock). Calling it again does nothing; programs that never call
/// it get the same set-up on their first LWKT call.
#[unsafe(no_mangle)]
pub extern "C" fn uthread_init() {
    boot::adopt();
}

/// Slow path of the `mycpu` macro: the current cpu, set up on first use.
/// Aborts when called from a kernel thread that is not a libcaps cpu.
#[unsafe(no_mangle)]
pub extern "C" fn libcaps_mycpu_slow() -> globaldata_t {
    boot::mycpu()
}

/// The `globaldata` of cpu `cpu` (`0 <= cpu < ncpus`, else abort).
#[unsafe(no_mangle)]
pub extern "C" fn globaldata_find(cpu: c_int) -> globaldata_t {
    let n = cpu::ncpus.load(Ordering::Relaxed);
    if cpu < 0 || cpu >= n {
        fatal!("globaldata_find", "no cpu {cpu} (ncpus is {n})");
    }
    cpu::globaldata_find(cpu)
}

/// Start a new virtual cpu: a Linux kernel thread (pthread) with its own
/// `globaldata`, run queues, idle thread, event loop and slab state.
/// Returns its cpu id (1, 2, ...), usable as the `cpu` argument of
/// `lwkt_create()`, or -1 once `MAXVCPU` cpus exist (or if the kernel
/// refuses a new thread). A cpu with nothing to run sleeps; cpus live
/// until the process exits.
///
/// The MP lock: every thread is born holding it (`td_mpcount` 1), and only
/// the cpu that owns it runs threads that hold it, so threads on two cpus
/// do not run in parallel until they call `rel_mplock()`. A thread that
/// waits for a thread of another cpu must block (`lwkt_domsg`,
/// `lwkt_waitport`, a token) or `lwkt_yield()`: a yield hands the lock to
/// a cpu that waits for it, a loop that never yields starves that cpu.
#[unsafe(no_mangle)]
pub extern "C" fn caps_fork_vcpu() -> c_int {
    boot::fork_vcpu()
}

/// Whether the current thread should give up the cpu: always 0, since
/// userland scheduling is cooperative.
#[unsafe(no_mangle)]
pub extern "C" fn need_resched() -> c_int {
    0
}

/// Run the IPIs other cpus queued for this cpu (`lwkt_process_ipiq()`).
#[unsafe(no_mangle)]
pub extern "C" fn splz() {
    // SAFETY: mycpu() is the current cpu.
    unsafe { cpu::ipi::process(boot::mycpu()) }
}

/// Take (one more hold of) the MP lock for the current thread.
#[unsafe(no_mangle)]
pub extern "C" fn get_mplock() {
    mplock::get_mplock()
}

/// Drop one hold of the MP lock; released when the count reaches 0.
/// Aborts if the current thread holds none.
#[unsafe(no_mangle)]
pub extern "C" fn rel_mplock() {
    mplock::rel_mplock()
}

/// Take one more hold of the MP lock if possible: 1, else 0.
#[unsafe(no_mangle)]
pub extern "C" fn try_mplock() -> c_int {
    mplock::try_mplock()
}

/// Take the MP lock word for this cpu without counting a hold: 1, else 0.
#[unsafe(no_mangle)]
pub extern "C" fn cpu_try_mplock() -> c_int {
    mplock::cpu_try_mplock()
}

/// Take the MP lock word for this cpu without counting a hold, waiting
/// (with `sched_yield`) while another cpu has it.
#[unsafe(no_mangle)]
pub extern "C" fn cpu_get_initial_mplock() {
    mplock::cpu_get_initial_mplock()
}
