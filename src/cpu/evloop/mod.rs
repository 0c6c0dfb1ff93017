//! The per-cpu event loop: one epoll instance per virtual cpu (that is,
//! per kernel thread running LWKT threads), with an eventfd other kernel
//! threads write to wake it. Sockets register a callback; when nothing on
//! the cpu is runnable, the cpu waits here, and the callbacks turn socket
//! readiness into messages on ports and runnable threads.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

/// A readiness callback; gets the epoll event bits.
pub type Callback = Box<dyn FnMut(u32)>;

/// Work to do before the cpu blocks.
pub type IdleHook = Box<dyn FnMut()>;

/// A source of input that needs no system call to look at (a CAPS
/// connection's ring in shared memory), watched beside a registration's
/// descriptor: looked at in every poll, and told before and after the
/// cpu sleeps, so that its writer knows to wake it (through the
/// descriptor).
pub trait Probe {
    /// Is there input?
    fn ready(&self) -> bool;
    /// The cpu is about to sleep: ask the writer for a wakeup, and look
    /// again. True: still nothing, sleep; false: input came.
    fn sleep(&self) -> bool;
    /// The sleep is over (or was called off): withdraw the request.
    fn woke(&self);
}

/// The bit a callback gets when its probe, not its descriptor, is ready.
/// (Epoll reports no such bit: 1 << 28 is `EPOLLEXCLUSIVE`, a request flag.)
pub const EV_PROBE: u32 = 1 << 28;

/// Polls without sleeping between two looks at the descriptors while
/// probes are watched (the probes are looked at every time).
const PROBE_POLLS: u32 = 4;

/// Names one registration. Stale tokens (unregistered) are ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token {
    slot: u32,
    generation: u32,
}

impl Token {
    fn key(self) -> u64 {
        (u64::from(self.generation) << 32) | u64::from(self.slot)
    }
    fn from_key(k: u64) -> Token {
        Token {
            slot: k as u32,
            generation: (k >> 32) as u32,
        }
    }
}

/// Registered descriptors on every cpu (for the deadlock check: a
/// process with sockets can always be woken from outside).
static ALL_SOURCES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A child forked by a thread that is not a cpu has no cpu, hence no
/// registered descriptor (`cpu::fork`).
pub(super) fn forget_all_sources() {
    ALL_SOURCES.store(0, std::sync::atomic::Ordering::SeqCst);
}

/// Registered descriptors on all cpus together.
pub fn all_sources() -> usize {
    ALL_SOURCES.load(std::sync::atomic::Ordering::SeqCst)
}

/// Epoll data value of the wakeup eventfd.
const WAKE_KEY: u64 = u64::MAX;

struct Slot {
    generation: u32,
    fd: RawFd,
    /// `None` while the callback runs (or when the slot is free).
    cb: Option<Callback>,
    live: bool,
}

struct EvLoop {
    ep: OwnedFd,
    /// The process that made the loop: a `fork()` child finds its
    /// parent's pid here until [`after_fork_child`] gives it its own.
    pid: libc::pid_t,
    /// Run before the cpu blocks (`poll` with a non-zero timeout).
    idle_hooks: Vec<(u64, Option<IdleHook>)>,
    next_hook: u64,
    waker: Arc<Waker>,
    slots: Vec<Slot>,
    /// Free slots, the lowest taken first: registrations gather at the
    /// start, so the end of `slots` can be given back.
    free: BinaryHeap<Reverse<u32>>,
    live: usize,
    /// Slots given back (`EvLoop::compact`) had generations up to this:
    /// a slot made anew starts above it, so no old token matches it.
    gen_floor: u32,
    /// One past the highest live slot.
    high: usize,
    /// The registrations watched by a probe too.
    probes: Vec<(Token, Box<dyn Probe>)>,
    /// Registrations whose callback runs again at the next look at the
    /// probes, ready or not ([`again`]).
    again: Vec<Token>,
    /// Polls without sleeping since the descriptors were last looked at.
    skipped: u32,
    /// Callbacks of the pass running now (ready descriptors, probes,
    /// [`again`]) not yet called: input other registrations have.
    pass_left: usize,
    /// Events a look at the descriptors for [`others_waiting`] found,
    /// called back at the next look at the probes.
    pending: Vec<(Token, u32)>,
    /// The list of callbacks of the last look at the probes, empty, kept
    /// for the next one (a look that found input allocated one per round
    /// trip of a CAPS client or service: issue 17); not kept past
    /// [`SPARE_CALLS_MAX`] entries.
    spare_calls: Vec<(Token, u32)>,
    /// Where the next look at the probes starts: after the first one
    /// that was ready at the last look, so no probe is always called back
    /// first (whose peer would be answered first every time: with 128
    /// CAPS clients the first ring's made twice the round trips of the
    /// last's; issue 17).
    next_probe: usize,
}

