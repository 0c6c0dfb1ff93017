//! The LWKT scheduler of one cpu: 32 fixed-priority run queues with a
//! bitmap, round robin within a priority, cooperative switching, critical
//! sections counted in `td_pri`, thread creation from a per-cpu cache of
//! exited threads (with their stacks), exit, and the idle loop that resumes
//! `main` once every non-system thread has exited.
//!
//! Everything here runs on the cpu's own kernel thread. A thread belongs to
//! one cpu for life; acting on a thread of another cpu (scheduling it,
//! registering a new one) is forwarded to that cpu as an IPI.

use core::ffi::{CStr, c_char, c_int, c_void};
use core::ptr;
use core::sync::atomic::Ordering;

use super::arch;
use super::msgport as mp;
use super::san::{self, Leave};
use super::stack;
use super::tdqueue::{self, Link};
use crate::abi::{
    TDF_ALLOCATED_STACK, TDF_ALLOCATED_THREAD, TDF_RUNNING, TDF_RUNQ, TDF_STOPREQ, TDF_SYSTHREAD,
    TDF_VERBOSE, TDPRI_CRIT, TDPRI_IDLE_THREAD, TDPRI_KERN_DAEMON, TDPRI_MASK, TDPRI_MAX,
    THREAD_STACK, globaldata, md_thread, thread,
};
use crate::cpu::{self, cpu_priv, ipi, mycpu};
use crate::{fatal, warn};

/// Private flag: the thread has exited (`lwkt_exit`). Outside every
/// DragonFly `TDF_*` value.
pub const TDF_EXITED: c_int = 0x4000_0000;
/// Private flag: the thread is on its cpu's free list.
pub const TDF_FREEQ: c_int = 0x2000_0000;

/// Exited threads kept for reuse per cpu; the idle loop frees the rest.
pub const THREAD_CACHE_MAX: c_int = 64;

