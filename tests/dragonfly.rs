//! DragonFly BSD's own test programs (`c-tests/dragonfly/`, spec §8)
//! compile unchanged against the installed library with their original
//! flags (`-O2 -g -DSMP`), `pkg-config --cflags --libs libcaps` and
//! `-Werror=implicit-function-declaration` (what gcc 14 does by default),
//! and print what the spec says they print.
//!
//! The CAPS servers and clients run forever, as the originals do: they get
//! a private rendezvous directory (`LIBCAPS_DIR`), their output is read
//! line by line with a deadline, and they are killed at the end.

mod common;

use common::{pkg_config, root, stage, wait_deadline};
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

/// The deadline of any one program run or awaited line.
const DEADLINE: Duration = Duration::from_secs(120);

/// Compile `c-tests/dragonfly/SRC.c` as the DragonFly Makefile did, plus
/// pkg-config and the modern compilers' refusal of implicit declarations.
fn build(src: &str) -> PathBuf {
    let dir = root().join("target/c-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join(format!("dfly_{src}"));
    let out = Command::new("cc")
        .args([
            "-O2",
            "-g",
            "-DSMP",
            "-Werror=implicit-function-declaration",
            "-o",
        ])
        .arg(&exe)
        .arg(root().join("c-tests/dragonfly").join(format!("{src}.c")))
        .args(pkg_config(&["--cflags", "--libs"]))
        .arg(format!("-Wl,-rpath,{}", stage().join("usr/lib").display()))
        .output()
        .expect("run cc");
    assert!(
        out.status.success(),
        "c-tests/dragonfly/{src}.c does not compile unchanged:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

/// Run to completion within the deadline.
fn run(exe: &Path, args: &[&str]) -> Output {
    let child = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    wait_deadline(child, DEADLINE, &format!("{} {args:?}", exe.display()))
}

fn lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}

/// The address in "... 0x1234 ..." after `prefix`.
fn addr_after<'a>(line: &'a str, prefix: &str) -> &'a str {
    let rest = line
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{line:?} does not start with {prefix:?}"));
    let end = rest.find(' ').unwrap_or(rest.len());
    assert!(rest.starts_with("0x"), "{line:?}: no address");
    &rest[..end]
}

#[test]
fn thr1_prints_the_spec_transcript_and_exits_1() {
    let out = run(&build("thr1"), &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let l = lines(&out);
    assert!(l.len() >= 2, "{l:?}");
    let main = addr_after(&l[0], "mainthread ");
    let t1 = addr_after(&l[1], "thread #1 ");
    let t2 = addr_after(&l[1], &format!("thread #1 {t1} #2 "));
    let want = format!(
        "mainthread {main} crit_count 0 nest 1 mp_lock 0\n\
         thread #1 {t1} #2 {t2}\n\
         switching away from main (should come back before exit)\n\
         thread1 running\nthread1 exiting\nkthread {t1} thread1 has exited\n\
         thread2 running\nthread2 exiting\nkthread {t2} thread2 has exited\n\
         Switched back to main, main Exiting\n"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), want);
}

