//! The doorbells of a pass of a service's cpu, rung together: one
//! `io_uring_enter` with up to [`PER_ENTER`] `IORING_OP_SEND`s instead of
//! one `send()` each. Every client woken by a `send()` preempts the
//! service's kernel thread; submitted together, the wake-ups come after
//! the whole batch is out (docs/benchmarks-history.md, "Issue 17 point 2").
//!
//! * One ring per kernel thread (a cpu is its kernel thread), set up on
//!   the first batch of two or more doorbells. Decided once per process:
//!   `LIBCAPS_URING=0`, or a failed `io_uring_setup` (ENOSYS, EPERM from
//!   seccomp or `kernel.io_uring_disabled`, ENOMEM...) turns it off for
//!   good, with a line under `LIBCAPS_DEBUG`; then each doorbell is a
//!   plain `send()`, as before.
//! * The sends carry `MSG_DONTWAIT`: the kernel tries each once while
//!   submitting and posts its completion before `io_uring_enter`
//!   returns; nothing ever waits for a completion (`min_complete` 0). A
//!   doorbell whose completion is not there, or not a full send, is
//!   reported as such and its connection sends it again the old way
//!   (a doorbell twice is harmless: it only says "look at the rings").
//! * `fork()`: the ring's memory is shared with the kernel object the
//!   parent uses. The child handler ([`after_fork_child`]) unmaps and
//!   closes the forking thread's copy, and a ring made under an older
//!   fork generation is never submitted on; the child sets up its own.

use std::cell::{Cell, RefCell};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};

use crate::caps::shm::doorbell;

/// Sends per `io_uring_enter` (16 kept fairness at 0.95 at 128 clients,
/// docs/benchmarks-history.md; the clients woken by one call run while the next is
/// filled).
pub(super) const PER_ENTER: usize = 16;
/// Ring sizes: a submission queue of [`PER_ENTER`]; the completion queue
/// twice that (the kernel's default), emptied after every call.
const SQ_ENTRIES: u32 = PER_ENTER as u32;

const SYS_SETUP: libc::c_long = 425;
const SYS_ENTER: libc::c_long = 426;
const OP_SEND: u8 = 26;
const OFF_SQ_RING: libc::off_t = 0;
const OFF_CQ_RING: libc::off_t = 0x800_0000;
const OFF_SQES: libc::off_t = 0x1000_0000;

/// 0 not decided, 1 off, 2 on.
static STATE: AtomicU8 = AtomicU8::new(0);

/// The doorbell bytes every submission points at (never freed, so a send
/// the kernel still holds always reads valid memory).
static BELL: std::sync::LazyLock<[u8; crate::caps::wire::HEADER_LEN]> =
    std::sync::LazyLock::new(doorbell);

/// (`io_uring_enter` calls, doorbells submitted by them) so far on this
/// kernel thread (a test hook).
#[cfg_attr(not(test), allow(dead_code))]
pub(in crate::caps) fn counts() -> (u64, u64) {
    (ENTERS.get(), SUBMITTED.get())
}

/// Is batching on (`LIBCAPS_URING` not `0`, and no setup failed)?
pub(super) fn enabled() -> bool {
    match STATE.load(Ordering::Relaxed) {
        1 => false,
        2 => true,
        _ => {
            let off = crate::diag::env_is_zero(c"LIBCAPS_URING");
            if off {
                crate::trace!("libcaps", "LIBCAPS_URING=0: doorbells by send()");
            }
            STATE.store(if off { 1 } else { 2 }, Ordering::Relaxed);
            !off
        }
    }
}

fn turn_off(why: &str, err: i32) {
    STATE.store(1, Ordering::Relaxed);
    crate::trace!(
        "libcaps",
        "io_uring off ({why}: errno {err}): doorbells by send()"
    );
}

#[repr(C)]
#[derive(Default)]
struct Params {
    sq_entries: u32,
    cq_entries: u32,
    flags: u32,
    sq_thread_cpu: u32,
    sq_thread_idle: u32,
    features: u32,
    wq_fd: u32,
    resv: [u32; 3],
    /// head, tail, ring_mask, ring_entries, flags, dropped, array, resv1,
    /// user_addr (two words).
    sq_off: [u32; 10],
    /// head, tail, ring_mask, ring_entries, overflow, cqes, flags, resv1,
    /// user_addr (two words).
    cq_off: [u32; 10],
}

