//! Tests of what a `fork()` child keeps of the allocator's other threads
//! (see `slab::fork`).

use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::tests::{new_type, totals};
use super::*;
use crate::abi::malloc_type;

/// Fork, run `child` in the child (its return value is the exit status),
/// and return the child's exit status; a child still running after 5 s is
/// killed and reported as 255.
fn fork_and_wait(child: impl FnOnce() -> i32) -> i32 {
    // SAFETY: the child runs `child`, which only allocates, frees, reads
    // and sleeps, and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = child();
        // SAFETY: leaves the child without running the parent's exit
        // handlers.
        unsafe { libc::_exit(code) };
    }
    let t0 = Instant::now();
    let mut status = 0;
    loop {
        // SAFETY: our child.
        if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == pid {
            break;
        }
        if t0.elapsed() > Duration::from_secs(5) {
            // SAFETY: our child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return 255;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        254
    }
}

/// A shared type's calls counted by a thread the child does not have (in
/// its own counters, fewer than `calls::FOLD`, not yet folded by the
/// parent's reclaimer) are in the child's `ks_calls`.
#[test]
fn calls_counted_by_other_threads_reach_ks_calls_in_a_fork_child() {
    const N: usize = 100;
    let ty = new_type(c"fork calls");
    super::tests_shared::make_shared(ty);
    let t = ty as usize;
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let counter = std::thread::spawn(move || {
        let ty = t as *mut malloc_type;
        for _ in 0..N {
            // SAFETY: valid type; the block is freed at once.
            unsafe { free(malloc(48, ty, 0), ty) };
        }
        done_tx.send(()).unwrap();
        go_rx.recv().unwrap();
    });
    done_rx.recv().unwrap();
    // At once: the parent's reclaimer folds within 100 ms.
    let code = fork_and_wait(|| {
        let ty = t as *mut malloc_type;
        // Longer than the reclaimer's period: a fold that the child's
        // reclaimer would make has been made.
        std::thread::sleep(Duration::from_millis(300));
        i32::from(totals(ty).2 != (20 + N) as i64)
    });
    go_tx.send(()).unwrap();
    counter.join().unwrap();
    assert_eq!(
        code, 0,
        "the child's ks_calls misses the other thread's calls"
    );
}

/// Blocks freed in a fork child into the zones of a thread that was
/// inside its window at the fork (its zones may be half updated there)
/// are left alone, and the child's reclaimer does not wait for that
/// window: it goes to sleep.
#[test]
fn a_fork_child_leaves_a_state_caught_inside_its_window_alone() {
    const N: usize = 64;
    let ty = new_type(c"fork window");
    let t = ty as usize;
    let (ready_tx, ready_rx) = mpsc::channel::<(Vec<usize>, usize)>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let owner = std::thread::spawn(move || {
        let ty = t as *mut malloc_type;
        // SAFETY: valid type; the blocks are freed by the parent below.
        let blocks = (0..N)
            .map(|_| unsafe { malloc(200, ty, 0) } as usize)
            .collect();
        let gd = current_gd();
        // SAFETY: this thread's own state, no window of it open.
        let w = unsafe { reclaim::open(gd) };
        ready_tx.send((blocks, gd as usize)).unwrap();
        go_rx.recv().unwrap();
        w.close();
    });
    let (blocks, gd) = ready_rx.recv().unwrap();
    let code = fork_and_wait(|| {
        let ty = t as *mut malloc_type;
        for &b in &blocks {
            // SAFETY: live blocks of `ty`, each freed once.
            unsafe { free(b as *mut core::ffi::c_void, ty) };
        }
        // The child's reclaimer may first have the states of other
        // threads (other tests') to give back: a few periods.
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_millis(150));
        while !reclaim::idle() && t0.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let gd = gd as *mut crate::abi::SLGlobalData;
        // SAFETY: a state is never freed; read once, in the one thread
        // of the child.
        let remote = unsafe { core::ptr::read_volatile(&(*gd).sl_Remote) };
        if remote.is_null() {
            1
        } else if !reclaim::idle() {
            2
        } else if totals(ty).0 != 0 || totals(ty).1 != 0 {
            3
        } else {
            0
        }
    });
    go_tx.send(()).unwrap();
    owner.join().unwrap();
    assert_ne!(
        code, 1,
        "the child's reclaimer drained a half-updated state"
    );
    assert_ne!(
        code, 2,
        "the child's reclaimer keeps waiting for a window that never closes"
    );
    assert_eq!(code, 0, "the child's ks_memuse/ks_inuse do not add up to 0");
    for &b in &blocks {
        // SAFETY: live blocks of `ty`, each freed once (in this process).
        unsafe { free(b as *mut core::ffi::c_void, ty) };
    }
}

