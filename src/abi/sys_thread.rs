//! `<sys/thread.h>`: the LWKT thread structure (DragonFly `sys/thread.h`
//! rev 1.42 layout in its December 2003 form, i.e. without `td_caps`, with
//! `td_mpcount` because libcaps is built with `-DSMP`), the token, wait
//! queue and IPI queue structures, and the `TDF_*` / `TDPRI_*` constants.
//!
//! This file is parsed by cbindgen and by the `abi-test` crate, so it keeps
//! to plain syntax: types, consts and type aliases only.

use core::ffi::{c_char, c_int, c_uint, c_void};

use super::globaldata;
use super::lwkt_port;
use super::md_intr_info;
use super::pcb;
use super::proc_;

/// Link node of a thread on a run queue, wait queue or free list
/// (`TAILQ_ENTRY(thread) td_threadq`, also used for `td_allq`).
#[repr(C)]
pub struct thread_entry {
    pub tqe_next: *mut thread,
    pub tqe_prev: *mut *mut thread,
}

/// Head of a list of threads (`TAILQ_HEAD(, thread)`).
#[repr(C)]
pub struct thread_queue {
    pub tqh_first: *mut thread,
    pub tqh_last: *mut *mut thread,
}

/// `lwkt_queue`: the wait-queue list head type of DragonFly.
pub type lwkt_queue = thread_queue;

/// Machine-dependent part of a thread (`td_mach`). DragonFly's libcaps had
/// an empty `struct md_thread { }`, which C forbids; here it records how the
/// thread's stack was obtained so that it can be cached and released.
#[repr(C)]
pub struct md_thread {
    /// Bytes usable by the thread at `td_kstack` (0: no stack of ours).
    pub mtd_stksize: usize,
    /// Base of the stack's region, guard included: a mapping of its own,
    /// or its slot of a mapping shared with other stacks (NULL: none).
    pub mtd_map: *mut c_void,
    /// Length of that region in bytes.
    pub mtd_maplen: usize,
    /// Stack id registered with valgrind (0 when not running under it).
    pub mtd_vgstack: c_uint,
    /// The thread's `errno` while it is switched out (0 for a new thread).
    pub mtd_errno: c_int,
}

/// `union { struct md_intr_info *intdata; } td_info`.
#[repr(C)]
#[derive(Copy, Clone)]
pub union thread_info {
    pub intdata: *mut md_intr_info,
}

/// A token: a soft lock owned by a cpu, with a generation number that
/// changes whenever another holder acquired it (December 2003 form).
#[repr(C)]
pub struct lwkt_token {
    pub t_cpu: *mut globaldata,
    pub t_reqcpu: *mut globaldata,
    pub t_gen: c_int,
}

/// A generation-interlocked wait queue (`lwkt_block` / `lwkt_signal`).
#[repr(C)]
pub struct lwkt_wait {
    pub wa_waitq: lwkt_queue,
    pub wa_token: lwkt_token,
    pub wa_gen: c_int,
    pub wa_count: c_int,
}

/// One cpu-to-cpu IPI FIFO.
#[repr(C)]
pub struct lwkt_ipiq {
    pub ip_rindex: c_int,
    pub ip_xindex: c_int,
    pub ip_windex: c_int,
    pub ip_func: [ipifunc_t; 16],
    pub ip_arg: [*mut c_void; 16],
}

