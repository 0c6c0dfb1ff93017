//! CAPS v2, the `caps_sys_*` calls: the C programs `caps_s` and `caps_c`
//! (spec 8.5, compiled against the installed headers) as separate
//! processes, and every call's rules exercised in this process through the
//! exported C functions. Each run has a deadline: a hang fails the test.

#[macro_use]
mod common;

use caps::abi::{
    CAPF_ANYCLIENT, CAPF_GROUP, CAPF_NOFORK, CAPF_USER, CAPF_WAITSVC, CAPF_WORLD, CAPMS_DISPOSE,
    CAPMS_REPLY, CAPMS_REQUEST, CAPS_ABORT_NOTIMPL, caps_cred, caps_msgid,
};
use caps::capi::caps::{
    caps_sys_abort, caps_sys_client, caps_sys_close, caps_sys_get, caps_sys_getgen, caps_sys_put,
    caps_sys_reply, caps_sys_service, caps_sys_setgen, caps_sys_wait,
};
use common::rendezvous::Rendezvous;
use std::ffi::CString;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(120);
const ANY: u32 = u32::MAX;

// ---- the calls, in this process --------------------------------------------

extern "C" fn remove_dir() {
    if let Some(d) = std::env::var_os("LIBCAPS_DIR") {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// Point this process's library at a private rendezvous directory (once,
/// before any test thread calls into it).
fn setup() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let d = std::env::temp_dir().join(format!("lcsys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        // SAFETY: called once, before any thread reads the environment
        // through the library (every test calls setup() first).
        unsafe { std::env::set_var("LIBCAPS_DIR", &d) };
        // SAFETY: a plain function registered once.
        unsafe { libc::atexit(remove_dir) };
        // SIGUSR1 interrupts a wait (`EINTR`) and does nothing else
        // (`Svc::drop`, `wait_is_interrupted_by_a_signal`).
        // SAFETY: installing a no-op handler without SA_RESTART.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_usr1 as extern "C" fn(i32) as usize;
            libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut());
        }
        // The in-process tests block in the library's calls: a hang
        // there ends the whole test program instead of stalling it.
        std::thread::spawn(|| {
            std::thread::sleep(DEADLINE);
            eprintln!("caps_sys: tests still running after {DEADLINE:?}: something hangs");
            std::process::abort();
        });
    });
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap()
}

fn me() -> (u32, u32) {
    // SAFETY: plain id queries.
    unsafe { (libc::geteuid(), libc::getegid()) }
}

fn service(name: &str, uid: u32, gid: u32, flags: i32) -> Result<i32, i32> {
    let n = CString::new(name).unwrap();
    // SAFETY: a valid C string.
    let r = unsafe { caps_sys_service(n.as_ptr(), uid, gid, 0, flags) };
    if r < 0 { Err(errno()) } else { Ok(r) }
}

fn client(name: &str, uid: u32, gid: u32, flags: i32) -> Result<i32, i32> {
    let n = CString::new(name).unwrap();
    // SAFETY: a valid C string.
    let r = unsafe { caps_sys_client(n.as_ptr(), uid, gid, 0, flags) };
    if r < 0 { Err(errno()) } else { Ok(r) }
}

fn put(id: i32, data: &[u8]) -> Result<i64, i32> {
    // SAFETY: `data` is readable for its length; it is only read.
    let r = unsafe { caps_sys_put(id, data.as_ptr() as *mut _, data.len() as i32) };
    if r < 0 { Err(errno()) } else { Ok(r) }
}

fn reply(id: i32, data: &[u8], msgid: i64) -> Result<(), i32> {
    // SAFETY: as for put.
    let r = unsafe { caps_sys_reply(id, data.as_ptr() as *mut _, data.len() as i32, msgid) };
    if r < 0 { Err(errno()) } else { Ok(()) }
}

fn close(id: i32) -> Result<(), i32> {
    // SAFETY: plain call.
    if unsafe { caps_sys_close(id) } < 0 {
        Err(errno())
    } else {
        Ok(())
    }
}

/// A message as get/wait returned it.
#[derive(Debug)]
struct Msg {
    size: usize,
    data: Vec<u8>,
    id: i64,
    state: u32,
    cred: Cr,
}

