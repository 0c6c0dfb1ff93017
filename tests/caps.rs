//! CAPS IPC between processes: the C programs `caps1` and `caps_echo`
//! (compiled against the installed library) as servers and clients, plus
//! raw sockets that break the protocol. Every test has its own rendezvous
//! directory (`LIBCAPS_DIR`) and a deadline: a hang fails the test.

#[macro_use]
mod common;

use common::{compile_c, cpu_ticks};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

c_program!(caps1, "caps1-ipc", "caps1");
c_program!(echo, "caps_echo-ipc", "caps_echo");
c_program!(deadsend, "caps1_deadsend-ipc", "caps1_deadsend");
c_program!(close_in_reply, "caps_close_in_reply", "caps_close_in_reply");
c_program!(ping_turn, "caps_ping_turn", "caps_ping_turn");

use common::ipc::{DEADLINE, Rdv, Server, run, stdout_lines, wait_deadline, wait_requests};
use common::text;

fn expect_ok(out: &Output, stdout: &str) {
    assert!(
        out.status.success() && text(&out.stdout) == stdout,
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

// ---- caps1 -------------------------------------------------------------

#[test]
fn caps1_server_and_client() {
    let rdv = Rdv::new("caps1");
    let srv = rdv.serve(caps1(), "test", &["-s", "-n5"]);
    let out = run({
        let mut c = rdv.cmd(caps1());
        c.args(["-c", "-n5"]);
        c
    });
    let so = text(&out.stdout);
    let lines: Vec<&str> = so.lines().collect();
    assert!(out.status.success(), "client: {so}\n{}", text(&out.stderr));
    assert!(
        lines[0].starts_with("caps_client port 0x") && lines[0].contains(" msg 0x"),
        "{so}"
    );
    for i in 0..5 {
        assert_eq!(
            lines[1 + i],
            format!("reply: error=23/23 res={i}/{i}"),
            "{so}"
        );
    }
    assert!(lines[6].starts_with("rate: 5 round trips in "), "{so}");
    assert_eq!(lines[7..], ["exit"], "{so}");

    let out = srv.finish();
    let so = text(&out.stdout);
    let lines: Vec<&str> = so.lines().collect();
    assert!(out.status.success(), "server: {so}");
    assert!(lines[0].starts_with("caps_service port 0x"), "{so}");
    assert_eq!(lines.len(), 1 + 5 * 2 + 1, "{so}");
    for pair in lines[1..11].chunks(2) {
        assert!(
            pair[0].starts_with("received msg 0x") && pair[0].ends_with(" 00000000"),
            "{so}"
        );
        assert!(pair[1].starts_with("replyport: 0x"), "{so}");
    }
    assert_eq!(lines[11], "exit");
}

#[test]
fn caps1_client_without_server_fails_cleanly() {
    let rdv = Rdv::new("noserver");
    let out = run({
        let mut c = rdv.cmd(caps1());
        c.args(["-c", "-n1"]);
        c
    });
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).ends_with("failed to connect\n"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn server_killed_mid_stream_caps1_client_reports_failure() {
    let rdv = Rdv::new("caps1kill");
    let mut srv = rdv.serve(caps1(), "test", &["-s", "-q2"]);
    // -q1: the client prints (and flushes) the first reply, so the kill
    // comes mid-stream for certain, not after a guess of how long a loaded
    // machine needs to start the client and connect.
    let mut client = rdv.cmd(caps1()).args(["-c", "-q1"]).spawn().unwrap();
    let lines = stdout_lines(&mut client);
    let first = lines.recv_timeout(DEADLINE).unwrap_or_default();
    srv.kill(libc::SIGKILL);
    let out = wait_deadline(client);
    let so = first.clone() + &lines.iter().collect::<String>();
    assert_eq!(first, "reply: error=23/23 res=0/0\n", "{so}");
    assert!(out.status.success(), "{so}\n{}", text(&out.stderr));
    assert!(
        so.contains("client failed\n") && so.ends_with("exit\n"),
        "{so}"
    );
}

/// The service closed after one reply and the client's library has seen
/// it: a message sent again (marked done by `lwkt_initmsg`, still holding
/// the first reply) fails at once, and waiting for it gives NULL, not the
/// message as if answered (caps1's "bad reply" when its server died right
/// after a reply).
#[test]
fn request_on_a_connection_known_dead_fails() {
    let rdv = Rdv::new("deadsend");
    let srv = rdv.serve(caps1(), "test", &["-s", "-n1", "-q2"]);
    let out = run(rdv.cmd(deadsend()));
    expect_ok(
        &out,
        "first: replied error=23\nshut down\nsecond: beginmsg 5, waitreply NULL\n",
    );
    let out = srv.finish();
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// A client closes its port from inside its reply port's vector, on a
/// reply and when the service went away (`EIO`): the library, which
/// called the vector, uses the port no more (tests/valgrind.sh runs
/// this under memcheck, which saw the freed port read before).
#[test]
fn a_client_closes_its_port_in_its_reply_vector() {
    for (mode, want) in [("reply", "closed 0\n"), ("dead", "closed 5\n")] {
        let rdv = Rdv::new(&format!("closeinreply-{mode}"));
        let mut c = rdv.cmd(close_in_reply());
        c.arg(mode);
        expect_ok(&run(c), want);
    }
}

/// Another thread of the cpu closes a client port while its owner waits
/// in `caps_client_waitreply` (for its request, or for any reply): the
/// wait ends with NULL and `ENOTCONN`, the request with `EIO`, and one
/// line names the call and the port (tests/valgrind.sh runs this under
/// memcheck, which saw the freed port read before; "waitany" crashed).
#[test]
fn a_client_port_closed_while_its_owner_waits_on_it() {
    for mode in ["wait", "waitany"] {
        let rdv = Rdv::new(&format!("closewaiter-{mode}"));
        let mut c = rdv.cmd(close_in_reply());
        c.arg(mode);
        let out = run(c);
        expect_ok(
            &out,
            "closer: closed\nwaitreply NULL errno ENOTCONN ms_error 5\n",
        );
        let err = text(&out.stderr);
        assert_eq!(
            err.matches("caps_client_waitreply: CAPS client port 0x")
                .count(),
            1,
            "{mode}: {err}"
        );
        assert!(err.contains("closed while its owner waited on it"), "{err}");
    }
}

/// The same for a service port: another thread of the cpu closes it
/// while its owner waits in `lwkt_waitport` (memcheck saw the freed port
/// read before, tests/valgrind.sh).
#[test]
fn a_service_port_closed_while_its_owner_waits_on_it() {
    let rdv = Rdv::new("closewaiter-service");
    let mut c = rdv.cmd(close_in_reply());
    c.arg("service");
    let out = run(c);
    expect_ok(&out, "closer: closed\nwaitport NULL errno ENOTCONN\n");
    let err = text(&out.stderr);
    assert_eq!(
        err.matches("lwkt_waitport: CAPS service port 0x").count(),
        1,
        "{err}"
    );
}

/// A lone client's pings, a thousand in one write: the service answers
/// a few turns' worth, then the other threads of its cpu run (here
/// `main`, which sent them from the same cpu and yields), however many
/// wait; before, one look at the socket answered them all (a client
/// pinging as fast as it read the answers kept the cpu).
#[test]
fn a_lone_clients_pings_are_answered_a_turn_at_a_time() {
    let rdv = Rdv::new("pingturn");
    let mut c = rdv.cmd(ping_turn());
    c.arg(rdv.socket("pingturn"));
    let out = run(c);
    let t = text(&out.stdout);
    assert!(
        out.status.success()
            && t.starts_with(
                "every ping answered: yes\nat most 5632 bytes of answers per yield: yes ("
            ),
        "status {:?}\nstdout:\n{t}\nstderr:\n{}",
        out.status,
        text(&out.stderr)
    );
}

// ---- threads meet IPC ----------------------------------------------------

#[test]
fn eight_lwkt_threads_block_in_domsg_on_one_connection() {
    static P: OnceLock<PathBuf> = OnceLock::new();
    let prog = P.get_or_init(|| compile_c("caps_threads-ipc", "caps_threads", false));
    let rdv = Rdv::new("threads");
    // The server answers in bursts of up to 8, newest first, so replies
    // arrive out of order across the threads.
    let srv = rdv.serve(echo(), "thr", &["-s", "thr", "-h", "8"]);
    let mut c = rdv.cmd(prog);
    c.args(["thr", "2000"]);
    let mut want = String::new();
    for i in 0..8 {
        let how = ["domsg", "beginmsg+waitmsg", "sendmsg+waitport"][i % 3];
        want += &format!("worker {i} ({how}): 2000 ok, 0 bad\n");
    }
    want += "ticker kept running while the workers waited, workers left 0\n";
    let out = run(c);
    // The library's own "kthread ADDR NAME has exited" lines (TDF_VERBOSE)
    // come first, one per thread, in exit order.
    let so = text(&out.stdout);
    let (exits, rest): (Vec<&str>, Vec<&str>) =
        so.lines().partition(|l| l.starts_with("kthread 0x"));
    assert_eq!(exits.len(), 9, "{so}");
    assert!(exits.iter().all(|l| l.ends_with(" has exited")), "{so}");
    assert!(out.status.success(), "{so}\n{}", text(&out.stderr));
    assert_eq!(rest.join("\n") + "\n", want);
    drop(srv);
}

/// One client port, four LWKT threads on two cpus (two of them without
/// the MP lock, so truly in parallel), 1000 `lwkt_domsg` calls each. The
/// connection must survive: no drop in the server's log, no `EIO`, no
/// wrong reply. A call from the other cpu either works (handed over to
/// the port's cpu) or fails at once with `EXDEV` and a log line; calls
/// from the port's own cpu always work.
#[test]
fn one_client_port_used_from_two_cpus_at_once() {
    let prog = xcpu();
    let rdv = Rdv::new("xcpu");
    let mut srv = rdv.serve(echo(), "xcpu", &["-s", "xcpu"]);
    let rounds = 1000;
    for run_no in 0..3 {
        let mut c = rdv.cmd(prog);
        c.args(["xcpu", &rounds.to_string()]);
        let out = run(c);
        let (so, se) = (text(&out.stdout), text(&out.stderr));
        let ctx = format!("run {run_no}\nstdout:\n{so}\nstderr:\n{se}");
        assert!(out.status.success(), "{ctx}");
        let lines: Vec<&str> = so
            .lines()
            .filter(|l| !l.starts_with("kthread 0x"))
            .collect();
        assert_eq!(lines.len(), 5, "{ctx}");
        assert_eq!(lines[4], "done", "{ctx}");
        for (w, line) in lines[..4].iter().enumerate() {
            let cpu = if w < 2 { 0 } else { 1 };
            let all_ok = format!("worker {w} cpu {cpu}: {rounds} ok, 0 EXDEV, 0 bad");
            let refused = format!("worker {w} cpu {cpu}: 0 ok, {rounds} EXDEV, 0 bad");
            if cpu == 0 {
                assert_eq!(*line, all_ok, "{ctx}");
            } else {
                assert!(*line == all_ok || *line == refused, "{ctx}");
                if *line == refused {
                    assert!(
                        se.contains("lwkt_beginmsg") && se.contains("EXDEV"),
                        "{ctx}"
                    );
                }
            }
        }
    }
    srv.kill(libc::SIGTERM);
    let so = srv.finish();
    let se = text(&so.stderr);
    assert!(!se.contains("dropping client"), "server stderr:\n{se}");
}

c_program!(xcpu, "caps_xcpu-ipc", "caps_xcpu");

/// A server that receives on cpu 0 and replies from a thread of cpu 1
/// (the reply is handed to the connection's cpu): the client gets every
/// reply, right, and the connection is never dropped.
#[test]
fn service_replies_made_on_another_cpu() {
    let rdv = Rdv::new("xcpu-srv");
    for run_no in 0..6 {
        let srv = rdv.serve(xcpu(), "xsrv", &["-s", "xsrv", "3000"]);
        let mut c = rdv.cmd(echo());
        c.args(["-c", "xsrv", "-r", "3000", "-p", "8"]);
        let out = run(c);
        let so = srv.finish();
        let (cl, sv) = (text(&out.stderr), text(&so.stderr));
        let ctx = format!("run {run_no}\nclient stderr:\n{cl}\nserver stderr:\n{sv}");
        expect_ok(&out, "ok 3000\n");
        assert!(so.status.success(), "{ctx}");
        assert_eq!(text(&so.stdout), "served 3000 from cpu 1\n", "{ctx}");
        assert!(cl.is_empty() && sv.is_empty(), "{ctx}");
    }
}

/// What cannot be handed to a CAPS port's cpu is refused when called
/// from another cpu: `EXDEV` and one log line each, and the ports keep
/// working on their own cpu.
#[test]
fn waits_and_close_from_another_cpu_are_refused_with_exdev() {
    let rdv = Rdv::new("xcpu-misuse");
    let srv = rdv.serve(echo(), "xm", &["-s", "xm"]);
    let out = run({
        let mut c = rdv.cmd(xcpu());
        c.args(["-m", "xm"]);
        c
    });
    let (so, se) = (text(&out.stdout), text(&out.stderr));
    let ctx = format!("stdout:\n{so}\nstderr:\n{se}");
    assert!(out.status.success(), "{ctx}");
    let lines: Vec<&str> = so
        .lines()
        .filter(|l| !l.starts_with("kthread 0x"))
        .collect();
    let exdev = "Invalid cross-device link";
    assert_eq!(
        lines,
        [
            format!("waitreply from cpu 1: NULL, {exdev}").as_str(),
            &format!("close from cpu 1: {exdev}"),
            &format!("domsg replying to the client port from cpu 1: {exdev}"),
            &format!("waitport on the service from cpu 1: NULL, {exdev}"),
            "domsg on cpu 0 after: error 1 result 7",
            "done",
        ],
        "{ctx}"
    );
    let log: Vec<&str> = se.lines().collect();
    assert_eq!(log.len(), 4, "{ctx}");
    for (line, func) in log.iter().zip([
        "caps_client_waitreply",
        "caps_close",
        "lwkt_beginmsg",
        "lwkt_waitport",
    ]) {
        assert!(
            line.starts_with(&format!("libcaps: {func}: CAPS port 0x"))
                && line.contains("belongs to cpu 0, called from cpu 1: refused (EXDEV)"),
            "{ctx}"
        );
    }
    drop(srv);
}

// ---- load and message sizes --------------------------------------------

#[test]
fn fifty_clients_ten_thousand_round_trips_each() {
    let rdv = Rdv::new("fifty");
    let srv = rdv.serve(echo(), "fifty", &["-s", "fifty", "-h", "8"]);
    let clients: Vec<Child> = (0..50)
        .map(|_| {
            rdv.cmd(echo())
                .args(["-c", "fifty", "-r", "10000", "-z", "24", "-p", "4"])
                .spawn()
                .unwrap()
        })
        .collect();
    for c in clients {
        expect_ok(&wait_deadline(c), "ok 10000\n");
    }
    drop(srv);
}

#[test]
fn largest_messages_both_directions() {
    let rdv = Rdv::new("big");
    let srv = rdv.serve(echo(), "big", &["-s", "big", "-h", "2"]);
    // 66,560-byte requests (the whole CAPMSG_MAXSIZE) and replies
    let full = (66560 - 80).to_string();
    expect_ok(
        &run({
            let mut c = rdv.cmd(echo());
            c.args(["-c", "big", "-r", "300", "-z", &full, "-p", "3"]);
            c
        }),
        "ok 300\n",
    );
    // small requests whose replies grow to the whole buffer
    expect_ok(
        &run({
            let mut c = rdv.cmd(echo());
            c.args(["-c", "big", "-r", "300", "-z", "10", "-p", "2", "-x"]);
            c
        }),
        "ok 300\n",
    );
    drop(srv);
}

#[test]
fn oversized_message_is_refused_at_send() {
    let rdv = Rdv::new("oversize");
    let srv = rdv.serve(echo(), "oversize", &["-s", "oversize"]);
    let out = run({
        let mut c = rdv.cmd(echo());
        c.args(["-c", "oversize", "-z", "66481"]);
        c
    });
    // The client program treats the refusal as a reply with EINVAL.
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("seq 0: error 22"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stderr).contains("lwkt_beginmsg: CAPS message"),
        "{}",
        text(&out.stderr)
    );
    drop(srv);
}

// ---- faults --------------------------------------------------------------

#[test]
fn server_kill9_with_requests_in_flight() {
    let rdv = Rdv::new("kill9");
    let mut srv = rdv.serve(echo(), "kill9", &["-s", "kill9", "-h", "16"]);
    // -P: the client keeps the default SIGPIPE action; the library's
    // writes to the dead server must not raise it.
    let client = rdv
        .cmd(echo())
        .args([
            "-c",
            "kill9",
            "-r",
            "1000000000",
            "-p",
            "16",
            "-z",
            "100",
            "-P",
        ])
        .spawn()
        .unwrap();
    // Kill only once requests flow (a fixed sleep could come before the
    // client, slow to start on a loaded machine, has even connected).
    wait_requests(&rdv, "kill9");
    srv.kill(libc::SIGKILL);
    let out = wait_deadline(client);
    let so = text(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{so}\n{}", text(&out.stderr));
    assert!(so.starts_with("server gone after "), "{so}");
    assert!(
        so.ends_with(" replies: all 16 requests done, some with EIO, the others replied\n"),
        "{so}"
    );
}

#[test]
fn client_killed_server_keeps_serving() {
    let rdv = Rdv::new("clientkill");
    let srv = rdv.serve(echo(), "ck", &["-s", "ck", "-h", "4"]);
    for _ in 0..3 {
        let mut c = rdv
            .cmd(echo())
            .args(["-c", "ck", "-r", "1000000000", "-p", "8"])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        c.kill().unwrap();
        c.wait().unwrap();
    }
    expect_ok(
        &run({
            let mut c = rdv.cmd(echo());
            c.args(["-c", "ck", "-r", "2000", "-p", "4"]);
            c
        }),
        "ok 2000\n",
    );
    drop(srv);
}

#[test]
fn client_close_completes_outstanding_with_eio() {
    let rdv = Rdv::new("cclose");
    // The server holds up to 64 requests: none of the 8 gets an answer
    // before the client closes.
    let srv = rdv.serve(echo(), "cc", &["-s", "cc", "-h", "64"]);
    expect_ok(
        &run({
            let mut c = rdv.cmd(echo());
            c.args(["-c", "cc", "-p", "8", "-r", "8", "-C"]);
            c
        }),
        "closed with 8 outstanding: 8 done, 8 with EIO\n",
    );
    drop(srv);
}

#[test]
fn service_close_completes_clients_requests_with_eio() {
    let rdv = Rdv::new("sclose");
    let srv = rdv.serve(echo(), "sc", &["-s", "sc", "-h", "64", "-k", "6"]);
    let out = run({
        let mut c = rdv.cmd(echo());
        c.args(["-c", "sc", "-p", "6", "-r", "100"]);
        c
    });
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stdout));
    assert_eq!(
        text(&out.stdout),
        "server gone after 0 replies: all 6 requests done, some with EIO, the others replied\n"
    );
    assert_eq!(text(&out.stderr), "6 with EIO, 0 replied\n");
    let s = srv.finish();
    assert_eq!(
        text(&s.stdout),
        "serving sc\nclosing the service with 6 requests unanswered\n"
    );
    assert!(!rdv.socket("sc").exists(), "service socket left behind");
}

/// Bytes of a client hello.
fn hello() -> Vec<u8> {
    let mut h = b"CAPS".to_vec();
    h.extend_from_slice(&1u16.to_le_bytes());
    h.extend_from_slice(&1u16.to_le_bytes());
    h.extend_from_slice(&66560u32.to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes());
    h
}

/// A request header (see docs/wire-protocol.md).
fn request(kind: u16, body_len: u32, id: u64, capacity: u32) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&kind.to_le_bytes());
    h.extend_from_slice(&0u16.to_le_bytes());
    h.extend_from_slice(&body_len.to_le_bytes());
    h.extend_from_slice(&id.to_le_bytes());
    h.extend_from_slice(&capacity.to_le_bytes());
    h.extend_from_slice(&[0u8; 28]);
    h
}