#[repr(C)]
struct Sqe {
    opcode: u8,
    flags: u8,
    ioprio: u16,
    fd: i32,
    off: u64,
    addr: u64,
    len: u32,
    msg_flags: u32,
    user_data: u64,
    rest: [u64; 3],
}

#[repr(C)]
struct Cqe {
    user_data: u64,
    res: i32,
    flags: u32,
}

/// A mapped ring of this kernel thread.
struct Ring {
    fd: RawFd,
    /// The three mappings: (address, length).
    maps: [(*mut libc::c_void, usize); 3],
    sq_tail: *mut u32,
    sq_mask: u32,
    sq_array: *mut u32,
    sqes: *mut Sqe,
    cq_head: *mut u32,
    cq_tail: *const u32,
    cq_mask: u32,
    cqes: *const Cqe,
    /// [`super::fork_generation`] when it was set up.
    forks: u32,
    /// Numbers the calls: completions of an earlier one are ignored.
    seq: u32,
}

impl Ring {
    fn setup() -> Result<Ring, i32> {
        let mut p = Params::default();
        // SAFETY: io_uring_setup with a valid, zeroed parameter block.
        let fd = unsafe { libc::syscall(SYS_SETUP, SQ_ENTRIES, &raw mut p) } as RawFd;
        if fd < 0 {
            return Err(crate::caps::errno::Errno::last().0);
        }
        let map = |len: usize, off: libc::off_t| {
            // SAFETY: a new shared mapping of the ring's file.
            let a = unsafe {
                libc::mmap(
                    core::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED | libc::MAP_POPULATE,
                    fd,
                    off,
                )
            };
            (a, len)
        };
        let sq = map(
            p.sq_off[6] as usize + p.sq_entries as usize * 4,
            OFF_SQ_RING,
        );
        let cq = map(
            p.cq_off[5] as usize + p.cq_entries as usize * size_of::<Cqe>(),
            OFF_CQ_RING,
        );
        let se = map(p.sq_entries as usize * size_of::<Sqe>(), OFF_SQES);
        let maps = [sq, cq, se];
        if maps.iter().any(|m| m.0 == libc::MAP_FAILED) {
            let e = crate::caps::errno::Errno::last().0;
            for m in maps.iter().filter(|m| m.0 != libc::MAP_FAILED) {
                // SAFETY: our own mapping, unused.
                unsafe { libc::munmap(m.0, m.1) };
            }
            // SAFETY: our own descriptor.
            unsafe { libc::close(fd) };
            return Err(e);
        }
        let (sqb, cqb) = (sq.0.cast::<u8>(), cq.0.cast::<u8>());
        // SAFETY: the offsets are the kernel's, inside the mappings.
        unsafe {
            Ok(Ring {
                fd,
                maps,
                sq_tail: sqb.add(p.sq_off[1] as usize).cast(),
                sq_mask: *sqb.add(p.sq_off[2] as usize).cast::<u32>(),
                sq_array: sqb.add(p.sq_off[6] as usize).cast(),
                sqes: se.0.cast(),
                cq_head: cqb.add(p.cq_off[0] as usize).cast(),
                cq_tail: cqb.add(p.cq_off[1] as usize).cast(),
                cq_mask: *cqb.add(p.cq_off[2] as usize).cast::<u32>(),
                cqes: cqb.add(p.cq_off[5] as usize).cast(),
                forks: super::fork_generation(),
                seq: 0,
            })
        }
    }

