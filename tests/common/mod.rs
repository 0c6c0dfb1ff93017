//! Shared by the integration tests that compile and run C programs against
//! the installed library.
#![allow(dead_code)]

pub mod ipc;
pub mod rendezvous;

/// `fn NAME() -> &'static Path`: the C program `c-tests/SRC.c`, compiled
/// (dynamically linked) once per test binary as `build/.../BIN`.
#[allow(unused_macros)]
macro_rules! c_program {
    ($name:ident, $bin:expr, $src:expr) => {
        fn $name() -> &'static std::path::Path {
            static P: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
            P.get_or_init(|| common::compile_c($bin, $src, false))
        }
    };
}

/// Wait (at most 20 s) until a socket at `p` accepts connections.
pub fn wait_listening(p: &Path) {
    let t0 = Instant::now();
    while std::os::unix::net::UnixStream::connect(p).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "nothing listens at {}",
            p.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The lines `r` gives (a child's stdout or stderr), each sent on the
/// channel as soon as it is read, from a thread of their own; the channel
/// ends when the input does.
pub fn lines_of<R: std::io::Read + Send + 'static>(r: R) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let mut input = std::io::BufReader::new(r);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        loop {
            let mut line = String::new();
            match input.read_line(&mut line) {
                Ok(n) if n > 0 && tx.send(line).is_ok() => {}
                _ => break,
            }
        }
    });
    rx
}

/// Receive lines from `lines` until one satisfies `hit` (returned, with
/// every line before it), failing after [`PROGRAM_DEADLINE`] or when the
/// input ends first.
pub fn await_line(
    lines: &std::sync::mpsc::Receiver<String>,
    what: &str,
    hit: impl Fn(&str) -> bool,
) -> Vec<String> {
    let t0 = Instant::now();
    let mut seen = Vec::new();
    loop {
        let left = PROGRAM_DEADLINE.saturating_sub(t0.elapsed());
        match lines.recv_timeout(left) {
            Ok(l) => {
                let done = hit(&l);
                seen.push(l);
                if done {
                    return seen;
                }
            }
            Err(e) => panic!("no {what} ({e}); got {seen:?}"),
        }
    }
}

/// A program's output as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The install tree (`DESTDIR` + `/usr`) the tests compile against.
pub fn stage() -> &'static Path {
    static STAGE: OnceLock<PathBuf> = OnceLock::new();
    STAGE.get_or_init(|| {
        if let Some(s) = std::env::var_os("LIBCAPS_STAGE") {
            return PathBuf::from(s);
        }
        let dest = root().join("target/c-stage");
        let _ = std::fs::remove_dir_all(&dest);
        // `install` only copies: build first.
        let status = Command::new("make")
            .arg("-C")
            .arg(root())
            .arg("lib")
            .arg("capsctl")
            .arg("install")
            .arg("PROFILE=debug")
            .arg("PREFIX=/usr")
            .arg(format!("DESTDIR={}", dest.display()))
            .stdout(Stdio::null())
            .status()
            .expect("run make install");
        assert!(
            status.success(),
            "make install into {} failed",
            dest.display()
        );
        dest
    })
}