/// The name of a thread for diagnostics.
///
/// # Safety
/// `td` must be a valid thread.
pub unsafe fn name(td: *const thread) -> String {
    // SAFETY: td_comm is a NUL-terminated array (init_thread zeroes it and
    // set_comm always terminates).
    let comm = unsafe { &(*td).td_comm };
    let bytes: Vec<u8> = comm
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The idle thread of `gd`.
#[inline]
fn idle(gd: *mut globaldata) -> *mut thread {
    // SAFETY: only a field address is computed.
    unsafe { &raw mut (*gd).gd_idlethread }
}

/// Put `td` on its priority's run queue (no-op if already there).
///
/// # Safety
/// `td` must be a thread of `gd`, on no other `td_threadq` list.
#[inline]
unsafe fn enqueue(gd: *mut globaldata, td: *mut thread) {
    // SAFETY: per the contract.
    unsafe {
        if (*td).td_flags & TDF_RUNQ == 0 {
            let pri = ((*td).td_pri & TDPRI_MASK) as usize;
            tdqueue::insert_tail(&raw mut (*gd).gd_tdrunq[pri], td, Link::Threadq);
            (*gd).gd_runqmask |= 1 << pri;
            (*td).td_flags |= TDF_RUNQ;
        }
    }
}

/// Take `td` off its run queue (no-op if not there).
///
/// # Safety
/// `td` must be a thread of `gd`.
#[inline]
unsafe fn dequeue(gd: *mut globaldata, td: *mut thread) {
    // SAFETY: per the contract; TDF_RUNQ says which list td is on.
    unsafe {
        if (*td).td_flags & TDF_RUNQ != 0 {
            let pri = ((*td).td_pri & TDPRI_MASK) as usize;
            let q = &raw mut (*gd).gd_tdrunq[pri];
            tdqueue::remove(q, td, Link::Threadq);
            if tdqueue::first(q).is_null() {
                (*gd).gd_runqmask &= !(1 << pri);
            }
            (*td).td_flags &= !TDF_RUNQ;
        }
    }
}

/// `lwkt_gdinit`: empty run queues and thread list, and an idle thread
/// (own stack, left in a critical section, not counted in
/// `gd_num_threads`) as the current thread.
///
/// # Safety
/// `gd` must be a cpu being set up by its own kernel thread.
pub unsafe fn gdinit(gd: *mut globaldata) {
    // SAFETY: `gd` is valid and not yet in use.
    unsafe {
        for q in 0..32 {
            tdqueue::init(&raw mut (*gd).gd_tdrunq[q]);
        }
        (*gd).gd_runqmask = 0;
        tdqueue::init(&raw mut (*gd).gd_tdallq);
        let td = idle(gd);
        ptr::write_bytes(td, 0, 1);
        let stk = stack::alloc(THREAD_STACK as usize, &raw mut (*td).td_mach);
        if stk.is_null() {
            fatal!(
                "lwkt_gdinit",
                "cannot map a stack for the idle thread of cpu {}",
                (*gd).gd_cpuid
            );
        }
        let mach = ptr::read(&raw const (*td).td_mach);
        init_fields(td, stk, TDF_RUNNING | TDF_SYSTHREAD, gd, Some(mach));
        (*td).td_pri = TDPRI_IDLE_THREAD + 2 * TDPRI_CRIT;
        set_comm(td, c"idle".as_ptr());
        set_handler(td, idle_loop, ptr::null_mut());
        (*gd).gd_curthread = td;
    }
}

/// Set every field of a thread as `lwkt_init_thread` does, without putting
/// it on the cpu's thread list.
///
/// # Safety
/// `td` valid for writes; `stack` NULL or `mach`'s / a caller's stack of
/// `THREAD_STACK` bytes.
unsafe fn init_fields(
    td: *mut thread,
    stack: *mut c_char,
    flags: c_int,
    gd: *mut globaldata,
    mach: Option<md_thread>,
) {
    // SAFETY: `td` is writable; an all-zero thread is valid.
    unsafe {
        ptr::write_bytes(td, 0, 1);
        if let Some(m) = mach {
            ptr::write(&raw mut (*td).td_mach, m);
            (*td).td_mach.mtd_errno = 0;
        } else if !stack.is_null() {
            (*td).td_mach.mtd_stksize = THREAD_STACK as usize;
        }
        (*td).td_kstack = stack;
        (*td).td_flags = flags;
        (*td).td_gd = gd;
        (*td).td_pri = TDPRI_KERN_DAEMON + TDPRI_CRIT;
        mp::initport(&raw mut (*td).td_msgport, td, &mp::DEFAULT_VECTORS);
    }
}

/// `lwkt_init_thread`: initialise `td` on cpu `gd` (priority
/// `TDPRI_KERN_DAEMON` in one critical section, own message port) and
/// count it on the cpu. `mach` carries a stack of ours to keep.
///
/// # Safety
/// `td` must not be on any list; `gd` must be the current cpu.
pub unsafe fn init_thread(
    td: *mut thread,
    stack: *mut c_char,
    flags: c_int,
    gd: *mut globaldata,
    mach: Option<md_thread>,
) {
    // SAFETY: per the contract.
    unsafe {
        init_fields(td, stack, flags, gd, mach);
        count_user(td);
        register(gd, td);
    }
}

/// Count a new thread in [`cpu::USER_THREADS`] unless it is a system
/// thread.
///
/// # Safety
/// `td` must be a valid, initialised thread.
unsafe fn count_user(td: *mut thread) {
    // SAFETY: per the contract.
    if unsafe { (*td).td_flags } & TDF_SYSTHREAD == 0 {
        cpu::USER_THREADS.fetch_add(1, Ordering::AcqRel);
    }
}

/// Put an initialised thread on its cpu's thread list and counters.
///
/// # Safety
/// `gd` is the current cpu and `td_gd` of `td`.
unsafe fn register(gd: *mut globaldata, td: *mut thread) {
    // SAFETY: per the contract.
    unsafe {
        tdqueue::insert_tail(&raw mut (*gd).gd_tdallq, td, Link::Allq);
        (*gd).gd_num_threads += 1;
        if (*td).td_flags & TDF_SYSTHREAD != 0 {
            (*gd).gd_sys_threads += 1;
        }
    }
}

/// IPI: register a thread created for this cpu by another one.
unsafe extern "C" fn register_ipi(arg: *mut c_void) {
    let td = arg.cast::<thread>();
    let gd = mycpu();
    // SAFETY: the creator initialised `td` for this cpu and handed it over.
    unsafe { register(gd, td) };
}

/// IPI: register a thread created for this cpu by another one and make
/// it runnable.
unsafe extern "C" fn register_schedule_ipi(arg: *mut c_void) {
    let td = arg.cast::<thread>();
    let gd = mycpu();
    // SAFETY: as above.
    unsafe {
        register(gd, td);
        schedule_local(gd, td);
    }
}

/// The threads of `gd` that count in [`cpu::USER_THREADS`]: those on its
/// thread list, and those another cpu made for it whose registration is
/// still queued (for a `fork()` child, which keeps only this cpu).
///
/// # Safety
/// `gd` must be a started cpu whose thread list nobody changes meanwhile.
pub unsafe fn count_user_threads(gd: *mut globaldata) -> i32 {
    // SAFETY: per the contract.
    unsafe {
        let mut n =
            ipi::count_queued(gd, register_ipi) + ipi::count_queued(gd, register_schedule_ipi);
        let mut td = tdqueue::first(&raw const (*gd).gd_tdallq);
        while !td.is_null() {
            if (*td).td_flags & TDF_SYSTHREAD == 0 {
                n += 1;
            }
            td = tdqueue::next(td, Link::Allq);
        }
        n as i32
    }
}

/// `lwkt_init_thread` for a thread of another cpu: initialise it here and
/// let its cpu register it.
///
/// # Safety
/// As [`init_thread`], except that `gd` is a started cpu other than the
/// current one.
pub unsafe fn init_thread_remote(
    td: *mut thread,
    stack: *mut c_char,
    flags: c_int,
    gd: *mut globaldata,
) {
    // SAFETY: per the contract.
    unsafe {
        init_fields(td, stack, flags, gd, None);
        count_user(td);
        ipi::send(gd, register_ipi, td.cast());
    }
}

/// Copy a thread name (truncated to `MAXCOMLEN`).
///
/// # Safety
/// `td` valid; `comm` NULL or a C string.
pub unsafe fn set_comm(td: *mut thread, comm: *const c_char) {
    // SAFETY: per the contract.
    unsafe {
        let dst = &mut (*td).td_comm;
        dst.fill(0);
        if comm.is_null() {
            return;
        }
        let src = CStr::from_ptr(comm).to_bytes();
        let room = dst.len() - 1;
        for (d, &s) in dst.iter_mut().zip(src.iter().take(room)) {
            *d = s as c_char;
        }
    }
}

/// Prepare `td`'s stack so that switching to it runs `func(arg)`, then
/// `lwkt_exit()`.
///
/// # Safety
/// `td` must have a stack and not be running.
unsafe fn set_handler(td: *mut thread, func: unsafe extern "C" fn(*mut c_void), arg: *mut c_void) {
    // SAFETY: per the contract.
    unsafe {
        if (*td).td_kstack.is_null() {
            fatal!("lwkt_create", "thread {td:p} has no stack");
        }
        if san::active() {
            san::fresh_stack((*td).td_kstack, (*td).td_mach.mtd_stksize);
        }
        let top = (*td).td_kstack.add((*td).td_mach.mtd_stksize);
        let top = top.wrapping_sub(top as usize & 15);
        (*td).td_sp = arch::init_stack(top, thread_start, func as *mut c_void, arg);
    }
}

/// First Rust code of every thread: leave the critical section a new
/// thread is born in, run `func(arg)`, exit.
unsafe extern "C" fn thread_start(func: *mut c_void, arg: *mut c_void) -> ! {
    if san::active() {
        // SAFETY: the first code on this thread's stack after the switch.
        unsafe { san::arrived(ptr::null_mut()) };
    }
    let gd = mycpu();
    // SAFETY: the current thread is valid; `func` was stored by set_handler
    // from a function pointer of this exact type.
    unsafe {
        (*(*gd).gd_curthread).td_pri -= TDPRI_CRIT;
        let f: unsafe extern "C" fn(*mut c_void) = core::mem::transmute(func);
        f(arg);
    }
    exit_current()
}

/// The cpu a thread argument refers to, which must be this one.
///
/// # Safety
/// `td` must be a valid thread.
unsafe fn local_cpu(func: &str, td: *mut thread) -> *mut globaldata {
    let gd = mycpu();
    // SAFETY: `td` is valid per the contract.
    let tgd = unsafe { (*td).td_gd };
    if tgd != gd {
        fatal!(
            func,
            "thread {td:p} belongs to cpu {}, not the current cpu {} (only lwkt_schedule \
             and lwkt_deschedule reach threads of other cpus)",
            // SAFETY: td_gd of a valid thread is a started cpu.
            unsafe { (*tgd).gd_cpuid },
            // SAFETY: the current cpu.
            unsafe { (*gd).gd_cpuid }
        );
    }
    gd
}

/// `lwkt_alloc_thread(template, cpu)`: a thread from the cpu's cache, or a
/// new one (`template` non-NULL: that structure), with a stack, initialised
/// on `cpu` (-1: current). NULL when no stack can be mapped.
///
/// # Safety
/// `template` NULL or a thread structure not in use.
pub unsafe fn alloc_thread(template: *mut thread, cpu_id: c_int) -> *mut thread {
    // SAFETY: per the contract.
    let td = unsafe { alloc_thread_for(template, cpu_id) }.unwrap_or_else(|why| {
        warn!("lwkt_alloc_thread", "cannot allocate a thread: {why}");
        ptr::null_mut()
    });
    if !td.is_null() {
        // SAFETY: `td` was initialised for its cpu by alloc_thread_for.
        unsafe {
            let tgd = (*td).td_gd;
            if tgd == mycpu() {
                register(tgd, td);
            } else {
                ipi::send(tgd, register_ipi, td.cast());
            }
        }
    }
    td
}

/// The allocation part of [`alloc_thread`]: the thread is initialised for
/// its cpu and counted, but not yet on that cpu's thread list. Err: what
/// was missing (nothing is allocated then).
///
/// # Safety
/// As [`alloc_thread`].
unsafe fn alloc_thread_for(template: *mut thread, cpu_id: c_int) -> Result<*mut thread, String> {
    let tgd = target_cpu("lwkt_alloc_thread", cpu_id);
    // Structures and stacks come from the current cpu's cache, whatever
    // cpu the thread will run on (an exited thread is cached by the cpu it
    // ran on).
    let gd = mycpu();
    // SAFETY: `gd` is the current cpu; list manipulation per tdqueue.
    unsafe {
        let mut flags = 0;
        let td;
        let mut mach: md_thread = core::mem::zeroed();
        if !template.is_null() {
            td = template;
        } else {
            let cached = tdqueue::first(&raw const (*gd).gd_tdfreeq);
            if !cached.is_null() {
                tdqueue::remove(&raw mut (*gd).gd_tdfreeq, cached, Link::Threadq);
                (*gd).gd_tdfreecount -= 1;
                mach = ptr::read(&raw const (*cached).td_mach);
                td = cached;
            } else {
                td = libc::calloc(1, core::mem::size_of::<thread>()).cast();
                if td.is_null() {
                    return Err("no memory for its structure".into());
                }
            }
            flags |= TDF_ALLOCATED_THREAD;
        }
        let mut stk = (*td).td_kstack;
        if mach.mtd_map.is_null() {
            stk = stack::alloc(stack::size(), &mut mach);
            if stk.is_null() {
                let why = stack::no_stack_reason();
                if template.is_null() {
                    libc::free(td.cast());
                }
                return Err(why);
            }
        }
        flags |= TDF_ALLOCATED_STACK;
        init_fields(td, stk, flags, tgd, Some(mach));
        count_user(td);
        Ok(td)
    }
}

/// The cpu named by a `cpu` argument (-1: current).
pub fn target_cpu(func: &str, cpu_id: c_int) -> *mut globaldata {
    if cpu_id == -1 {
        return mycpu();
    }
    let n = cpu::ncpus.load(Ordering::Acquire);
    if cpu_id < 0 || cpu_id >= n {
        fatal!(func, "no cpu {cpu_id} (ncpus is {n})");
    }
    if !cpu::is_live(cpu_id) {
        fatal!(
            func,
            "no cpu {cpu_id}: its kernel thread is not in this fork() child"
        );
    }
    cpu::globaldata_find(cpu_id)
}

/// `lwkt_create`: a new thread running `func(arg)` named `comm`, scheduled
/// unless `TDF_STOPREQ` is in `tdflags`. 0, or `ENOMEM` (one line said,
/// NULL in `*ptd`) when no memory or stack is left for it.
///
/// # Safety
/// `ptd` NULL or writable; `template` NULL or an unused thread structure;
/// `comm` NULL or a C string.
pub unsafe fn create(
    func: unsafe extern "C" fn(*mut c_void),
    arg: *mut c_void,
    ptd: *mut *mut thread,
    template: *mut thread,
    tdflags: c_int,
    cpu_id: c_int,
    comm: *const c_char,
) -> c_int {
    // SAFETY: per the contract.
    unsafe {
        let td = match alloc_thread_for(template, cpu_id) {
            Ok(td) => td,
            Err(why) => {
                let name = if comm.is_null() {
                    "".into()
                } else {
                    CStr::from_ptr(comm).to_string_lossy()
                };
                warn!("lwkt_create", "cannot create thread \"{name}\": {why}");
                if !ptd.is_null() {
                    *ptd = ptr::null_mut();
                }
                return libc::ENOMEM;
            }
        };
        if !ptd.is_null() {
            *ptd = td;
        }
        set_handler(td, func, arg);
        (*td).td_flags |= TDF_VERBOSE | tdflags;
        (*td).td_mpcount = 1;
        set_comm(td, comm);
        let run = (*td).td_flags & TDF_STOPREQ == 0;
        (*td).td_flags &= !TDF_STOPREQ;
        let tgd = (*td).td_gd;
        let gd = mycpu();
        if tgd == gd {
            register(gd, td);
            if run {
                schedule_local(gd, td);
            }
        } else if run {
            ipi::send(tgd, register_schedule_ipi, td.cast());
        } else {
            ipi::send(tgd, register_ipi, td.cast());
        }
    }
    0
}

/// Pick the next thread to run: the head of the highest non-empty run
/// queue, rotated to the tail of its queue; the idle thread when nothing
/// is runnable. Takes or drops the MP lock as the chosen thread needs.
///
/// # Safety
/// `gd` must be the current cpu.
#[inline(always)]
unsafe fn pick_next(gd: *mut globaldata) -> *mut thread {
    // SAFETY: run queues of the current cpu.
    unsafe {
        let mask = (*gd).gd_runqmask;
        if mask == 0 {
            cpu::release_mplock(gd);
            return idle(gd);
        }
        let pri = 31 - mask.leading_zeros() as usize;
        let q = &raw mut (*gd).gd_tdrunq[pri];
        let ntd = tdqueue::first(q);
        if (*ntd).td_mpcount > 0 {
            if !cpu::acquire_mplock(gd) {
                // Another cpu holds the MP lock: look for a thread that
                // does not need it.
                return pick_without_mplock(gd, ntd);
            }
        } else {
            cpu::release_mplock(gd);
        }
        if !tdqueue::next(ntd, Link::Threadq).is_null() {
            tdqueue::remove(q, ntd, Link::Threadq);
            tdqueue::insert_tail(q, ntd, Link::Threadq);
        }
        ntd
    }
}

/// The highest-priority runnable thread that does not need the MP lock
/// (rotated to the tail of its queue), or the idle thread; `waiting`, the
/// first in line, needs the lock and waits for it (traced).
///
/// # Safety
/// `gd` is the current cpu, which does not hold the MP lock.
#[cold]
unsafe fn pick_without_mplock(gd: *mut globaldata, waiting: *mut thread) -> *mut thread {
    // SAFETY: run queues of the current cpu.
    unsafe {
        if crate::diag::debug_on() {
            cpu::trace_mplock_wait("lwkt_switch", gd, waiting);
        }
        let mut mask = (*gd).gd_runqmask;
        while mask != 0 {
            let pri = 31 - mask.leading_zeros() as usize;
            mask &= !(1 << pri);
            let q = &raw mut (*gd).gd_tdrunq[pri];
            let mut td = tdqueue::first(q);
            while !td.is_null() {
                if (*td).td_mpcount == 0 {
                    tdqueue::remove(q, td, Link::Threadq);
                    tdqueue::insert_tail(q, td, Link::Threadq);
                    return td;
                }
                td = tdqueue::next(td, Link::Threadq);
            }
        }
        idle(gd)
    }
}

/// Switch from `td` (current) to `ntd`; `leave` says whether `td` will
/// be resumed.
///
/// # Safety
/// `gd` is the current cpu, `td` its current thread, `ntd` a runnable
/// thread of `gd` that is not running.
#[inline]
unsafe fn switch_to(gd: *mut globaldata, td: *mut thread, ntd: *mut thread, leave: Leave) {
    // SAFETY: per the contract; ntd's td_sp was saved by a switch or
    // prepared by set_handler.
    unsafe {
        (*td).td_flags &= !TDF_RUNNING;
        (*ntd).td_flags |= TDF_RUNNING;
        (*gd).gd_curthread = ntd;
        // errno belongs to the thread: nothing between here and the
        // return into `ntd` touches it.
        (*td).td_mach.mtd_errno = arch::errno_get();
        arch::errno_set((*ntd).td_mach.mtd_errno);
        if san::active() {
            // A program built with a sanitizer (src/lwkt/san.rs).
            san::switch(td, ntd, leave);
        } else {
            arch::switch(&raw mut (*td).td_sp, (*ntd).td_sp);
        }
    }
}

/// Refuse to switch or block inside a critical section (except for the
/// idle thread, which lives in one).
///
/// # Safety
/// `td` is the current thread of `gd`.
#[inline]
unsafe fn check_not_critical(func: &str, gd: *mut globaldata, td: *mut thread) {
    // SAFETY: valid current thread.
    unsafe {
        if (*td).td_pri >= TDPRI_CRIT && td != idle(gd) {
            fatal!(
                func,
                "called inside a critical section by thread {td:p} \"{}\" (td_pri {}, {} level(s))",
                name(td),
                (*td).td_pri,
                (*td).td_pri / TDPRI_CRIT
            );
        }
    }
}

/// The body of `lwkt_switch` without the critical-section check.
///
/// # Safety
/// `gd` is the current cpu and `td` its current thread.
#[inline]
unsafe fn do_switch(gd: *mut globaldata, td: *mut thread) {
    // SAFETY: per the contract.
    unsafe {
        if let Some(release) = (*td).td_release {
            release(td);
        }
        ipi::process(gd);
        (*td).td_pri += TDPRI_CRIT;
        let ntd = pick_next(gd);
        if ntd != td {
            switch_to(gd, td, ntd, Leave::Suspend);
        }
        (*td).td_pri -= TDPRI_CRIT;
    }
}

/// `lwkt_switch()`: run the next runnable thread (possibly the caller, if
/// it is still on a run queue and nothing of higher priority is).
pub fn switch(func: &str) {
    let gd = mycpu();
    // SAFETY: `gd` is the current cpu, its current thread valid.
    unsafe {
        let td = (*gd).gd_curthread;
        check_not_critical(func, gd, td);
        do_switch(gd, td);
    }
}

/// Block the current thread with wait message `wmesg` until someone
/// schedules it again (it is taken off the run queue first).
///
/// # Safety
/// `wmesg` must be a static C string.
pub unsafe fn block_self(func: &str, wmesg: *const c_char) {
    let gd = mycpu();
    // SAFETY: current cpu and thread; `wmesg` per the contract.
    unsafe { block_current(func, gd, (*gd).gd_curthread, wmesg) }
}

/// [`block_self`] for a caller that has already looked up the current
/// cpu `gd` and its current thread `td`.
///
/// # Safety
/// `gd` is the current cpu, `td` its current thread; `wmesg` must be a
/// static C string.
#[inline]
pub unsafe fn block_current(
    func: &str,
    gd: *mut globaldata,
    td: *mut thread,
    wmesg: *const c_char,
) {
    // SAFETY: per the contract.
    unsafe {
        check_not_critical(func, gd, td);
        (*td).td_wmesg = wmesg;
        dequeue(gd, td);
        do_switch(gd, td);
        (*td).td_wmesg = ptr::null();
        (*td).td_wchan = ptr::null_mut();
    }
}

/// `lwkt_schedule(td)`: make `td` runnable (taking it off a wait queue it
/// is blocked on).
///
/// # Safety
/// `td` must be a valid thread.
#[inline]
pub unsafe fn schedule(td: *mut thread) {
    let gd = mycpu();
    // SAFETY: per the contract.
    unsafe {
        if (*td).td_gd == gd {
            schedule_local(gd, td);
        } else {
            forward("lwkt_schedule", td, schedule_ipi);
        }
    }
}

/// Send `func(td)` to the cpu of `td`, another cpu than the current one.
///
/// # Safety
/// `td` must be a valid thread; `func` must accept it.
#[cold]
unsafe fn forward(func_name: &str, td: *mut thread, func: ipi::IpiFn) {
    // SAFETY: per the contract.
    unsafe {
        let tgd = (*td).td_gd;
        if tgd.is_null() || (*tgd).gd_self != tgd {
            fatal!(func_name, "thread {td:p} has no cpu (not initialised?)");
        }
        ipi::send(tgd, func, td.cast());
    }
}

/// IPI: `lwkt_schedule` of a thread of this cpu sent by another cpu.
unsafe extern "C" fn schedule_ipi(arg: *mut c_void) {
    let gd = mycpu();
    // SAFETY: the sender passed a thread of this cpu.
    unsafe { schedule_local(gd, arg.cast()) }
}

/// IPI: `lwkt_deschedule` of a thread of this cpu sent by another cpu.
unsafe extern "C" fn deschedule_ipi(arg: *mut c_void) {
    let gd = mycpu();
    // SAFETY: the sender passed a thread of this cpu.
    unsafe { dequeue(gd, arg.cast()) }
}

/// `lwkt_schedule` of a thread of the current cpu `gd`.
///
/// # Safety
/// `gd` is the current cpu and `td` a valid thread of it.
#[inline]
pub unsafe fn schedule_local(gd: *mut globaldata, td: *mut thread) {
    // SAFETY: per the contract.
    unsafe {
        if (*td).td_flags & TDF_EXITED != 0 {
            fatal!("lwkt_schedule", "thread {td:p} \"{}\" has exited", name(td));
        }
        if td == idle(gd) {
            return;
        }
        if !(*td).td_wait.is_null() {
            super::wait::unlink_waiter(td);
        }
        enqueue(gd, td);
    }
}

/// `lwkt_yield()`: `lwkt_schedule_self()` + `lwkt_switch()`, except that a
/// caller already on its run queue first moves to the tail, so that every
/// other runnable thread of its priority runs before it again.
pub fn yield_self() {
    let gd = mycpu();
    // SAFETY: current cpu and thread.
    unsafe {
        let td = (*gd).gd_curthread;
        check_not_critical("lwkt_yield", gd, td);
        // A thread that keeps yielding never lets the cpu go idle, where
        // its sockets are read and deferred writes made: do both now and
        // then, so that it cannot starve CAPS traffic.
        let p = cpu_priv(gd);
        (*p).yields = (*p).yields.wrapping_add(1);
        if (*p).yields.is_multiple_of(YIELDS_PER_POLL) {
            poll_sources();
        }
        // Another cpu waits for the MP lock: hand it over (one load when
        // nobody waits), so that a thread that waits by yielding with the
        // lock held cannot starve that cpu.
        if cpu::mplock_wanted() {
            cpu::mplock_handoff(gd);
        }
        dequeue(gd, td);
        enqueue(gd, td);
        do_switch(gd, td);
    }
}

/// `lwkt_yield` calls between two looks at the cpu's sockets.
const YIELDS_PER_POLL: u32 = 32;

#[cold]
fn poll_sources() {
    if crate::cpu::evloop::has_idle_hooks() {
        crate::cpu::evloop::run_idle_hooks();
    }
    if crate::cpu::evloop::sources() > 0 {
        crate::cpu::evloop::poll(0);
    }
}

/// `lwkt_deschedule(td)`: take `td` off the run queue; a running thread
/// keeps running until it switches.
///
/// # Safety
/// `td` must be a valid thread.
pub unsafe fn deschedule(td: *mut thread) {
    let gd = mycpu();
    // SAFETY: per the contract.
    unsafe {
        if (*td).td_gd == gd {
            dequeue(gd, td);
        } else {
            forward("lwkt_deschedule", td, deschedule_ipi);
        }
    }
}

/// `lwkt_setpri(td, pri)`, moving a queued thread to its new queue.
///
/// # Safety
/// `td` must be a valid thread.
pub unsafe fn setpri(td: *mut thread, pri: c_int) {
    if !(0..=TDPRI_MAX).contains(&pri) {
        fatal!("lwkt_setpri", "priority {pri} out of range 0..{TDPRI_MAX}");
    }
    // SAFETY: per the contract.
    unsafe {
        let gd = local_cpu("lwkt_setpri", td);
        let queued = (*td).td_flags & TDF_RUNQ != 0;
        if queued {
            dequeue(gd, td);
        }
        (*td).td_pri = ((*td).td_pri & !TDPRI_MASK) | pri;
        if queued {
            enqueue(gd, td);
        }
    }
}

/// Switch if a thread of strictly higher priority than the current one is
/// runnable and we are not in a critical section (`lwkt_yield_quick`,
/// `lwkt_maybe_switch`). The current thread stays runnable.
pub fn switch_if_higher() {
    let gd = mycpu();
    // SAFETY: current cpu and thread.
    unsafe {
        let td = (*gd).gd_curthread;
        if (*td).td_pri >= TDPRI_CRIT {
            return;
        }
        ipi::process(gd);
        let mine = ((*td).td_pri & TDPRI_MASK) as u32;
        if (*gd).gd_runqmask >> mine > 1 {
            enqueue(gd, td);
            do_switch(gd, td);
        }
    }
}

/// `lwkt_hold` / `lwkt_rele`: references that keep an exited thread's
/// structure from being reused. The last release of an exited allocated
/// thread returns it to the cache.
///
/// # Safety
/// `td` must be a valid thread.
pub unsafe fn rele(td: *mut thread) {
    // SAFETY: per the contract.
    unsafe {
        if (*td).td_refs <= 0 {
            fatal!("lwkt_rele", "thread {td:p} is not held");
        }
        (*td).td_refs -= 1;
        if (*td).td_refs == 0
            && (*td).td_flags & (TDF_EXITED | TDF_ALLOCATED_THREAD | TDF_FREEQ)
                == TDF_EXITED | TDF_ALLOCATED_THREAD
        {
            let gd = (*td).td_gd;
            tdqueue::insert_tail(&raw mut (*gd).gd_tdfreeq, td, Link::Threadq);
            (*gd).gd_tdfreecount += 1;
            (*td).td_flags |= TDF_FREEQ;
        }
    }
}

/// `lwkt_free_thread(td)`: release a thread that is not running: its stack
/// if we mapped it, its structure if we allocated it.
///
/// # Safety
/// `td` must be a valid thread that nobody will use again.
pub unsafe fn free_thread(td: *mut thread) {
    // SAFETY: per the contract.
    unsafe {
        let gd = local_cpu("lwkt_free_thread", td);
        if td == (*gd).gd_curthread || td == idle(gd) {
            fatal!(
                "lwkt_free_thread",
                "thread {td:p} is running or is the idle thread"
            );
        }
        if !(*td).td_wait.is_null() {
            fatal!(
                "lwkt_free_thread",
                "thread {td:p} is blocked on a wait queue"
            );
        }
        let flags = (*td).td_flags;
        if flags & TDF_FREEQ != 0 {
            tdqueue::remove(&raw mut (*gd).gd_tdfreeq, td, Link::Threadq);
            (*gd).gd_tdfreecount -= 1;
        } else if flags & TDF_EXITED == 0 {
            dequeue(gd, td);
            forget(gd, td);
        }
        stack::free(&raw mut (*td).td_mach);
        (*td).td_flags = TDF_EXITED;
        if flags & TDF_ALLOCATED_THREAD != 0 {
            libc::free(td.cast());
        }
    }
}

/// Take a live thread off the cpu's thread list and counters.
///
/// # Safety
/// `td` is a live (not exited) thread of `gd`.
unsafe fn forget(gd: *mut globaldata, td: *mut thread) {
    // SAFETY: per the contract.
    unsafe {
        tdqueue::remove(&raw mut (*gd).gd_tdallq, td, Link::Allq);
        (*gd).gd_num_threads -= 1;
        if (*td).td_flags & TDF_SYSTHREAD != 0 {
            (*gd).gd_sys_threads -= 1;
        } else if cpu::USER_THREADS.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The last user thread: the cpu of main may be asleep.
            let mgd = cpu::globaldata_find(cpu::MAIN_CPU);
            if mgd != gd {
                cpu::notify(mgd, cpu::RQF_WAKE);
            }
        }
    }
}