    /// Submit a send of the doorbell to each of `fds` (at most
    /// [`PER_ENTER`]) and report each one's result (`None`: not known).
    /// Err: the ring is not usable any more.
    fn ring(&mut self, fds: &[RawFd], out: &mut [Option<i32>]) -> Result<(), i32> {
        self.seq = self.seq.wrapping_add(1);
        let tag = u64::from(self.seq) << 32;
        // SAFETY: the queue's memory is mapped; only this thread writes
        // the submission tail and reads the completion queue; the kernel
        // reads entries up to the tail published with release ordering.
        unsafe {
            let mut t = AtomicU32::from_ptr(self.sq_tail).load(Ordering::Relaxed);
            for (i, &fd) in fds.iter().enumerate() {
                let idx = t & self.sq_mask;
                self.sqes.add(idx as usize).write(Sqe {
                    opcode: OP_SEND,
                    flags: 0,
                    ioprio: 0,
                    fd,
                    off: 0,
                    addr: BELL.as_ptr() as u64,
                    len: BELL.len() as u32,
                    msg_flags: (libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) as u32,
                    user_data: tag | i as u64,
                    rest: [0; 3],
                });
                self.sq_array.add(idx as usize).write_volatile(idx);
                t = t.wrapping_add(1);
            }
            // Release: the entries above are visible before the new tail.
            AtomicU32::from_ptr(self.sq_tail).store(t, Ordering::Release);
            let n = libc::syscall(
                SYS_ENTER,
                self.fd,
                fds.len() as u32,
                0u32,
                0u32,
                0usize,
                0usize,
            );
            ENTERS.set(ENTERS.get() + 1);
            let err = if n < 0 {
                Some(crate::caps::errno::Errno::last().0)
            } else {
                None
            };
            if n > 0 {
                SUBMITTED.set(SUBMITTED.get() + n as u64);
            }
            // Acquire on the tail load itself (a fence before the load
            // orders nothing after it): the entries up to the tail are
            // read only after it, whichever cpu posted them.
            let tail = AtomicU32::from_ptr(self.cq_tail.cast_mut()).load(Ordering::Acquire);
            let mut head = AtomicU32::from_ptr(self.cq_head).load(Ordering::Relaxed);
            while head != tail {
                let c = &*self.cqes.add((head & self.cq_mask) as usize);
                if c.user_data & !0xffff_ffff == tag
                    && let Some(slot) = out.get_mut((c.user_data & 0xffff_ffff) as usize)
                {
                    *slot = Some(c.res);
                }
                head = head.wrapping_add(1);
            }
            // Release: the entries are read before the kernel may reuse
            // their slots.
            AtomicU32::from_ptr(self.cq_head).store(head, Ordering::Release);
            match err {
                Some(e) => Err(e),
                // Entries the kernel did not take stay in the queue: the
                // ring is given up rather than have them sent later.
                None if n as usize != fds.len() => Err(0),
                None => Ok(()),
            }
        }
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        for m in self.maps {
            // SAFETY: our own mappings; nothing points into them after.
            unsafe { libc::munmap(m.0, m.1) };
        }
        // SAFETY: our own descriptor.
        unsafe { libc::close(self.fd) };
    }
}

thread_local! {
    static RING: RefCell<Option<Ring>> = const { RefCell::new(None) };
    static ENTERS: Cell<u64> = const { Cell::new(0) };
    static SUBMITTED: Cell<u64> = const { Cell::new(0) };
}

/// In a `fork()` child, on its only thread: let go of the parent's ring
/// (its copy here; the parent's stays as it is).
pub(super) fn after_fork_child() {
    let _ = RING.try_with(|c| {
        if let Ok(mut r) = c.try_borrow_mut() {
            drop(r.take());
        }
    });
}

/// What became of one doorbell of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::caps) enum Rung {
    /// Sent whole.
    Sent,
    /// Not sent, or not known to be (no ring, a failure, or a result not
    /// there): to be sent the old way, which sees the same error again.
    Again,
    /// The first `n` bytes were sent.
    Part(usize),
}

/// The doorbells of one pass: `(socket, key)` pairs, rung by
/// [`Bells::ring`].
#[derive(Default)]
pub(in crate::caps) struct Bells {
    owed: Vec<(RawFd, usize)>,
}

impl Bells {
    pub(in crate::caps) fn new() -> Self {
        Bells::default()
    }

    /// Take the doorbell owed on socket `fd` into the batch (false: ring
    /// it now, batching is off).
    pub(super) fn take(&mut self, fd: RawFd, key: usize) -> bool {
        if fd < 0 || !enabled() {
            return false;
        }
        self.owed.push((fd, key));
        true
    }

