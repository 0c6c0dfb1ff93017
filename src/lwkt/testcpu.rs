//! For unit tests: a private cpu (a `globaldata` of the test's own, set
//! up as `caps_fork_vcpu` sets up a new cpu's, never published nor made
//! the current cpu), and threads on it that never run. The scheduler's
//! bookkeeping is exercised on it without starting the process-wide cpu
//! 0.

use core::ptr;

use super::idle;
use super::stack;
use super::thread::init_thread;
use crate::abi::{TDF_SYSTHREAD, TDPRI_MASK, globaldata, thread};
use crate::cpu;

/// A private cpu and the threads made on it; everything is freed on drop.
pub struct PrivateCpu {
    pub gd: *mut globaldata,
    threads: Vec<*mut thread>,
}

impl PrivateCpu {
    /// A cpu with id `cpuid` (0..32; it names the cpu in the MP lock word).
    pub fn new(cpuid: i32) -> PrivateCpu {
        // SAFETY: an all-zero globaldata is valid (gdary starts so).
        let gd = Box::into_raw(Box::new(unsafe { core::mem::zeroed::<globaldata>() }));
        // SAFETY: `gd` is ours and unused; gdinit sets up its lists and
        // idle thread on the calling kernel thread, which never runs it.
        unsafe {
            cpu::gdinit_cpu(gd, cpuid);
            idle::gdinit(gd);
        }
        PrivateCpu {
            gd,
            threads: Vec::new(),
        }
    }

    /// A new system thread of this cpu at priority `pri`, holding the MP
    /// lock `mpcount` times, on no run queue.
    pub fn thread(&mut self, pri: i32, mpcount: i32) -> *mut thread {
        // SAFETY: an all-zero thread is valid; init_thread sets it up on
        // this cpu (TDF_SYSTHREAD: the process-wide user count is left
        // alone).
        let td = Box::into_raw(Box::new(unsafe { core::mem::zeroed::<thread>() }));
        // SAFETY: `td` is ours; `self.gd` is set up.
        unsafe {
            init_thread(td, ptr::null_mut(), TDF_SYSTHREAD, self.gd, None);
            (*td).td_pri = ((*td).td_pri & !TDPRI_MASK) | pri;
            (*td).td_mpcount = mpcount;
        }
        self.threads.push(td);
        td
    }

    /// The idle thread of this cpu.
    pub fn idle(&self) -> *mut thread {
        // SAFETY: only a field address is computed.
        unsafe { &raw mut (*self.gd).gd_idlethread }
    }
}

impl Drop for PrivateCpu {
    fn drop(&mut self) {
        // SAFETY: nothing runs on this cpu; its threads have no stacks.
        unsafe {
            for &td in &self.threads {
                drop(Box::from_raw(td));
            }
            stack::free(&raw mut (*self.gd).gd_idlethread.td_mach);
            cpu::gdfree_cpu(self.gd);
            drop(Box::from_raw(self.gd));
        }
    }
}