/// `lwkt_exit()`: end the current thread. Its structure and stack go to the
/// cpu's cache (or are released later) and the cpu switches away for good.
pub fn exit_current() -> ! {
    let gd = mycpu();
    // SAFETY: current cpu and thread; the thread never runs again, so its
    // stack is only reused after the switch below has left it.
    unsafe {
        let td = (*gd).gd_curthread;
        if td == idle(gd) {
            fatal!(
                "lwkt_exit",
                "the idle thread of cpu {} cannot exit",
                (*gd).gd_cpuid
            );
        }
        if (*td).td_flags & TDF_VERBOSE != 0 {
            libc::printf(
                c"kthread %p %s has exited\n".as_ptr(),
                td,
                (*td).td_comm.as_ptr(),
            );
        }
        dequeue(gd, td);
        forget(gd, td);
        (*td).td_mpcount = 0;
        (*td).td_flags |= TDF_EXITED;
        let private = cpu_priv(gd);
        if td == (*private).main_td {
            (*private).main_exited = true;
        }
        let flags = (*td).td_flags;
        if flags & TDF_ALLOCATED_THREAD != 0 && (*td).td_refs == 0 {
            tdqueue::insert_tail(&raw mut (*gd).gd_tdfreeq, td, Link::Threadq);
            (*gd).gd_tdfreecount += 1;
            (*td).td_flags |= TDF_FREEQ;
        } else if !(*td).td_mach.mtd_map.is_null() {
            // Not cached: the idle thread unmaps the stack once we are off it.
            (*private)
                .zombie_stacks
                .push(ptr::read(&raw const (*td).td_mach));
            (*td).td_mach.mtd_map = ptr::null_mut();
        }
        (*td).td_pri += TDPRI_CRIT;
        let ntd = pick_next(gd);
        switch_to(gd, td, ntd, Leave::Exit);
    }
    fatal!("lwkt_exit", "an exited thread was resumed")
}