/// `fork()` while another thread is the home of a type and inside its
/// update window (`sl_Counting` is 1, as in the middle of a count): the
/// child has no such thread, so the window never closes there. The
/// child's first allocation of that type must not wait for it (this is
/// how `fork_while_other_threads_allocate` hangs now and then under load:
/// the child spins in `account::settle`).
#[test]
fn fork_while_a_home_is_inside_its_window() {
    let ty = new_type(c"fork home") as usize;
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let home = std::thread::spawn(move || {
        let t = ty as *mut malloc_type;
        // SAFETY: valid type; the block is freed at once.
        unsafe { free(malloc(40, t, 0), t) };
        // SAFETY: the owner word is `ks_reserved[1]`.
        let own = unsafe { core::ptr::read_volatile(&(*t).ks_reserved[1]) };
        assert_eq!(
            own as usize,
            current_gd() as usize,
            "first allocator is home"
        );
        // SAFETY: this thread's own state, no window of it open.
        let w = unsafe { reclaim::open(current_gd()) };
        ready_tx.send(()).unwrap();
        go_rx.recv().unwrap();
        w.close();
    });
    ready_rx.recv().unwrap();
    // SAFETY: the child only allocates, frees and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let t = ty as *mut malloc_type;
        // SAFETY: valid type; the block is freed at once; then _exit.
        unsafe {
            free(malloc(40, t, 0), t);
            libc::_exit(0);
        }
    }
    let t0 = std::time::Instant::now();
    let mut status = 0;
    let exited = loop {
        // SAFETY: our child.
        if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == pid {
            break true;
        }
        if t0.elapsed() > std::time::Duration::from_secs(5) {
            // SAFETY: our child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            break false;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    };
    go_tx.send(()).unwrap();
    home.join().unwrap();
    assert!(
        exited,
        "the child waits forever for the window of a thread it does not have"
    );
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
}

/// `fork()` while other threads hold the allocator's locks (mappings,
/// thread states, type registration): the child can still allocate.
#[test]
fn fork_while_other_threads_allocate() {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    let stop = Arc::new(AtomicBool::new(false));
    let big = new_type(c"fork big") as usize;
    // The allocator is set up before the other threads start (a fork in
    // the middle of its one-time setup is not covered: see slab/fork.rs).
    // SAFETY: valid type; freed at once.
    unsafe {
        free(
            malloc(64 * 1024, big as *mut malloc_type, 0),
            big as *mut malloc_type,
        )
    };
    // The churning thread holds the table lock for 200 µs at a time.
    oversized::HOLD_TABLE.store(true, Ordering::Relaxed);
    let churn: Vec<_> = (0..2)
        .map(|k| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if k == 0 {
                        // Mappings: the table lock.
                        let ty = big as *mut malloc_type;
                        // SAFETY: valid type; freed at once.
                        unsafe { free(malloc(64 * 1024, ty, 0), ty) };
                    } else {
                        // New thread states and new types: the pool and
                        // registry locks.
                        std::thread::spawn(|| {
                            let ty = new_type(c"fork churn");
                            // SAFETY: valid type; freed at once; then
                            // unregistered (the type itself is leaked).
                            unsafe {
                                free(malloc(40, ty, 0), ty);
                                types::unregister(ty);
                            }
                        })
                        .join()
                        .unwrap();
                    }
                }
            })
        })
        .collect();
    let mut hung = 0;
    for _ in 0..200 {
        if hung > 0 {
            break;
        }
        // SAFETY: the child only allocates, frees and leaves with _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let ty = big as *mut malloc_type;
            // SAFETY: valid type; blocks freed at once; then _exit.
            unsafe {
                free(malloc(64 * 1024, ty, 0), ty);
                let t = new_type(c"fork child");
                free(malloc(24, t, 0), t);
                libc::_exit(0);
            }
        }
        let t0 = std::time::Instant::now();
        let mut status = 0;
        loop {
            // SAFETY: our child.
            let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            if r == pid {
                break;
            }
            if t0.elapsed() > std::time::Duration::from_secs(5) {
                hung += 1;
                // SAFETY: our child.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, &mut status, 0);
                }
                break;
            }
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
    }
    stop.store(true, Ordering::Relaxed);
    for h in churn {
        h.join().unwrap();
    }
    oversized::HOLD_TABLE.store(false, Ordering::Relaxed);
    assert_eq!(hung, 0, "children stuck on a lock held at fork time");
}