/// Wakes a cpu's event loop from any kernel thread.
pub struct Waker {
    fd: OwnedFd,
    /// The epoll instance the eventfd wakes (owned by the loop; kept here
    /// so that a `fork()` child can close its copy, see [`close_inherited`]).
    ep: RawFd,
}

impl Waker {
    /// Make the owning cpu's next (or current) wait return.
    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writing 8 bytes from a valid u64 to our eventfd. A full
        // counter (EAGAIN) already means a wakeup is pending.
        unsafe { libc::write(self.fd.as_raw_fd(), (&raw const one).cast(), 8) };
    }
}

fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

impl EvLoop {
    fn new() -> EvLoop {
        // SAFETY: plain syscalls; results checked.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        // SAFETY: as above.
        let ev = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if ep < 0 || ev < 0 {
            crate::fatal!(
                "libcaps",
                "cannot create the cpu event loop: errno {}",
                errno()
            );
        }
        // SAFETY: both descriptors are new and owned by nobody else.
        let (ep, ev) = unsafe { (OwnedFd::from_raw_fd(ep), OwnedFd::from_raw_fd(ev)) };
        let mut e = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: WAKE_KEY,
        };
        // SAFETY: valid epoll and event descriptors, valid event struct.
        if unsafe { libc::epoll_ctl(ep.as_raw_fd(), libc::EPOLL_CTL_ADD, ev.as_raw_fd(), &mut e) }
            != 0
        {
            crate::fatal!(
                "libcaps",
                "cannot register the cpu wakeup: errno {}",
                errno()
            );
        }
        let ep_raw = ep.as_raw_fd();
        EvLoop {
            ep,
            // SAFETY: no preconditions.
            pid: unsafe { libc::getpid() },
            idle_hooks: Vec::new(),
            next_hook: 0,
            waker: Arc::new(Waker { fd: ev, ep: ep_raw }),
            slots: Vec::new(),
            free: BinaryHeap::new(),
            live: 0,
            gen_floor: 0,
            high: 0,
            probes: Vec::new(),
            again: Vec::new(),
            skipped: 0,
            pass_left: 0,
            pending: Vec::new(),
            spare_calls: Vec::new(),
            next_probe: 0,
        }
    }
}

thread_local! {
    static LOOP: RefCell<Option<EvLoop>> = const { RefCell::new(None) };
}

fn with<R>(f: impl FnOnce(&mut EvLoop) -> R) -> R {
    LOOP.with(|l| {
        let mut l = l.borrow_mut();
        f(l.get_or_insert_with(EvLoop::new))
    })
}

/// Watch `fd` for `events` (`EPOLLIN`, `EPOLLOUT`, ...) on this cpu.
pub fn register(fd: RawFd, events: u32, cb: Callback) -> Result<Token, i32> {
    with(|l| {
        let slot = match l.free.pop() {
            Some(Reverse(s)) => s,
            None => {
                l.slots.push(Slot {
                    generation: l.gen_floor,
                    fd: -1,
                    cb: None,
                    live: false,
                });
                (l.slots.len() - 1) as u32
            }
        };
        let s = &mut l.slots[slot as usize];
        s.generation = s.generation.wrapping_add(1);
        let token = Token {
            slot,
            generation: s.generation,
        };
        let mut e = libc::epoll_event {
            events,
            u64: token.key(),
        };
        // SAFETY: valid epoll descriptor and event struct.
        if unsafe { libc::epoll_ctl(l.ep.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut e) } != 0 {
            let err = errno();
            l.free.push(Reverse(slot));
            return Err(err);
        }
        *s = Slot {
            generation: token.generation,
            fd,
            cb: Some(cb),
            live: true,
        };
        l.live += 1;
        l.high = l.high.max(slot as usize + 1);
        ALL_SOURCES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(token)
    })
}

