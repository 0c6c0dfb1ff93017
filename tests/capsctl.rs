//! capsctl (issue 20) against real services: the C test programs serve
//! v1 (`caps_echo`) and v2 (`caps_hostile v2serve`) services in a private
//! rendezvous directory laid out as `make install` does; `capsctl list
//! --json` is parsed (by the small JSON reader below) and checked, a
//! killed service's node shows `stale` and `clean` removes it but not a
//! live one's, and a second user (a real account, as in caps_hostile.rs)
//! can neither clean another's node nor connect to a 0600 service.
//! `ping` and `stat` (frames the services' library answers itself): exit
//! status against live, dead and refusing services, counters equal to
//! the traffic the test sent, the refusal of another user's `stat`, and
//! C services that count what they receive see none of it.

#[macro_use]
mod common;

use common::{CapsBase, PROGRAM_DEADLINE, Proc, TestUsers, run};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

c_program!(echo, "caps_echo-capsctl", "caps_echo");

c_program!(hostile, "caps_hostile-capsctl", "caps_hostile");

use common::text;

// ---- a JSON reader, enough for capsctl's output ------------------------------

#[derive(Clone, Debug, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(BTreeMap<String, Json>),
}

impl Json {
    fn parse(s: &str) -> Json {
        let b = s.as_bytes();
        let mut i = 0;
        let v = value(b, &mut i);
        skip_ws(b, &mut i);
        assert_eq!(i, b.len(), "trailing bytes after the JSON value: {s}");
        v
    }

    fn get(&self, k: &str) -> &Json {
        match self {
            Json::Obj(m) => m
                .get(k)
                .unwrap_or_else(|| panic!("no field {k} in {self:?}")),
            _ => panic!("not an object: {self:?}"),
        }
    }

    fn str(&self) -> &str {
        match self {
            Json::Str(s) => s,
            _ => panic!("not a string: {self:?}"),
        }
    }

    fn num(&self) -> i64 {
        match self {
            Json::Num(n) => *n as i64,
            _ => panic!("not a number: {self:?}"),
        }
    }

    fn arr(&self) -> &[Json] {
        match self {
            Json::Arr(a) => a,
            _ => panic!("not an array: {self:?}"),
        }
    }
}

fn skip_ws(b: &[u8], i: &mut usize) {
    while *i < b.len() && b" \t\r\n".contains(&b[*i]) {
        *i += 1;
    }
}

fn expect(b: &[u8], i: &mut usize, c: u8) {
    skip_ws(b, i);
    assert_eq!(b.get(*i), Some(&c), "expected {:?} at {i}", c as char);
    *i += 1;
}

fn value(b: &[u8], i: &mut usize) -> Json {
    skip_ws(b, i);
    let lit = |i: &mut usize, w: &str, v: Json| {
        assert!(b[*i..].starts_with(w.as_bytes()), "bad literal at {i}");
        *i += w.len();
        v
    };
    match b[*i] {
        b'n' => lit(i, "null", Json::Null),
        b't' => lit(i, "true", Json::Bool(true)),
        b'f' => lit(i, "false", Json::Bool(false)),
        b'"' => Json::Str(string(b, i)),
        b'[' => {
            *i += 1;
            let mut a = Vec::new();
            skip_ws(b, i);
            if b[*i] == b']' {
                *i += 1;
                return Json::Arr(a);
            }
            loop {
                a.push(value(b, i));
                skip_ws(b, i);
                *i += 1;
                match b[*i - 1] {
                    b',' => continue,
                    b']' => return Json::Arr(a),
                    c => panic!("bad array separator {:?}", c as char),
                }
            }
        }
        b'{' => {
            *i += 1;
            let mut m = BTreeMap::new();
            skip_ws(b, i);
            if b[*i] == b'}' {
                *i += 1;
                return Json::Obj(m);
            }
            loop {
                skip_ws(b, i);
                let k = string(b, i);
                expect(b, i, b':');
                let v = value(b, i);
                assert!(m.insert(k.clone(), v).is_none(), "duplicate key {k}");
                skip_ws(b, i);
                *i += 1;
                match b[*i - 1] {
                    b',' => continue,
                    b'}' => return Json::Obj(m),
                    c => panic!("bad object separator {:?}", c as char),
                }
            }
        }
        _ => {
            let start = *i;
            while *i < b.len() && (b[*i] == b'-' || b[*i] == b'.' || b[*i].is_ascii_digit()) {
                *i += 1;
            }
            let s = std::str::from_utf8(&b[start..*i]).unwrap();
            Json::Num(
                s.parse()
                    .unwrap_or_else(|_| panic!("bad number {s:?} at {start}")),
            )
        }
    }
}

