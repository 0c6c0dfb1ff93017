//! Virtual cpus: C programs whose threads print from several kernel
//! threads at once, so their output is checked with rules (what must come
//! before what, what must appear) rather than as an exact transcript.
//! Compiled against the staged install like `tests/c_tests.rs`.

mod common;

use common::compile_c;
use std::process::{Command, Output};

fn run(name: &str, args: &[&str]) -> (Output, String) {
    let exe = compile_c(name, name, false);
    let out = Command::new(&exe)
        .args(args)
        .output()
        .expect("spawn test program");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (out, stdout)
}

fn ok(name: &str, out: &Output, stdout: &str) {
    assert!(
        out.status.success(),
        "{name}: {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Index of the only line equal to `want` among `lines[from..to]`.
fn find(lines: &[&str], from: usize, to: usize, want: &str) -> usize {
    let hits: Vec<usize> = (from..to).filter(|&i| lines[i] == want).collect();
    assert_eq!(
        hits.len(),
        1,
        "{want:?} must appear once in lines {from}..{to}:\n{}",
        lines.join("\n")
    );
    hits[0]
}

/// `kthread 0x... NAME has exited`, once in `lines[from..to]`.
fn find_exit(lines: &[&str], from: usize, to: usize, name: &str) -> usize {
    let suffix = format!(" {name} has exited");
    let hits: Vec<usize> = (from..to)
        .filter(|&i| lines[i].starts_with("kthread 0x") && lines[i].ends_with(&suffix))
        .collect();
    assert_eq!(
        hits.len(),
        1,
        "exit of {name} in {from}..{to}:\n{}",
        lines.join("\n")
    );
    hits[0]
}

#[test]
fn thr3_ordering_rules() {
    let (out, stdout) = run("thr3", &[]);
    ok("thr3", &out, &stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1 + 2 * 6 + 3, "line count:\n{stdout}");
    assert_eq!(lines[0], "caps_fork_vcpu 1");
    let resumed1 = find(
        &lines,
        0,
        lines.len(),
        "Main thread resumed after all children exiting.",
    );
    let again = find(
        &lines,
        0,
        lines.len(),
        "Running test a second time to see if UPC_CONTROL_WAIT works",
    );
    let resumed2 = find(
        &lines,
        0,
        lines.len(),
        "Main thread resumed after second test, exiting",
    );
    assert_eq!(again, resumed1 + 1);
    assert_eq!(resumed2, lines.len() - 1);
    for (from, to) in [(1, resumed1), (again + 1, resumed2)] {
        assert_eq!(to - from, 6, "six thread lines per round:\n{stdout}");
        // thread1 runs on cpu 0, was born holding the MP lock (mp 1) at
        // TDPRI_KERN_DAEMON; thread2 on cpu 1, on its own kernel thread,
        // keeps the MP lock it was born with.
        let s1 = find(&lines, from, to, "start1 pri 12 mp 1 cpu 0");
        let d1 = find(&lines, from, to, "done1 cpu 0 own-kthread 0");
        let e1 = find_exit(&lines, from, to, "thread1");
        let s2 = find(&lines, from, to, "start2 pri 12 mp 1 cpu 1");
        let d2 = find(&lines, from, to, "done2 cpu 1 own-kthread 1 mplock-ours 1");
        let e2 = find_exit(&lines, from, to, "thread2");
        assert!(s1 < d1 && d1 < e1, "thread1 order:\n{stdout}");
        assert!(s2 < d2 && d2 < e2, "thread2 order:\n{stdout}");
    }
}

#[test]
fn pingpong_between_two_cpus_checks_every_value() {
    let (out, stdout) = run("vcpu_pingpong", &[]);
    ok("vcpu_pingpong", &out, &stdout);
    assert_eq!(
        stdout,
        "read by other cpus in one line: server yes client yes\n\
         domsg 500000 round trips checked\n\
         sendmsg+waitport 500000 round trips checked\n\
         2000 batches of 8 in flight checked\n\
         client cpu 0 server cpu 1\n\
         served 1016000 bad 0/0\n"
    );
}

/// The per-pair IPI rings: IPIs run once and in order across a full
/// ring, and a ping-pong whose sides pause at random loses no wakeup.
#[test]
fn ipis_keep_their_order_across_a_full_ring_and_no_wakeup_is_lost() {
    let (out, stdout) = run("vcpu_ipi_order", &[]);
    ok("vcpu_ipi_order", &out, &stdout);
    assert_eq!(
        stdout,
        "ipi: 200000 run, 0 out of order\n\
         domsg: 20000 round trips with pauses, 0 bad, 20001 served\n"
    );
}

#[test]
fn tokens_mplock_and_wait_queues_under_contention() {
    let (out, stdout) = run("vcpu_tokens", &[]);
    ok("vcpu_tokens", &out, &stdout);
    assert_eq!(
        stdout,
        "trytoken from cpu 1 while cpu 0 owns it: 0\n\
         gettoken from cpu 1: owner now cpu 1\n\
         gentoken on cpu 0: -1 (lost), owner cpu 0\n\
         token: counter 40000 of 40000, overlaps 0\n\
         mplock: counter 40000 of 40000, overlaps 0\n\
         main holds the MP lock again: 1 (mpcount 1)\n\
         wait queues: 20000 values acknowledged, last 20000\n"
    );
}

/// Idle cpus sleep: over 2 s with three cpus idle (and a fourth blocked
/// in nanosleep) the process uses far less than one cpu-second. A cpu
/// that polled would use about 2,000 ms per idle cpu.
#[test]
fn idle_cpus_use_no_cpu_time() {
    let (out, stdout) = run("vcpu_idle", &["2"]);
    ok("vcpu_idle", &out, &stdout);
    let last = stdout.lines().last().unwrap_or("");
    let ms: f64 = last
        .strip_prefix("ncpus 4, idle for 2.0 s: process cpu time ")
        .and_then(|r| r.strip_suffix(" ms"))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("unexpected output:\n{stdout}"));
    assert!(
        ms < 200.0,
        "idle cpus used {ms} ms of cpu time in 2 s:\n{stdout}"
    );
}

#[test]
fn exit_while_vcpus_run_and_maxvcpu() {
    let (out, stdout) = run("vcpu_exit", &[]);
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{:?}", out);
    assert_eq!(
        stdout,
        "forked 31 vcpus (last id 31), then -1; ncpus 32\n\
         ids and self pointers ok 1, one kernel thread each 1\n\
         exiting while cpus run\n"
    );
}