/// Free cached threads beyond [`THREAD_CACHE_MAX`] and stacks of exited
/// threads that were not cached. Runs on the idle thread's stack.
///
/// # Safety
/// `gd` is the current cpu and the caller is its idle thread.
unsafe fn reap(gd: *mut globaldata) {
    // SAFETY: none of the threads on the free list or in zombie_stacks is
    // running, and the idle thread's own stack is never among them.
    unsafe {
        while (*gd).gd_tdfreecount > THREAD_CACHE_MAX {
            let td = tdqueue::first(&raw const (*gd).gd_tdfreeq);
            tdqueue::remove(&raw mut (*gd).gd_tdfreeq, td, Link::Threadq);
            (*gd).gd_tdfreecount -= 1;
            stack::free(&raw mut (*td).td_mach);
            libc::free(td.cast());
        }
        let private = cpu_priv(gd);
        while let Some(mut m) = (*private).zombie_stacks.pop() {
            stack::free(&mut m);
        }
    }
}

/// Report that every thread of the cpu is blocked and nothing can wake
/// any of them, then abort.
///
/// # Safety
/// `gd` is the current cpu.
unsafe fn report_deadlock(gd: *mut globaldata) -> ! {
    // SAFETY: walking the cpu's own thread list.
    let lines = unsafe { thread_states(gd) };
    fatal!(
        "deadlock",
        "every thread on cpu {} is blocked and nothing can wake any of them:{lines}",
        // SAFETY: `gd` is the current cpu.
        unsafe { (*gd).gd_cpuid }
    )
}