fn string(b: &[u8], i: &mut usize) -> String {
    expect(b, i, b'"');
    let mut out = Vec::new();
    loop {
        let c = b[*i];
        *i += 1;
        match c {
            b'"' => return String::from_utf8(out).unwrap(),
            b'\\' => {
                let e = b[*i];
                *i += 1;
                match e {
                    b'"' | b'\\' | b'/' => out.push(e),
                    b'n' => out.push(b'\n'),
                    b't' => out.push(b'\t'),
                    b'r' => out.push(b'\r'),
                    b'b' => out.push(8),
                    b'f' => out.push(12),
                    b'u' => {
                        let h = std::str::from_utf8(&b[*i..*i + 4]).unwrap();
                        *i += 4;
                        let ch = char::from_u32(u32::from_str_radix(h, 16).unwrap()).unwrap();
                        out.extend_from_slice(ch.to_string().as_bytes());
                    }
                    _ => panic!("bad escape \\{}", e as char),
                }
            }
            c if c < 0x20 => panic!("raw control byte {c} in a JSON string"),
            c => out.push(c),
        }
    }
}

#[test]
fn the_json_reader_reads_and_rejects() {
    let v = Json::parse(r#"{"a": [1, -2, "x\"\u0001"], "b": null, "c": {}}"#);
    assert_eq!(v.get("a").arr()[1].num(), -2);
    assert_eq!(v.get("a").arr()[2].str(), "x\"\u{1}");
    assert_eq!(v.get("b"), &Json::Null);
    for bad in [
        r#"{"a": "x
"}"#,
        r#"{"a" 1}"#,
        "[1, 2",
    ] {
        assert!(
            std::panic::catch_unwind(|| Json::parse(bad)).is_err(),
            "{bad}"
        );
    }
}

// ---- the rendezvous directory and the programs --------------------------------

/// A rendezvous base as `make install` lays it out, in a directory every
/// user may reach.
struct Base {
    caps: CapsBase,
    base: PathBuf,
    /// A copy of capsctl there, for other users (made on first use).
    public_capsctl: OnceLock<PathBuf>,
}

impl Base {
    fn new(tag: &str) -> Base {
        let caps = CapsBase::new(&format!("capsctl-{tag}"));
        Base {
            base: caps.base.clone(),
            caps,
            public_capsctl: OnceLock::new(),
        }
    }

    fn cmd(&self, prog: &Path) -> Command {
        self.caps.cmd(prog)
    }

    /// `capsctl ARGS`, as user `who` (an index into `users`) or as us.
    fn capsctl(&self, who: Option<(&TestUsers, usize)>, args: &[&str]) -> Output {
        let ours = Path::new(env!("CARGO_BIN_EXE_capsctl"));
        loop {
            let mut c = match who {
                Some((users, i)) => {
                    let copy = self
                        .public_capsctl
                        .get_or_init(|| self.caps.pub_dir.install(ours));
                    users.command(i, copy)
                }
                None => Command::new(ours),
            };
            c.env("LIBCAPS_DIR", &self.base)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            match c.spawn() {
                Ok(child) => {
                    let out = common::wait_deadline(child, PROGRAM_DEADLINE, "capsctl");
                    // (setpriv's exec of the copy can meet the same)
                    if !text(&out.stderr).contains("Text file busy") {
                        return out;
                    }
                }
                // The fresh copy is still open for writing in a child
                // another test thread forked meanwhile: try again.
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                    std::thread::sleep(std::time::Duration::from_millis(20))
                }
                Err(e) => panic!("capsctl: {e}"),
            }
        }
    }

    /// Start `prog ARGS` in this base and wait for its line `ready`.
    fn start(&self, prog: &Path, args: &[&str], ready: &str) -> Proc {
        let mut c = self.cmd(prog);
        c.args(args);
        let mut p = Proc::spawn(c);
        p.expect_line(ready);
        p
    }

    /// `capsctl list --json`, parsed: the services by node file name.
    fn list(&self, who: Option<(&TestUsers, usize)>) -> BTreeMap<String, Json> {
        let out = self.capsctl(who, &["list", "--json"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let doc = Json::parse(&text(&out.stdout));
        assert_eq!(doc.get("base").str(), self.base.to_str().unwrap());
        doc.get("services")
            .arr()
            .iter()
            .map(|s| (s.get("node").str().to_string(), s.clone()))
            .collect()
    }
}

/// `/proc/PID/comm` of a program we started from `prog`.
fn comm_of(prog: &Path) -> String {
    let n = prog.file_name().unwrap().to_str().unwrap();
    n.chars().take(15).collect()
}

fn me() -> (u32, u32) {
    // SAFETY: plain id queries.
    unsafe { (libc::geteuid(), libc::getegid()) }
}

fn v1_dir(base: &Path, uid: u32) -> PathBuf {
    if uid == 0 {
        base.join("root")
    } else {
        base.join("users").join(uid.to_string())
    }
}

// ---- the tests -----------------------------------------------------------------

/// A v1 and a v2 service, each with a client at work: both listed with
/// their names, faces, owners, server pids and commands, `alive`; the
/// services write no log line for being probed and keep serving.
#[test]
fn list_shows_live_v1_and_v2_services_with_owner_pid_and_state() {
    let base = Base::new("list");
    let (uid, gid) = me();
    let mut v1 = base.cmd(echo());
    v1.args(["-s", "one"]);
    let mut v1 = Proc::spawn(v1);
    v1.expect_line("serving one");
    let mut v2 = base.cmd(hostile());
    v2.args(["v2serve", "two", "0"]);
    let mut v2 = Proc::spawn(v2);
    v2.expect_line("serving");
    // a v1 client at work while we look
    let mut cl = base.cmd(echo());
    cl.args(["-c", "one", "-r", "200000", "-p", "4"]);
    let cl = Proc::spawn(cl);
    let mut ping = base.cmd(hostile());
    ping.args(["v2ping", "two"]);
    let pinged = run(ping);
    assert!(text(&pinged.stdout).starts_with("ok"), "{pinged:?}");

    let v2_node = format!("two,{uid},-");
    for _ in 0..3 {
        let list = base.list(None);
        assert_eq!(list.len(), 2, "{list:?}");
        let one = &list["one"];
        assert_eq!(one.get("name").str(), "one");
        assert_eq!(one.get("face").str(), "v1");
        assert_eq!(
            one.get("path").str(),
            v1_dir(&base.base, uid).join("one").to_str().unwrap()
        );
        assert_eq!(one.get("mode").str(), "0666");
        assert_eq!(one.get("registered_for"), &Json::Null);
        let two = &list[&v2_node];
        assert_eq!(two.get("name").str(), "two");
        assert_eq!(two.get("face").str(), "v2");
        assert_eq!(two.get("registered_for").get("uid").num(), i64::from(uid));
        assert_eq!(two.get("registered_for").get("gid"), &Json::Null);
        for (s, p, prog) in [(one, &v1, echo()), (two, &v2, hostile())] {
            assert_eq!(s.get("owner").get("uid").num(), i64::from(uid));
            assert_eq!(s.get("owner").get("gid").num(), i64::from(gid));
            if uid == 0 {
                assert_eq!(s.get("owner").get("user").str(), "root");
            }
            assert_eq!(s.get("state").str(), "alive", "{s:?}");
            assert_eq!(s.get("reason"), &Json::Null);
            let server = s.get("server");
            assert_eq!(server.get("pid").num(), i64::from(p.pid()));
            assert_eq!(server.get("uid").num(), i64::from(uid));
            assert_eq!(server.get("command").str(), comm_of(prog));
        }
    }
    // the text form names both
    let out = base.capsctl(None, &["list"]);
    let t = text(&out.stdout);
    assert!(
        t.starts_with("FACE") && t.contains(&v2_node) && t.contains(&v1.pid().to_string()),
        "{t}"
    );
    let cl_out = cl.kill();
    assert_eq!(text(&cl_out.stderr), "", "the client saw trouble");
    // still serving, and not a word about the probes
    let mut again = base.cmd(echo());
    again.args(["-c", "one", "-r", "3"]);
    assert_eq!(text(&run(again).stdout), "ok 3\n");
    let (o1, o2) = (v1.kill(), v2.kill());
    assert_eq!(text(&o1.stderr), "", "v1 service logged");
    assert_eq!(text(&o2.stderr), "", "v2 service logged");
}

/// Kill a v1 and a v2 service: both show `stale`; `clean NAME` removes
/// the named one only, `clean` the other, and a live service's node is
/// left alone throughout.
#[test]
fn a_killed_service_is_stale_and_clean_removes_only_its_node() {
    let base = Base::new("clean");
    let (uid, _) = me();
    let mut live = base.cmd(echo());
    live.args(["-s", "live"]);
    let mut live = Proc::spawn(live);
    live.expect_line("serving live");
    let mut dead1 = base.cmd(echo());
    dead1.args(["-s", "dead1"]);
    let mut dead1 = Proc::spawn(dead1);
    dead1.expect_line("serving dead1");
    let mut dead2 = base.cmd(hostile());
    dead2.args(["v2serve", "dead2", "0"]);
    let mut dead2 = Proc::spawn(dead2);
    dead2.expect_line("serving");
    dead1.kill();
    dead2.kill();
    let dir = v1_dir(&base.base, uid);
    let node2 = format!("dead2,{uid},-");
    assert!(dir.join("dead1").exists() && base.base.join("sys").join(&node2).exists());

    let list = base.list(None);
    assert_eq!(list["dead1"].get("state").str(), "stale");
    assert_eq!(list["dead1"].get("server"), &Json::Null);
    assert_eq!(list[&node2].get("state").str(), "stale");
    assert_eq!(list["live"].get("state").str(), "alive");

    // nothing of that name is stale
    let out = base.capsctl(None, &["clean", "live"]);
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout),
        "nothing to remove: no stale node of live\n"
    );
    let out = base.capsctl(None, &["clean", "dead1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!(
            "removed {} (v1 dead1, node of a dead service)\n",
            dir.join("dead1").display()
        )
    );
    assert!(!dir.join("dead1").exists());
    assert!(base.base.join("sys").join(&node2).exists());
    let out = base.capsctl(None, &["clean"]);
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout),
        format!(
            "removed {} (v2 dead2, node of a dead service)\n",
            base.base.join("sys").join(&node2).display()
        )
    );
    assert!(dir.join("live").exists());
    let out = base.capsctl(None, &["clean"]);
    assert_eq!(text(&out.stdout), "nothing to remove\n");
    let list = base.list(None);
    assert_eq!(list.keys().collect::<Vec<_>>(), ["live"]);
    assert_eq!(list["live"].get("state").str(), "alive");
    drop(live);
}