/// Send `bytes` on a fresh connection and read until the server closes
/// it; returns what the server sent.
fn raw_exchange(sock: &Path, bytes: &[u8]) -> Vec<u8> {
    let mut s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let _ = s.write_all(bytes);
    let mut got = Vec::new();
    s.read_to_end(&mut got)
        .expect("server must close the connection");
    got
}

#[test]
fn malformed_frames_drop_only_that_connection() {
    let rdv = Rdv::new("malformed");
    let srv = rdv.serve(echo(), "mf", &["-s", "mf"]);
    let sock = rdv.socket("mf");
    let good = || {
        let mut c = rdv.cmd(echo());
        c.args(["-c", "mf", "-r", "200", "-z", "16"]);
        expect_ok(&run(c), "ok 200\n");
    };

    // a wrong hello: the server answers EPROTO (71) and closes
    let mut bad = hello();
    bad[0] = b'X';
    let got = raw_exchange(&sock, &bad);
    assert_eq!(got.len(), 16);
    assert_eq!(&got[0..4], b"CAPS");
    assert_eq!(
        u32::from_le_bytes(got[12..16].try_into().unwrap()),
        libc::EPROTO as u32
    );
    good();

    // an unknown frame kind after a good hello
    let mut b = hello();
    b.extend(request(7, 0, 1, 0));
    assert_eq!(raw_exchange(&sock, &b).len(), 16);
    good();

    // an oversized frame
    let mut b = hello();
    b.extend(request(1, 70_000, 1, 70_000));
    assert_eq!(raw_exchange(&sock, &b).len(), 16);
    good();

    // a request that claims less capacity than it carries
    let mut b = hello();
    b.extend(request(1, 100, 1, 50));
    b.extend([0u8; 100]);
    assert_eq!(raw_exchange(&sock, &b).len(), 16);

    // a truncated frame, then the peer goes away
    let mut b = hello();
    b.extend(&request(1, 1000, 1, 1000)[..30]);
    drop({
        let mut s = UnixStream::connect(&sock).unwrap();
        s.write_all(&b).unwrap();
        s
    });
    good();

    drop(srv);
    // SIGKILL by Drop: collect the log lines the server wrote
}

