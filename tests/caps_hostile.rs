//! CAPS against hostile local users and careless forks (issue 12): real
//! accounts made with `useradd` for the test (removed at the end, also on
//! failure), attackers that plant links, directories and nodes, hold
//! connections that never speak, and programs that fork with ports open.
//! Tests that need other users skip with a message when not run as root
//! or without `useradd`.

#[macro_use]
mod common;

use common::{Proc, PublicDir, TestUsers, rss_kib, run};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

c_program!(echo, "caps_echo-hostile", "caps_echo");

c_program!(hostile, "caps_hostile", "caps_hostile");

use common::text;

/// A rendezvous base laid out as `make install` does.
type Base = common::CapsBase;

use common::wait_listening;

/// `-u UID -G GID`: the test programs drop to that user and group.
fn ids_args(uid: u32, gid: u32) -> [String; 4] {
    ["-u".into(), uid.to_string(), "-G".into(), gid.to_string()]
}

/// Run a system program (`ln`, `mkdir`, `mkfifo`, ...) as user `i`.
fn as_user(users: &TestUsers, i: usize, prog: &str, args: &[&str]) {
    let mut c = users.command(i, Path::new(prog));
    c.args(args);
    let out = run(c);
    assert!(
        out.status.success(),
        "{prog} {args:?} as {}: {}",
        users.users[i].0,
        text(&out.stderr)
    );
}

// ---- 1: the rendezvous directories are never followed -------------------

/// Start v1 service `name` as `(uid, gid)`, which must fail with `EPERM`;
/// returns its log.
fn refused_v1_service(base: &Base, (uid, gid): (u32, u32), name: &str) -> String {
    let mut c = base.cmd(echo());
    c.args(ids_args(uid, gid));
    c.args(["-s", name, "-n", "1"]);
    let out = run(c);
    assert_eq!(
        text(&out.stdout),
        "caps_service: Operation not permitted\n",
        "stderr: {}",
        text(&out.stderr)
    );
    text(&out.stderr)
}