/// One line per thread of `gd`: what it waits for.
///
/// # Safety
/// `gd` must be a started cpu whose thread list nobody changes meanwhile
/// (its own, or one asleep).
unsafe fn thread_states(gd: *mut globaldata) -> String {
    let mut lines = String::new();
    // SAFETY: per the contract.
    unsafe {
        let mut td = tdqueue::first(&raw const (*gd).gd_tdallq);
        while !td.is_null() {
            let wmesg = (*td).td_wmesg;
            let why = if wmesg.is_null() {
                "descheduled (nothing will schedule it)".to_string()
            } else {
                format!("blocked in {}", CStr::from_ptr(wmesg).to_string_lossy())
            };
            lines.push_str(&format!(
                "\n  cpu {} thread {td:p} \"{}\": {why}",
                (*gd).gd_cpuid,
                name(td)
            ));
            td = tdqueue::next(td, Link::Allq);
        }
    }
    lines
}

/// Every cpu sleeps with nothing pending and no socket that could wake
/// one: report every thread and abort, instead of hanging.
///
/// # Safety
/// Called by the last cpu to fall asleep, after checking that every other
/// cpu sleeps with no request pending (their lists are not changing).
pub unsafe fn report_deadlock_all(ncpus: i32) -> ! {
    let mut lines = String::new();
    for cpu in cpu::live_cpus() {
        // SAFETY: per the contract; started cpus are valid forever.
        lines += &unsafe { thread_states(cpu::globaldata_find(cpu)) };
    }
    fatal!(
        "deadlock",
        "all {ncpus} cpus sleep and nothing can wake any of their threads:{lines}"
    )
}