#[test]
fn thr2_switches_two_million_times_and_thread2_exits_0() {
    let out = run(&build("thr2"), &[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let l = lines(&out);
    assert_eq!(l.len(), 3, "{l:?}");
    assert_eq!(l[0], "done1");
    let t1 = addr_after(&l[1], "kthread ");
    assert_eq!(l[1], format!("kthread {t1} thread1 has exited"));
    assert_eq!(l[2], "done2");
}

/// The lines of one round of thr3 (between the fixed lines), in order per
/// thread; the two cpus interleave.
fn thr3_round(round: &[String], pid: u32) {
    let pos = |want: &str| {
        round
            .iter()
            .position(|l| l == want)
            .unwrap_or_else(|| panic!("no {want:?} in {round:?}"))
    };
    let exited = |name: &str| {
        round
            .iter()
            .position(|l| {
                l.starts_with("kthread 0x") && l.ends_with(&format!(" {name} has exited"))
            })
            .unwrap_or_else(|| panic!("no exit line of {name} in {round:?}"))
    };
    assert_eq!(round.len(), 6, "{round:?}");
    let (s1, d1, e1) = (
        pos("start1 pri 12 mp 1"),
        pos(&format!("done1 {pid}")),
        exited("thread1"),
    );
    let (s2, d2, e2) = (
        pos("start2 pri 12 mp 1"),
        pos(&format!("done2 {pid}")),
        exited("thread2"),
    );
    assert!(s1 < d1 && d1 < e1, "thread1 out of order: {round:?}");
    assert!(s2 < d2 && d2 < e2, "thread2 out of order: {round:?}");
}

#[test]
fn thr3_runs_two_rounds_on_two_virtual_cpus() {
    let exe = build("thr3");
    let child = Command::new(&exe)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = wait_deadline(child, DEADLINE, "thr3");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let l = lines(&out);
    assert_eq!(l.len(), 16, "{l:?}");
    assert_eq!(l[0], "caps_fork_vcpu 1");
    thr3_round(&l[1..7], pid);
    assert_eq!(l[7], "Main thread resumed after all children exiting.");
    assert_eq!(
        l[8],
        "Running test a second time to see if UPC_CONTROL_WAIT works"
    );
    thr3_round(&l[9..15], pid);
    assert_eq!(l[15], "Main thread resumed after second test, exiting");
}

#[test]
fn encoder_prints_the_passwd_encoding_of_each_user() {
    let users = ["root", "daemon"];
    let out = run(&build("encoder"), &users);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let l = lines(&out);
    assert_eq!(l.len(), users.len(), "{l:?}");
    for (user, line) in users.iter().zip(&l) {
        let pw = nix::unistd::User::from_name(user).unwrap().unwrap();
        let want = format!(
            "Spasswd{{F1D\"{}\",F2D\"{}\",F3D{:x},F4D{:x},F7D\"{}\",F8D\"{}\",F9D\"{}\"}}",
            pw.name,
            pw.passwd.to_str().unwrap(),
            pw.uid.as_raw(),
            pw.gid.as_raw(),
            pw.gecos.to_str().unwrap(),
            pw.dir.display(),
            pw.shell.display()
        );
        // `%hh` escapes aside (none in these entries on Debian).
        assert_eq!(line, &want, "{user}");
    }
}

/// A private rendezvous directory, removed at the end.
struct Rdv(PathBuf);

impl Rdv {
    fn new(tag: &str) -> Rdv {
        let d = std::env::temp_dir().join(format!("libcaps-dfly-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Rdv(d)
    }

    /// Start `exe ARGS` in its own process group, stdout line-buffered
    /// (`stdbuf -oL`: the programs print with plain printf and are killed
    /// at the end), its lines sent to the returned receiver.
    fn spawn(&self, exe: &Path, args: &[&str]) -> (Group, Receiver<String>) {
        let mut child = Command::new("stdbuf")
            .arg("-oL")
            .arg(exe)
            .args(args)
            .env("LIBCAPS_DIR", &self.0)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn stdbuf");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        (Group(child), rx)
    }
}

impl Drop for Rdv {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A program and every process it forked (one process group), killed on
/// drop.
struct Group(Child);

impl Group {
    fn kill(&mut self, sig: i32) {
        // SAFETY: signals the process group this test created.
        unsafe { libc::kill(-(self.0.id() as i32), sig) };
    }

    fn wait(&mut self) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(st) = self.0.try_wait().unwrap() {
                return st;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "still running after {DEADLINE:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill(libc::SIGKILL);
        let _ = self.0.wait();
    }
}

/// The next line, within the deadline.
fn next(rx: &Receiver<String>, what: &str) -> String {
    rx.recv_timeout(DEADLINE)
        .unwrap_or_else(|e| panic!("waiting for {what}: {e}"))
}

/// Lines until one satisfies `want`; all lines read, that one last.
fn until(rx: &Receiver<String>, what: &str, want: impl Fn(&str) -> bool) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let l = next(rx, what);
        let done = want(&l);
        seen.push(l);
        if done {
            return seen;
        }
    }
}

/// caps1 -s serves, caps1 -c gets `error=23/23 res=i/i` for i = 0, 1, ...;
/// when the server is killed the client says `client failed` and `exit`.
#[test]
fn caps1_server_and_client_ping_pong() {
    let exe = build("caps1");
    let rdv = Rdv::new("caps1");
    let (mut server, srv_out) = rdv.spawn(&exe, &["-s"]);
    let first = next(&srv_out, "the server's first line");
    assert!(first.starts_with("caps_service port 0x"), "{first}");
    let (mut client, cli_out) = rdv.spawn(&exe, &["-c"]);
    let hello = next(&cli_out, "the client's first line");
    assert!(
        hello.starts_with("caps_client port 0x") && hello.contains(" msg 0x"),
        "{hello}"
    );
    for i in 0..200 {
        assert_eq!(
            next(&cli_out, "a reply"),
            format!("reply: error=23/23 res={i}/{i}")
        );
    }
    let got = next(&srv_out, "the server's report of a message");
    assert!(got.starts_with("received msg 0x"), "{got}");
    server.kill(libc::SIGTERM);
    let rest = until(&cli_out, "client failed", |l| !l.starts_with("reply: "));
    assert_eq!(rest.last().unwrap(), "client failed", "{rest:?}");
    assert_eq!(next(&cli_out, "exit"), "exit");
    assert!(client.wait().success());
}

/// server.c (caps_s) answers, client.c (caps_c) round-trips, forks at the
/// 1000th round trip, and the child reconnects and goes on.
#[test]
fn server_and_client_round_trip_and_survive_the_fork() {
    let rdv = Rdv::new("caps_sys");
    let (_server, srv_out) = rdv.spawn(&build("server"), &[]);
    assert_eq!(next(&srv_out, "cid = 1"), "cid = 1");
    let (_client, cli_out) = rdv.spawn(&build("client"), &[]);
    let seen = until(&cli_out, "the child's reconnect", |l| {
        l == "1 client resume on reconnect after lost connection"
    });
    assert!(
        seen.iter()
            .any(|l| l.starts_with("forked pid ") && l.ends_with(" client #1")),
        "{seen:?}"
    );
    assert!(
        seen.contains(&"1 client forked or lost connection, reconnecting".to_string()),
        "{seen:?}"
    );
    // Both processes keep going: each reports its 65536th round trip.
    let (mut parent, mut child) = (false, false);
    while !(parent && child) {
        match next(&cli_out, "65536 round trips of both processes").as_str() {
            "0 65536" => parent = true,
            "1 65536" => child = true,
            _ => {}
        }
    }
}
