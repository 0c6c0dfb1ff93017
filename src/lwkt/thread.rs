//! LWKT threads of one cpu: initialisation (`lwkt_init_thread`), creation
//! from a per-cpu cache of exited threads (with their stacks), naming,
//! references (`lwkt_hold`/`lwkt_rele`), release and exit (`thread/exit.rs`),
//! and the count of user threads that decides when `main` is resumed. The run queues
//! and the switch are in `sched`, the idle thread in `idle`.
//!
//! Everything here runs on the cpu's own kernel thread. A thread belongs to
//! one cpu for life; registering a new thread on another cpu is forwarded
//! to that cpu as an IPI.

use core::ffi::{CStr, c_char, c_int, c_void};
use core::ptr;
use core::sync::atomic::{AtomicI32, Ordering};

use super::arch;
use super::boot::mycpu;
use super::msgport as mp;
use super::san;
use super::sched::{dequeue, enqueue, schedule_local};
use super::stack;
use super::tdqueue::{self, Link};
use crate::abi::{
    MAXCOMLEN, TDF_ALLOCATED_STACK, TDF_ALLOCATED_THREAD, TDF_STOPREQ, TDF_SYSTHREAD, TDF_VERBOSE,
    TDPRI_CRIT, TDPRI_KERN_DAEMON, THREAD_STACK, globaldata, md_thread, thread,
};
use crate::cpu::{self, ipi};
use crate::{fatal, warn};

mod exit;
mod layout;

pub use exit::exit_current;
use exit::{cache, exit_inline, forget};
use layout::alloc_struct;
pub use layout::{STRUCT_SKEW, free_struct};

/// Private flag: the thread has exited (`lwkt_exit`). Outside every
/// DragonFly `TDF_*` value.
pub const TDF_EXITED: c_int = 0x4000_0000;

/// Private flag: the thread is on its cpu's free list.
pub const TDF_FREEQ: c_int = 0x2000_0000;

/// Exited threads kept for reuse per cpu; the idle loop frees the rest.
/// The cache is a stack: an exited thread goes in at the head of
/// `gd_tdfreeq` and `lwkt_create` takes the head, so that it gets the
/// structure and stack used last (the likeliest to be in the cpu's
/// caches); the idle loop frees from the tail, the longest unused.
pub const THREAD_CACHE_MAX: c_int = 64;

/// Live threads without `TDF_SYSTHREAD`, on every cpu. Counted when a
/// thread is initialised (by its creator, before it reaches a remote cpu)
/// and uncounted when it exits, so that it never reads 0 while a thread is
/// on its way to another cpu.
pub static USER_THREADS: AtomicI32 = AtomicI32::new(0);

/// The cpu whose idle loop resumes `main`.
pub const MAIN_CPU: c_int = 0;

/// True when no cpu runs anything but system threads (the idle loop then
/// resumes `main`).
#[inline]
pub fn only_system_threads_left() -> bool {
    USER_THREADS.load(Ordering::Acquire) == 0
}

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
pub(super) fn idle_thread(gd: *mut globaldata) -> *mut thread {
    // SAFETY: only a field address is computed.
    unsafe { &raw mut (*gd).gd_idlethread }
}

/// Set every field of a thread as `lwkt_init_thread` does, without putting
/// it on the cpu's thread list.
///
/// # Safety
/// `td` valid for writes; `stack` NULL or `mach`'s / a caller's stack of
/// `THREAD_STACK` bytes.
pub(super) unsafe fn init_fields(
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
        set_fields(td, stack, flags, gd);
    }
}

/// [`init_fields`] of a cached thread whose `td_mach` (and the stack it
/// describes, at `td_kstack`) is kept as it is: the fields before
/// `td_mach` that [`set_fields`] does not store are zeroed, the saved
/// `errno` cleared; the machine part is neither copied out nor back.
/// The list links are not written: a thread off the free list is on no
/// list, and taking a thread off a list clears its link (`tailq::remove`).
///
/// # Safety
/// `td` is a thread just taken off the free list whose `td_mach` holds a
/// stack.
unsafe fn reinit_fields(td: *mut thread, flags: c_int, gd: *mut globaldata) {
    // SAFETY: per the contract; every byte before td_mach is either
    // zeroed here, a clear list link, td_kstack (already the stack
    // set_fields stores) or stored by set_fields (see the assertions on
    // the layout below), which leaves the thread as init_fields would.
    unsafe {
        layout::zero_for_reuse(td);
        (*td).td_mach.mtd_errno = 0;
        set_fields(td, (*td).td_kstack, flags, gd);
    }
}