#[test]
fn malformed_frames_are_logged_one_line_each() {
    let rdv = Rdv::new("mflog");
    let srv = rdv.serve(echo(), "ml", &["-s", "ml", "-n", "10"]);
    let sock = rdv.socket("ml");
    let mut b = hello();
    b.extend(request(9, 0, 1, 0));
    raw_exchange(&sock, &b);
    let mut b = hello();
    b.extend(request(1, 80_000, 1, 80_000));
    raw_exchange(&sock, &b);
    let mut c = rdv.cmd(echo());
    c.args(["-c", "ml", "-r", "10"]);
    expect_ok(&run(c), "ok 10\n");
    let out = srv.finish();
    let err = text(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].starts_with("libcaps: caps_service: ml: dropping client pid "),
        "{err}"
    );
    assert!(
        lines[0].ends_with("protocol error: unknown frame kind 9"),
        "{err}"
    );
    assert!(
        lines[1].ends_with("protocol error: payload of 80000 bytes exceeds the limit"),
        "{err}"
    );
    assert_eq!(text(&out.stdout), "serving ml\nserved 10\n");
}

#[test]
fn a_client_that_never_reads_replies_does_not_block_the_server() {
    let rdv = Rdv::new("noread");
    let srv = rdv.serve(echo(), "nr", &["-s", "nr"]);
    let sock = rdv.socket("nr");
    // Flood requests with large payloads and never read a reply.
    let mut s = UnixStream::connect(&sock).unwrap();
    s.write_all(&hello()).unwrap();
    s.set_nonblocking(true).unwrap();
    let body = vec![0x5au8; 60_000];
    let mut frame = request(1, body.len() as u32, 0, body.len() as u32);
    frame.extend_from_slice(&body);
    let mut sent_frames = 0u64;
    let t0 = Instant::now();
    'flood: while t0.elapsed() < Duration::from_secs(3) {
        let mut f = frame.clone();
        f[8..16].copy_from_slice(&sent_frames.to_le_bytes());
        let mut off = 0;
        while off < f.len() {
            if t0.elapsed() > Duration::from_secs(3) {
                break 'flood;
            }
            match s.write(&f[off..]) {
                Ok(n) => off += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if off == 0 {
                        break 'flood;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => panic!("{e}"),
            }
        }
        sent_frames += 1;
    }
    assert!(
        sent_frames > 20,
        "the server stopped reading after {sent_frames} frames only"
    );
    // The server has stopped reading the flooder; others are served.
    let mut c = rdv.cmd(echo());
    c.args(["-c", "nr", "-r", "2000", "-z", "32", "-p", "2"]);
    expect_ok(&run(c), "ok 2000\n");
    drop(s);
    drop(srv);
}