/// The fields of `struct caps_cred` the tests look at.
#[derive(Debug)]
struct Cr {
    pid: i32,
    uid: u32,
    euid: u32,
    gid: u32,
    cacheid: i32,
}

fn recv(id: i32, maxsize: usize, block: bool) -> Result<Msg, i32> {
    let mut buf = vec![0u8; maxsize];
    let mut m = caps_msgid {
        c_id: -1,
        c_state: 99,
        c_reserved01: 7,
    };
    // SAFETY: caps_cred is plain integers.
    let mut cred: caps_cred = unsafe { std::mem::zeroed() };
    let f = if block { caps_sys_wait } else { caps_sys_get };
    // SAFETY: every pointer is valid for the sizes given.
    let n = unsafe {
        f(
            id,
            buf.as_mut_ptr().cast(),
            maxsize as i32,
            &mut m,
            &mut cred,
        )
    };
    if n < 0 {
        return Err(errno());
    }
    let size = n as usize;
    buf.truncate(size.min(maxsize));
    Ok(Msg {
        size,
        data: buf,
        id: m.c_id,
        state: m.c_state,
        cred: Cr {
            pid: cred.pid,
            uid: cred.uid,
            euid: cred.euid,
            gid: cred.gid,
            cacheid: cred.cacheid,
        },
    })
}

fn wait(id: i32) -> Msg {
    recv(id, 4096, true).unwrap()
}

/// A service run by a thread: answers requests with `reply` (or holds
/// them with `None`) and reports every message on a channel. Closing the
/// service from the test ends the thread.
struct Svc {
    id: i32,
    msgs: Receiver<Msg>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Svc {
    fn start(name: &str, flags: i32, answer: Option<&'static [u8]>) -> Svc {
        let (uid, gid) = me();
        Svc::serve(service(name, uid, gid, flags).unwrap(), 4096, answer)
    }

    /// Serve service `id` on a thread (messages up to `maxsize` bytes).
    fn serve(id: i32, maxsize: usize, answer: Option<&'static [u8]>) -> Svc {
        let (tx, rx) = channel();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::SeqCst) {
                let m = match recv(id, maxsize, true) {
                    Ok(m) => m,
                    // `Svc::drop` asks it to look at `stop`.
                    Err(libc::EINTR) => continue,
                    Err(_) => break,
                };
                if m.state == CAPMS_REQUEST
                    && let Some(a) = answer
                {
                    reply(id, a, m.id).unwrap();
                }
                if tx.send(m).is_err() {
                    break;
                }
            }
        });
        Svc {
            id,
            msgs: rx,
            stop,
            thread: Some(thread),
        }
    }

    fn next(&self) -> Msg {
        self.msgs
            .recv_timeout(Duration::from_secs(30))
            .expect("service message")
    }

    fn nothing_more(&self) {
        if let Ok(m) = self.msgs.recv_timeout(Duration::from_millis(100)) {
            panic!("unexpected {m:?}");
        }
    }
}

/// The service is closed once its thread has ended, never before: a
/// closed id is given to the next entry made (another test's client,
/// say), and a thread that called in with the old id afterwards (it had
/// not started yet, or was between two messages) took that entry's
/// messages: its replies, which their own test then waited for forever.
/// So the thread is told to stop (`stop`) and its wait interrupted by a
/// signal (`EINTR`), again until it ended: a signal that came before it
/// went to sleep wakes nothing.
impl Drop for Svc {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            while interrupt(&t, &self.msgs).is_some() {}
            let _ = t.join();
        }
        let _ = close(self.id);
    }
}

/// SIGUSR1's handler: nothing (the signal only interrupts a wait).
extern "C" fn on_usr1(_: i32) {}