/// The fields [`init_fields`] sets in a zeroed thread.
///
/// # Safety
/// `td` is writable, zeroed up to `td_mach`.
#[inline(always)]
unsafe fn set_fields(td: *mut thread, stack: *mut c_char, flags: c_int, gd: *mut globaldata) {
    // SAFETY: per the contract.
    unsafe {
        (*td).td_kstack = stack;
        (*td).td_flags = flags;
        (*td).td_gd = gd;
        (*td).td_pri = TDPRI_KERN_DAEMON + TDPRI_CRIT;
        mp::initport_zeroed(&raw mut (*td).td_msgport, td, &mp::DEFAULT_VECTORS);
    }
}

/// `lwkt_init_thread`: initialise `td` on cpu `gd` (priority
/// `TDPRI_KERN_DAEMON` in one critical section, own message port) and
/// count it on the cpu. `mach` carries a stack of ours to keep.
///
/// # Safety
/// `td` must not be on any list; `gd`'s lists are accessed only by the
/// caller: `gd` is the current cpu, or a private cpu that is never
/// published (a unit test's).
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

/// Count a new thread in [`USER_THREADS`] unless it is a system
/// thread.
///
/// # Safety
/// `td` must be a valid, initialised thread.
#[inline(always)]
unsafe fn count_user(td: *mut thread) {
    // SAFETY: per the contract.
    if unsafe { (*td).td_flags } & TDF_SYSTHREAD == 0 {
        user_threads_add(1);
    }
}

/// Add `n` to [`USER_THREADS`] and return the count before. While the
/// process has one cpu, only that cpu's kernel thread ever touches the
/// count (a second cpu starts from the first one's thread, which
/// publishes it before anything can reach it), so a plain load and store
/// do, without the locked update (a full barrier) that two cpus need.
#[inline(always)]
fn user_threads_add(n: i32) -> i32 {
    if cpu::ncpus.load(Ordering::Acquire) == 1 {
        let v = USER_THREADS.load(Ordering::Relaxed);
        USER_THREADS.store(v + n, Ordering::Relaxed);
        v
    } else {
        USER_THREADS.fetch_add(n, Ordering::AcqRel)
    }
}

/// Put an initialised thread on its cpu's thread list and counters.
///
/// # Safety
/// `gd` is `td_gd` of `td`, and its lists are accessed only by the
/// caller (see [`init_thread`]).
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
///
/// # Safety
/// Only sent to the cpu of `arg`, a thread initialised for it (and
/// counted) by its creator and on none of its lists yet.
unsafe extern "C" fn register_ipi(arg: *mut c_void) {
    let td = arg.cast::<thread>();
    let gd = mycpu();
    // SAFETY: the creator initialised `td` for this cpu and handed it over.
    unsafe { register(gd, td) };
}

/// IPI: register a thread created for this cpu by another one and make
/// it runnable.
///
/// # Safety
/// As [`register_ipi`].
unsafe extern "C" fn register_schedule_ipi(arg: *mut c_void) {
    let td = arg.cast::<thread>();
    let gd = mycpu();
    // SAFETY: as above.
    unsafe {
        register(gd, td);
        schedule_local(gd, td);
    }
}

/// The threads of `gd` that count in [`USER_THREADS`]: those on its
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
        (*td).td_comm.fill(0);
        copy_comm(td, comm);
    }
}

/// [`set_comm`] of a name in a buffer of `MAXCOMLEN + 1` bytes that is
/// all zeroes after the name (the C shim's): copied whole, without
/// looking for its end.
///
/// # Safety
/// `td` valid; `comm` NULL or such a buffer.
pub unsafe fn set_comm_padded(td: *mut thread, comm: *const c_char) {
    // SAFETY: per the contract.
    unsafe {
        if comm.is_null() {
            (*td).td_comm.fill(0);
        } else {
            copy_comm_padded(td, comm);
        }
    }
}