// ---- rendezvous ---------------------------------------------------------

#[test]
fn exclusive_service_and_socket_mode() {
    let rdv = Rdv::new("excl");
    let srv = rdv.serve(echo(), "ex", &["-s", "ex", "-f", "8", "-m", "640"]);
    let mode = std::fs::metadata(rdv.socket("ex"))
        .unwrap()
        .permissions()
        .mode()
        & 0o7777;
    assert_eq!(mode, 0o640);
    let mut second = rdv.cmd(echo());
    second.args(["-s", "ex", "-f", "8"]);
    let out = run(second);
    assert_eq!(text(&out.stdout), "caps_service: File exists\n");
    drop(srv); // SIGKILL: the socket node stays behind, stale
    assert!(rdv.socket("ex").exists());
    let srv = rdv.serve(echo(), "ex", &["-s", "ex", "-f", "8", "-n", "1"]);
    let mut c = rdv.cmd(echo());
    c.args(["-c", "ex"]);
    expect_ok(&run(c), "ok 1\n");
    assert!(srv.finish().status.success());
}

// ---- access control (needs root to act as another user) -------------------

/// Run a client as `uid`/`gid` against root's service `name`.
fn client_as(rdv: &Rdv, name: &str, uid: u32, gid: u32) -> Output {
    let mut c = rdv.cmd(echo());
    c.args([
        "-c",
        name,
        "-o",
        "0",
        "-u",
        &uid.to_string(),
        "-G",
        &gid.to_string(),
    ]);
    run(c)
}

