//! For unit tests: a private cpu (a `globaldata` of the test's own, set
//! up as `caps_fork_vcpu` sets up a new cpu's, never published nor made
//! the current cpu), and threads on it that never run. The scheduler's
//! bookkeeping is exercised on it without starting the process-wide cpu
//! 0. Private cpus have an MP lock of their own ([`PrivateMpLock`]),
//! shared by those made [`PrivateCpu::beside`] each other: no test moves
//! the process's.

use core::cell::RefCell;
use core::ffi::c_int;
use core::ptr;
use core::sync::atomic::{AtomicI32, AtomicU32};
use std::rc::Rc;

use super::idle;
use super::stack;
use super::thread::init_thread;
use crate::abi::{TDF_SYSTHREAD, TDPRI_MASK, globaldata, thread};
use crate::cpu::{self, MpLock};

/// The MP lock of a group of private cpus: owner word and waiting cpus.
pub struct PrivateMpLock {
    pub owner: AtomicI32,
    pub waiters: AtomicU32,
}

thread_local! {
    /// The private cpus of the calling test thread, found by id when
    /// their MP lock wakes one.
    static CPUS: RefCell<Vec<*mut globaldata>> = const { RefCell::new(Vec::new()) };
}

/// The private cpu with id `cpuid` of the calling thread.
fn private_cpu(cpuid: c_int) -> *mut globaldata {
    CPUS.with_borrow(|cpus| {
        cpus.iter()
            .copied()
            // SAFETY: listed cpus are live (unlisted on drop).
            .find(|&gd| unsafe { (*gd).gd_cpuid } as c_int == cpuid)
            .unwrap_or_else(|| panic!("no private cpu {cpuid}"))
    })
}

/// A private cpu and the threads made on it; everything is freed on drop.
pub struct PrivateCpu {
    pub gd: *mut globaldata,
    pub mp: Rc<PrivateMpLock>,
    threads: Vec<*mut thread>,
}

impl PrivateCpu {
    /// A cpu with id `cpuid` (0..32; it names the cpu in the MP lock
    /// word) and an MP lock of its own, free.
    pub fn new(cpuid: i32) -> PrivateCpu {
        let mp = Rc::new(PrivateMpLock {
            owner: AtomicI32::new(-1),
            waiters: AtomicU32::new(0),
        });
        PrivateCpu::with_lock(cpuid, mp)
    }

    /// A cpu with id `cpuid` that shares the MP lock of `other` (ids
    /// differ).
    pub fn beside(other: &PrivateCpu, cpuid: i32) -> PrivateCpu {
        PrivateCpu::with_lock(cpuid, other.mp.clone())
    }

    fn with_lock(cpuid: i32, mp: Rc<PrivateMpLock>) -> PrivateCpu {
        // SAFETY: an all-zero globaldata is valid (gdary starts so).
        let gd = Box::into_raw(Box::new(unsafe { core::mem::zeroed::<globaldata>() }));
        // SAFETY: `gd` is ours and unused; gdinit sets up its lists and
        // idle thread on the calling kernel thread, which never runs it.
        unsafe {
            cpu::gdinit_cpu(gd, cpuid);
            idle::gdinit(gd);
        }
        CPUS.with_borrow_mut(|cpus| cpus.push(gd));
        PrivateCpu {
            gd,
            mp,
            threads: Vec::new(),
        }
    }

    /// This cpu's MP lock, as the scheduler takes it.
    pub fn mplock(&self) -> MpLock<'_> {
        MpLock {
            owner: &self.mp.owner,
            waiters: &self.mp.waiters,
            cpu: private_cpu,
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
        CPUS.with_borrow_mut(|cpus| cpus.retain(|&gd| gd != self.gd));
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
