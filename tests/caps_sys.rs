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
use std::sync::Once;
use std::sync::mpsc::{Receiver, channel};
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
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Svc {
    fn start(name: &str, flags: i32, answer: Option<&'static [u8]>) -> Svc {
        let (uid, gid) = me();
        let id = service(name, uid, gid, flags).unwrap();
        let (tx, rx) = channel();
        let thread = std::thread::spawn(move || {
            while let Ok(m) = recv(id, 4096, true) {
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

impl Drop for Svc {
    fn drop(&mut self) {
        let _ = close(self.id);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Svc {
    fn start_keys(name: &str, uid: u32, gid: u32, flags: i32) -> Svc {
        let id = service(name, uid, gid, flags).unwrap();
        let (tx, rx) = channel();
        let thread = std::thread::spawn(move || {
            while let Ok(m) = recv(id, 64, true) {
                let _ = tx.send(m);
            }
        });
        Svc {
            id,
            msgs: rx,
            thread: Some(thread),
        }
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