/// An LWKT thread (`struct thread`).
#[repr(C)]
pub struct thread {
    /// Link on a run queue, wait queue or the free list.
    pub td_threadq: thread_entry,
    /// Link on the cpu's list of all threads.
    pub td_allq: thread_entry,
    /// Built-in message port (replies to this thread).
    pub td_msgport: lwkt_port,
    pub td_proc: *mut proc_,
    pub td_pcb: *mut pcb,
    /// The cpu this thread belongs to.
    pub td_gd: *mut globaldata,
    /// What the thread waits for, NULL while runnable.
    pub td_wmesg: *const c_char,
    pub td_wchan: *mut c_void,
    /// Priority (low 5 bits) plus `TDPRI_CRIT` per critical section.
    pub td_pri: c_int,
    /// `TDF_*` flags.
    pub td_flags: c_int,
    /// Wait-queue chasing generation number.
    pub td_gen: c_int,
    pub td_preemptable: Option<unsafe extern "C" fn(*mut thread, c_int)>,
    /// Called by `lwkt_switch` before switching away from this thread.
    pub td_release: Option<unsafe extern "C" fn(*mut thread)>,
    pub td_info: thread_info,
    /// Lowest usable address of the thread's stack.
    pub td_kstack: *mut c_char,
    /// Saved stack pointer while the thread is switched out.
    pub td_sp: *mut c_char,
    pub td_switch: Option<unsafe extern "C" fn(*mut thread)>,
    /// Wait queue the thread is blocked on, NULL otherwise.
    pub td_wait: *mut lwkt_wait,
    pub td_uticks: u64,
    pub td_sticks: u64,
    pub td_iticks: u64,
    pub td_locks: c_int,
    /// Holds taken with `lwkt_hold`.
    pub td_refs: c_int,
    pub td_nest_count: c_int,
    /// MP lock recursion count (`-DSMP` name of the slot).
    pub td_mpcount: c_int,
    /// Thread name (`MAXCOMLEN + 1` bytes, NUL terminated).
    pub td_comm: [c_char; 17],
    pub td_preempted: *mut thread,
    pub td_mach: md_thread,
}

/// `thread_t`
pub type thread_t = *mut thread;
/// `lwkt_token_t`
pub type lwkt_token_t = *mut lwkt_token;
/// `lwkt_wait_t`
pub type lwkt_wait_t = *mut lwkt_wait;
/// `lwkt_ipiq_t`
pub type lwkt_ipiq_t = *mut lwkt_ipiq;
/// `ipifunc_t`
pub type ipifunc_t = Option<unsafe extern "C" fn(*mut c_void)>;

pub const MAXCOMLEN: c_int = 16;
pub const MAXCPUFIFO: c_int = 16;

pub const TDF_RUNNING: c_int = 0x0001;
pub const TDF_RUNQ: c_int = 0x0002;
pub const TDF_PREEMPT_LOCK: c_int = 0x0004;
pub const TDF_PREEMPT_DONE: c_int = 0x0008;
pub const TDF_IDLE_NOHLT: c_int = 0x0010;
pub const TDF_SYSTHREAD: c_int = 0x0100;
pub const TDF_ALLOCATED_THREAD: c_int = 0x0200;
pub const TDF_ALLOCATED_STACK: c_int = 0x0400;
pub const TDF_VERBOSE: c_int = 0x0800;
pub const TDF_DEADLKTREAT: c_int = 0x1000;
pub const TDF_STOPREQ: c_int = 0x2000;
pub const TDF_WAKEREQ: c_int = 0x4000;
pub const TDF_TIMEOUT: c_int = 0x8000;
pub const TDF_INTTHREAD: c_int = 0x0001_0000;

pub const TDPRI_IDLE_THREAD: c_int = 0;
pub const TDPRI_USER_IDLE: c_int = 4;
pub const TDPRI_USER_NORM: c_int = 6;
pub const TDPRI_USER_REAL: c_int = 8;
pub const TDPRI_KERN_LPSCHED: c_int = 9;
pub const TDPRI_KERN_USER: c_int = 10;
pub const TDPRI_KERN_DAEMON: c_int = 12;
pub const TDPRI_SOFT_NORM: c_int = 14;
pub const TDPRI_SOFT_TIMER: c_int = 16;
pub const TDPRI_EXITING: c_int = 19;
pub const TDPRI_INT_SUPPORT: c_int = 20;
pub const TDPRI_INT_LOW: c_int = 27;
pub const TDPRI_INT_MED: c_int = 28;
pub const TDPRI_INT_HIGH: c_int = 29;
pub const TDPRI_MAX: c_int = 31;
pub const TDPRI_MASK: c_int = 31;
pub const TDPRI_CRIT: c_int = 32;

pub const CACHE_NTHREADS: c_int = 6;

/// Usable stack size of a thread created by `lwkt_create` (bytes).
pub const THREAD_STACK: c_int = 65536;