/// Change the events watched for a registration.
pub fn modify(token: Token, events: u32) {
    with(|l| {
        let Some(s) = l.slots.get(token.slot as usize) else {
            return;
        };
        if !s.live || s.generation != token.generation {
            return;
        }
        let mut e = libc::epoll_event {
            events,
            u64: token.key(),
        };
        // SAFETY: valid epoll descriptor and event struct.
        unsafe { libc::epoll_ctl(l.ep.as_raw_fd(), libc::EPOLL_CTL_MOD, s.fd, &mut e) };
    })
}

/// Watch `probe` beside registration `token` (`None`: stop). Its
/// callback gets [`EV_PROBE`] when the probe is ready.
pub fn set_probe(token: Token, probe: Option<Box<dyn Probe>>) {
    with(|l| {
        l.probes.retain(|(t, _)| *t != token);
        match probe {
            Some(p) => l.probes.push((token, p)),
            None => shrink_sparse(&mut l.probes),
        }
    })
}

/// Give back most of `v`'s room once it is at most a quarter used (keep
/// twice what it holds): a list that held thousands returns to its size
/// before them, and one that goes up and down by less than a factor of
/// four is not reallocated. Amortised O(1) per removal.
fn shrink_sparse<T>(v: &mut Vec<T>) {
    const MIN_ROOM: usize = 64;
    if v.capacity() > MIN_ROOM && v.len() * 4 <= v.capacity() {
        v.shrink_to((v.len() * 2).max(MIN_ROOM / 2));
    }
}

/// Run the callback of `token` again (with [`EV_PROBE`]) at the next
/// look at the probes, whether its descriptor or probe is ready or not:
/// a reader that stopped before the end of its input, to let the others
/// have their turn, is called back after them.
pub fn again(token: Token) {
    with(|l| {
        if !l.again.contains(&token) {
            l.again.push(token);
        }
    })
}

/// Stop watching (call before closing the descriptor).
pub fn unregister(token: Token) {
    with(|l| {
        l.probes.retain(|(t, _)| *t != token);
        l.again.retain(|t| *t != token);
        l.pending.retain(|(t, _)| *t != token);
        shrink_sparse(&mut l.probes);
        shrink_sparse(&mut l.again);
        let Some(s) = l.slots.get_mut(token.slot as usize) else {
            return;
        };
        if !s.live || s.generation != token.generation {
            return;
        }
        // SAFETY: valid epoll descriptor; a NULL event is allowed for DEL.
        unsafe {
            libc::epoll_ctl(
                l.ep.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                s.fd,
                std::ptr::null_mut(),
            )
        };
        s.live = false;
        s.cb = None;
        s.fd = -1;
        l.free.push(Reverse(token.slot));
        l.live -= 1;
        ALL_SOURCES.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        l.compact();
    })
}

impl EvLoop {
    /// After a registration went: once the slots above the highest live
    /// one are half of them or more, give them back (a service that held
    /// thousands of connections returns to its size before them). Free
    /// slots are taken lowest first, so `high` moves down past each slot
    /// at most once per time it moved up past it: amortised O(1).
    fn compact(&mut self) {
        const MIN_SLOTS: usize = 256;
        while self.high > 0 && !self.slots[self.high - 1].live {
            self.high -= 1;
        }
        let keep = self.high;
        if self.slots.len() < MIN_SLOTS || keep * 2 > self.slots.len() {
            return;
        }
        for s in &self.slots[keep..] {
            self.gen_floor = self.gen_floor.max(s.generation);
        }
        self.slots.truncate(keep);
        self.slots.shrink_to(keep * 2);
        self.free.retain(|&Reverse(i)| (i as usize) < keep);
        self.free.shrink_to(keep);
    }
}

