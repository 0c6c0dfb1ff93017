//! Unit tests of the run queues, the pick and the MP-lock hand-over, on
//! private cpus (`lwkt::testcpu`).

use super::*;
use crate::cpu::RQF_WAKE;
use crate::lwkt::testcpu::PrivateCpu;

/// `pick_next` on `c`, which stands for the current cpu, with its
/// private MP lock.
fn pick(c: &PrivateCpu) -> *mut thread {
    // SAFETY: the private cpu's run queues, changed by this test only.
    unsafe { pick_next_on(c.gd, c.mplock()) }
}

fn runq(c: &PrivateCpu) -> u32 {
    // SAFETY: a field of the private cpu.
    unsafe { (*c.gd).gd_runqmask }
}

#[test]
fn the_highest_priority_runs_first() {
    let mut c = PrivateCpu::new(20);
    let (lo, hi, mid) = (c.thread(5, 0), c.thread(20, 0), c.thread(10, 0));
    assert_eq!(pick(&c), c.idle(), "nothing runnable: the idle thread");
    // SAFETY: threads of the private cpu.
    unsafe {
        for td in [lo, hi, mid] {
            enqueue(c.gd, td);
        }
    }
    assert_eq!(runq(&c), 1 << 5 | 1 << 10 | 1 << 20);
    assert_eq!(pick(&c), hi);
    // SAFETY: as above.
    unsafe { dequeue(c.gd, hi) };
    assert_eq!(runq(&c), 1 << 5 | 1 << 10);
    assert_eq!(pick(&c), mid);
    // SAFETY: as above.
    unsafe { dequeue(c.gd, mid) };
    assert_eq!(pick(&c), lo);
    // SAFETY: as above.
    unsafe { dequeue(c.gd, lo) };
    assert_eq!(runq(&c), 0);
    assert_eq!(pick(&c), c.idle());
}

#[test]
fn one_priority_runs_round_robin() {
    let mut c = PrivateCpu::new(21);
    let t: Vec<_> = (0..3).map(|_| c.thread(12, 0)).collect();
    // SAFETY: threads of the private cpu.
    unsafe {
        for &td in &t {
            enqueue(c.gd, td);
            // Enqueueing a queued thread changes nothing.
            enqueue(c.gd, td);
        }
    }
    let order: Vec<_> = (0..7).map(|_| pick(&c)).collect();
    assert_eq!(order, [t[0], t[1], t[2], t[0], t[1], t[2], t[0]]);
    // Off the queue in the middle: the others keep their turns.
    // SAFETY: as above.
    unsafe {
        dequeue(c.gd, t[1]);
        assert_eq!((*t[1]).td_flags & TDF_RUNQ, 0);
        dequeue(c.gd, t[1]);
    }
    let order: Vec<_> = (0..3).map(|_| pick(&c)).collect();
    assert_eq!(order, [t[2], t[0], t[2]]);
    assert_eq!(runq(&c), 1 << 12);
}

#[test]
fn setpri_moves_a_queued_thread_and_keeps_the_critical_count() {
    let mut c = PrivateCpu::new(22);
    let (a, b) = (c.thread(8, 0), c.thread(9, 0));
    // SAFETY: threads of the private cpu.
    unsafe {
        enqueue(c.gd, a);
        enqueue(c.gd, b);
        assert_eq!(pick(&c), b);
        setpri_local(c.gd, a, 15);
        assert_eq!(runq(&c), 1 << 9 | 1 << 15);
        assert_eq!(pick(&c), a);
        // Threads are born in one critical section: it survives.
        assert_eq!((*a).td_pri, 15 + TDPRI_CRIT);
        // A thread on no queue only changes its priority.
        dequeue(c.gd, b);
        setpri_local(c.gd, b, 30);
        assert_eq!((*b).td_flags & TDF_RUNQ, 0);
        assert_eq!(runq(&c), 1 << 15);
    }
}

#[test]
fn schedule_local_queues_a_thread_once_and_never_the_idle_thread() {
    let mut c = PrivateCpu::new(23);
    let td = c.thread(7, 0);
    // SAFETY: threads of the private cpu.
    unsafe {
        schedule_local(c.gd, c.idle());
        assert_eq!(runq(&c), 0);
        schedule_local(c.gd, td);
        schedule_local(c.gd, td);
        assert_ne!((*td).td_flags & TDF_RUNQ, 0);
        assert_eq!(runq(&c), 1 << 7);
        assert_eq!(pick(&c), td);
        assert_eq!(pick(&c), td, "alone on its queue, it stays first");
    }
}