/// Copy a name as [`set_comm_padded`] does (`comm` not NULL).
///
/// # Safety
/// As [`set_comm_padded`].
#[inline(always)]
unsafe fn copy_comm_padded(td: *mut thread, comm: *const c_char) {
    // SAFETY: per the contract, `comm` has exactly the size of td_comm;
    // it is read unaligned (a C char array).
    unsafe {
        (*td).td_comm = ptr::read_unaligned(comm.cast::<[c_char; MAXCOMLEN as usize + 1]>());
    }
}

/// [`set_comm`] into a thread whose `td_comm` is all zeroes.
///
/// # Safety
/// As [`set_comm`].
#[inline]
unsafe fn copy_comm(td: *mut thread, comm: *const c_char) {
    if comm.is_null() {
        return;
    }
    // SAFETY: per the contract; at most MAXCOMLEN bytes are read (no
    // strlen of a long name) and copied, leaving the terminating NUL.
    unsafe {
        let dst = &mut (*td).td_comm;
        let room = dst.len() - 1;
        for (i, d) in dst.iter_mut().take(room).enumerate() {
            let c = *comm.add(i);
            if c == 0 {
                break;
            }
            *d = c;
        }
    }
}

/// Prepare `td`'s stack so that switching to it runs `func(arg)`, then
/// `lwkt_exit()`.
///
/// # Safety
/// `td` must have a stack and not be running.
pub(super) unsafe fn set_handler(
    td: *mut thread,
    func: unsafe extern "C" fn(*mut c_void),
    arg: *mut c_void,
) {
    // SAFETY: per the contract.
    unsafe {
        if (*td).td_kstack.is_null() {
            fatal!("lwkt_create", "thread {td:p} has no stack");
        }
        set_handler_san(td, func, arg, san::active());
    }
}

/// [`set_handler`] of a thread known to have a stack, told whether a
/// sanitizer is there (`san::active()`).
///
/// # Safety
/// As [`set_handler`], and `td_kstack` is not NULL; `active` is
/// `san::active()`.
#[inline(always)]
unsafe fn set_handler_san(
    td: *mut thread,
    func: unsafe extern "C" fn(*mut c_void),
    arg: *mut c_void,
    active: bool,
) {
    // SAFETY: per the contract.
    unsafe {
        // The start that looks for a sanitizer only when one is there
        // (the thread's start and exit then do not look).
        let start: arch::StartFn = if active {
            san::fresh_stack((*td).td_kstack, (*td).td_mach.mtd_stksize);
            thread_start::<true>
        } else {
            thread_start::<false>
        };
        let top = (*td).td_kstack.add((*td).td_mach.mtd_stksize);
        let top = top.wrapping_sub(top as usize & 15);
        (*td).td_sp = arch::init_stack(top, start, func as *mut c_void, arg);
    }
}

/// First Rust code of every thread: leave the critical section a new
/// thread is born in, run `func(arg)`, exit.
///
/// # Safety
/// Only entered through the trampoline of a stack prepared by
/// [`set_handler`], with the `func` and `arg` it stored.
/// `SAN`: a sanitizer wants stack switches announced (`san::active()`,
/// which set_handler looked at).
unsafe extern "C" fn thread_start<const SAN: bool>(func: *mut c_void, arg: *mut c_void) -> ! {
    if SAN {
        // SAFETY: the first code on this thread's stack after the switch.
        unsafe { san::arrived(ptr::null_mut()) };
    }
    // A thread of ours runs on a cpu that is set up: nothing to adopt.
    let gd = cpu::mycpu_if_any();
    // SAFETY: the current thread is valid; `func` was stored by set_handler
    // from a function pointer of this exact type.
    unsafe {
        (*(*gd).gd_curthread).td_pri -= TDPRI_CRIT;
        let f: unsafe extern "C" fn(*mut c_void) = core::mem::transmute(func);
        f(arg);
    }
    // Inlined, not called: a call that never returns would leave an
    // entry on the return stack buffer (see `arch`'s trampoline). A
    // thread stays on its cpu for life, but `gd` is looked up again
    // rather than kept across `func` (two loads): nothing then lives
    // across a call that returns, so this function, which never returns,
    // saves no callee-saved register.
    exit_inline::<SAN>(cpu::mycpu_if_any())
}