/// Run `hook` each time this cpu is about to block in `poll` (work that
/// was deferred while threads kept running, such as batched writes).
pub fn add_idle_hook(hook: IdleHook) -> u64 {
    with(|l| {
        l.next_hook += 1;
        l.idle_hooks.push((l.next_hook, Some(hook)));
        l.next_hook
    })
}

/// Remove a hook added by [`add_idle_hook`].
pub fn remove_idle_hook(id: u64) {
    with(|l| l.idle_hooks.retain(|(i, _)| *i != id));
}

/// Whether this cpu has idle hooks.
pub fn has_idle_hooks() -> bool {
    with(|l| !l.idle_hooks.is_empty())
}

/// Run the idle hooks (each may add or remove hooks).
pub fn run_idle_hooks() {
    // By position, without allocating: a hook may add or remove hooks; an
    // added one runs next time, a removed one is not put back.
    let mut i = 0;
    while let Some((id, hook)) = with(|l| l.idle_hooks.get_mut(i).map(|(id, h)| (*id, h.take()))) {
        if let Some(mut hook) = hook {
            hook();
            with(|l| {
                if let Some((_, h)) = l.idle_hooks.iter_mut().find(|(x, _)| *x == id) {
                    *h = Some(hook);
                }
            });
        }
        i += 1;
    }
}

/// In a child after `fork()`: the epoll instance and the wakeup eventfd
/// are the parent's too (a descriptor copies the open file), so waiting
/// on them would take the parent's events, and `EPOLL_CTL_DEL` would
/// remove the parent's registrations. This cpu gets fresh ones; the
/// inherited registrations and idle hooks are forgotten (their tokens
/// stay stale), the parent's are left alone. Called in the child's only
/// thread by the CAPS and the cpu fork handlers, in either order: the
/// loop is renewed once per process. The cpu's own waker must then be
/// taken again ([`waker`]).
pub fn after_fork_child() {
    let _ = LOOP.try_with(|l| {
        let Ok(mut l) = l.try_borrow_mut() else {
            return;
        };
        let Some(old) = l.as_mut() else {
            return;
        };
        // SAFETY: no preconditions.
        if old.pid == unsafe { libc::getpid() } {
            return;
        }
        let mut fresh = EvLoop::new();
        fresh.next_hook = old.next_hook;
        fresh.gen_floor = old.gen_floor;
        fresh.slots = old
            .slots
            .iter()
            .map(|s| Slot {
                generation: s.generation,
                fd: -1,
                cb: None,
                live: false,
            })
            .collect();
        fresh.free = (0..fresh.slots.len() as u32).map(Reverse).collect();
        // Dropping the old loop closes only the child's copies.
        *l = Some(fresh);
    });
    ALL_SOURCES.store(0, std::sync::atomic::Ordering::SeqCst);
}

/// In a `fork()` child: close the child's copies of the epoll instance
/// and eventfd behind `w`, the waker of a cpu whose kernel thread is not
/// in the child (its loop lives in that thread's thread-local storage,
/// which nothing here drops). The parent's descriptors and registrations
/// are not touched: the open files stay open as long as the parent holds
/// them, and no `EPOLL_CTL_DEL` is made.
///
/// # Safety
/// Only in the child's only thread, and `w` must be the last reference
/// anything in the child will use (it is leaked: the dead thread's loop
/// holds another, never dropped, so the descriptors are closed once).
pub unsafe fn close_inherited(w: Arc<Waker>) {
    // SAFETY: per the contract, nothing else closes or uses them here.
    unsafe {
        libc::close(w.ep);
        libc::close(w.fd.as_raw_fd());
    }
    core::mem::forget(w);
}

/// Number of registered descriptors on this cpu.
pub fn sources() -> usize {
    with(|l| l.live)
}

/// This cpu's waker, for other kernel threads.
pub fn waker() -> Arc<Waker> {
    with(|l| Arc::clone(&l.waker))
}