#[test]
fn access_control_user_group_world() {
    if !is_root() {
        eprintln!("access_control_user_group_world: skipped (needs root to switch uid)");
        return;
    }
    let rdv = Rdv::new("acl");
    let (nobody, other_gid) = (65534u32, 4242u32);
    let denied = "caps_client: Permission denied\n";

    // flags 0: only the socket mode decides (0666: everyone)
    let s = rdv.serve(echo(), "open", &["-s", "open", "-f", "0"]);
    expect_ok(&client_as(&rdv, "open", nobody, nobody), "ok 1\n");
    drop(s);

    // mode 0600 and flags 0: the file system refuses other users
    let s = rdv.serve(
        echo(),
        "private",
        &["-s", "private", "-f", "0", "-m", "600"],
    );
    assert_eq!(
        text(&client_as(&rdv, "private", nobody, nobody).stdout),
        denied
    );
    drop(s);

    // CAPS_USER: only the owner (root)
    let s = rdv.serve(echo(), "user", &["-s", "user", "-f", "1"]);
    assert_eq!(
        text(&client_as(&rdv, "user", nobody, nobody).stdout),
        denied
    );
    expect_ok(&client_as(&rdv, "user", 0, 0), "ok 1\n");
    drop(s);

    // CAPS_GROUP with gid 4242: members of 4242 only
    let s = rdv.serve(
        echo(),
        "group",
        &["-s", "group", "-f", "2", "-g", &other_gid.to_string()],
    );
    expect_ok(&client_as(&rdv, "group", nobody, other_gid), "ok 1\n");
    assert_eq!(
        text(&client_as(&rdv, "group", nobody, nobody).stdout),
        denied
    );
    assert_eq!(text(&client_as(&rdv, "group", 0, 0).stdout), denied);
    drop(s);

    // CAPS_WORLD: anybody
    let s = rdv.serve(echo(), "world", &["-s", "world", "-f", "4"]);
    expect_ok(&client_as(&rdv, "world", nobody, nobody), "ok 1\n");
    expect_ok(&client_as(&rdv, "world", 0, other_gid), "ok 1\n");
    drop(s);

    // CAPS_USER|CAPS_GROUP: the owner or the group
    let s = rdv.serve(
        echo(),
        "ug",
        &["-s", "ug", "-f", "3", "-g", &other_gid.to_string()],
    );
    expect_ok(&client_as(&rdv, "ug", 0, 0), "ok 1\n");
    expect_ok(&client_as(&rdv, "ug", nobody, other_gid), "ok 1\n");
    assert_eq!(text(&client_as(&rdv, "ug", nobody, nobody).stdout), denied);
    drop(s);
}