#[test]
fn the_mp_lock_follows_the_thread_picked() {
    let mut c = PrivateCpu::new(24);
    let me = 24;
    let (holder, free) = (c.thread(10, 1), c.thread(10, 0));
    // SAFETY: threads of the private cpu.
    unsafe { enqueue(c.gd, holder) };
    assert_eq!(pick(&c), holder);
    assert_eq!(c.mp.owner.load(Ordering::SeqCst), me, "taken for a holder");
    // SAFETY: as above.
    unsafe {
        dequeue(c.gd, holder);
        enqueue(c.gd, free);
    }
    assert_eq!(pick(&c), free);
    assert_eq!(
        c.mp.owner.load(Ordering::SeqCst),
        -1,
        "dropped for a thread without holds"
    );
    // SAFETY: as above.
    unsafe { enqueue(c.gd, holder) };
    assert_eq!(pick(&c), free);
    assert_eq!(pick(&c), holder);
    assert_eq!(c.mp.owner.load(Ordering::SeqCst), me);
    // SAFETY: as above.
    unsafe {
        dequeue(c.gd, holder);
        dequeue(c.gd, free);
    }
    assert_eq!(pick(&c), c.idle());
    assert_eq!(c.mp.owner.load(Ordering::SeqCst), -1, "dropped when idle");
}

#[test]
fn without_the_mp_lock_a_cpu_runs_what_does_not_need_it() {
    let mut c = PrivateCpu::new(25);
    let other = 26;
    c.mp.owner.store(other, Ordering::SeqCst);
    let (holder, free_lo, free_hi) = (c.thread(20, 1), c.thread(3, 0), c.thread(3, 0));
    // SAFETY: threads of the private cpu.
    unsafe {
        enqueue(c.gd, holder);
        assert_eq!(pick(&c), c.idle(), "only a holder runnable: idle");
        enqueue(c.gd, free_lo);
        enqueue(c.gd, free_hi);
    }
    // The holder is first in line but the lock is elsewhere: the
    // threads without holds take turns below it.
    let order: Vec<_> = (0..3).map(|_| pick(&c)).collect();
    assert_eq!(order, [free_lo, free_hi, free_lo]);
    assert_eq!(c.mp.owner.load(Ordering::SeqCst), other, "never taken");
    // Handed over to this cpu: the holder runs at once.
    c.mp.owner.store(25, Ordering::SeqCst);
    assert_eq!(pick(&c), holder);
}

/// Did someone ask `c` to look for work (and clear the request)?
fn woken(c: &PrivateCpu) -> bool {
    // SAFETY: a private cpu's request word.
    unsafe { cpu::reqflags(c.gd).swap(0, Ordering::SeqCst) & RQF_WAKE != 0 }
}

#[test]
fn the_mp_lock_is_handed_to_the_next_waiting_cpu_round_robin() {
    let a = PrivateCpu::new(2);
    let (b, c) = (PrivateCpu::beside(&a, 1), PrivateCpu::beside(&a, 4));
    let mp = a.mplock();
    let owner = || a.mp.owner.load(Ordering::SeqCst);
    // SAFETY: private cpus of one private lock, each standing in turn
    // for the current cpu.
    unsafe {
        assert!(mp.acquire(a.gd));
        // Nobody waits: the holder keeps it.
        assert!(!mp.wanted());
        mp.handoff(a.gd);
        assert_eq!(owner(), 2);
        assert!(mp.wait_register(b.gd));
        assert!(mp.wait_register(c.gd));
        assert!(mp.wanted());
        // The first waiter after the holder, not the lowest.
        mp.handoff(a.gd);
        assert_eq!(owner(), 4);
        assert!(woken(&c));
        assert!(!woken(&b) && !woken(&a));
        assert!(mp.acquire(c.gd), "handed over: already c's");
        mp.wait_unregister(c.gd);
        // Only the holder hands over.
        mp.handoff(a.gd);
        assert_eq!(owner(), 4);
        assert!(!woken(&b));
        // No waiter after c: round the ring to b.
        mp.handoff(c.gd);
        assert_eq!(owner(), 1);
        assert!(woken(&b));
        assert!(!woken(&c));
        mp.wait_unregister(b.gd);
        // A release wakes the waiters.
        assert!(mp.wait_register(a.gd));
        mp.release(b.gd);
        assert_eq!(owner(), -1);
        assert!(woken(&a));
        mp.wait_unregister(a.gd);
        // Free: a cpu about to wait retries at once instead.
        assert!(!mp.wait_register(c.gd));
        assert!(!mp.wanted());
    }
}

#[test]
fn a_cpu_going_idle_wakes_the_cpus_waiting_for_its_mp_lock() {
    let mut a = PrivateCpu::new(6);
    let b = PrivateCpu::beside(&a, 7);
    let holder = a.thread(10, 1);
    // SAFETY: private cpus of one private lock.
    unsafe {
        enqueue(a.gd, holder);
        assert_eq!(pick(&a), holder);
        assert!(b.mplock().wait_register(b.gd));
        dequeue(a.gd, holder);
    }
    assert!(!woken(&b));
    assert_eq!(pick(&a), a.idle());
    assert_eq!(a.mp.owner.load(Ordering::SeqCst), -1);
    assert!(woken(&b));
    assert!(!woken(&a));
}
