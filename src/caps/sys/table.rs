//! The per-process table of v2 entries (services and clients, by small
//! id), its one mutex, and what `fork()` and `exit()` do to it.

use std::cell::UnsafeCell;
use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, AtomicU32, Ordering};

use super::Got;
use super::client::Client;
use super::service::Service;
use crate::abi::{CAPF_NOFORK, caps_cred};
use crate::caps::errno::Errno;

pub(super) enum Kind {
    Service(Box<Service>),
    Client(Box<Client>),
    /// Inherited across `fork()`: every call but close fails `ENOTCONN`.
    Forked,
}

pub(super) struct Entry {
    pub(super) flags: i32,
    pub(super) kind: Kind,
    /// Written when the entry closes, or when one thread's call queued
    /// messages while other threads wait on the entry (they sleep on
    /// sockets whose data that call consumed).
    pub(super) wake: Option<Arc<OwnedFd>>,
    /// Threads sleeping in `caps_sys_wait` on this entry.
    pub(super) waiters: usize,
    /// `wake` was written since it was last drained (the drain is a
    /// system call saved when it was not).
    pub(super) signaled: bool,
    /// Unique for the process's lifetime: a thread that slept on an entry
    /// finds out whether its id now names another one.
    pub(super) serial: u64,
}

pub(super) struct Table {
    pub(super) entries: BTreeMap<i32, Entry>,
    pub(super) serials: u64,
}

/// The table's lock: a futex word, 0 free, 1 held, 2 held and somebody
/// sleeps on it (taken and released with one atomic instruction each when
/// nobody waits: every call takes it, a pipelined v2 request three times
/// on the service's side, where `pthread_mutex_lock`/`unlock` cost some
/// 75 instructions a pair). A process that never started a second thread
/// does not take it at all (see [`lock`]).
struct Shared {
    lock: AtomicU32,
    table: UnsafeCell<Table>,
}

// SAFETY: `table` is only reached through `Guard`, which holds `lock`, or
// which was made while the process had one thread (the caller's): no other
// thread exists to reach it until this one starts one, which it does not
// do while a guard lives.
unsafe impl Sync for Shared {}

/// glibc's `__libc_single_threaded` (since 2.32: nonzero until the process
/// first starts a thread), looked up when the library is loaded; null when
/// the C library has none (then the lock is always taken).
static SINGLE_THREADED: AtomicPtr<AtomicU8> = AtomicPtr::new(std::ptr::null_mut());

fn find_single_threaded() {
    // SAFETY: dlsym with a NUL-terminated name; the result, if not null,
    // is the address of glibc's one-byte flag, which lives as long as the
    // process.
    let p = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"__libc_single_threaded".as_ptr()) };
    SINGLE_THREADED.store(p.cast(), Ordering::Relaxed);
}

/// True when this is the process's only thread (and has always been: the
/// flag is not set back when threads end, nor in a forked child).
#[inline]
fn single_threaded() -> bool {
    let p = SINGLE_THREADED.load(Ordering::Relaxed);
    // SAFETY: null or glibc's flag (see `find_single_threaded`); glibc
    // writes it with plain stores from the thread that starts the first
    // other thread, so a byte-sized atomic load of it is sound.
    !p.is_null() && unsafe { (*p).load(Ordering::Relaxed) } != 0
}

static SHARED: Shared = Shared {
    lock: AtomicU32::new(0),
    table: UnsafeCell::new(Table {
        entries: BTreeMap::new(),
        serials: 0,
    }),
};

/// The `fork()` and `exit()` handlers are registered when the library is
/// loaded (an `.init_array` entry, run before `main` and before any
/// thread): a registration on first use could be in progress in another
/// thread at the moment of a fork, leaving the child waiting for it
/// forever.
#[used]
#[unsafe(link_section = ".init_array")]
static REGISTER_HANDLERS: extern "C" fn() = register_handlers;

