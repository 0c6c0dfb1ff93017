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

// ---- the C programs ------------------------------------------------------

c_program!(caps_s, "caps_s", "caps_s");

c_program!(caps_c, "caps_c", "caps_c");

/// A private rendezvous directory for a group of processes.
struct Dir(Rendezvous);

impl Dir {
    fn new(tag: &str) -> Dir {
        Dir(Rendezvous::new("lcsys", tag, 0o755))
    }

    fn spawn(&self, prog: &Path, args: &[&str]) -> Proc {
        let child = self.0.command(prog).args(args).spawn().expect("spawn");
        Proc::new(child)
    }
}

/// A child process whose stdout lines arrive on a channel; killed when
/// dropped.
struct Proc {
    child: Option<Child>,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Proc {
    fn new(mut child: Child) -> Proc {
        let out = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Proc {
            child: Some(child),
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// Wait for a line satisfying `f` (within 30 s).
    fn expect_line(&mut self, what: &str, f: impl Fn(&str) -> bool) -> String {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(30) {
            if let Ok(l) = self.lines.recv_timeout(Duration::from_millis(50)) {
                self.seen.push(l.clone());
                if f(&l) {
                    return l;
                }
            }
        }
        panic!("no line {what}; got {:?}", self.seen)
    }

    fn kill9(&mut self) {
        let c = self.child.as_mut().unwrap();
        let _ = c.kill();
        let _ = c.wait();
    }

    /// Wait for the exit (deadline), return the status and every stdout
    /// line.
    fn finish(mut self) -> (std::process::ExitStatus, Vec<String>, String) {
        let mut c = self.child.take().unwrap();
        let t0 = Instant::now();
        let status = loop {
            if let Some(s) = c.try_wait().unwrap() {
                break s;
            }
            if t0.elapsed() > DEADLINE {
                let _ = c.kill();
                panic!("program hung; stdout so far {:?}", self.seen);
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let mut err = String::new();
        std::io::Read::read_to_string(c.stderr.as_mut().unwrap(), &mut err).unwrap();
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(l);
        }
        (status, std::mem::take(&mut self.seen), err)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[test]
fn caps_s_and_caps_c_round_trips_and_fork_chain() {
    let dir = Dir::new("rt");
    let mut srv = dir.spawn(caps_s(), &[]);
    srv.expect_line("cid = 1", |l| l == "cid = 1");
    // 66000 round trips per process: the client forks at 1000, the child
    // (client #1) reconnects through the placeholder's ENOTCONN; both
    // reach 65536 and print it.
    let cli = dir.spawn(caps_c(), &["66000"]);
    let (status, lines, err) = cli.finish();
    assert!(status.success(), "{status:?} {lines:?} {err}");
    let forked = lines
        .iter()
        .find(|l| l.starts_with("forked pid "))
        .unwrap_or_else(|| panic!("{lines:?}"));
    assert!(forked.ends_with(" client #1"), "{forked}");
    let rest: Vec<String> = lines.iter().filter(|l| *l != forked).cloned().collect();
    assert_eq!(
        sorted(rest),
        sorted(vec![
            "0 65536".to_string(),
            "1 client forked or lost connection, reconnecting".to_string(),
            "1 client resume on reconnect after lost connection".to_string(),
            "1 65536".to_string(),
        ]),
        "{err}"
    );
    // The child's lines come in its order.
    let pos = |s: &str| lines.iter().position(|l| l == s).unwrap();
    assert!(pos("1 client forked or lost connection, reconnecting") < pos("1 65536"));
}

#[test]
fn caps_c_survives_caps_s_restart_and_notes_the_generation() {
    let dir = Dir::new("restart");
    // Generation = message count every 10 messages.
    let mut s1 = dir.spawn(caps_s(), &["10"]);
    s1.expect_line("cid", |l| l == "cid = 1");
    // 900 round trips (no fork), 1 ms apart: long enough to kill the
    // server in the middle.
    let mut cli = dir.spawn(caps_c(), &["900", "1000"]);
    cli.expect_line("a generation change", |l| {
        l.starts_with("0 client: note generation change ")
    });
    s1.kill9();
    cli.expect_line("lost connection", |l| {
        l == "0 client forked or lost connection, reconnecting"
    });
    // The client now waits (CAPF_WAITSVC) for the service to return.
    std::thread::sleep(Duration::from_millis(200));
    let mut s2 = dir.spawn(caps_s(), &[]);
    s2.expect_line("cid", |l| l == "cid = 1");
    cli.expect_line("resume", |l| {
        l == "0 client resume on reconnect after lost connection"
    });
    // The new service's generation (0) differs from the last one seen.
    cli.expect_line("generation 0", |l| {
        l == "0 client: note generation change 0"
    });
    let (status, lines, err) = cli.finish();
    assert!(status.success(), "{status:?} {lines:?} {err}");
}

#[test]
fn caps_c_started_first_waits_for_caps_s() {
    let dir = Dir::new("first");
    let mut cli = dir.spawn(caps_c(), &["100"]);
    cli.expect_line("reconnecting", |l| {
        l == "0 client forked or lost connection, reconnecting"
    });
    std::thread::sleep(Duration::from_millis(300));
    let mut srv = dir.spawn(caps_s(), &[]);
    srv.expect_line("cid", |l| l == "cid = 1");
    let (status, lines, err) = cli.finish();
    assert!(status.success(), "{status:?} {lines:?} {err}");
    assert_eq!(
        lines,
        [
            "0 client forked or lost connection, reconnecting",
            "0 client resume on reconnect after lost connection"
        ]
    );
}

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

#[test]
fn argument_and_state_errors() {
    setup();
    let (uid, gid) = me();
    let long63 = "n".repeat(63);
    let long64 = "n".repeat(64);
    assert_eq!(service("", uid, gid, 0), Err(libc::EINVAL));
    assert_eq!(service("a/b", uid, gid, 0), Err(libc::EINVAL));
    assert_eq!(service("a-b", uid, gid, 0), Err(libc::EINVAL));
    assert_eq!(service(&long64, uid, gid, 0), Err(libc::ENAMETOOLONG));
    assert_eq!(client(&long64, uid, gid, 0), Err(libc::ENAMETOOLONG));
    assert_eq!(client("x y", ANY, ANY, 0), Err(libc::EINVAL));
    // SAFETY: NULL names are refused.
    unsafe {
        assert_eq!(caps_sys_service(std::ptr::null(), uid, gid, 0, 0), -1);
        assert_eq!(errno(), libc::EINVAL);
        assert_eq!(caps_sys_client(std::ptr::null(), uid, gid, 0, 0), -1);
        assert_eq!(errno(), libc::EINVAL);
    }
    assert_eq!(
        client("err.none", ANY, ANY, CAPF_ANYCLIENT),
        Err(libc::ENOENT)
    );

    // A 63-byte name works (with a short enough LIBCAPS_DIR).
    let s63 = service(&long63, ANY, ANY, CAPF_WORLD).unwrap();
    close(s63).unwrap();

    let s = Svc::start("err.svc", CAPF_ANYCLIENT | CAPF_WORLD, Some(b"ok"));
    assert_eq!(
        service("err.svc", uid, gid, CAPF_EXCL_FLAG),
        Err(libc::EEXIST)
    );
    // A wildcard registration matches it too.
    assert_eq!(
        service("err.svc", ANY, ANY, CAPF_EXCL_FLAG),
        Err(libc::EEXIST)
    );
    let c = client("err.svc", uid, gid, CAPF_ANYCLIENT).unwrap();

    assert_eq!(close(9999), Err(libc::EINVAL));
    assert_eq!(put(9999, b"x"), Err(libc::EINVAL));
    assert_eq!(put(s.id, b"x"), Err(libc::EINVAL));
    // SAFETY: negative sizes and NULL buffers are refused.
    unsafe {
        assert_eq!(caps_sys_put(c, b"x".as_ptr() as *mut _, -1), -1);
        assert_eq!(errno(), libc::EINVAL);
        assert_eq!(caps_sys_put(c, std::ptr::null_mut(), 4), -1);
        assert_eq!(errno(), libc::EINVAL);
        let mut m: caps_msgid = std::mem::zeroed();
        assert_eq!(
            caps_sys_get(c, std::ptr::null_mut(), -1, &mut m, std::ptr::null_mut()),
            -1
        );
        assert_eq!(errno(), libc::EINVAL);
    }
    assert_eq!(put(c, &vec![0u8; 128 * 1024 + 1]), Err(libc::EMSGSIZE));
    assert_eq!(recv(c, 16, false).err(), Some(libc::EAGAIN));
    assert_eq!(libc::EAGAIN, libc::EWOULDBLOCK);
    assert_eq!(recv(9999, 16, false).err(), Some(libc::EINVAL));
    assert_eq!(reply(c, b"x", 1), Err(libc::EINVAL));
    assert_eq!(reply(9999, b"x", 1), Err(libc::EINVAL));
    // SAFETY: plain calls.
    unsafe {
        assert_eq!(caps_sys_getgen(s.id), -1);
        assert_eq!(errno(), libc::EINVAL);
        assert_eq!(caps_sys_setgen(c, 5), -1);
        assert_eq!(errno(), libc::EINVAL);
        assert_eq!(caps_sys_getgen(9999), -1);
        assert_eq!(errno(), libc::EINVAL);
        assert_eq!(caps_sys_abort(c, 1, 0), CAPS_ABORT_NOTIMPL);
        assert_eq!(caps_sys_abort(9999, 1, 0), -1);
    }
    // The service thread is inside caps_sys_wait: replying to an id it
    // never retrieved is refused.
    assert_eq!(reply(s.id, b"x", 424242), Err(libc::EINVAL));
    close(c).unwrap();
    assert_eq!(close(c), Err(libc::EINVAL));
}

const CAPF_EXCL_FLAG: i32 = caps::abi::CAPF_EXCL;

#[test]
fn one_thread_is_client_of_its_own_service() {
    setup();
    let (uid, gid) = me();
    let s = service("self", uid, gid, CAPF_ANYCLIENT).unwrap();
    let c = client("self", uid, gid, CAPF_ANYCLIENT).unwrap();
    let id = put(c, b"me").unwrap();
    let req = recv(s, 16, false).unwrap();
    assert_eq!((req.state, &req.data[..]), (CAPMS_REQUEST, &b"me"[..]));
    reply(s, b"you", req.id).unwrap();
    let rep = recv(c, 16, true).unwrap();
    assert_eq!((rep.id, &rep.data[..]), (id, &b"you"[..]));
    assert_eq!(recv(s, 16, true).unwrap().state, CAPMS_DISPOSE);
    close(c).unwrap();
    close(s).unwrap();
}

#[test]
fn request_reply_dispose_with_credentials() {
    setup();
    let (uid, gid) = me();
    let s = Svc::start("rrd", CAPF_ANYCLIENT, Some(b"good"));
    let c = client("rrd", uid, gid, CAPF_ANYCLIENT).unwrap();
    let mut buf = *b"xyz";
    let id = put(c, &buf).unwrap();
    // The data was copied: the buffer may change at once.
    buf.copy_from_slice(b"zzz");
    let req = s.next();
    assert_eq!(
        (req.state, req.size, &req.data[..]),
        (CAPMS_REQUEST, 3, &b"xyz"[..])
    );
    assert_eq!(req.cred.pid, std::process::id() as i32);
    assert_eq!((req.cred.uid, req.cred.euid, req.cred.gid), (uid, uid, gid));
    assert_eq!(req.cred.cacheid, 0);
    let rep = wait(c);
    assert_eq!(
        (rep.state, rep.id, &rep.data[..]),
        (CAPMS_REPLY, id, &b"good"[..])
    );
    // Reading the reply sends the service its dispose notice.
    let d = s.next();
    assert_eq!((d.state, d.id, d.size), (CAPMS_DISPOSE, req.id, 0));
    assert_eq!(d.cred.pid, std::process::id() as i32);
    // Ids of one client are distinct.
    let id2 = put(c, b"again").unwrap();
    assert_ne!(id2, id);
    assert_eq!(wait(c).id, id2);
    close(c).unwrap();
}

#[test]
fn client_close_turns_held_requests_into_dispose_notices() {
    setup();
    let (uid, gid) = me();
    let s = Svc::start("held", CAPF_ANYCLIENT, None);
    let c = client("held", uid, gid, CAPF_ANYCLIENT).unwrap();
    put(c, b"one").unwrap();
    put(c, b"two").unwrap();
    let r1 = s.next();
    let r2 = s.next();
    assert_eq!((r1.state, r2.state), (CAPMS_REQUEST, CAPMS_REQUEST));
    close(c).unwrap();
    let mut ids = [s.next(), s.next()];
    ids.sort_by_key(|m| m.id);
    assert!(ids.iter().all(|m| m.state == CAPMS_DISPOSE));
    assert_eq!((ids[0].id, ids[1].id), (r1.id.min(r2.id), r1.id.max(r2.id)));
    // Replying to a request whose client left: nothing to do, no error
    // before the notice was read, EINVAL after.
    assert_eq!(reply(s.id, b"late", r1.id), Err(libc::EINVAL));
    s.nothing_more();
}

#[test]
fn service_close_auto_replies_and_later_puts_fail() {
    setup();
    let (uid, gid) = me();
    let s = Svc::start("sclose", CAPF_ANYCLIENT, None);
    let c = client("sclose", uid, gid, CAPF_ANYCLIENT).unwrap();
    let a = put(c, b"held").unwrap();
    s.next();
    let b = put(c, b"maybe unread").unwrap();
    drop(s);
    let mut got = [wait(c), wait(c)];
    got.sort_by_key(|m| m.id);
    for (m, id) in got.iter().zip([a, b]) {
        assert_eq!((m.state, m.id, m.size), (CAPMS_REPLY, id, 0));
    }
    assert_eq!(put(c, b"x"), Err(libc::ENOTCONN));
    assert_eq!(recv(c, 16, true).err(), Some(libc::ENOTCONN));
    assert_eq!(
        client("sclose", uid, gid, CAPF_ANYCLIENT),
        Err(libc::ENOENT)
    );
    close(c).unwrap();
}

#[test]
fn more_than_maxinprog_requests_is_enobufs() {
    setup();
    let (uid, gid) = me();
    let s = Svc::start("nobufs", CAPF_ANYCLIENT, None);
    let c = client("nobufs", uid, gid, CAPF_ANYCLIENT).unwrap();
    // As in the kernel (`ci_cmsgcount > CAPS_MAXINPROG`): 129 may be
    // outstanding, the 130th put fails.
    let mut reqs = Vec::new();
    for i in 0..129 {
        put(c, format!("{i}").as_bytes()).unwrap();
    }
    assert_eq!(put(c, b"one too many"), Err(libc::ENOBUFS));
    for _ in 0..129 {
        reqs.push(s.next());
    }
    // A reply read frees a slot.
    reply(s.id, b"r", reqs[0].id).unwrap();
    assert_eq!(wait(c).state, CAPMS_REPLY);
    put(c, b"fits again").unwrap();
    assert_eq!(put(c, b"full again"), Err(libc::ENOBUFS));
    close(c).unwrap();
}

#[test]
fn a_message_larger_than_maxsize_stays_queued() {
    setup();
    let (uid, gid) = me();
    let (uid2, gid2) = (uid, gid);
    let id = service("big", uid, gid, CAPF_ANYCLIENT).unwrap();
    // The service answers the client's connection from a thread that
    // waits until the request is there, without reading it.
    let t = std::thread::spawn(move || {
        let c = client("big", uid2, gid2, CAPF_ANYCLIENT).unwrap();
        let big: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let pid = put(c, &big).unwrap();
        let small = put(c, b"small").unwrap();
        (c, big, pid, small)
    });
    let first = recv(id, 100, true).unwrap();
    let (c, big, pid, small) = t.join().unwrap();
    assert_eq!((first.size, first.state), (300, CAPMS_REQUEST));
    // Still there, same id.
    let again = recv(id, 100, false).unwrap();
    assert_eq!((again.size, again.id), (300, first.id));
    let whole = recv(id, 512, false).unwrap();
    assert_eq!(
        (whole.size, whole.id, &whole.data[..]),
        (300, first.id, &big[..])
    );
    // The next one can be answered without being read.
    let peek = recv(id, 2, false).unwrap();
    assert_eq!(peek.size, 5);
    reply(id, &vec![7u8; 1000], peek.id).unwrap();
    reply(id, b"", whole.id).unwrap();
    // The client's side: a reply larger than its buffer stays queued too.
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match recv(c, 10, true) {
            Ok(m) if m.size > 10 => {
                assert_eq!((m.size, m.id), (1000, small));
                let m = recv(c, 2000, false).unwrap();
                assert_eq!(m.data, vec![7u8; 1000]);
                seen.push(m.id);
            }
            Ok(m) => {
                assert_eq!((m.size, m.id), (0, pid));
                seen.push(m.id);
            }
            Err(e) => panic!("{e}"),
        }
    }
    close(c).unwrap();
    close(id).unwrap();
}

#[test]
fn generation_set_by_the_service_is_seen_by_its_clients() {
    setup();
    let (uid, gid) = me();
    let s = Svc::start("gen", CAPF_ANYCLIENT, Some(b"g"));
    let c = client("gen", uid, gid, CAPF_ANYCLIENT).unwrap();
    // SAFETY: plain calls.
    unsafe {
        assert_eq!(caps_sys_getgen(c), 0);
        assert_eq!(caps_sys_setgen(s.id, 1_000_000_000_007), 0);
    }
    let t0 = Instant::now();
    // SAFETY: plain call.
    while unsafe { caps_sys_getgen(c) } != 1_000_000_000_007 {
        assert!(t0.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(1));
    }
    // A client connecting later learns the current generation at once.
    let c2 = client("gen", uid, gid, CAPF_ANYCLIENT).unwrap();
    // SAFETY: plain call.
    assert_eq!(unsafe { caps_sys_getgen(c2) }, 1_000_000_000_007);
    close(c).unwrap();
    close(c2).unwrap();
}

#[test]
fn uid_gid_keys_and_wildcards() {
    setup();
    let (uid, gid) = me();
    let s = Svc::start("keys", CAPF_ANYCLIENT, Some(b"k"));
    for (u, g) in [(uid, gid), (ANY, gid), (uid, ANY), (ANY, ANY)] {
        let c = client("keys", u, g, CAPF_ANYCLIENT).unwrap();
        close(c).unwrap();
    }
    assert_eq!(
        client("keys", uid + 1, ANY, CAPF_ANYCLIENT),
        Err(libc::ENOENT)
    );
    assert_eq!(
        client("keys", ANY, gid + 1, CAPF_ANYCLIENT),
        Err(libc::ENOENT)
    );
    // A service registered with -1 keys is found only by wildcards.
    let w = Svc::start_keys("keys.any", ANY, ANY, CAPF_WORLD);
    assert_eq!(client("keys.any", uid, ANY, CAPF_WORLD), Err(libc::ENOENT));
    let c = client("keys.any", ANY, ANY, CAPF_WORLD).unwrap();
    close(c).unwrap();
    drop(w);
    drop(s);
}

impl Svc {
    fn start_keys(name: &str, uid: u32, gid: u32, flags: i32) -> Svc {
        Svc::serve(service(name, uid, gid, flags).unwrap(), 64, None)
    }
}

#[test]
fn access_flags_of_both_sides() {
    setup();
    let (uid, gid) = me();
    // CAPF_USER needs a registered uid.
    let s1 = Svc::start_keys("acc.user", ANY, gid, CAPF_USER);
    assert_eq!(
        client("acc.user", ANY, ANY, CAPF_ANYCLIENT),
        Err(libc::EACCES)
    );
    drop(s1);
    let s2 = Svc::start_keys("acc.group", uid, gid, CAPF_GROUP);
    assert_eq!(client("acc.group", ANY, ANY, CAPF_USER), Err(libc::EACCES));
    let c = client("acc.group", ANY, ANY, CAPF_GROUP).unwrap();
    close(c).unwrap();
    drop(s2);
    let s3 = Svc::start_keys("acc.world", uid, gid, CAPF_WORLD);
    assert_eq!(
        client("acc.world", ANY, ANY, CAPF_USER | CAPF_GROUP),
        Err(libc::EACCES)
    );
    let c = client("acc.world", ANY, ANY, CAPF_WORLD).unwrap();
    close(c).unwrap();
    drop(s3);
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

#[test]
fn other_users_get_eperm_and_eacces() {
    setup();
    if me().0 != 0 {
        eprintln!("skipped: needs root to become another user");
        return;
    }
    let s = Svc::start_keys("acc.root", 0, 0, CAPF_USER | CAPF_GROUP);
    let w = Svc::start_keys("acc.all", 0, 0, CAPF_ANYCLIENT);
    let code = in_child(|| {
        // SAFETY: plain calls in the single-threaded child.
        unsafe {
            libc::setgroups(0, std::ptr::null());
            if libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
                return 10;
            }
        }
        if service("x.nobody", 0, ANY, CAPF_WORLD) != Err(libc::EPERM) {
            return 11;
        }
        if service("x.nobody", ANY, 0, CAPF_WORLD) != Err(libc::EPERM) {
            return 12;
        }
        if client("acc.root", 0, 0, CAPF_ANYCLIENT) != Err(libc::EACCES) {
            return 13;
        }
        match client("acc.all", 0, 0, CAPF_ANYCLIENT) {
            Ok(c) => {
                let _ = close(c);
            }
            Err(_) => return 14,
        }
        match service("x.nobody", 65534, 65534, CAPF_WORLD) {
            Ok(id) => {
                let _ = close(id);
            }
            Err(_) => return 15,
        }
        0
    });
    assert_eq!(code, 0);
    drop(s);
    drop(w);
}

#[test]
fn forked_child_gets_placeholders_and_reconnects() {
    setup();
    let (uid, gid) = me();
    let s = Svc::start("forky", CAPF_ANYCLIENT, Some(b"pong"));
    let c = client("forky", uid, gid, CAPF_ANYCLIENT).unwrap();
    let nf = client("forky", uid, gid, CAPF_ANYCLIENT | CAPF_NOFORK).unwrap();
    let own = service("forky.own", uid, gid, CAPF_ANYCLIENT).unwrap();
    let code = in_child(|| {
        if put(c, b"x") != Err(libc::ENOTCONN) {
            return 1;
        }
        // SAFETY: plain call.
        if unsafe { caps_sys_getgen(c) } != -1 || errno() != libc::ENOTCONN {
            return 2;
        }
        if recv(c, 16, false).err() != Some(libc::ENOTCONN) {
            return 3;
        }
        if recv(own, 16, false).err() != Some(libc::ENOTCONN) {
            return 4;
        }
        if put(nf, b"x") != Err(libc::EINVAL) {
            return 5;
        }
        if close(c).is_err() || close(own).is_err() {
            return 6;
        }
        let Ok(c2) = client("forky", uid, gid, CAPF_ANYCLIENT) else {
            return 7;
        };
        if put(c2, b"ping").is_err() {
            return 8;
        }
        match recv(c2, 16, true) {
            Ok(m) if m.data == b"pong" => 0,
            _ => 9,
        }
    });
    assert_eq!(code, 0);
    // The parent's entries are untouched, and the child's close did not
    // remove the parent's service.
    put(c, b"still").unwrap();
    assert_eq!(wait(c).data, b"pong");
    assert!(
        std::fs::read_dir(
            std::env::var_os("LIBCAPS_DIR")
                .unwrap()
                .into_string()
                .unwrap()
                + "/sys"
        )
        .unwrap()
        .any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("forky.own,"))
    );
    close(c).unwrap();
    close(nf).unwrap();
    close(own).unwrap();
    drop(s);
}

extern "C" fn on_usr1(_: i32) {}

#[test]
fn wait_is_interrupted_by_a_signal() {
    setup();
    let (uid, gid) = me();
    let id = service("intr", uid, gid, CAPF_ANYCLIENT).unwrap();
    // (`setup` gave SIGUSR1 a no-op handler.)
    let (tx, rx) = channel();
    let t = std::thread::spawn(move || tx.send(recv(id, 16, true).err()).unwrap());
    std::thread::sleep(Duration::from_millis(200));
    assert!(!t.is_finished(), "wait returned with nothing to get");
    assert_eq!(interrupt(&t, &rx), Some(Some(libc::EINTR)));
    t.join().unwrap();
    close(id).unwrap();
    // Waiting for a service is interruptible too.
    let (tx, rx) = channel();
    let t = std::thread::spawn(move || {
        let r = client("intr.never", uid, gid, CAPF_WAITSVC).err();
        tx.send(r).unwrap();
    });
    std::thread::sleep(Duration::from_millis(200));
    assert!(!t.is_finished(), "CAPF_WAITSVC returned without a service");
    assert_eq!(interrupt(&t, &rx), Some(Some(libc::EINTR)));
    t.join().unwrap();
}

/// CPU time this thread used.
fn thread_cpu() -> Duration {
    // SAFETY: plain data.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[test]
fn waitsvc_sleeps_until_the_service_appears() {
    setup();
    let (uid, gid) = me();
    let t = std::thread::spawn(move || {
        let c0 = thread_cpu();
        let t0 = Instant::now();
        let c = client("late", uid, gid, CAPF_ANYCLIENT | CAPF_WAITSVC);
        (c, t0.elapsed(), thread_cpu() - c0)
    });
    std::thread::sleep(Duration::from_millis(400));
    assert!(!t.is_finished());
    let s = Svc::start("late", CAPF_ANYCLIENT, Some(b"here"));
    let (c, waited, cpu) = t.join().unwrap();
    let c = c.unwrap();
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    // Asleep, not spinning.
    assert!(
        cpu < Duration::from_millis(100),
        "{cpu:?} of CPU while waiting"
    );
    put(c, b"?").unwrap();
    assert_eq!(wait(c).data, b"here");
    close(c).unwrap();
    drop(s);
}

#[test]
fn two_threads_waiting_on_one_service_each_get_a_message() {
    setup();
    let (uid, gid) = me();
    let id = service("two", uid, gid, CAPF_ANYCLIENT).unwrap();
    let (tx, rx) = channel();
    for _ in 0..2 {
        let tx = tx.clone();
        std::thread::spawn(move || tx.send(recv(id, 64, true)).unwrap());
    }
    std::thread::sleep(Duration::from_millis(100));
    // Whichever thread reads the socket queues both requests; the other
    // must be woken to take the second.
    let c = client("two", uid, gid, CAPF_ANYCLIENT).unwrap();
    put(c, b"a").unwrap();
    put(c, b"b").unwrap();
    let mut got: Vec<Vec<u8>> = (0..2)
        .map(|_| {
            let m = rx
                .recv_timeout(Duration::from_secs(10))
                .expect("a waiting thread was not woken")
                .unwrap();
            assert_eq!(m.state, CAPMS_REQUEST);
            m.data
        })
        .collect();
    got.sort();
    assert_eq!(got, [b"a".to_vec(), b"b".to_vec()]);
    close(c).unwrap();
    close(id).unwrap();
}

/// The 16-byte hello (see docs/wire-protocol.md).
fn raw_hello(version: u16, flags: u32) -> Vec<u8> {
    let mut b = b"CAPS".to_vec();
    b.extend_from_slice(&version.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&131072u32.to_le_bytes());
    b.extend_from_slice(&flags.to_le_bytes());
    b
}

/// A 48-byte frame header of `kind` with `body_len` and `id`.
fn raw_frame(kind: u16, body_len: u32, id: u64) -> Vec<u8> {
    let mut b = vec![0u8; 48];
    b[0..2].copy_from_slice(&kind.to_le_bytes());
    b[4..8].copy_from_slice(&body_len.to_le_bytes());
    b[8..16].copy_from_slice(&id.to_le_bytes());
    b[16..20].copy_from_slice(&body_len.to_le_bytes());
    b
}

#[test]
fn protocol_violations_cost_only_that_connection() {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    setup();
    let (uid, gid) = me();
    let s = Svc::start("proto", CAPF_WORLD, Some(b"fine"));
    let sock = PathBuf::from(std::env::var_os("LIBCAPS_DIR").unwrap())
        .join("sys")
        .join(format!("proto,{uid},{gid}"));
    let bad: Vec<Vec<u8>> = vec![
        b"GARBAGE!GARBAGE!".to_vec(),
        raw_hello(1, 4),
        [raw_hello(2, 4), raw_frame(9, 0, 1)].concat(),
        [raw_hello(2, 4), raw_frame(3, 0, 77)].concat(),
        [raw_hello(2, 4), raw_frame(1, 200_000, 1)].concat(),
        [raw_hello(2, 4), raw_frame(2, 0, 1)].concat(),
    ];
    for bytes in &bad {
        let mut st = UnixStream::connect(&sock).unwrap();
        st.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        st.write_all(bytes).unwrap();
        // The service answers the hello (or refuses it), then drops the
        // connection: reading ends, it does not hang.
        let mut sink = Vec::new();
        let _ = st.read_to_end(&mut sink);
    }
    // Too many requests in flight from one connection.
    let mut st = UnixStream::connect(&sock).unwrap();
    st.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut flood = raw_hello(2, 4);
    for i in 0..200u64 {
        flood.extend_from_slice(&raw_frame(1, 0, i + 1));
    }
    st.write_all(&flood).unwrap();
    let mut sink = Vec::new();
    let _ = st.read_to_end(&mut sink);
    // Everyone else is still served.
    let c = client("proto", uid, gid, CAPF_WORLD).unwrap();
    let id = put(c, b"ok?").unwrap();
    let m = wait(c);
    assert_eq!((m.id, &m.data[..]), (id, &b"fine"[..]));
    close(c).unwrap();
    drop(s);
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

/// A node whose listener may not claim the node's keys (anyone can create
/// a socket in the world-writable `sys` directory) is skipped: a client
/// asking for root's service does not reach another user's.
#[test]
fn planted_node_with_keys_its_listener_may_not_claim_is_skipped() {
    setup();
    if me().0 != 0 {
        eprintln!("skipped: needs root to become another user");
        return;
    }
    // `BASE/sys` made by root, as `make install` does.
    let first = service("plant.root", ANY, ANY, CAPF_WORLD).unwrap();
    close(first).unwrap();
    let sys = PathBuf::from(std::env::var_os("LIBCAPS_DIR").unwrap()).join("sys");
    let child = forked(|ready| {
        // SAFETY: plain calls in the single-threaded child.
        unsafe {
            libc::setgroups(0, std::ptr::null());
            if libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
                return 10;
            }
        }
        if service("plant", 65534, 65534, CAPF_WORLD).is_err() {
            return 11;
        }
        let from = sys.join("plant,65534,65534");
        if std::fs::rename(&from, sys.join("plant,0,0")).is_err() {
            return 12;
        }
        ready();
        0
    });
    let got = child.ready();
    let asked = [
        client("plant", 0, 0, CAPF_ANYCLIENT),
        client("plant", ANY, ANY, CAPF_ANYCLIENT),
        client("plant", 0, ANY, CAPF_ANYCLIENT),
    ];
    let code = child.finish();
    assert!(got, "child ended early: {code:?}");
    assert_eq!(asked, [Err(libc::ENOENT); 3]);
    assert_eq!(code, Ok(0));
}

/// A service that never sleeps in `caps_sys_wait` (it only polls with
/// `caps_sys_get`) still takes new clients and answers them: it accepts
/// at least every few reads, not only when a poll saw its listener.
#[test]
fn a_service_that_only_polls_with_get_takes_new_clients() {
    setup();
    let (uid, gid) = me();
    let child = forked(|ready| {
        let Ok(id) = service("getonly", uid, gid, CAPF_ANYCLIENT) else {
            return 10;
        };
        // The parent connects once the service exists. Say so with a
        // file: `ready` would block this, the only thread, which must
        // keep polling to serve.
        let _ = std::fs::write(getonly_flag(), b"up");
        let t0 = Instant::now();
        let mut answered = 0;
        while answered < 3 && t0.elapsed() < Duration::from_secs(60) {
            match recv(id, 64, false) {
                Ok(m) if m.state == CAPMS_REQUEST => {
                    if reply(id, b"polled", m.id).is_err() {
                        return 11;
                    }
                    answered += 1;
                }
                Ok(_) | Err(libc::EAGAIN) => std::thread::sleep(Duration::from_millis(1)),
                Err(_) => return 12,
            }
        }
        if answered < 3 {
            return 13;
        }
        ready();
        0
    });
    let t0 = Instant::now();
    while !getonly_flag().exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "service never came up"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    for i in 0..3 {
        let t0 = Instant::now();
        let c = client("getonly", uid, gid, CAPF_ANYCLIENT).expect("connect to a get-only service");
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "client {i} waited {:?}",
            t0.elapsed()
        );
        put(c, b"hi").unwrap();
        let m = recv(c, 64, true).unwrap();
        assert_eq!((m.state, &m.data[..]), (CAPMS_REPLY, &b"polled"[..]));
        close(c).unwrap();
    }
    assert!(child.ready());
    assert_eq!(child.finish(), Ok(0));
}

/// Where the get-only service's child says it is up.
fn getonly_flag() -> PathBuf {
    PathBuf::from(std::env::var_os("LIBCAPS_DIR").unwrap()).join("getonly.up")
}

/// One client port id used by four kernel threads at once, 1000 round
/// trips each, against an echoing service: every call succeeds and every
/// reply is one of the requests (the table's mutex serialises the calls on
/// a port; nothing on the wire is corrupted).
#[test]
fn one_client_port_used_by_four_threads_at_once() {
    setup();
    let (uid, gid) = me();
    let sid = service("par", uid, gid, CAPF_ANYCLIENT).unwrap();
    // It ends after the workers' 4,000 requests, before `sid` is closed
    // (a thread that waits on an id closed meanwhile may wait on the
    // next entry given that id: see `Svc`).
    let echo = std::thread::spawn(move || {
        let mut answered = 0;
        while answered < 4 * 1000 {
            let m = recv(sid, 64, true).unwrap();
            if m.state == CAPMS_REQUEST {
                reply(sid, &m.data, m.id).unwrap();
                answered += 1;
            }
        }
    });
    let c = client("par", uid, gid, CAPF_ANYCLIENT).unwrap();
    let workers: Vec<_> = (0..4)
        .map(|w| {
            std::thread::spawn(move || {
                let mut got = Vec::new();
                for i in 0..1000 {
                    put(c, format!("w{w} call {i}").as_bytes()).unwrap();
                    let m = recv(c, 64, true).unwrap();
                    assert_eq!(m.state, CAPMS_REPLY);
                    got.push(String::from_utf8(m.data).unwrap());
                }
                got
            })
        })
        .collect();
    let mut got: Vec<String> = workers
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let mut want: Vec<String> = (0..4)
        .flat_map(|w| (0..1000).map(move |i| format!("w{w} call {i}")))
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    echo.join().unwrap();
    close(c).unwrap();
    close(sid).unwrap();
}