/// The temporary node of a process that died while making its service
/// is listed as `leftover` and cleaned; one whose maker still runs is
/// not listed.
#[test]
fn temporary_nodes_of_dead_processes_are_leftovers() {
    let base = Base::new("temp");
    let (uid, _) = me();
    let dir = v1_dir(&base.base, uid);
    std::fs::create_dir_all(&dir).unwrap();
    let mut gone = Command::new("true").spawn().unwrap();
    let dead_pid = gone.id();
    gone.wait().unwrap();
    let dead = format!(".caps.{dead_pid}.0");
    drop(std::os::unix::net::UnixListener::bind(dir.join(&dead)).unwrap());
    let making = format!(".caps.{}.7", std::process::id());
    drop(std::os::unix::net::UnixListener::bind(dir.join(&making)).unwrap());
    let list = base.list(None);
    assert_eq!(list.keys().collect::<Vec<_>>(), [&dead]);
    assert_eq!(list[&dead].get("state").str(), "leftover");
    assert_eq!(list[&dead].get("temp_pid").num(), i64::from(dead_pid));
    let out = base.capsctl(None, &["clean"]);
    assert_eq!(
        text(&out.stdout),
        format!(
            "removed {} (v1 {dead}, temporary node of a dead service)\n",
            dir.join(&dead).display()
        )
    );
    assert!(!dir.join(&dead).exists() && dir.join(&making).exists());
}