/// Also called on first use, for a static link that left the
/// `.init_array` entry out; a flag, not a `Once`, so nothing ever waits.
pub(in crate::caps) extern "C" fn register_handlers() {
    static DONE: AtomicBool = AtomicBool::new(false);
    // Every call locks the table through here: a plain load once done,
    // not the atomic swap `register_once` makes (a locked instruction).
    if DONE.load(Ordering::Acquire) {
        return;
    }
    find_single_threaded();
    if crate::atfork::register_once(&DONE, fork_prepare, fork_parent, fork_child) {
        // SAFETY: a plain function that lives forever.
        unsafe { libc::atexit(unlink_at_exit) };
    }
}

fn raw_lock() {
    let l = &SHARED.lock;
    if l.compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
        .is_ok()
    {
        return;
    }
    // Contended: say so (2) and sleep until it is free.
    while l.swap(2, Ordering::Acquire) != 0 {
        futex(libc::FUTEX_WAIT, 2);
    }
}

/// Take the lock if it is free.
fn try_lock() -> bool {
    SHARED
        .lock
        .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
        .is_ok()
}

/// Called by the thread that locked it (or the only thread of a forked
/// child, which inherited it locked by the prepare handler).
fn raw_unlock() {
    if SHARED.lock.swap(0, Ordering::Release) == 2 {
        futex(libc::FUTEX_WAKE, 1);
    }
}

/// `futex(&SHARED.lock, op | FUTEX_PRIVATE_FLAG, val)`: a wait returns
/// at once when the word is no longer `val` (or on a signal).
fn futex(op: i32, val: u32) {
    // SAFETY: the address is a live, aligned u32 for the process's life;
    // no timeout.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            SHARED.lock.as_ptr(),
            op | libc::FUTEX_PRIVATE_FLAG,
            val,
            std::ptr::null::<libc::timespec>(),
        )
    };
}

/// The table, locked (`true`), or reached by the process's only thread
/// without the lock (`false`).
pub(super) struct Guard(bool);

/// The table. A process with a single thread does not lock it: nothing
/// else can reach it (no library call starts a thread while a guard
/// lives; the fork and exit handlers run between calls), and the lock's
/// two atomic instructions, three times per pipelined v2 request on the
/// service's side, wait for every store before them to reach the cache
/// (on two cores, the frames written into the shared rings).
#[inline]
pub(super) fn lock() -> Guard {
    register_handlers();
    if single_threaded() {
        return Guard(false);
    }
    raw_lock();
    Guard(true)
}

impl std::ops::Deref for Guard {
    type Target = Table;
    fn deref(&self) -> &Table {
        // SAFETY: the mutex is held while the guard lives, or there is no
        // other thread (`lock`).
        unsafe { &*SHARED.table.get() }
    }
}

impl std::ops::DerefMut for Guard {
    fn deref_mut(&mut self) -> &mut Table {
        // SAFETY: the mutex is held while the guard lives, or there is no
        // other thread (`lock`).
        unsafe { &mut *SHARED.table.get() }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.0 {
            raw_unlock();
        }
    }
}

/// Before `fork()`: hold the table so the child inherits it consistent.
extern "C" fn fork_prepare() {
    raw_lock();
}

extern "C" fn fork_parent() {
    raw_unlock();
}

/// In the child: every entry becomes a placeholder (or disappears with
/// `CAPF_NOFORK`); the inherited sockets are closed so the parent's
/// peers see its connections end when the parent's do.
extern "C" fn fork_child() {
    // SAFETY: the prepare handler locked the mutex; this is the child's
    // only thread.
    let t = unsafe { &mut *SHARED.table.get() };
    t.entries.retain(|_, e| e.flags & CAPF_NOFORK == 0);
    for e in t.entries.values_mut() {
        e.kind = Kind::Forked;
        e.wake = None;
    }
    raw_unlock();
    // The v1 ports too.
    crate::caps::conn::after_fork_child();
}

/// At `exit()`: remove the socket nodes of this process's services (a
/// killed process leaves them; lookups skip such dead nodes and the next
/// registration replaces them). Skipped if another thread holds the table.
extern "C" fn unlink_at_exit() {
    // A try: it cannot hang exit().
    if !try_lock() {
        return;
    }
    // SAFETY: we hold the mutex.
    let t = unsafe { &mut *SHARED.table.get() };
    for e in t.entries.values_mut() {
        if let Kind::Service(s) = &mut e.kind {
            s.close();
        }
    }
    raw_unlock();
}