/// `pkg-config ARGS libcaps` against the staged tree.
pub fn pkg_config(args: &[&str]) -> Vec<String> {
    let stage = stage();
    let out = Command::new("pkg-config")
        .args(args)
        .arg("libcaps")
        .env("PKG_CONFIG_PATH", stage.join("usr/lib/pkgconfig"))
        .env("PKG_CONFIG_SYSROOT_DIR", stage)
        .output()
        .expect("run pkg-config");
    assert!(
        out.status.success(),
        "pkg-config {args:?} failed: {:?}",
        out
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// Compile `c-tests/SRC.c` into `target/c-tests/NAME` with `-Wall -Werror`
/// against the staged install, through `pkg-config`.
pub fn compile_c(name: &str, src: &str, static_link: bool) -> PathBuf {
    compile_c_with(name, src, static_link, &[])
}

/// [`compile_c`] with extra compiler arguments (`extra`, placed after the
/// source file: options and libraries such as `-lm`).
pub fn compile_c_with(name: &str, src: &str, static_link: bool, extra: &[&str]) -> PathBuf {
    let out_dir = root().join("target/c-tests");
    std::fs::create_dir_all(&out_dir).unwrap();
    let exe = out_dir.join(name);
    let mut cmd = Command::new("cc");
    cmd.args(["-Wall", "-Werror", "-O1", "-g", "-DSMP", "-o"])
        .arg(&exe);
    cmd.arg(root().join("c-tests").join(format!("{}.c", src)));
    cmd.args(extra);
    cmd.args(pkg_config(&["--cflags"]));
    if static_link {
        let libdir = stage().join("usr/lib");
        cmd.arg(libdir.join("libcaps.a"));
        let libs = pkg_config(&["--static", "--libs"]);
        cmd.args(
            libs.iter()
                .filter(|a| !a.starts_with("-L") && *a != "-lcaps"),
        );
    } else {
        cmd.args(pkg_config(&["--libs"]));
        cmd.arg(format!("-Wl,-rpath,{}", stage().join("usr/lib").display()));
    }
    let out = cmd.output().expect("run cc");
    assert!(
        out.status.success(),
        "compiling {}.c failed:\n{}",
        src,
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

/// Wait for `child` to end, at most `deadline`: past it, kill the child
/// and fail the test naming `what` (with what it printed).
pub fn wait_deadline(mut child: Child, deadline: Duration, what: &str) -> Output {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "{what}: still running after {deadline:?}; stdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    child.wait_with_output().unwrap()
}

/// Real local accounts made for one test with `useradd` and removed with
/// `userdel` when dropped (also when the test fails). Each has its own
/// group of the same name.
pub struct TestUsers {
    pub users: Vec<(String, u32, u32)>,
}

/// Serialises this process's `useradd`/`userdel` runs (they lock
/// /etc/passwd; another process's run is waited out by retrying).
static USERADD: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn account_tool(tool: &str, args: &[&str]) -> bool {
    let _g = USERADD.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..50 {
        match Command::new(tool)
            .args(args)
            .stderr(Stdio::piped())
            .output()
        {
            Ok(o) if o.status.success() => return true,
            // 10: cannot lock /etc/passwd (another tool has it): retry
            Ok(o) if o.status.code() == Some(10) => {
                std::thread::sleep(std::time::Duration::from_millis(100))
            }
            Ok(o) => {
                eprintln!(
                    "{tool} {args:?}: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                return false;
            }
            Err(_) => return false,
        }
    }
    false
}

impl TestUsers {
    /// `n` new users for `test`, or `None` (with a printed reason) when
    /// this is not root or `useradd` is missing: the test then skips.
    pub fn create(test: &str, n: usize) -> Option<TestUsers> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static SEQ: AtomicU32 = AtomicU32::new(0);
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("{test}: skipped (needs root to create users and act as them)");
            return None;
        }
        if Command::new("useradd").arg("--help").output().is_err() {
            eprintln!("{test}: skipped (no useradd)");
            return None;
        }
        let mut made = TestUsers { users: Vec::new() };
        for _ in 0..n {
            let name = format!(
                "lct{}x{}",
                std::process::id(),
                SEQ.fetch_add(1, Ordering::Relaxed)
            );
            let ok = account_tool(
                "useradd",
                &[
                    "--no-create-home",
                    "--user-group",
                    "-s",
                    "/bin/false",
                    &name,
                ],
            );
            assert!(ok, "{test}: useradd {name} failed");
            made.users.push((name.clone(), 0, 0));
            let id = |flag: &str| -> u32 {
                let o = Command::new("id").arg(flag).arg(&name).output().unwrap();
                String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
            };
            let (uid, gid) = (id("-u"), id("-g"));
            made.users.last_mut().unwrap().1 = uid;
            made.users.last_mut().unwrap().2 = gid;
        }
        Some(made)
    }

    /// (uid, gid) of user `i`.
    pub fn ids(&self, i: usize) -> (u32, u32) {
        (self.users[i].1, self.users[i].2)
    }

    /// `prog args` to be run as user `i` (`setpriv`, no supplementary
    /// groups).
    pub fn command(&self, i: usize, prog: &Path) -> Command {
        let (uid, gid) = self.ids(i);
        let mut c = Command::new("setpriv");
        c.arg(format!("--reuid={uid}"))
            .arg(format!("--regid={gid}"))
            .arg("--clear-groups")
            .arg(prog);
        c
    }
}

impl Drop for TestUsers {
    fn drop(&mut self) {
        for (name, _, _) in &self.users {
            account_tool("userdel", &[name]);
        }
    }
}

/// A fresh 0755 directory (under the temp dir) that any user may
/// traverse, with copies of `progs` in it: the worktree's build
/// directories may not be reachable by test users. Removed when dropped.
pub struct PublicDir(pub PathBuf);

impl PublicDir {
    pub fn new(tag: &str) -> PublicDir {
        use std::os::unix::fs::PermissionsExt;
        let d = std::env::temp_dir().join(format!("libcaps-pub-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        PublicDir(d)
    }

    /// Copy `prog` in (mode 0755) and return the copy's path.
    pub fn install(&self, prog: &Path) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let to = self.0.join(prog.file_name().unwrap());
        std::fs::copy(prog, &to).unwrap();
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755)).unwrap();
        to
    }

    /// A subdirectory with `mode`, owned by root.
    pub fn subdir(&self, name: &str, mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let d = self.0.join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode)).unwrap();
        d
    }
}

impl Drop for PublicDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// How long one program of a CAPS test may run.
pub const PROGRAM_DEADLINE: Duration = Duration::from_secs(60);