/// Usage errors and a service that is not there end with status 2 and
/// say why; the help names every command.
#[test]
fn usage_errors_and_unknown_services_exit_2() {
    let base = Base::new("usage");
    for args in [
        &[][..],
        &["frob"],
        &["list", "--xml"],
        &["clean", "a", "b"],
        &["help", "x"],
        &["ping"],
        &["ping", "svc", "-c", "zero"],
        &["stat", "svc", "--yaml"],
    ] {
        let out = base.capsctl(None, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            text(&out.stderr).contains("usage: capsctl list"),
            "{args:?}"
        );
    }
    let out = base.capsctl(None, &["--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for cmd in ["  clean [NAME]", "  ping NAME", "  stat NAME"] {
        assert!(help.contains(cmd), "{cmd}: {help}");
    }
    // no such service: status 2
    for args in [&["ping", "nosuch"][..], &["stat", "nosuch", "--json"]] {
        let out = base.capsctl(None, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            text(&out.stderr).contains("no service nosuch under"),
            "{args:?}"
        );
    }
}

/// User A's v1 service of mode 0600 and v2 service: user B lists the v1
/// one as `refusing`; once both are killed, B can clean neither (by name:
/// status 1 and a message; without a name: nothing to remove), and A can.
#[test]
fn another_user_is_refused_and_cannot_clean_my_nodes() {
    let Some(users) = TestUsers::create("another_user_is_refused_and_cannot_clean_my_nodes", 2)
    else {
        return;
    };
    let base = Base::new("users");
    let (a, a_gid) = users.ids(0);
    let ids = |u: u32, g: u32| ["-u".to_string(), u.to_string(), "-G".into(), g.to_string()];
    let mut v1 = base.cmd(echo());
    v1.args(ids(a, a_gid)).args(["-s", "priv", "-m", "600"]);
    let mut v1 = Proc::spawn(v1);
    v1.expect_line("serving priv");
    let mut v2 = base.cmd(hostile());
    v2.args(ids(a, a_gid)).args(["v2serve", "pub", "0"]);
    let mut v2 = Proc::spawn(v2);
    v2.expect_line("serving");
    let v2_node = format!("pub,{a},-");

    let by_b = base.list(Some((&users, 1)));
    assert_eq!(by_b["priv"].get("state").str(), "refusing", "{by_b:?}");
    assert_eq!(by_b["priv"].get("reason").str(), "Permission denied");
    assert_eq!(by_b["priv"].get("owner").get("uid").num(), i64::from(a));
    assert_eq!(
        by_b["priv"].get("owner").get("user").str(),
        users.users[0].0
    );
    assert_eq!(by_b[&v2_node].get("state").str(), "alive");
    assert_eq!(by_b[&v2_node].get("server").get("uid").num(), i64::from(a));
    let by_a = base.list(Some((&users, 0)));
    assert_eq!(by_a["priv"].get("state").str(), "alive");
    assert_eq!(
        by_a["priv"].get("server").get("pid").num(),
        i64::from(v1.pid())
    );

    v1.kill();
    v2.kill();
    let priv_node = base.base.join(format!("users/{a}/priv"));
    let pub_node = base.base.join("sys").join(&v2_node);
    for name in ["priv", "pub"] {
        let out = base.capsctl(Some((&users, 1)), &["clean", name]);
        assert_eq!(out.status.code(), Some(1), "{name}: {out:?}");
        assert!(
            text(&out.stderr).contains(&format!("owned by uid {a}, not by you: not removed")),
            "{name}: {}",
            text(&out.stderr)
        );
    }
    let out = base.capsctl(Some((&users, 1)), &["clean"]);
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), "nothing to remove\n");
    assert!(priv_node.exists() && pub_node.exists());
    let out = base.capsctl(Some((&users, 0)), &["clean"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).lines().count(),
        2,
        "{}",
        text(&out.stdout)
    );
    assert!(!priv_node.exists() && !pub_node.exists());
}