/// Start the idle thread of a new cpu on its kernel thread; never returns.
///
/// # Safety
/// `gd` is the current cpu, just set up by [`gdinit`].
pub unsafe fn run_idle(gd: *mut globaldata) -> ! {
    let mut boot_sp: *mut c_char = ptr::null_mut();
    // SAFETY: the idle thread's stack was prepared by gdinit; the boot
    // stack is left for good (nothing switches back to it).
    unsafe {
        san::keep_boot_stack();
        if san::active() {
            san::switch_from_boot(&raw mut boot_sp, idle(gd));
        } else {
            arch::switch(&raw mut boot_sp, (*idle(gd)).td_sp);
        }
    }
    fatal!("caps_fork_vcpu", "the boot stack of a cpu was resumed")
}

/// `get_mplock()` when another cpu holds the lock: stay runnable and
/// switch until the scheduler picks this thread, which it does only once
/// this cpu owns the lock.
///
/// # Safety
/// `gd` is the current cpu and `td` its current thread, which counts a
/// hold in `td_mpcount`.
pub unsafe fn wait_for_mplock(gd: *mut globaldata, td: *mut thread) {
    // SAFETY: per the contract.
    unsafe {
        check_not_critical("get_mplock", gd, td);
        if crate::diag::debug_on() {
            cpu::trace_mplock_wait("get_mplock", gd, td);
        }
        let queued = (*td).td_flags & TDF_RUNQ != 0;
        enqueue(gd, td);
        while !cpu::acquire_mplock(gd) {
            do_switch(gd, td);
        }
        if !queued {
            dequeue(gd, td);
        }
    }
}