/// Run `c` to its end (stdin empty, stdout and stderr kept), at most
/// [`PROGRAM_DEADLINE`].
pub fn run(mut c: Command) -> Output {
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    wait_deadline(c.spawn().expect("spawn"), PROGRAM_DEADLINE, "program")
}

/// A rendezvous base laid out as `make install` does (`BASE` 0755,
/// `root/` 0755, `users/` and `sys/` 1777, all root's) inside a public
/// directory, so other users reach it.
pub struct CapsBase {
    pub pub_dir: PublicDir,
    pub base: PathBuf,
}

impl CapsBase {
    pub fn new(tag: &str) -> CapsBase {
        use std::os::unix::fs::PermissionsExt;
        let pub_dir = PublicDir::new(tag);
        let base = pub_dir.subdir("caps", 0o755);
        for (d, mode) in [("root", 0o755), ("users", 0o1777), ("sys", 0o1777)] {
            let p = base.join(d);
            std::fs::create_dir(&p).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        CapsBase { pub_dir, base }
    }

    /// `prog` with `LIBCAPS_DIR` set to this base.
    pub fn cmd(&self, prog: &Path) -> Command {
        let mut c = Command::new(prog);
        c.env("LIBCAPS_DIR", &self.base);
        c
    }

    /// The socket of our own v1 service `name` under this base.
    pub fn v1_socket(&self, name: &str) -> PathBuf {
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() };
        if me == 0 {
            self.base.join("root").join(name)
        } else {
            self.base.join(format!("users/{me}/{name}"))
        }
    }
}

/// VmRSS of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A running program; killed if the test ends early.
pub struct Proc(pub Option<Child>);

impl Proc {
    pub fn spawn(mut c: Command) -> Proc {
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Proc(Some(c.spawn().expect("spawn")))
    }

    pub fn pid(&self) -> u32 {
        self.0.as_ref().unwrap().id()
    }

    /// Read stdout up to and including a line equal to `want`.
    pub fn expect_line(&mut self, want: &str) {
        use std::io::Read;
        let out = self.0.as_mut().unwrap().stdout.as_mut().unwrap();
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        let t0 = Instant::now();
        loop {
            assert!(t0.elapsed() < PROGRAM_DEADLINE, "no line {want:?}");
            match out.read(&mut b) {
                Ok(1) if b[0] == b'\n' => {
                    if line == want.as_bytes() {
                        return;
                    }
                    line.clear();
                }
                Ok(1) => line.push(b[0]),
                _ => panic!(
                    "program ended before printing {want:?}; got {:?}",
                    String::from_utf8_lossy(&line)
                ),
            }
        }
    }

    /// The next line of stdout.
    pub fn line(&mut self) -> String {
        use std::io::Read;
        let out = self.0.as_mut().unwrap().stdout.as_mut().unwrap();
        let mut line = Vec::new();
        let mut b = [0u8; 1];
        while out.read(&mut b).unwrap() == 1 && b[0] != b'\n' {
            line.push(b[0]);
        }
        String::from_utf8_lossy(&line).into_owned()
    }

    /// Wait for the program to end (at most [`PROGRAM_DEADLINE`]).
    pub fn finish(mut self) -> Output {
        wait_deadline(self.0.take().unwrap(), PROGRAM_DEADLINE, "program")
    }

    /// Kill the program (SIGKILL: it cleans nothing up) and return what
    /// it printed.
    pub fn kill(mut self) -> Output {
        let mut c = self.0.take().unwrap();
        let _ = c.kill();
        c.wait_with_output().unwrap()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// CPU ticks (user + system) a process has used, from `/proc/PID/stat`.
pub fn cpu_ticks(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised command name; utime and stime are
    // the 14th and 15th of the whole line.
    let rest = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// The CPU time, in nanoseconds, all threads of process `pid` have used
/// (the scheduler's own account, `/proc/PID/task/*/schedstat`, exact to
/// the nanosecond, where `cpu_ticks` counts whole 10 ms ticks, one of
/// which a process that ran a few microseconds may be charged).
pub fn cpu_ns(pid: i32) -> u64 {
    let mut sum = 0;
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let path = t.unwrap().path().join("schedstat");
        // A thread that exited since the listing has no file: it counts
        // no more (its time went to the process, not to this sum).
        if let Ok(s) = std::fs::read_to_string(path) {
            sum += s.split(' ').next().unwrap().parse::<u64>().unwrap();
        }
    }
    sum
}

/// Raise this process's RLIMIT_NOFILE to its hard limit (the programs it
/// starts inherit it); true when that allows `n` descriptors.
pub fn raise_nofile(n: usize) -> bool {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `rl` is a writable rlimit.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl);
        rl.rlim_cur = rl.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
    }
    rl.rlim_cur as usize >= n
}