/// The cpu a thread argument refers to, which must be this one.
///
/// # Safety
/// `td` must be a valid thread.
pub(super) unsafe fn local_cpu(func: &str, td: *mut thread) -> *mut globaldata {
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
    let td = unsafe { alloc_thread_for(template, cpu_id, 0) }.unwrap_or_else(|why| {
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
/// its cpu with `TDF_SYSTHREAD` if `sys` has it, and counted as that
/// says, but not yet on that cpu's thread list. Err: what was missing
/// (nothing is allocated then).
///
/// # Safety
/// As [`alloc_thread`].
unsafe fn alloc_thread_for(
    template: *mut thread,
    cpu_id: c_int,
    sys: c_int,
) -> Result<*mut thread, String> {
    // Structures and stacks come from the current cpu's cache, whatever
    // cpu the thread will run on (an exited thread is cached by the cpu it
    // ran on).
    let gd = mycpu();
    let tgd = if cpu_id == -1 {
        gd
    } else {
        target_cpu("lwkt_alloc_thread", cpu_id)
    };
    // SAFETY: `gd` is the current cpu; list manipulation per tdqueue.
    unsafe {
        let mut flags = sys & TDF_SYSTHREAD;
        let td;
        let mut mach: md_thread = core::mem::zeroed();
        if !template.is_null() {
            td = template;
        } else {
            if let Some(td) = reuse_cached(gd, tgd, sys) {
                return Ok(td);
            }
            let cached = tdqueue::first(&raw const (*gd).gd_tdfreeq);
            if !cached.is_null() {
                tdqueue::remove(&raw mut (*gd).gd_tdfreeq, cached, Link::Threadq);
                (*gd).gd_tdfreecount -= 1;
                mach = ptr::read(&raw const (*cached).td_mach);
                td = cached;
            } else {
                td = alloc_struct();
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
                    free_struct(td);
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

/// The common case of [`alloc_thread_for`]: the first thread of the
/// current cpu `gd`'s free list, when it has a stack, taken off the list
/// and initialised for `tgd` with that stack where it is (`TDF_SYSTHREAD`
/// if `sys` has it, counted accordingly, not yet on `tgd`'s thread
/// list). `None`, with nothing done, when the list is empty or its first
/// thread has no stack.
///
/// # Safety
/// `gd` is the current cpu, `tgd` a started cpu.
#[inline(always)]
unsafe fn reuse_cached(
    gd: *mut globaldata,
    tgd: *mut globaldata,
    sys: c_int,
) -> Option<*mut thread> {
    // SAFETY: per the contract; threads on the free list are not running.
    unsafe {
        let td = tdqueue::first(&raw const (*gd).gd_tdfreeq);
        if td.is_null() || (*td).td_mach.mtd_map.is_null() {
            return None;
        }
        tdqueue::remove(&raw mut (*gd).gd_tdfreeq, td, Link::Threadq);
        (*gd).gd_tdfreecount -= 1;
        reinit_fields(
            td,
            TDF_ALLOCATED_THREAD | TDF_ALLOCATED_STACK | (sys & TDF_SYSTHREAD),
            tgd,
        );
        count_user(td);
        Some(td)
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
/// The common case (no template, the current cpu, a cached thread with
/// its stack, no sanitizer, the cpu set up) is taken without a call, so
/// that it saves no registers; anything else goes to [`create_slow`].
///
/// # Safety
/// `ptd` NULL or writable; `template` NULL or an unused thread structure;
/// `comm` NULL or a name as [`set_comm_padded`] takes it (`MAXCOMLEN + 1`
/// bytes, zero after the name).
#[inline(always)]
pub unsafe fn create(
    func: unsafe extern "C" fn(*mut c_void),
    arg: *mut c_void,
    ptd: *mut *mut thread,
    template: *mut thread,
    tdflags: c_int,
    cpu_id: c_int,
    comm: *const c_char,
) -> c_int {
    let gd = cpu::mycpu_if_any();
    let args = CreateArgs {
        template,
        cpu_id,
        tdflags,
        func,
        arg,
        ptd,
    };
    // SAFETY: per the contract; `gd` is the current cpu, set up.
    unsafe {
        // No template and the current cpu (-1), in one test.
        if (template as usize | cpu_id.wrapping_add(1) as u32 as usize) == 0
            && !gd.is_null()
            && !san::active()
            && let Some(td) = reuse_cached(gd, gd, tdflags)
        {
            let run = prepare_created(td, &args, comm, false);
            register(gd, td);
            if run {
                enqueue(gd, td);
            }
            return 0;
        }
        create_slow(args, comm)
    }
}

/// The arguments of [`create`] but the name, as it hands them on to
/// [`create_slow`]: what to allocate, then what to run and where to
/// say which thread runs it.
struct CreateArgs {
    template: *mut thread,
    cpu_id: c_int,
    tdflags: c_int,
    func: unsafe extern "C" fn(*mut c_void),
    arg: *mut c_void,
    ptd: *mut *mut thread,
}

/// What [`create`] does to a thread it has before it registers it:
/// `*ptd`, handler, flags, MP-lock hold, name. Whether to run it.
///
/// # Safety
/// `td` is a thread just initialised (and counted) for its cpu, on no
/// list, with a stack (a cached one, or one `alloc_thread_for` mapped);
/// `san_active` is `san::active()`; the rest as [`create`].
#[inline(always)]
unsafe fn prepare_created(
    td: *mut thread,
    a: &CreateArgs,
    comm: *const c_char,
    san_active: bool,
) -> bool {
    // SAFETY: per the contract.
    unsafe {
        if !a.ptd.is_null() {
            *a.ptd = td;
        }
        set_handler_san(td, a.func, a.arg, san_active);
        // The flags in one store: TDF_STOPREQ only says whether to run.
        let flags = (*td).td_flags | TDF_VERBOSE | a.tdflags;
        (*td).td_flags = flags & !TDF_STOPREQ;
        (*td).td_mpcount = 1;
        if !comm.is_null() {
            copy_comm_padded(td, comm);
        }
        flags & TDF_STOPREQ == 0
    }
}

/// [`prepare_created`], then the registration and run queue (on the
/// current cpu `gd`) or the IPI to the thread's cpu.
///
/// # Safety
/// As [`prepare_created`]; `gd` is the current cpu.
#[inline(always)]
unsafe fn start_created(gd: *mut globaldata, td: *mut thread, a: &CreateArgs, comm: *const c_char) {
    // SAFETY: per the contract.
    unsafe {
        let run = prepare_created(td, a, comm, san::active());
        let tgd = (*td).td_gd;
        if tgd == gd {
            register(gd, td);
            if run {
                // What schedule_local checks first (exited, the idle
                // thread, on a wait queue) cannot hold for a thread just
                // made.
                enqueue(gd, td);
            }
        } else if run {
            ipi::send(tgd, register_schedule_ipi, td.cast());
        } else {
            ipi::send(tgd, register_ipi, td.cast());
        }
    }
}

/// [`create`] in full.
///
/// # Safety
/// As [`create`] for `a`'s fields and `comm`.
#[inline(never)]
unsafe fn create_slow(a: CreateArgs, comm: *const c_char) -> c_int {
    let ptd = a.ptd;
    // SAFETY: per the contract; `gd` stays the current cpu (nothing
    // here switches).
    unsafe {
        let gd = mycpu();
        // A system thread is one from the start: counted as such when it
        // is made, as it will be uncounted when it exits.
        let cached = if a.template.is_null() && a.cpu_id == -1 {
            reuse_cached(gd, gd, a.tdflags)
        } else {
            None
        };
        let td = match cached.map_or_else(|| alloc_thread_for(a.template, a.cpu_id, a.tdflags), Ok)
        {
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
        start_created(gd, td, &a, comm);
    }
    0
}

/// `td_refs` of `td`, which [`hold`] may change from any cpu.
///
/// # Safety
/// `td` must be a valid thread.
#[inline(always)]
pub(super) unsafe fn refs<'a>(td: *mut thread) -> &'a AtomicI32 {
    // SAFETY: `td_refs` is an aligned `c_int` of a valid thread, and
    // every access to it goes through this atomic view.
    unsafe { AtomicI32::from_ptr(&raw mut (*td).td_refs) }
}

/// `lwkt_hold`: a reference that keeps `td`'s structure from being
/// reused after it exits (until [`rele`]). Any cpu may take one.
///
/// # Safety
/// `td` must be a valid thread.
pub unsafe fn hold(td: *mut thread) {
    // SAFETY: per the contract.
    unsafe { refs(td).fetch_add(1, Ordering::Relaxed) };
}

/// `lwkt_rele`: drop a reference taken with [`hold`]. The last release of
/// an exited allocated thread returns it to its cpu's cache. Called on
/// another cpu, the release is sent to the thread's cpu by IPI: only that
/// cpu looks at its thread's flags and its cache (the reference it drops
/// keeps the structure from reuse until then).
///
/// # Safety
/// `td` must be a valid thread.
pub unsafe fn rele(td: *mut thread) {
    // SAFETY: per the contract; a held thread's `td_gd` does not change
    // (only a cached structure is reinitialised for another cpu).
    unsafe {
        if refs(td).load(Ordering::Relaxed) <= 0 {
            fatal!("lwkt_rele", "thread {td:p} is not held");
        }
        let tgd = (*td).td_gd;
        if tgd != mycpu() {
            ipi::send(tgd, rele_ipi, td.cast());
            return;
        }
        rele_local(td);
    }
}

/// IPI: [`rele`] on the thread's cpu.
///
/// # Safety
/// Only sent by [`rele`] to the cpu of `arg`, a held thread.
unsafe extern "C" fn rele_ipi(arg: *mut c_void) {
    // SAFETY: the reference being dropped kept the thread valid.
    unsafe { rele_local(arg.cast()) }
}

/// [`rele`] on `td`'s own cpu, the current one.
///
/// # Safety
/// `td` must be a valid thread of the current cpu.
unsafe fn rele_local(td: *mut thread) {
    // SAFETY: per the contract.
    unsafe {
        let old = refs(td).fetch_sub(1, Ordering::AcqRel);
        if old <= 0 {
            fatal!("lwkt_rele", "thread {td:p} is not held");
        }
        if old == 1
            && (*td).td_flags & (TDF_EXITED | TDF_ALLOCATED_THREAD | TDF_FREEQ)
                == TDF_EXITED | TDF_ALLOCATED_THREAD
        {
            let gd = (*td).td_gd;
            cache(gd, td);
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
        if td == (*gd).gd_curthread || td == idle_thread(gd) {
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
            // Switched out, it may be the last switched-out thread.
            arch::forget_thread(td);
        }
        stack::free(&raw mut (*td).td_mach);
        (*td).td_flags = TDF_EXITED;
        if flags & TDF_ALLOCATED_THREAD != 0 {
            free_struct(td);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lwkt::testcpu::PrivateCpu;

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

    #[test]
    fn hold_and_the_last_rele_of_an_exited_allocated_thread_caches_it() {
        let mut c = PrivateCpu::new(27);
        let (exited, kept, live) = (c.thread(10, 0), c.thread(10, 0), c.thread(10, 0));
        // SAFETY: threads of the private cpu, which nothing runs (not the
        // current cpu: `rele_local` is what `rele` runs on a thread's own).
        unsafe {
            let gd = c.gd;
            (*exited).td_flags |= TDF_EXITED | TDF_ALLOCATED_THREAD;
            (*kept).td_flags |= TDF_EXITED;
            (*live).td_flags |= TDF_ALLOCATED_THREAD;
            for td in [exited, kept, live] {
                hold(td);
                hold(td);
                assert_eq!((*td).td_refs, 2);
                rele_local(td);
            }
            assert_eq!((*exited).td_refs, 1);
            assert_eq!((*gd).gd_tdfreecount, 0, "still held: not cached");
            for td in [exited, kept, live] {
                rele_local(td);
                assert_eq!((*td).td_refs, 0);
            }
            assert_eq!((*gd).gd_tdfreecount, 1);
            assert_eq!(tdqueue::first(&raw const (*gd).gd_tdfreeq), exited);
            assert_ne!((*exited).td_flags & TDF_FREEQ, 0);
            // Not ours to reuse (a caller's structure) or not exited.
            assert_eq!((*kept).td_flags & TDF_FREEQ, 0);
            assert_eq!((*live).td_flags & TDF_FREEQ, 0);
            // Off the free list again before the private cpu goes.
            tdqueue::remove(&raw mut (*gd).gd_tdfreeq, exited, Link::Threadq);
        }
    }
}