#[test]
fn user_services_live_in_their_own_directory() {
    if !is_root() {
        eprintln!("user_services_live_in_their_own_directory: skipped (needs root to switch uid)");
        return;
    }
    // a base directory anybody may create in, as /var/caps is set up
    let rdv = Rdv::with_mode("peruser", 0o777);
    let nobody = 65534u32;
    // a service started as nobody lands in users/65534/, created on demand
    let mut s = rdv.cmd(echo());
    s.args([
        "-s",
        "mine",
        "-u",
        &nobody.to_string(),
        "-G",
        &nobody.to_string(),
        "-n",
        "1",
    ]);
    let srv = Server(Some(s.spawn().unwrap()));
    let sock = rdv.0.join("users").join(nobody.to_string()).join("mine");
    let t0 = Instant::now();
    while !sock.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no socket at {}",
            sock.display()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let users = std::fs::metadata(rdv.0.join("users"))
        .unwrap()
        .permissions()
        .mode()
        & 0o7777;
    assert_eq!(users, 0o1777);
    // nobody's own client finds it with uid -1 (its own uid first)
    let mut c = rdv.cmd(echo());
    c.args([
        "-c",
        "mine",
        "-u",
        &nobody.to_string(),
        "-G",
        &nobody.to_string(),
    ]);
    expect_ok(&run(c), "ok 1\n");
    assert!(srv.finish().status.success());
}