/// The paths the kernel reports for the listening sockets
/// (`/proc/net/unix`, what `ss -xlp` and lsof show).
fn kernel_paths() -> Vec<String> {
    let t = std::fs::read_to_string("/proc/net/unix").unwrap();
    t.lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(7).map(String::from))
        .collect()
}

/// A v1 and a v2 service, new and replacing their stale nodes, are
/// reported by the kernel under their own paths, not a temporary name.
#[test]
fn the_kernel_reports_services_under_their_own_paths() {
    let base = Base::new("kpath");
    let (uid, _) = me();
    let v1_path = v1_dir(&base.base, uid).join("kp1");
    let v2_path = base.base.join("sys").join(format!("kp2,{uid},-"));
    for round in ["new", "over a stale node"] {
        let mut v1 = base.cmd(echo());
        v1.args(["-s", "kp1"]);
        let mut v1 = Proc::spawn(v1);
        v1.expect_line("serving kp1");
        let mut v2 = base.cmd(hostile());
        v2.args(["v2serve", "kp2", "0"]);
        let mut v2 = Proc::spawn(v2);
        v2.expect_line("serving");
        let paths = kernel_paths();
        for p in [&v1_path, &v2_path] {
            assert!(
                paths.iter().any(|k| k == p.to_str().unwrap()),
                "{round}: {} not in /proc/net/unix; ours there: {:?}",
                p.display(),
                paths
                    .iter()
                    .filter(|k| k.contains(".caps.") || k.contains("kp"))
                    .collect::<Vec<_>>()
            );
        }
        let list = base.list(None);
        assert_eq!(list["kp1"].get("state").str(), "alive", "{round}");
        // killed: the nodes stay for the next round to replace
        v1.kill();
        v2.kill();
        assert!(v1_path.exists() && v2_path.exists());
    }
}