impl Table {
    pub(super) fn insert(&mut self, flags: i32, kind: Kind) -> Result<i32, Errno> {
        let id = self.entries.keys().next_back().map_or(1, |k| k + 1);
        let wake = new_eventfd()?;
        self.serials += 1;
        self.entries.insert(
            id,
            Entry {
                flags,
                kind,
                wake: Some(Arc::new(wake)),
                waiters: 0,
                signaled: false,
                serial: self.serials,
            },
        );
        Ok(id)
    }

    pub(super) fn get(&mut self, id: i32) -> Result<&mut Entry, Errno> {
        self.entries.get_mut(&id).ok_or(Errno::EINVAL)
    }

    /// Send every dispose notice this process's clients owe (before a
    /// call sleeps: no service waits for one while we wait).
    pub(super) fn send_owed(&mut self) {
        for e in self.entries.values_mut() {
            if let Kind::Client(c) = &mut e.kind {
                c.send_owed();
                e.settle();
            }
        }
    }
}

impl Entry {
    /// Read whatever has arrived, as any call on the entry does first.
    /// `sockets`: read the sockets of connections in shared memory too
    /// (false: a wait's poll said only their rings have something; those
    /// sockets are read once a poll sees them readable).
    pub(super) fn pump(&mut self, sockets: bool) {
        match &mut self.kind {
            Kind::Service(s) => s.pump(sockets),
            Kind::Client(c) => c.pump(sockets),
            Kind::Forked => {}
        }
    }

    /// Take the first message queued for the entry, if any.
    pub(super) fn take(
        &mut self,
        buf: &mut [u8],
        cred: Option<&mut caps_cred>,
    ) -> Result<Option<Got>, Errno> {
        match &mut self.kind {
            Kind::Forked => Err(Errno::ENOTCONN),
            Kind::Service(s) => Ok(s.take(buf, cred)),
            // Another thread waiting on the client is not kept waiting
            // for a dispose the service may need first.
            Kind::Client(c) => Ok(c.take(buf, cred, self.waiters > 0)),
        }
    }

    /// Send the dispose notices a client owes its service now.
    pub(super) fn send_owed(&mut self) {
        if let Kind::Client(c) = &mut self.kind {
            c.send_owed();
        }
    }

    /// Queue the dispose notices a client owes its service (sent by the
    /// next write: `pump` ends with one).
    pub(super) fn push_owed(&mut self) {
        if let Kind::Client(c) = &mut self.kind {
            c.push_owed();
        }
    }

    /// After a call changed the entry: if it queued something while other
    /// threads sleep on the entry, wake them to look.
    pub(super) fn settle(&mut self) {
        let news = match &mut self.kind {
            Kind::Service(s) => std::mem::take(&mut s.news),
            Kind::Client(c) => std::mem::take(&mut c.news),
            Kind::Forked => false,
        };
        if news && self.waiters > 0 {
            self.signal();
        }
    }

    pub(super) fn signal(&mut self) {
        self.signaled = true;
        if let Some(w) = &self.wake {
            let one: u64 = 1;
            // SAFETY: an 8-byte write to our eventfd.
            unsafe { libc::write(w.as_raw_fd(), (&raw const one).cast(), 8) };
        }
    }

    /// Consume pending wakeups (only when the entry has nothing to take:
    /// then no other waiter is owed one).
    pub(super) fn drain(&mut self) {
        if !std::mem::take(&mut self.signaled) {
            return;
        }
        if let Some(w) = &self.wake {
            let mut v: u64 = 0;
            // SAFETY: an 8-byte read from our non-blocking eventfd.
            unsafe { libc::read(w.as_raw_fd(), (&raw mut v).cast(), 8) };
        }
    }
}

pub(super) fn new_eventfd() -> Result<OwnedFd, Errno> {
    // SAFETY: plain eventfd(2) call.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: a new descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