/// User B links `users/<A>` to a directory of A's before A's first
/// service: A's service must fail (not follow the link and rename its
/// socket over A's file of the same name), and say who owns the link.
#[test]
fn planted_symlink_for_users_dir_is_not_followed() {
    let Some(users) = TestUsers::create("planted_symlink_for_users_dir_is_not_followed", 2) else {
        return;
    };
    let (a, a_gid) = users.ids(0);
    let (b, _) = users.ids(1);
    let base = Base::new("symlink");
    // A's own directory with a precious file "notes".
    let home = base.pub_dir.subdir("home-a", 0o755);
    std::os::unix::fs::chown(&home, Some(a), Some(a_gid)).unwrap();
    std::fs::write(home.join("notes"), "A's notes\n").unwrap();
    std::os::unix::fs::chown(home.join("notes"), Some(a), Some(a_gid)).unwrap();
    // B plants the link.
    let link = base.base.join("users").join(a.to_string());
    as_user(
        &users,
        1,
        "/bin/ln",
        &["-s", home.to_str().unwrap(), link.to_str().unwrap()],
    );

    let err = refused_v1_service(&base, (a, a_gid), "notes");
    assert_eq!(
        std::fs::read_to_string(home.join("notes")).unwrap(),
        "A's notes\n",
        "A's file was replaced"
    );
    assert!(
        err.contains("caps_service")
            && err.contains(link.to_str().unwrap())
            && err.contains(&format!("uid {b}"))
            && err.contains("symbolic link"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// User B makes `users/<A>` first, mode 0777: A's service refuses it
/// (B could delete A's socket from it later) and names its owner.
#[test]
fn users_dir_made_by_another_user_is_refused() {
    let Some(users) = TestUsers::create("users_dir_made_by_another_user_is_refused", 2) else {
        return;
    };
    let (a, a_gid) = users.ids(0);
    let (b, _) = users.ids(1);
    let base = Base::new("foreigndir");
    let dir = base.base.join("users").join(a.to_string());
    as_user(
        &users,
        1,
        "/bin/mkdir",
        &["-m", "0777", dir.to_str().unwrap()],
    );
    assert_eq!(std::fs::metadata(&dir).unwrap().uid(), b);

    let err = refused_v1_service(&base, (a, a_gid), "svc");
    assert!(
        err.contains(dir.to_str().unwrap()) && err.contains(&format!("uid {b}")),
        "{err}"
    );
    assert!(!dir.join("svc").exists());

    // A directory of A's own that others may write is refused too.
    std::fs::remove_dir(&dir).unwrap();
    std::fs::create_dir(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(a), Some(a_gid)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = refused_v1_service(&base, (a, a_gid), "svc");
    assert!(err.contains("writable by others"), "{err}");

    // Once the administrator removed it, A's service makes its own.
    std::fs::remove_dir(&dir).unwrap();
    let mut srv = base.cmd(echo());
    srv.args(ids_args(a, a_gid));
    srv.args(["-s", "svc", "-n", "1"]);
    let mut srv = Proc::spawn(srv);
    srv.expect_line("serving svc");
    let st = std::fs::metadata(&dir).unwrap();
    assert_eq!((st.uid(), st.mode() & 0o7777), (a, 0o755));
    let mut cl = base.cmd(echo());
    cl.args(["-c", "svc", "-o", &a.to_string(), "-r", "1"]);
    assert_eq!(text(&run(cl).stdout), "ok 1\n");
    assert!(srv.finish().status.success());
}

/// Nodes planted in `sys/` by another user under A's service name: A's
/// `caps_sys_service` keeps refusing (`EPERM`) and the log line says who
/// planted what.
#[test]
fn planted_v2_nodes_are_refused_naming_their_owner() {
    let Some(users) = TestUsers::create("planted_v2_nodes_are_refused_naming_their_owner", 2)
    else {
        return;
    };
    let (a, a_gid) = users.ids(0);
    let (b, _) = users.ids(1);
    let base = Base::new("v2plant");
    let sys = base.base.join("sys");
    let cases: [(&str, &str, &[&str]); 4] = [
        ("file", "/usr/bin/touch", &[]),
        ("fifo", "/usr/bin/mkfifo", &[]),
        ("dir", "/bin/mkdir", &[]),
        ("link", "/bin/ln", &["-s", "/etc/passwd"]),
    ];
    for (name, prog, pre) in cases {
        let node = sys.join(format!("{name},{a},-"));
        let mut args: Vec<&str> = pre.to_vec();
        args.push(node.to_str().unwrap());
        as_user(&users, 1, prog, &args);
        let mut c = base.cmd(hostile());
        c.args(ids_args(a, a_gid));
        c.args(["v2svc", name, &a.to_string()]);
        let out = run(c);
        assert_eq!(
            text(&out.stdout),
            "caps_sys_service: Operation not permitted\n",
            "{name}: {}",
            text(&out.stderr)
        );
        let err = text(&out.stderr);
        assert!(
            err.contains("caps_sys_service")
                && err.contains(node.to_str().unwrap())
                && err.contains(&format!("uid {b}")),
            "{name}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

// ---- 4: fork() never hangs or misroutes ------------------------------------

/// A v1 client forks: the child's use of the inherited port fails at once
/// (`ENOTCONN`), its close frees only its copy, and the parent's port
/// keeps working.
#[test]
fn v1_client_port_inherited_across_fork_is_dead_in_the_child() {
    let base = Base::new("v1forkc");
    let mut srv = base.cmd(echo());
    srv.args(["-s", "forkc"]);
    let mut srv = Proc::spawn(srv);
    srv.expect_line("serving forkc");
    let mut c = base.cmd(hostile());
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    c.args(["v1fork-client", "forkc", &me.to_string()]);
    let out = run(c);
    assert_eq!(
        text(&out.stdout),
        "child: lwkt_domsg: Transport endpoint is not connected\nchild: closed\nparent: ok 100\n",
        "stderr: {}",
        text(&out.stderr)
    );
    drop(srv);
}

/// A v1 service forks and the child closes its copy: the parent's
/// socket node stays and its service keeps serving.
#[test]
fn v1_service_closed_in_a_forked_child_stays_published() {
    let base = Base::new("v1forks");
    let mut s = base.cmd(hostile());
    s.args(["v1fork-service", "forks"]);
    let mut srv = Proc::spawn(s);
    srv.expect_line("ready");
    let mut c = base.cmd(echo());
    c.args(["-c", "forks", "-r", "1", "-z", "8"]);
    let out = run(c);
    assert_eq!(text(&out.stdout), "ok 1\n", "{}", text(&out.stderr));
    let out = srv.finish();
    assert_eq!(text(&out.stdout), "served 1\n", "{}", text(&out.stderr));
}

/// `caps_sys_getgen` on an inherited v2 port: `ENOTCONN` like the other
/// calls.
#[test]
fn v2_getgen_on_an_inherited_port_is_enotconn() {
    let base = Base::new("v2forkg");
    let mut c = base.cmd(hostile());
    c.args(["v2fork-getgen", "forkg"]);
    let out = run(c);
    assert_eq!(
        text(&out.stdout),
        "child: getgen -1: Transport endpoint is not connected\n",
        "{}",
        text(&out.stderr)
    );
}

// ---- 6: paths that fit sun_path are accepted --------------------------------

/// A base directory whose path is exactly `len` bytes.
fn base_of_len(pub_dir: &PublicDir, len: usize) -> PathBuf {
    let prefix = pub_dir.0.join("b");
    let have = prefix.as_os_str().len();
    assert!(have < len, "temp dir too long for the test");
    let p = PathBuf::from(format!("{}{}", prefix.display(), "x".repeat(len - have)));
    std::fs::create_dir(&p).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

#[test]
fn service_paths_up_to_107_bytes_work() {
    let pub_dir = PublicDir::new("pathlen");
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    let dir_part = if me == 0 {
        "/root/".to_string()
    } else {
        format!("/users/{me}/")
    };
    // v1: BASE + "/root/" + 5-byte name = 107 bytes; the temporary name
    // `.caps.PID.N` would not fit beside it.
    let b1 = base_of_len(&pub_dir, 107 - dir_part.len() - 5);
    let mut s = Command::new(echo());
    s.env("LIBCAPS_DIR", &b1).args(["-s", "fifty", "-n", "1"]);
    let mut srv = Proc::spawn(s);
    srv.expect_line("serving fifty");
    assert_eq!(b1.join(&dir_part[1..]).join("fifty").as_os_str().len(), 107);
    let mut c = Command::new(echo());
    c.env("LIBCAPS_DIR", &b1).args(["-c", "fifty", "-r", "1"]);
    assert_eq!(text(&run(c).stdout), "ok 1\n");
    assert!(srv.finish().status.success());
    // one byte more: ENAMETOOLONG
    let mut s = Command::new(echo());
    s.env("LIBCAPS_DIR", &b1).args(["-s", "sixtyx", "-n", "1"]);
    assert_eq!(text(&run(s).stdout), "caps_service: File name too long\n");

    // v2: BASE + "/sys/" + "NAME,UID,-" = 107 bytes.
    let key = format!(",{me},-");
    let b2 = base_of_len(&pub_dir, 107 - 5 - 5 - key.len());
    let mut s = Command::new(hostile());
    s.env("LIBCAPS_DIR", &b2)
        .args(["v2svc", "fifty", &me.to_string()]);
    let out = run(s);
    assert_eq!(text(&out.stdout), "ok\n", "{}", text(&out.stderr));
    let mut s = Command::new(hostile());
    s.env("LIBCAPS_DIR", &b2)
        .args(["v2svc", "sixtyx", &me.to_string()]);
    assert_eq!(
        text(&run(s).stdout),
        "caps_sys_service: File name too long\n"
    );
}

// ---- 7: the protocol is enforced as written ---------------------------------

fn v1_hello() -> Vec<u8> {
    let mut h = b"CAPS".to_vec();
    h.extend_from_slice(&1u16.to_le_bytes());
    h.extend_from_slice(&1u16.to_le_bytes());
    h.extend_from_slice(&66560u32.to_le_bytes());
    h.extend_from_slice(&0u32.to_le_bytes());
    h
}

/// A v1 request frame header with `len` payload bytes.
fn v1_request(id: u64, len: u32) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&1u16.to_le_bytes());
    h.extend_from_slice(&0u16.to_le_bytes());
    h.extend_from_slice(&len.to_le_bytes());
    h.extend_from_slice(&id.to_le_bytes());
    h.extend_from_slice(&len.to_le_bytes());
    h.extend_from_slice(&1u32.to_le_bytes()); // cmd
    h.extend_from_slice(&[0u8; 24]);
    h
}

/// A request reusing the id of one still outstanding on its connection
/// drops the connection (one log line) instead of being answered twice.
#[test]
fn a_reused_outstanding_request_id_drops_the_connection() {
    let base = Base::new("dupid");
    // The server holds two requests before it answers them.
    let mut s = base.cmd(echo());
    s.args(["-s", "dup", "-h", "2"]);
    let mut srv = Proc::spawn(s);
    srv.expect_line("serving dup");
    let sock = base.v1_socket("dup");
    let mut st = UnixStream::connect(&sock).unwrap();
    st.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut b = v1_hello();
    b.extend(v1_request(5, 4));
    b.extend([1, 2, 3, 4]);
    b.extend(v1_request(5, 4));
    b.extend([5, 6, 7, 8]);
    st.write_all(&b).unwrap();
    let mut got = Vec::new();
    st.read_to_end(&mut got).expect("the server must close");
    assert_eq!(got.len(), 16, "only the hello: no reply at all");
    // A well-behaved client is still served.
    let mut c = base.cmd(echo());
    c.args(["-c", "dup", "-r", "4", "-p", "2"]);
    assert_eq!(text(&run(c).stdout), "ok 4\n");
    let out = srv.kill();
    let err = text(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("request id")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("caps_service") && lines[0].contains("dup"),
        "{err}"
    );
}

// ---- 9: the v2 service's log lines name caps_sys_service --------------------

/// The v2 node of `(name, own uid, -1)` under `base`.
fn v2_node(base: &Path, name: &str) -> PathBuf {
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    base.join("sys").join(format!("{name},{me},-"))
}

/// `caps_hostile v2serve NAME NOFILE` under `base`, serving: the process
/// and its node.
fn v2serve(base: &Base, name: &str, nofile: &str) -> (Proc, PathBuf) {
    let mut s = base.cmd(hostile());
    s.args(["v2serve", name, nofile]);
    let mut srv = Proc::spawn(s);
    srv.expect_line("serving");
    (srv, v2_node(&base.base, name))
}

/// A v2 service out of descriptors says so under `caps_sys_service`.
#[test]
fn v2_service_log_lines_name_caps_sys_service() {
    let base = Base::new("v2log");
    let (mut srv, node) = v2serve(&base, "logname", "24");
    let errs = common::lines_of(srv.0.as_mut().unwrap().stderr.take().unwrap());
    let held: Vec<UnixStream> = (0..40)
        .filter_map(|_| UnixStream::connect(&node).ok())
        .collect();
    // The service runs into its limit: its log line.
    let mut err = common::await_line(&errs, "accept log line", |l| {
        l.starts_with("libcaps: caps_sys_service: accept:")
    });
    drop(held);
    drop(srv.kill());
    err.extend(errs.iter());
    let err = err.concat();
    assert!(!err.contains("caps_service:"), "{err}");
}

/// A v2 hello asking for `CAPF_WORLD` access, then a 48-byte frame
/// header of `kind` (no payload) with `id`.
fn v2_hello_and_frame(kind: u16, id: u64) -> Vec<u8> {
    let mut b = b"CAPS".to_vec();
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&131072u32.to_le_bytes());
    b.extend_from_slice(&4u32.to_le_bytes());
    let mut h = [0u8; 48];
    h[0..2].copy_from_slice(&kind.to_le_bytes());
    h[8..16].copy_from_slice(&id.to_le_bytes());
    b.extend_from_slice(&h);
    b
}

/// A v2 service drops a connection for a protocol violation with the
/// same line as a v1 service: "dropping client pid N: protocol error:
/// WHY", whether the frame was malformed (an unknown kind) or not
/// allowed by v2's state (a dispose of no reply).
#[test]
fn v2_protocol_violations_are_logged_as_v1_logs_them() {
    let base = Base::new("v2proto");
    let (srv, node) = v2serve(&base, "plog", "0");
    wait_listening(&node);
    for bytes in [v2_hello_and_frame(9, 1), v2_hello_and_frame(3, 77)] {
        let mut st = UnixStream::connect(&node).unwrap();
        st.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        st.write_all(&bytes).unwrap();
        let mut got = Vec::new();
        st.read_to_end(&mut got).expect("the service must close");
    }
    let out = srv.kill();
    let err = text(&out.stderr);
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("dropping")).collect();
    let start = format!(
        "libcaps: caps_sys_service: {}: dropping client pid {me}: ",
        node.display()
    );
    assert_eq!(lines.len(), 2, "{err}");
    assert!(lines.iter().all(|l| l.starts_with(&start)), "{err}");
    assert!(
        lines[0].ends_with(": protocol error: unknown frame kind 9"),
        "{err}"
    );
    assert!(
        lines[1].ends_with(": protocol error: dispose of no reply"),
        "{err}"
    );
}

// ---- 2: one user cannot lock others out of a service ------------------------

/// Run `prog args` with at most `nofile` descriptors (`sh -c ulimit`).
fn limited(base: &Base, nofile: u32, prog: &Path, args: &[&str]) -> Command {
    let mut c = base.cmd(Path::new("/bin/sh"));
    c.arg("-c")
        .arg(format!("ulimit -n {nofile} && exec \"$0\" \"$@\""))
        .arg(prog)
        .args(args);
    c
}

/// User B holds as many half-hello connections as it can to user A's
/// service (128 descriptors): a client of user C still connects and is
/// served meanwhile, and B's connections are dropped at the hello
/// deadline. `serve`: the service's command line, `node`: its socket,
/// `client`: C's client command, expected to print `ok`.
fn lockout_case(
    users: &TestUsers,
    base: &Base,
    serve: Command,
    ready: &str,
    node: &Path,
    client: Command,
    ok: &str,
) {
    let (b, b_gid) = users.ids(1);
    let mut srv = Proc::spawn(serve);
    srv.expect_line(ready);
    wait_listening(node);
    // `sh` execs the server: same pid.
    let pid = srv.pid();
    let rss_before = rss_kib(pid);
    let mut atk = base.cmd(hostile());
    atk.args(ids_args(b, b_gid));
    atk.args(["hold", node.to_str().unwrap(), "400", "6"]);
    let mut atk = Proc::spawn(atk);
    let held = atk.line();
    let t0 = Instant::now();
    let out = run(client);
    let waited = t0.elapsed();
    let open = atk.line();
    eprintln!("lockout: attacker {held}, {open}; other user's client waited {waited:?}");
    assert_eq!(text(&out.stdout), ok, "{}", text(&out.stderr));
    assert!(waited < Duration::from_secs(10), "{waited:?}");
    // Every connection B still held (half a hello each) is dropped at
    // the hello deadline.
    let k: usize = held.strip_prefix("held ").unwrap().parse().unwrap();
    assert!(k > 0, "{held}");
    assert_eq!(atk.line(), format!("dropped {k}"));
    let _ = atk.kill();
    eprintln!(
        "lockout: server RSS {rss_before} KiB before, {} KiB after",
        rss_kib(pid)
    );
    let out = srv.kill();
    let err = text(&out.stderr);
    assert!(err.contains("no hello within"), "{err}");
}

#[test]
fn one_user_cannot_lock_others_out_v1() {
    let Some(users) = TestUsers::create("one_user_cannot_lock_others_out_v1", 3) else {
        return;
    };
    let base = Base::new("lockv1");
    let (a, a_gid) = users.ids(0);
    let (c, c_gid) = users.ids(2);
    let (a_s, a_gs) = (a.to_string(), a_gid.to_string());
    let serve = limited(&base, 128, echo(), &["-s", "lock", "-u", &a_s, "-G", &a_gs]);
    let node = base.base.join(format!("users/{a}/lock"));
    let mut client = base.cmd(echo());
    client.args(ids_args(c, c_gid));
    client.args(["-c", "lock", "-o", &a_s, "-r", "1"]);
    lockout_case(
        &users,
        &base,
        serve,
        "serving lock",
        &node,
        client,
        "ok 1\n",
    );
}

#[test]
fn one_user_cannot_lock_others_out_v2() {
    let Some(users) = TestUsers::create("one_user_cannot_lock_others_out_v2", 3) else {
        return;
    };
    let base = Base::new("lockv2");
    let (a, a_gid) = users.ids(0);
    let (c, c_gid) = users.ids(2);
    let (a_s, a_gs) = (a.to_string(), a_gid.to_string());
    let serve = limited(
        &base,
        128,
        hostile(),
        &["-u", &a_s, "-G", &a_gs, "v2serve", "lock", "0"],
    );
    let node = base.base.join(format!("sys/lock,{a},-"));
    let mut client = base.cmd(hostile());
    client.args(ids_args(c, c_gid));
    client.args(["v2ping", "lock"]);
    lockout_case(&users, &base, serve, "serving", &node, client, "ok\n");
}

/// At scale (issue 17): a service whose process may open 20,000
/// descriptors lets one user hold 5,000 connections (a quarter), with
/// whole hellos, and refuses the rest of 10,000 at once, counted in its
/// statistics; another user's client is still served.
#[test]
fn per_uid_limit_holds_with_ten_thousand_connections() {
    let Some(users) = TestUsers::create("per_uid_limit_holds_with_ten_thousand_connections", 3)
    else {
        return;
    };
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `rl` is a writable rlimit.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) };
    if rl.rlim_max < 20_000 {
        eprintln!("skipped: hard RLIMIT_NOFILE {} < 20000", rl.rlim_max);
        return;
    }
    let base = Base::new("scale");
    let (a, a_gid) = users.ids(0);
    let (b, b_gid) = users.ids(1);
    let (c, c_gid) = users.ids(2);
    let (a_s, a_gs) = (a.to_string(), a_gid.to_string());
    let serve = limited(
        &base,
        20_000,
        echo(),
        &["-s", "big", "-u", &a_s, "-G", &a_gs],
    );
    let mut srv = Proc::spawn(serve);
    srv.expect_line("serving big");
    let node = base.base.join(format!("users/{a}/big"));
    wait_listening(&node);
    let (b_s, b_gs) = (b.to_string(), b_gid.to_string());
    let node_s = node.to_str().unwrap();
    let atk = limited(
        &base,
        12_000,
        hostile(),
        &[
            "-u", &b_s, "-G", &b_gs, "hold", node_s, "10000", "3", "full",
        ],
    );
    let mut atk = Proc::spawn(atk);
    let held: usize = atk.line().strip_prefix("held ").unwrap().parse().unwrap();
    let open = atk.line();
    eprintln!("per-uid limit at scale: held {held}, {open}");
    assert!(held > 5000, "{held}");
    assert_eq!(open, "open after 1 s: 5000");
    let mut client = base.cmd(echo());
    client.args(ids_args(c, c_gid));
    client.args(["-c", "big", "-o", &a_s, "-r", "1"]);
    let out = run(client);
    assert_eq!(text(&out.stdout), "ok 1\n", "{}", text(&out.stderr));
    let _ = atk.kill();
    let out = srv.kill();
    let err = text(&out.stderr);
    assert!(err.contains("its limit: "), "{err}");
}

// ---- 5: lookups do not stall on a silent service ------------------------------

/// User B's node of the same name accepts but never says hello; it is
/// the newest, so tried first: the lookup moves on after a short hello
/// deadline and reaches user C's live service.
#[test]
fn lookup_moves_past_a_silent_candidate() {
    let Some(users) = TestUsers::create("lookup_moves_past_a_silent_candidate", 2) else {
        return;
    };
    let base = Base::new("silent");
    let (b, b_gid) = users.ids(0);
    let (c, c_gid) = users.ids(1);
    let mut srv = base.cmd(hostile());
    srv.args(ids_args(c, c_gid));
    srv.args(["v2serve", "quiet", "0"]);
    let mut srv = Proc::spawn(srv);
    srv.expect_line("serving");
    // newer than C's node by a clear margin (lookups try the newest first)
    std::thread::sleep(Duration::from_millis(1100));
    let silent_node = base.base.join(format!("sys/quiet,{b},-"));
    let mut sil = base.cmd(hostile());
    sil.args(ids_args(b, b_gid));
    sil.args(["silent", silent_node.to_str().unwrap()]);
    let mut sil = Proc::spawn(sil);
    sil.expect_line("listening");
    let t0 = Instant::now();
    let mut cl = base.cmd(hostile());
    cl.args(["v2ping", "quiet"]);
    let out = run(cl);
    let waited = t0.elapsed();
    eprintln!("lookup past a silent candidate: {waited:?}");
    assert_eq!(text(&out.stdout), "ok\n", "{}", text(&out.stderr));
    assert!(waited < Duration::from_secs(8), "{waited:?}");
    drop(sil);
    drop(srv);
}

// ---- 3: one user cannot exhaust the service's memory ---------------------------

/// 40 connections of user B send largest-size requests whose replies fill
/// the whole buffer and never read them: the service stays within its
/// budget (back-pressure), and other clients are still served.
#[test]
fn one_user_cannot_exhaust_the_service_memory() {
    let Some(users) = TestUsers::create("one_user_cannot_exhaust_the_service_memory", 1) else {
        return;
    };
    let base = Base::new("flood");
    let (b, b_gid) = users.ids(0);
    let mut srv = base.cmd(echo());
    srv.args(["-s", "flood"]);
    let mut srv = Proc::spawn(srv);
    srv.expect_line("serving flood");
    let pid = srv.pid();
    let before = rss_kib(pid);
    let node = base.base.join("root/flood");
    let mut atk = base.cmd(hostile());
    atk.args(ids_args(b, b_gid));
    atk.args(["flood", node.to_str().unwrap(), "40", "4"]);
    let mut atk = Proc::spawn(atk);
    assert_eq!(atk.line(), "flooded 40");
    let during = rss_kib(pid);
    let mut c = base.cmd(echo());
    c.args(["-c", "flood", "-r", "20", "-z", "1000"]);
    assert_eq!(text(&run(c).stdout), "ok 20\n");
    eprintln!("flood: server RSS {before} KiB before, {during} KiB under 40 flooding connections");
    assert!(during < before + 48 * 1024, "{during} KiB");
    drop(atk);
    drop(srv);
}

/// The same for a v2 service: 40 clients of user B put as many 128 KB
/// requests as they may and never read a reply.
#[test]
fn one_user_cannot_exhaust_the_v2_service_memory() {
    let Some(users) = TestUsers::create("one_user_cannot_exhaust_the_v2_service_memory", 1) else {
        return;
    };
    let base = Base::new("v2flood");
    let (b, b_gid) = users.ids(0);
    let mut srv = base.cmd(hostile());
    srv.args(["v2serve", "vflood", "0"]);
    let mut srv = Proc::spawn(srv);
    srv.expect_line("serving");
    let pid = srv.pid();
    let before = rss_kib(pid);
    let mut atk = base.cmd(hostile());
    atk.args(ids_args(b, b_gid));
    atk.args(["v2flood", "vflood", "40", "4"]);
    let mut atk = Proc::spawn(atk);
    assert_eq!(atk.line(), "flooded 40");
    let during = rss_kib(pid);
    let mut c = base.cmd(hostile());
    c.args(["v2ping", "vflood"]);
    assert_eq!(text(&run(c).stdout), "ok\n");
    eprintln!("v2 flood: server RSS {before} KiB before, {during} KiB under 40 flooding clients");
    assert!(during < before + 48 * 1024, "{during} KiB");
    drop(atk);
    drop(srv);
}