// ---- ping and stat ----------------------------------------------------------------

/// `capsctl stat NAME --json`, parsed (as user `who` or as us).
fn stat_json(base: &Base, who: Option<(&TestUsers, usize)>, name: &str) -> Json {
    let out = base.capsctl(who, &["stat", name, "--json"]);
    assert!(out.status.success(), "stat {name}: {}", text(&out.stderr));
    Json::parse(&text(&out.stdout))
}

/// Check `capsctl ping` output of `n` round trips that all came back.
fn assert_pinged(out: &Output, name: &str, n: usize) {
    let t = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{t}{}", text(&out.stderr));
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(lines.len(), n + 3, "{t}");
    for (i, l) in lines[..n].iter().enumerate() {
        let want = format!("reply from {name}: seq={} time=", i + 1);
        assert!(l.starts_with(&want) && l.ends_with(" ms"), "{l}");
    }
    assert_eq!(lines[n], format!("--- {name} ping statistics ---"));
    assert_eq!(
        lines[n + 1],
        format!("{n} round trips, {n} came back, 0% lost")
    );
    assert!(lines[n + 2].starts_with("rtt min/avg/max = "), "{t}");
}

/// `ping` exits 0 against a live v1 and a live v2 service, 1 against
/// a dead one (saying so), 2 when there is no such service.
#[test]
fn ping_exit_status_live_and_dead() {
    let base = Base::new("ping");
    let v1 = base.start(echo(), &["-s", "p1"], "serving p1");
    let v2 = base.start(hostile(), &["v2serve", "p2", "0"], "serving");
    assert_pinged(&base.capsctl(None, &["ping", "p1", "-c", "3"]), "p1", 3);
    assert_pinged(&base.capsctl(None, &["ping", "p2", "-c", "2"]), "p2", 2);
    v1.kill();
    let out = base.capsctl(None, &["ping", "p1", "-c", "2"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        text(&out.stderr).contains("nobody serves it (the node of a dead service)"),
        "{}",
        text(&out.stderr)
    );
    // no connection, no round trip: no statistics either
    assert_eq!(text(&out.stdout), "", "ping of a dead service printed");
    // stat of the dead one: status 1 too
    let out = base.capsctl(None, &["stat", "p1"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let o2 = v2.kill();
    assert_eq!(text(&o2.stderr), "", "the v2 service logged");
    // a v2 node whose program is not in the library (here: never
    // answers): status 1 after the wait, and the message says why
    let (uid, _) = me();
    let mut quiet = base.cmd(hostile());
    let quiet_path = base.base.join("sys").join(format!("quiet,{uid},-"));
    quiet.args(["silent", quiet_path.to_str().unwrap()]);
    let mut quiet = Proc::spawn(quiet);
    quiet.expect_line("listening");
    let out = base.capsctl(None, &["ping", "quiet", "-c", "1"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        text(&out.stderr).contains("no answer within 2 s: a v2 (caps_sys_*) service answers ping and stat only while its program is inside a caps_sys_* call, so it answers when it next enters the library"),
        "{}",
        text(&out.stderr)
    );
    drop(quiet);
}

/// A v1 service that has served exactly the test's traffic: its counters
/// are that traffic, byte for byte; pings, stats, a bad frame and a
/// connection without a hello are counted as what they are.
#[test]
fn stat_counters_match_the_traffic_sent() {
    const N: i64 = 20;
    const M: i64 = 100;
    const HELLO: i64 = 16;
    const HEADER: i64 = 48;
    let base = Base::new("stat");
    let (uid, _) = me();
    let srv = base.start(echo(), &["-s", "cnt"], "serving cnt");
    let mut cl = base.cmd(echo());
    cl.args(["-c", "cnt", "-r", &N.to_string(), "-z", &M.to_string()]);
    assert_eq!(text(&run(cl).stdout), format!("ok {N}\n"));

    let st = stat_json(&base, None, "cnt");
    assert_eq!(st.get("name").str(), "cnt");
    let n = |k: &str| st.get(k).num();
    assert_eq!(n("requests"), N);
    assert_eq!(n("replies"), N);
    // two hellos (the client's, ours), N requests, our stat frame
    assert_eq!(n("bytes_in"), 2 * HELLO + N * (HEADER + M) + HEADER);
    // two hellos, N replies of the same size (our answer comes after)
    assert_eq!(n("bytes_out"), 2 * HELLO + N * (HEADER + M));
    assert_eq!(n("connections_total"), 2);
    assert!((1..=2).contains(&n("connections_now")));
    assert_eq!((n("pings"), n("stats")), (0, 1));
    assert!(n("deepest_queue_bytes") >= M, "{st:?}");
    for k in [
        "protocol_errors",
        "dropped_hello_deadline",
        "dropped_uid_limit",
        "held_memory_budget",
        "dropped_bad_frame",
        "refused",
    ] {
        assert_eq!(n(k), 0, "{k}");
    }
    assert!(n("uptime_ms") > 0);

    assert_pinged(&base.capsctl(None, &["ping", "cnt", "-c", "3"]), "cnt", 3);
    // a client that breaks the protocol after its hello, and one that
    // never says hello
    let path = v1_dir(&base.base, uid).join("cnt");
    let mut bad = std::os::unix::net::UnixStream::connect(&path).unwrap();
    let mut hello = Vec::new();
    hello.extend_from_slice(b"CAPS");
    hello.extend_from_slice(&1u16.to_le_bytes());
    hello.extend_from_slice(&1u16.to_le_bytes());
    hello.extend_from_slice(&66560u32.to_le_bytes());
    hello.extend_from_slice(&0u32.to_le_bytes());
    use std::io::{Read, Write};
    bad.write_all(&hello).unwrap();
    let mut got = [0u8; 16];
    bad.read_exact(&mut got).unwrap();
    assert_eq!(&got[12..16], &[0, 0, 0, 0], "admitted");
    let mut frame = [0u8; 48];
    frame[0] = 9; // no such kind
    bad.write_all(&frame).unwrap();
    assert_eq!(bad.read(&mut got).unwrap_or(0), 0, "dropped");
    let silent = std::os::unix::net::UnixStream::connect(&path).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2600));
    let st = stat_json(&base, None, "cnt");
    let n = |k: &str| st.get(k).num();
    assert_eq!((n("pings"), n("stats")), (3, 2));
    assert_eq!((n("requests"), n("replies")), (N, N));
    assert_eq!(n("connections_total"), 6);
    assert_eq!(n("protocol_errors"), 1);
    assert_eq!(n("dropped_bad_frame"), 1);
    assert_eq!(n("dropped_hello_deadline"), 1);
    drop(silent);
    let out = srv.kill();
    assert!(
        text(&out.stderr).contains("dropping client pid"),
        "the bad frame is logged: {}",
        text(&out.stderr)
    );
}

/// Services that count what they receive (v1 `caps_echo -n`, v2
/// `v2serve LIMIT`) get exactly the requests of their clients: pings and
/// stats sent first never reach them.
#[test]
fn the_application_never_sees_a_ping_or_a_stat() {
    let base = Base::new("unseen");
    let v1 = base.start(echo(), &["-s", "u1", "-n", "5"], "serving u1");
    let v2 = base.start(hostile(), &["v2serve", "u2", "0", "3"], "serving");
    for name in ["u1", "u2"] {
        assert_pinged(&base.capsctl(None, &["ping", name, "-c", "4"]), name, 4);
        assert_eq!(stat_json(&base, None, name).get("requests").num(), 0);
        assert_eq!(stat_json(&base, None, name).get("stats").num(), 2);
    }
    let mut cl = base.cmd(echo());
    cl.args(["-c", "u1", "-r", "5"]);
    assert_eq!(text(&run(cl).stdout), "ok 5\n");
    // (after "serving u1", which expect_line read)
    assert_eq!(text(&v1.finish().stdout), "served 5\n");
    for _ in 0..3 {
        let mut c = base.cmd(hostile());
        c.args(["v2ping", "u2"]);
        let out = run(c);
        assert!(text(&out.stdout).starts_with("ok"), "{out:?}");
    }
    let out = v2.finish();
    let t = text(&out.stdout);
    assert!(
        t.starts_with("served 3 requests, ") && t.ends_with(" dispose notices, 0 others\n"),
        "{t}"
    );
}

/// User A's service admitting only its own user (CAPS_USER): our ping
/// is refused at the hello (status 1) and counted as refused. A's open
/// service: user B's ping comes back, B's stat is refused with a clear
/// message (status 1), A's and root's are answered.
#[test]
fn refusals_of_ping_and_stat() {
    let Some(users) = TestUsers::create("refusals_of_ping_and_stat", 2) else {
        return;
    };
    let base = Base::new("refuse");
    let (a, a_gid) = users.ids(0);
    let (a_s, g_s) = (a.to_string(), a_gid.to_string());
    let as_a = ["-u", &a_s, "-G", &g_s];
    let strict = base.start(
        echo(),
        &[&as_a[..], &["-s", "strict", "-f", "1"]].concat(),
        "serving strict",
    );
    let open = base.start(
        echo(),
        &[&as_a[..], &["-s", "open"]].concat(),
        "serving open",
    );

    let out = base.capsctl(None, &["ping", "strict", "-c", "2"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        text(&out.stderr).contains("refused: Permission denied"),
        "{}",
        text(&out.stderr)
    );
    // no connection, no round trip: no statistics either
    assert_eq!(text(&out.stdout), "", "ping of a dead service printed");
    // A sees its service's counters: one refusal (ours)
    let st = stat_json(&base, Some((&users, 0)), "strict");
    assert_eq!(st.get("refused").num(), 1);
    assert_eq!(st.get("pings").num(), 0);

    assert_pinged(
        &base.capsctl(Some((&users, 1)), &["ping", "open", "-c", "2"]),
        "open",
        2,
    );
    for args in [&["stat", "open"][..], &["stat", "open", "--json"]] {
        let out = base.capsctl(Some((&users, 1)), args);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let e = text(&out.stderr);
        assert!(
            e.contains(
                "refused: Permission denied: a service's statistics are shown only to its own user"
            ) && e.contains(&format!("(uid {a})")),
            "{e}"
        );
        assert_eq!(text(&out.stdout), "");
    }
    let by_a = stat_json(&base, Some((&users, 0)), "open");
    let by_root = stat_json(&base, None, "open");
    assert_eq!(by_a.get("pings").num(), 2);
    assert_eq!(
        by_root.get("stats").num(),
        2,
        "B's refused stat is not counted"
    );
    drop((strict, open));
}

/// Output nobody can take — a full device, a reader that closed its end
/// of the pipe (`capsctl ping NAME | head -1`) — ends capsctl with status
/// 1 (a message only for the full device), never a panic (134).
#[test]
fn output_nobody_takes_ends_capsctl_without_a_panic() {
    let base = Base::new("stdout");
    let ours = Path::new(env!("CARGO_BIN_EXE_capsctl"));
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    for args in [&["help"][..], &["list"], &["list", "--json"]] {
        let child = Command::new(ours)
            .env("LIBCAPS_DIR", &base.base)
            .args(args)
            .stdin(Stdio::null())
            .stdout(full.try_clone().unwrap())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = common::wait_deadline(child, PROGRAM_DEADLINE, "capsctl");
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        assert!(
            text(&out.stderr).contains("capsctl: standard output: No space left on device"),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    let _srv = base.start(echo(), &["-s", "pp"], "serving pp");
    let mut child = Command::new(ours)
        .env("LIBCAPS_DIR", &base.base)
        .args(["ping", "pp", "-c", "5"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read the first line, then close our end, as `head -1` does.
    let mut first = [0u8; 1];
    let mut stdout = child.stdout.take().unwrap();
    std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
    drop(stdout);
    let out = common::wait_deadline(child, PROGRAM_DEADLINE, "capsctl");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        !text(&out.stderr).contains("panicked"),
        "{}",
        text(&out.stderr)
    );
}

/// `LIBCAPS_DIR` naming a file: `list` and `clean` say so and fail.
#[test]
fn a_rendezvous_directory_that_is_a_file_is_an_error() {
    let ours = Path::new(env!("CARGO_BIN_EXE_capsctl"));
    for args in [&["list"][..], &["list", "--json"], &["clean"]] {
        let out = Command::new(ours)
            .env("LIBCAPS_DIR", "/etc/passwd")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {out:?}");
        assert!(
            text(&out.stderr).contains("/etc/passwd: not a directory"),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
}