    /// Ring every doorbell taken, [`PER_ENTER`] per `io_uring_enter`,
    /// and call `done(key, rung)` for each, in the order taken. A batch
    /// of one is left to `send()` (as cheap, and no ring set up for it).
    ///
    /// `still(key, fd)`, asked right before each `io_uring_enter`: is
    /// `fd` still the open socket of `key`'s connection? A connection
    /// shut down since its doorbell was taken (later in the same pass,
    /// or by an earlier `done`) closed its socket, and another thread may
    /// have been given that number since: its doorbell is not submitted
    /// (reported [`Rung::Again`]).
    pub(in crate::caps) fn ring(
        self,
        mut still: impl FnMut(usize, RawFd) -> bool,
        mut done: impl FnMut(usize, Rung),
    ) {
        if self.owed.len() < 2 {
            for &(_, key) in &self.owed {
                done(key, Rung::Again);
            }
            return;
        }
        let mut results = [None; PER_ENTER];
        for chunk in self.owed.chunks(PER_ENTER) {
            results.fill(None);
            // Slot i of `fds` (and of `results`) is entry at[i] of the chunk.
            let mut at = [0usize; PER_ENTER];
            let mut fds: Vec<RawFd> = Vec::with_capacity(chunk.len());
            for (i, &(fd, key)) in chunk.iter().enumerate() {
                if still(key, fd) {
                    at[fds.len()] = i;
                    fds.push(fd);
                }
            }
            let mut by_entry = [None; PER_ENTER];
            let rang = if fds.is_empty() {
                None
            } else {
                RING.with(|cell| {
                    let mut slot = cell.borrow_mut();
                    if slot
                        .as_ref()
                        .is_some_and(|r| r.forks != super::fork_generation())
                    {
                        // The parent's ring, inherited: never submitted on.
                        drop(slot.take());
                    }
                    if slot.is_none() && enabled() {
                        match Ring::setup() {
                            Ok(r) => *slot = Some(r),
                            Err(e) => turn_off("io_uring_setup", e),
                        }
                    }
                    let r = slot.as_mut()?;
                    if let Err(e) = r.ring(&fds, &mut results) {
                        drop(slot.take());
                        turn_off("io_uring_enter", e);
                    }
                    Some(())
                })
            };
            for (slot, &i) in at.iter().take(fds.len()).enumerate() {
                by_entry[i] = results[slot];
            }
            for (i, &(_, key)) in chunk.iter().enumerate() {
                let rung = match (rang, by_entry[i]) {
                    (Some(()), Some(n)) if n == BELL.len() as i32 => Rung::Sent,
                    (Some(()), Some(n)) if n > 0 => Rung::Part(n as usize),
                    (Some(()), Some(e)) if e == -libc::EINVAL || e == -libc::EOPNOTSUPP => {
                        // A kernel without IORING_OP_SEND.
                        RING.with(|c| drop(c.borrow_mut().take()));
                        turn_off("IORING_OP_SEND", -e);
                        Rung::Again
                    }
                    _ => Rung::Again,
                };
                done(key, rung);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    const HEADER: usize = crate::caps::wire::HEADER_LEN;

    fn pair() -> (UnixStream, UnixStream) {
        UnixStream::pair().expect("socketpair")
    }

    /// Is io_uring there at all (a sandbox may forbid it)?
    fn usable() -> bool {
        enabled() && Ring::setup().is_ok()
    }

    fn read_all(s: &UnixStream) -> Vec<u8> {
        s.set_nonblocking(true).unwrap();
        let mut v = Vec::new();
        let mut b = [0u8; 4096];
        while let Ok(n) = std::io::Read::read(&mut &*s, &mut b) {
            if n == 0 {
                break;
            }
            v.extend_from_slice(&b[..n]);
        }
        v
    }

    /// The doorbells of a pass go out 16 per io_uring_enter, each one to
    /// its own socket, whole.
    #[test]
    fn a_pass_rings_its_doorbells_together() {
        if !usable() {
            eprintln!("io_uring not usable here: nothing to test");
            return;
        }
        let pairs: Vec<_> = (0..40).map(|_| pair()).collect();
        let mut bells = Bells::new();
        for (i, (ours, _)) in pairs.iter().enumerate() {
            assert!(bells.take(ours.as_raw_fd(), i));
        }
        let (e0, s0) = counts();
        let mut seen = Vec::new();
        bells.ring(|_, _| true, |key, rung| seen.push((key, rung)));
        let (e1, s1) = counts();
        assert_eq!(e1 - e0, 3, "40 doorbells in 3 calls (16, 16, 8)");
        assert_eq!(s1 - s0, 40);
        assert_eq!(seen, (0..40).map(|i| (i, Rung::Sent)).collect::<Vec<_>>());
        for (_, theirs) in &pairs {
            assert_eq!(read_all(theirs), doorbell().to_vec());
        }
    }

    /// A peer gone or a peer that does not read: its doorbell is reported
    /// not sent (the caller's send() meets EPIPE / EAGAIN), the others
    /// are sent, nothing blocks.
    #[test]
    fn failed_doorbells_come_back() {
        if !usable() {
            eprintln!("io_uring not usable here: nothing to test");
            return;
        }
        let (a, b) = pair();
        let (gone, peer) = pair();
        drop(peer);
        let (full, _unread) = pair();
        full.set_nonblocking(true).unwrap();
        let chunk = [0u8; 4096];
        while std::io::Write::write(&mut &full, &chunk).is_ok() {}
        let fds: [&dyn AsRawFd; 3] = [&a, &gone, &full];
        let mut bells = Bells::new();
        for (i, f) in fds.iter().enumerate() {
            assert!(bells.take(f.as_raw_fd(), i));
        }
        let mut seen = Vec::new();
        bells.ring(|_, _| true, |key, rung| seen.push((key, rung)));
        assert_eq!(
            seen,
            vec![(0, Rung::Sent), (1, Rung::Again), (2, Rung::Again)]
        );
        assert_eq!(read_all(&b), doorbell().to_vec());
    }

    /// A fork child lets the parent's ring go and rings on its own; the
    /// parent's still works after. (Run alone, in a process of its own:
    /// a fork of the test process would hold other tests' descriptors.)
    #[test]
    fn a_fork_child_makes_its_own_ring() {
        let name = "caps::conn::uring::tests::fork_child_alone";
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", name, "--ignored", "--test-threads=1"])
            .env("LIBCAPS_URING_FORK_TEST", "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("1 passed"), "{text}");
    }

    #[test]
    #[ignore = "run by a_fork_child_makes_its_own_ring in a process of its own"]
    fn fork_child_alone() {
        if std::env::var_os("LIBCAPS_URING_FORK_TEST").is_none() || !usable() {
            eprintln!("io_uring not usable here: nothing to test");
            return;
        }
        let ring_two = |tag: usize| {
            let (a, b) = (pair(), pair());
            let mut bells = Bells::new();
            bells.take(a.0.as_raw_fd(), tag);
            bells.take(b.0.as_raw_fd(), tag + 1);
            let mut sent = 0;
            bells.ring(
                |_, _| true,
                |_, rung| sent += usize::from(rung == Rung::Sent),
            );
            sent == 2 && read_all(&a.1).len() == HEADER && read_all(&b.1).len() == HEADER
        };
        assert!(ring_two(0));
        let parents = RING.with(|c| c.borrow().as_ref().map(|r| r.fd));
        assert!(parents.is_some());
        // SAFETY: the child only makes system calls and allocates (glibc
        // keeps malloc usable in a fork child), then _exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            after_fork_child();
            let dropped = RING.with(|c| c.borrow().is_none());
            let ok = dropped && ring_two(10) && RING.with(|c| c.borrow().is_some());
            // SAFETY: leaves the child at once.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let mut status = 0;
        // SAFETY: our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &raw mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        assert_eq!(RING.with(|c| c.borrow().as_ref().map(|r| r.fd)), parents);
        assert!(ring_two(20));
    }

    /// A doorbell taken for a connection that is gone by the time the
    /// batch is rung (shut down later in the same pass) is not sent: its
    /// descriptor number may belong to another socket by then (here:
    /// dup2 puts another socket under that number, as a reuse would).
    #[test]
    fn a_gone_connections_doorbell_does_not_reach_a_reused_descriptor() {
        if !usable() {
            eprintln!("io_uring not usable here: nothing to test");
            return;
        }
        let (gone, _gone_peer) = pair();
        let (live, live_peer) = pair();
        let mut bells = Bells::new();
        assert!(bells.take(gone.as_raw_fd(), 0));
        assert!(bells.take(live.as_raw_fd(), 1));
        // The first connection closes; its number now names another
        // socket (one atomic dup2: no window for other tests' threads).
        let (other, other_peer) = pair();
        // SAFETY: both descriptors are ours; `gone` owns the new one.
        assert!(unsafe { libc::dup2(other.as_raw_fd(), gone.as_raw_fd()) } >= 0);
        let mut seen = Vec::new();
        // The service knows key 0's connection is gone (not listed).
        bells.ring(|key, _| key != 0, |key, rung| seen.push((key, rung)));
        assert_eq!(read_all(&other_peer), Vec::<u8>::new(), "a stray doorbell");
        assert_eq!(read_all(&live_peer), doorbell().to_vec());
        assert_eq!(seen, vec![(0, Rung::Again), (1, Rung::Sent)]);
    }

    /// A batch of one is left to send().
    #[test]
    fn one_doorbell_is_not_batched() {
        let (a, _b) = pair();
        let mut bells = Bells::new();
        if !bells.take(a.as_raw_fd(), 7) {
            return;
        }
        let e0 = counts().0;
        let mut seen = Vec::new();
        bells.ring(|_, _| true, |key, rung| seen.push((key, rung)));
        assert_eq!(counts().0, e0);
        assert_eq!(seen, vec![(7, Rung::Again)]);
    }
}