/// A small deterministic generator (xorshift) for the fuzz test below.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn random_and_mutated_frames_never_take_the_service_down() {
    let rdv = Rdv::new("fuzz");
    let srv = rdv.serve(echo(), "fz", &["-s", "fz"]);
    let sock = rdv.socket("fz");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let valid = {
        let mut f = request(1, 16, 7, 16);
        f.extend([0xa5u8; 16]);
        f
    };
    for round in 0..300 {
        let mut bytes = if round % 3 == 0 { Vec::new() } else { hello() };
        match round % 4 {
            // pure noise
            0 => (0..rng.below(200)).for_each(|_| bytes.push(rng.next() as u8)),
            // a valid request with a few bytes flipped
            1 => {
                let mut f = valid.clone();
                for _ in 0..1 + rng.below(4) {
                    let i = rng.below(f.len() as u64) as usize;
                    f[i] ^= 1 << rng.below(8);
                }
                bytes.extend(f);
            }
            // valid requests cut at a random point
            2 => {
                let mut f = valid.repeat(3);
                f.truncate(rng.below(f.len() as u64) as usize);
                bytes.extend(f);
            }
            // a random header followed by noise
            _ => {
                bytes.extend((0..48).map(|_| rng.next() as u8));
                (0..rng.below(100)).for_each(|_| bytes.push(rng.next() as u8));
            }
        }
        let mut s = UnixStream::connect(&sock).expect("the service must keep accepting");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let _ = s.write_all(&bytes);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let mut sink = Vec::new();
        // The server answers what it can and closes: never hangs.
        s.read_to_end(&mut sink)
            .expect("the server must close a broken connection");
    }
    let mut c = rdv.cmd(echo());
    c.args(["-c", "fz", "-r", "500", "-z", "64", "-p", "4"]);
    expect_ok(&run(c), "ok 500\n");
    drop(srv);
}