/// Wait for readiness (up to `timeout_ms`, -1 = until something happens)
/// and run the callbacks of ready descriptors and probes. Returns the
/// number of events handled, counting a wakeup.
pub fn poll(timeout_ms: i32) -> usize {
    if timeout_ms != 0 && with(|l| !l.idle_hooks.is_empty()) {
        run_idle_hooks();
    }
    let probed = run_probes();
    let probes = has_probes();
    // A look at the probes costs a few loads, one at the descriptors a
    // system call: while probes are watched, a poll that does not sleep
    // (or found input in a probe) looks at the descriptors only every few
    // times.
    if probes && (timeout_ms == 0 || probed > 0) && !descriptors_due() {
        return probed;
    }
    with(|l| l.skipped = 0);
    // Input in a probe: look at the descriptors without sleeping.
    let timeout_ms = if probed > 0 { 0 } else { timeout_ms };
    let sleeping = timeout_ms != 0 && probes;
    if sleeping && !sleep_probes() {
        return run_probes().max(1);
    }
    let n = wait_descriptors(timeout_ms);
    if sleeping {
        with(|l| l.probes.iter().for_each(|(_, p)| p.woke()));
    }
    probed + n + run_probes()
}

/// Count a look at the probes without one at the descriptors; true when
/// it is the descriptors' turn (every [`PROBE_POLLS`] looks). They get
/// it even while probes keep finding input: else busy rings would starve
/// the sockets (new connections, records that come by socket, the cpu's
/// wakeups; issue 17).
fn descriptors_due() -> bool {
    with(|l| {
        l.skipped += 1;
        if l.skipped < PROBE_POLLS {
            return false;
        }
        l.skipped = 0;
        true
    })
}

/// `epoll_wait` up to `timeout_ms` and run the callbacks of the ready
/// descriptors; how many events, counting a wakeup.
fn wait_descriptors(timeout_ms: i32) -> usize {
    const MAX: usize = 64;
    let ep = with(|l| l.ep.as_raw_fd());
    let mut evs = [libc::epoll_event { events: 0, u64: 0 }; MAX];
    // SAFETY: `evs` has room for MAX events.
    let n = unsafe { libc::epoll_wait(ep, evs.as_mut_ptr(), MAX as i32, timeout_ms) };
    if n <= 0 {
        return 0;
    }
    let n = n as usize;
    let outer = with(|l| l.pass_left);
    for (i, ev) in evs[..n].iter().enumerate() {
        let (key, bits) = (ev.u64, ev.events);
        if key == WAKE_KEY {
            drain_wakeups();
            continue;
        }
        with(|l| l.pass_left = n - 1 - i);
        dispatch(Token::from_key(key), bits);
    }
    with(|l| l.pass_left = outer);
    n
}

/// Read the wakeup eventfd's count (the cpu is awake: the wakeups it
/// stands for are seen).
fn drain_wakeups() {
    let fd = with(|l| l.waker.fd.as_raw_fd());
    let mut v = 0u64;
    // SAFETY: reading 8 bytes into a valid u64 from our eventfd.
    unsafe { libc::read(fd, (&raw mut v).cast(), 8) };
}

/// Has a registration other than `me` input waiting, or does something
/// else want this cpu? Asked by a reader that took its turn's worth of
/// input (a CAPS connection, `conn::TURN` requests) before it reads on:
/// true means it should stop and let the others go first ([`again`]).
/// Known without a system call: callbacks of the pass running now not yet
/// called, registrations due [`again`], probes that are ready. Else the
/// descriptors are looked at without sleeping (one `epoll_wait`); what
/// that finds is called back at the next look at the probes, and a wakeup
/// of the cpu counts as waiting.
pub fn others_waiting(me: Token) -> bool {
    let known = with(|l| {
        l.pass_left > 0
            || l.pending.iter().any(|(t, _)| *t != me)
            || l.again.iter().any(|t| *t != me)
            || l.probes.iter().any(|(t, p)| *t != me && p.ready())
    });
    if known {
        return true;
    }
    const MAX: usize = 64;
    let ep = with(|l| l.ep.as_raw_fd());
    let mut evs = [libc::epoll_event { events: 0, u64: 0 }; MAX];
    // SAFETY: `evs` has room for MAX events.
    let n = unsafe { libc::epoll_wait(ep, evs.as_mut_ptr(), MAX as i32, 0) };
    let mut others = false;
    for ev in &evs[..n.max(0) as usize] {
        let (key, bits) = (ev.u64, ev.events);
        if key == WAKE_KEY {
            drain_wakeups();
            others = true;
            continue;
        }
        let t = Token::from_key(key);
        others |= t != me;
        with(|l| match l.pending.iter_mut().find(|(p, _)| *p == t) {
            Some((_, b)) => *b |= bits,
            None => l.pending.push((t, bits)),
        });
    }
    others
}

