//! `caps_s` and `caps_c` (spec 8.5) as separate processes.

use super::*;

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