/// Send SIGUSR1 to thread `t` (a wait of its returns `EINTR`) until `rx`
/// brings something (returned) or is disconnected (`None`). A signal
/// that comes before the thread went to sleep wakes nothing: hence again.
fn interrupt<T, U>(t: &std::thread::JoinHandle<U>, rx: &Receiver<T>) -> Option<T> {
    use std::os::unix::thread::JoinHandleExt;
    loop {
        // SAFETY: the thread is not joined yet, so its pthread_t is
        // valid; SIGUSR1 has a no-op handler (`setup`).
        unsafe { libc::pthread_kill(t.as_pthread_t(), libc::SIGUSR1) };
        match rx.recv_timeout(Duration::from_millis(10)) {
            Ok(v) => return Some(v),
            Err(RecvTimeoutError::Disconnected) => return None,
            Err(RecvTimeoutError::Timeout) => {}
        }
    }
}

impl Svc {
    fn start_keys(name: &str, uid: u32, gid: u32, flags: i32) -> Svc {
        Svc::serve(service(name, uid, gid, flags).unwrap(), 64, None)
    }
}

/// Run `f` in a forked child and return its exit code.
fn in_child(f: impl FnOnce() -> i32) -> i32 {
    // SAFETY: the child only runs `f` (library calls and plain syscalls)
    // and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let code = f();
        // SAFETY: leave the child without running the parent's atexit
        // handlers or test harness.
        unsafe { libc::_exit(code) };
    }
    let status = wait_child(pid);
    assert!(libc::WIFEXITED(status), "child status {status:#x}");
    libc::WEXITSTATUS(status)
}

/// Wait for our child `pid` (at most 60 s: then it is killed, and the
/// test fails on its status) and return its wait status.
fn wait_child(pid: libc::pid_t) -> i32 {
    let t0 = Instant::now();
    let mut status = 0;
    loop {
        // SAFETY: our own child.
        if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == pid {
            return status;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            // SAFETY: our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return status;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A child process that signals when it is ready and then waits for the
/// parent's go before it exits: `forked(f)` runs `f(ready)` in the child,
/// where `ready()` tells the parent and blocks until `Forked::finish`.
struct Forked {
    pid: libc::pid_t,
    up: [i32; 2],
    down: [i32; 2],
}

fn forked(f: impl FnOnce(&dyn Fn()) -> i32) -> Forked {
    let (mut up, mut down) = ([0i32; 2], [0i32; 2]);
    // SAFETY: plain pipe creation into two-int arrays.
    assert!(unsafe { libc::pipe(up.as_mut_ptr()) == 0 && libc::pipe(down.as_mut_ptr()) == 0 });
    // SAFETY: the child runs library calls and plain syscalls, then _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let ready = || {
            let mut b = [0u8; 1];
            // SAFETY: our pipe ends and a one-byte buffer.
            unsafe {
                libc::write(up[1], b.as_ptr().cast(), 1);
                libc::read(down[0], b.as_mut_ptr().cast(), 1);
            }
        };
        let code = f(&ready);
        // SAFETY: leave the child without the parent's atexit handlers.
        unsafe { libc::_exit(code) };
    }
    Forked { pid, up, down }
}

impl Forked {
    /// Wait until the child called `ready()`; false if it ended first.
    fn ready(&self) -> bool {
        let mut b = [0u8; 1];
        // SAFETY: our pipe end and a one-byte buffer.
        unsafe { libc::read(self.up[0], b.as_mut_ptr().cast(), 1) == 1 }
    }

    /// Let the child go on, wait for it, return its exit code (or a
    /// description of how it ended otherwise).
    fn finish(self) -> Result<i32, String> {
        // SAFETY: our pipe end and a one-byte buffer.
        unsafe { libc::write(self.down[1], b"g".as_ptr().cast(), 1) };
        let status = wait_child(self.pid);
        for fd in self.up.into_iter().chain(self.down) {
            // SAFETY: our own descriptors, closed once.
            unsafe { libc::close(fd) };
        }
        if libc::WIFEXITED(status) {
            Ok(libc::WEXITSTATUS(status))
        } else {
            Err(format!("child status {status:#x}"))
        }
    }
}

// ---- the tests, by subject -------------------------------------------------

#[path = "caps_sys/calls.rs"]
mod calls;
#[path = "caps_sys/hostile.rs"]
mod hostile;
#[path = "caps_sys/processes.rs"]
mod processes;
#[path = "caps_sys/programs.rs"]
mod programs;
#[path = "caps_sys/threads.rs"]
mod threads;