/// The idle thread: run IPIs, resume `main` when only system threads
/// remain, run whatever is runnable, and otherwise wait for work: a short
/// spin, then a sleep in the cpu's event loop (sockets, IPIs, the MP
/// lock's release). With a single cpu and no event source nothing could
/// ever wake anyone: that deadlock is reported.
unsafe extern "C" fn idle_loop(_arg: *mut c_void) {
    let gd = mycpu();
    // SAFETY: runs as the idle thread of `gd`, in its critical section.
    unsafe {
        let td = idle(gd);
        loop {
            ipi::process(gd);
            reap(gd);
            let private = cpu_priv(gd);
            let main = (*private).main_td;
            if !main.is_null()
                && !(*private).main_exited
                && (*main).td_flags & TDF_RUNQ == 0
                && (*main).td_wmesg.is_null()
                && (*main).td_wait.is_null()
                && cpu::only_system_threads_left()
            {
                enqueue(gd, main);
            }
            if let Some(release) = (*td).td_release {
                release(td);
            }
            let ntd = pick_next(gd);
            if ntd != td {
                switch_to(gd, td, ntd, Leave::Suspend);
                continue;
            }
            if (*gd).gd_runqmask != 0 {
                // Runnable threads all need the MP lock, held elsewhere.
                if cpu::mplock_wait_register(gd) {
                    cpu::wait_for_work(gd);
                    cpu::mplock_wait_unregister(gd);
                }
                continue;
            }
            if (*private).main_exited
                && (*gd).gd_num_threads == 0
                && cpu::only_system_threads_left()
            {
                // main() called lwkt_exit() and everything it started is
                // done: the program ends as after pthread_exit in main.
                libc::exit(0);
            }
            if (*gd).gd_cpuid == 0
                && cpu::ncpus.load(Ordering::Acquire) == 1
                && crate::cpu::evloop::sources() == 0
                && cpu::reqflags(gd).load(Ordering::SeqCst) == 0
            {
                // One cpu and no sockets: nothing can make a thread
                // runnable again.
                report_deadlock(gd);
            }
            cpu::wait_for_work(gd);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_names_are_truncated_and_terminated() {
        // SAFETY: a zeroed thread is valid; it is a local.
        let mut td: thread = unsafe { core::mem::zeroed() };
        // SAFETY: `td` is a local; the name is a C string.
        unsafe { set_comm(&mut td, c"a-very-long-thread-name".as_ptr()) };
        // SAFETY: `td` is valid.
        assert_eq!(unsafe { name(&td) }, "a-very-long-thre");
        assert_eq!(td.td_comm[15], b'e' as c_char);
        assert_eq!(td.td_comm[16], 0);
    }
}
