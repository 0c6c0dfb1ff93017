//! `<libcaps/globaldata.h>`: the per-cpu `struct globaldata` (module named
//! `libcaps_globaldata` so that it does not clash with the struct).
//!
//! Layout follows libcaps' V3 `globaldata.h` (December 2003) where it means
//! something on Linux: `gd_self` first, the current thread, the thread
//! lists, the 32 run queues and their bitmap, the cpu id, the idle thread,
//! the slab area and the IPI queues. The i386 upcall block is gone (Linux
//! has no upcalls); `gd_curthread` and `gd_reqflags` are therefore plain
//! fields instead of aliases into it. Everything a second cpu needs
//! (`gd_pid`, `gd_cpumask`, `gd_other_cpus`, `gd_ipiq`, `gd_vcpu`) is
//! already here so that adding cpus does not reshape the structure.
//!
//! This file is parsed by cbindgen and by the `abi-test` crate: plain
//! syntax only.

use core::ffi::{c_int, c_void};

use super::SLGlobalData;
use super::lwkt_ipiq;
use super::thread;
use super::thread_queue;

/// Per-cpu data. `mycpu` is the current cpu's.
#[repr(C)]
pub struct globaldata {
    /// Self pointer (must be at offset 0).
    pub gd_self: *mut globaldata,
    /// The thread running on this cpu (`curthread`).
    pub gd_curthread: *mut thread,
    /// Pending reschedule / IPI requests checked by `crit_exit()`.
    pub gd_reqflags: c_int,
    /// Number of threads on `gd_tdfreeq`.
    pub gd_tdfreecount: c_int,
    /// Every thread of this cpu except the idle thread.
    pub gd_tdallq: thread_queue,
    /// Exited threads kept for reuse (with their stacks).
    pub gd_tdfreeq: thread_queue,
    /// Run queues, one per priority (`td_pri & TDPRI_MASK`).
    pub gd_tdrunq: [thread_queue; 32],
    /// Bit `n` set when `gd_tdrunq[n]` is not empty.
    pub gd_runqmask: u32,
    pub gd_cpuid: u32,
    /// Bit `gd_cpuid`.
    pub gd_cpumask: u32,
    /// Every active cpu but this one.
    pub gd_other_cpus: u32,
    pub gd_intr_nesting_level: c_int,
    /// Linux thread id of the kernel thread that runs this cpu.
    pub gd_pid: c_int,
    pub gd_idlethread: thread,
    /// The slab allocator's state for this cpu.
    pub gd_slab: SLGlobalData,
    /// Threads of this cpu (idle thread excluded).
    pub gd_num_threads: c_int,
    /// How many of them are system threads (`TDF_SYSTHREAD`).
    pub gd_sys_threads: c_int,
    /// `MAXVCPU` IPI FIFOs, one per target cpu.
    pub gd_ipiq: *mut lwkt_ipiq,
    /// Private state of the virtual-cpu layer (event loop, wakeup fd).
    pub gd_vcpu: *mut c_void,
}

/// `globaldata_t`
pub type globaldata_t = *mut globaldata;

/// Highest number of virtual cpus.
pub const MAXVCPU: c_int = 32;
