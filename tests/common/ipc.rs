//! The CAPS integration tests' harness (`tests/caps.rs`): a private
//! rendezvous directory, services started and waited for, programs run
//! against a deadline.

use super::rendezvous::Rendezvous;
use super::text;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

/// The deadline of any one program run.
pub const DEADLINE: Duration = Duration::from_secs(120);

/// A private rendezvous directory (0755 so other uids can reach root's
/// services through it), removed at the end.
pub struct Rdv(pub Rendezvous);

impl Rdv {
    pub fn new(tag: &str) -> Rdv {
        Rdv::with_mode(tag, 0o755)
    }

    pub fn with_mode(tag: &str, mode: u32) -> Rdv {
        Rdv(Rendezvous::new("libcaps-test", tag, mode))
    }

    pub fn cmd(&self, prog: &Path) -> Command {
        self.0.command(prog)
    }

    /// The socket of service `name` of the current user.
    pub fn socket(&self, name: &str) -> PathBuf {
        // SAFETY: geteuid has no preconditions.
        let uid = unsafe { libc::geteuid() };
        if uid == 0 {
            self.0.join("root").join(name)
        } else {
            self.0.join("users").join(uid.to_string()).join(name)
        }
    }

    /// Start a server and wait until it accepts connections.
    pub fn serve(&self, prog: &Path, name: &str, args: &[&str]) -> Server {
        let child = self.cmd(prog).args(args).spawn().expect("spawn server");
        // Connectable, not just present: a dead service's stale socket
        // may still be there until the new one replaces it.
        super::wait_listening(&self.socket(name));
        Server(Some(child))
    }
}

/// Wait until our service `name` has received a request (its library's
/// counters, read with `capsctl stat`): some client is mid-stream.
pub fn wait_requests(rdv: &Rdv, name: &str) {
    let capsctl = Path::new(env!("CARGO_BIN_EXE_capsctl"));
    let t0 = Instant::now();
    loop {
        let out = run({
            let mut c = rdv.cmd(capsctl);
            c.args(["stat", name, "--json"]);
            c
        });
        let so = text(&out.stdout);
        let requests = so
            .split("\"requests\": ")
            .nth(1)
            .and_then(|r| r.split(',').next())
            .and_then(|n| n.parse::<u64>().ok());
        if requests.is_some_and(|n| n > 0) {
            return;
        }
        assert!(
            t0.elapsed() < DEADLINE,
            "no request reached {name}: {so}{}",
            text(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A running server process; killed if the test ends early.
pub struct Server(pub Option<Child>);

impl Server {
    pub fn pid(&self) -> i32 {
        self.0.as_ref().unwrap().id() as i32
    }

    pub fn kill(&mut self, sig: i32) {
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.pid(), sig) };
    }

    pub fn finish(mut self) -> Output {
        wait_deadline(self.0.take().unwrap())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Wait for a child, killing it (and failing) past the deadline.
pub fn wait_deadline(child: Child) -> Output {
    super::wait_deadline(child, DEADLINE, "program")
}

pub fn run(mut c: Command) -> Output {
    wait_deadline(c.spawn().expect("spawn"))
}

/// The lines of a child's standard output (taken from it), each sent as
/// soon as it is read; the channel ends when the output does.
pub fn stdout_lines(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    super::lines_of(child.stdout.take().unwrap())
}