/// Are probes watched on this cpu (or callbacks due [`again`], or events
/// found by [`others_waiting`] not yet called back)?
pub fn has_probes() -> bool {
    with(|l| !l.probes.is_empty() || !l.again.is_empty() || !l.pending.is_empty())
}

/// Run the callbacks of the registrations whose probe is ready; how
/// many. No system call, except that every few times a probe had input
/// the descriptors are looked at too (without sleeping), as [`poll`]
/// does: a spin on busy rings must not starve the sockets.
pub fn poll_probes() -> usize {
    let probed = run_probes();
    if probed > 0 && descriptors_due() {
        return probed + wait_descriptors(0);
    }
    probed
}

/// Tell every probe the cpu sleeps; false (every request withdrawn) when
/// one has input after all.
fn sleep_probes() -> bool {
    with(|l| {
        for (i, (_, p)) in l.probes.iter().enumerate() {
            if !p.sleep() {
                l.probes[..i].iter().for_each(|(_, q)| q.woke());
                return false;
            }
        }
        true
    })
}

/// Run the callbacks of the events [`others_waiting`] found, of the
/// registrations whose probe is ready (in turn: each look starts after
/// the first ready at the last one), then of those due [`again`] (once
/// each); how many.
fn run_probes() -> usize {
    let mut calls: Vec<(Token, u32)> = with(|l| {
        // The events kept by `others_waiting` (usually none), then the
        // ready probes (one each), then the registrations due again.
        let mut calls = std::mem::take(&mut l.spare_calls);
        calls.append(&mut l.pending);
        let kept = calls.len();
        let n = l.probes.len();
        let start = if n > 0 { l.next_probe % n } else { 0 };
        let mut first = true;
        for i in (start..n).chain(0..start) {
            let (t, p) = &l.probes[i];
            if !p.ready() {
                continue;
            }
            if first {
                first = false;
                l.next_probe = i + 1;
            }
            match calls[..kept].iter_mut().find(|(c, _)| c == t) {
                Some((_, b)) => *b |= EV_PROBE,
                None => calls.push((*t, EV_PROBE)),
            }
        }
        for t in l.again.drain(..) {
            match calls.iter_mut().find(|(c, _)| *c == t) {
                Some((_, b)) => *b |= EV_PROBE,
                None => calls.push((t, EV_PROBE)),
            }
        }
        calls
    });
    let outer = with(|l| l.pass_left);
    let n = calls.len();
    for (i, &(t, bits)) in calls.iter().enumerate() {
        with(|l| l.pass_left = n - 1 - i);
        dispatch(t, bits);
    }
    calls.clear();
    with(|l| {
        l.pass_left = outer;
        // (A callback that looked at the probes again left its list
        // there already.)
        if l.spare_calls.capacity() == 0 && calls.capacity() <= SPARE_CALLS_MAX {
            l.spare_calls = calls;
        }
    });
    n
}

/// The longest list of callbacks kept from one look at the probes to
/// the next (`EvLoop::spare_calls`).
const SPARE_CALLS_MAX: usize = 256;

/// Run the callback of registration `token` with readiness `bits`.
fn dispatch(token: Token, bits: u32) {
    // Take the callback out so it may register/unregister while it runs.
    let cb = with(|l| match l.slots.get_mut(token.slot as usize) {
        Some(s) if s.live && s.generation == token.generation => s.cb.take(),
        _ => None,
    });
    let Some(mut cb) = cb else { return };
    cb(bits);
    with(|l| {
        if let Some(s) = l.slots.get_mut(token.slot as usize)
            && s.live
            && s.generation == token.generation
            && s.cb.is_none()
        {
            s.cb = Some(cb);
        }
    });
}

#[cfg(test)]
mod tests;