/// A socket planted in another user's service directory is not taken for
/// that user's service: the client checks who listens before it sends a
/// byte (the v1 directories are world-writable at `users/`).
#[test]
fn planted_service_of_another_user_is_refused() {
    if !is_root() {
        eprintln!("planted_service_of_another_user_is_refused: skipped (needs root to switch uid)");
        return;
    }
    let rdv = Rdv::new("plant");
    let nobody = 65534u32;
    // The impostor: a service of nobody, then moved under uid 1234.
    std::fs::create_dir_all(rdv.0.join("users")).unwrap();
    std::fs::set_permissions(rdv.0.join("users"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    // The program drops to nobody itself (it may not be reachable by
    // nobody, nor its library).
    let child = rdv
        .cmd(echo())
        .args(["-s", "plant", "-u", "65534", "-G", "65534"])
        .spawn()
        .expect("spawn impostor");
    let srv = Server(Some(child));
    let own = rdv.0.join("users").join(nobody.to_string()).join("plant");
    common::wait_listening(&own);
    let victim = rdv.0.join("users").join("1234");
    std::fs::create_dir_all(&victim).unwrap();
    std::os::unix::fs::chown(&victim, Some(nobody), Some(nobody)).unwrap();
    std::fs::rename(&own, victim.join("plant")).unwrap();

    let mut cl = rdv.cmd(echo());
    cl.args(["-c", "plant", "-o", "1234", "-r", "1"]);
    let out = run(cl);
    assert_eq!(
        text(&out.stdout),
        "caps_client: No such file or directory\n"
    );
    let err = text(&out.stderr);
    assert!(
        err.contains("caps_client:") && err.contains("may not publish it"),
        "{err}"
    );
    // Nobody's own clients still reach it under its real owner.
    std::fs::rename(victim.join("plant"), &own).unwrap();
    let mut ok = rdv.cmd(echo());
    ok.args(["-c", "plant", "-o", &nobody.to_string(), "-r", "3"]);
    expect_ok(&run(ok), "ok 3\n");
    drop(srv);
}

/// A service out of file descriptors (a flood of connections that never
/// say hello) turns new connections away instead of spinning on its
/// listener: no busy loop, one log line, and it serves again once the
/// flood is gone.
#[test]
fn out_of_descriptors_service_neither_spins_nor_floods_the_log() {
    use std::os::unix::process::CommandExt;
    let rdv = Rdv::new("nofile");
    let mut c = rdv.cmd(echo());
    c.args(["-s", "nofile"]);
    // SAFETY: setrlimit is async-signal-safe; nothing else runs in the
    // child before exec.
    unsafe {
        c.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 24,
                rlim_max: 24,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = c.spawn().expect("spawn server");
    let sock = rdv.socket("nofile");
    let t0 = Instant::now();
    while UnixStream::connect(&sock).is_err() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "server did not come up"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let srv = Server(Some(child));
    let pid = srv.pid();
    let flood: Vec<UnixStream> = (0..40)
        .map(|_| UnixStream::connect(&sock).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let before = cpu_ticks(pid);
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_ticks(pid) - before;
    assert!(
        used < 20,
        "server used {used} ticks in 1 s while out of descriptors"
    );
    drop(flood);
    std::thread::sleep(Duration::from_millis(300));
    let mut ok = rdv.cmd(echo());
    ok.args(["-c", "nofile", "-o", "0", "-r", "3"]);
    expect_ok(&run(ok), "ok 3\n");
    let mut srv = srv;
    srv.kill(libc::SIGTERM);
    let out = srv.finish();
    let err = text(&out.stderr);
    let lines = err
        .lines()
        .filter(|l| l.contains("Too many open files"))
        .count();
    assert!((1..=3).contains(&lines), "{lines} log lines:\n{err}");
}
