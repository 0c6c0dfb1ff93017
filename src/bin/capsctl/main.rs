//! capsctl: list, ping, inspect and clean the CAPS services under the
//! rendezvous directory (see man/capsctl.1).
//!
//! Exit status: 0 done, 1 something could not be done (a named node not
//! removed; a ping that did not come back; statistics refused), 2 usage
//! errors and no such service.

/// `print!` that never panics: see [`out::emit`].
macro_rules! out {
    ($($t:tt)*) => { $crate::out::emit(format_args!($($t)*)) };
}

/// `println!` that never panics: see [`out::emit`].
macro_rules! outln {
    ($($t:tt)*) => { $crate::out::emit(format_args!("{}\n", format_args!($($t)*))) };
}

mod health;
mod out;

use std::path::Path;
use std::time::Duration;

use caps::caps::cred::Cred;
use caps::caps::probe::{self, Face, Kept, Node, Probe, State};
use caps::caps::rendezvous;
use out::{Names, Obj};

/// How long `list` and `clean` wait for the services' hellos.
const HELLO_WAIT: Duration = Duration::from_millis(1000);

const USAGE: &str = "\
usage: capsctl list [--json]
       capsctl ping NAME [-u UID] [-c COUNT]
       capsctl stat NAME [-u UID] [--json]
       capsctl clean [NAME]
       capsctl help | --help
";

const HELP: &str = "\
capsctl -- look at the CAPS services of this machine

  list [--json]     every service under the rendezvous directory: name,
                    face (v1 caps_service, v2 caps_sys_service), owner,
                    mode, the serving process (pid and command) and its
                    state: alive, busy (connected, no hello yet), refusing
                    (does not admit you), stale (node of a dead service),
                    impostor (served by a process that may not publish
                    it), leftover (temporary node of a dead process)
  ping NAME [-u UID] [-c COUNT]
                    time COUNT (default 5) round trips of a no-op frame
                    the service's library answers itself; exit status 0
                    when every one came back, 1 otherwise (dead service,
                    refused, no answer within 2 s)
  stat NAME [-u UID] [--json]
                    the counters the service's library keeps: connections,
                    requests, replies, bytes, drops by reason, the deepest
                    queue, uptime; shown only to the service's own user
                    and to root
  clean [NAME]      remove the stale nodes you own (root: any), or those
                    of service NAME; a live service is never removed

-u UID picks the service of that user when several have the name.
A v2 (caps_sys_*) service answers ping and stat only while its program
is inside a caps_sys_* call. The rendezvous directory is $LIBCAPS_DIR,
or /var/caps. See capsctl(1).
";

fn usage(msg: &str) -> i32 {
    eprintln!("capsctl: {msg}\n{USAGE}");
    2
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let code = match args.split_first() {
        None => usage("no command given"),
        Some((&("help" | "--help" | "-h"), [])) => {
            out!("{HELP}");
            0
        }
        Some((&("help" | "--help" | "-h"), _)) => usage("help takes no arguments"),
        Some((&"list", rest)) => match rest {
            [] => list(false),
            ["--json"] => list(true),
            _ => usage(&format!("list: unexpected {}", rest.join(" "))),
        },
        Some((&"clean", rest)) => match rest {
            [] => clean(None),
            [name] if !name.starts_with('-') => clean(Some(name)),
            _ => usage(&format!("clean: unexpected {}", rest.join(" "))),
        },
        Some((&"ping", rest)) => match health::PingArgs::parse(rest) {
            Ok(a) => health::ping(&a),
            Err(e) => usage(&format!("ping: {e}")),
        },
        Some((&"stat", rest)) => match health::StatArgs::parse(rest) {
            Ok(a) => health::stat(&a),
            Err(e) => usage(&format!("stat: {e}")),
        },
        Some((cmd, _)) => usage(&format!("unknown command {cmd}")),
    };
    std::process::exit(code);
}

/// A node, what answered there, and what `list` calls its state.
struct Row {
    node: Node,
    probe: Probe,
}

impl Row {
    /// A temporary node of a process that is gone.
    fn leftover(&self) -> bool {
        self.node.temp_pid.is_some() && self.probe.state == State::Stale
    }

    fn state_word(&self) -> &'static str {
        if self.leftover() {
            "leftover"
        } else {
            self.probe.state.word()
        }
    }

    /// Why, for a refusing or failed probe.
    fn reason(&self) -> Option<String> {
        match self.probe.state {
            State::Refusing(e) | State::Error(e) => Some(probe::strerror(e)),
            _ => None,
        }
    }
}

/// Every node under the rendezvous directory, probed; temporary nodes of
/// a process still making its service are left out.
fn survey(base: &Path) -> Vec<Row> {
    let nodes: Vec<Node> = probe::scan(base)
        .into_iter()
        .filter(|n| !n.temp_pid.is_some_and(probe::pid_exists))
        .collect();
    let probes = probe::probe_all(&nodes, HELLO_WAIT);
    nodes
        .into_iter()
        .zip(probes)
        .map(|(node, probe)| Row { node, probe })
        .collect()
}

fn face_word(f: Face) -> &'static str {
    match f {
        Face::V1 => "v1",
        Face::V2 => "v2",
    }
}

/// `/proc/PID/comm`, the command of a process.
fn command_of(pid: i32) -> Option<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    Some(s.trim_end_matches('\n').to_string())
}

/// The rendezvous directory, or the status to exit with when
/// `LIBCAPS_DIR` names something that is not a directory (said on
/// standard error). A directory that does not exist holds no services.
fn base_dir(cmd: &str) -> Result<std::path::PathBuf, i32> {
    let base = rendezvous::base_dir();
    match std::fs::metadata(&base) {
        Ok(m) if !m.is_dir() => {
            eprintln!(
                "capsctl: {cmd}: {}: not a directory (LIBCAPS_DIR)",
                base.display()
            );
            Err(1)
        }
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            eprintln!("capsctl: {cmd}: {}: {e}", base.display());
            Err(1)
        }
        _ => Ok(base),
    }
}

fn list(json: bool) -> i32 {
    let base = match base_dir("list") {
        Ok(b) => b,
        Err(code) => return code,
    };
    let rows = survey(&base);
    let mut names = Names::default();
    if json {
        let items: Vec<String> = rows.iter().map(|r| row_json(r, &mut names)).collect();
        let doc = Obj::default()
            .str("base", base.as_os_str().as_encoded_bytes())
            .raw("services", out::json_array(&items));
        outln!(
            "{}",
            doc.build()
                .replacen(", \"services\"", ",\n  \"services\"", 1)
        );
        return 0;
    }
    if rows.is_empty() {
        outln!("no services under {}", base.display());
        return 0;
    }
    let mut table = vec![
        ["FACE", "NAME", "OWNER", "MODE", "PID", "COMMAND", "STATE"]
            .map(String::from)
            .to_vec(),
    ];
    for r in &rows {
        let n = &r.node;
        let server = r.probe.server.as_ref();
        let mut state = r.state_word().to_string();
        if let Some(why) = r.reason() {
            state = format!("{state} ({why})");
        }
        table.push(vec![
            face_word(n.face).into(),
            n.file.to_string_lossy().into_owned(),
            names.owner(n.uid, n.gid),
            format!("{:04o}", n.mode),
            server.map_or("-".into(), |c| c.pid.to_string()),
            server
                .and_then(|c| command_of(c.pid))
                .unwrap_or_else(|| "-".into()),
            state,
        ]);
    }
    out!("{}", out::table(&table));
    0
}

fn row_json(r: &Row, names: &mut Names) -> String {
    let n = &r.node;
    let user = |names: &mut Names, uid: u32| names.user(uid);
    let owner = Obj::default()
        .num("uid", n.uid)
        .opt_str("user", user(names, n.uid).as_deref().map(str::as_bytes))
        .num("gid", n.gid)
        .opt_str("group", names.group(n.gid).as_deref().map(str::as_bytes))
        .build();
    let server = r.probe.server.as_ref().map_or("null".into(), |c: &Cred| {
        Obj::default()
            .num("pid", c.pid)
            .num("uid", c.uid)
            .num("gid", c.gid)
            .opt_str("command", command_of(c.pid).as_deref().map(str::as_bytes))
            .build()
    });
    let keys = n.keys.map_or("null".into(), |(u, g)| {
        Obj::default().opt("uid", u).opt("gid", g).build()
    });
    Obj::default()
        .str("name", &n.name)
        .str("node", n.file.as_encoded_bytes())
        .str("path", n.path().as_os_str().as_encoded_bytes())
        .str("face", face_word(n.face).as_bytes())
        .raw("owner", owner)
        .str("mode", format!("{:04o}", n.mode).as_bytes())
        .raw("registered_for", keys)
        .raw("server", server)
        .str("state", r.state_word().as_bytes())
        .opt_str("reason", r.reason().as_deref().map(str::as_bytes))
        .opt("temp_pid", n.temp_pid)
        .build()
}

/// Does `name` name this node: its service name or its file name?
fn names_node(name: &str, n: &Node) -> bool {
    n.name == name.as_bytes() || n.file.as_encoded_bytes() == name.as_bytes()
}

fn clean(name: Option<&str>) -> i32 {
    let base = match base_dir("clean") {
        Ok(b) => b,
        Err(code) => return code,
    };
    let me = Cred::of_self().uid;
    let mut removed = 0;
    let mut status = 0;
    for r in survey(&base) {
        let n = &r.node;
        if name.is_some_and(|want| !names_node(want, n)) {
            continue;
        }
        let mine = me == 0 || n.uid == me;
        // Another user's node we may not connect to may be stale or not:
        // either way it is not ours to remove.
        let unknown = r.probe.server.is_none()
            && matches!(r.probe.state, State::Refusing(libc::EACCES | libc::EPERM));
        if r.probe.state != State::Stale && (mine || !unknown) {
            continue;
        }
        let path = n.path();
        if !mine {
            // Without a name, another user's nodes are none of our business.
            if name.is_some() {
                eprintln!(
                    "capsctl: clean: {}: owned by uid {}, not by you: not removed",
                    path.display(),
                    n.uid
                );
                status = 1;
            }
            continue;
        }
        match probe::remove_stale(&base, n) {
            Ok(()) => {
                removed += 1;
                outln!(
                    "removed {} ({} {}, {} of a dead service)",
                    path.display(),
                    face_word(n.face),
                    String::from_utf8_lossy(&n.name),
                    if r.leftover() {
                        "temporary node"
                    } else {
                        "node"
                    }
                );
            }
            Err(Kept::NotOwner) => {
                eprintln!(
                    "capsctl: clean: {}: owned by uid {}, not by you: not removed",
                    path.display(),
                    n.uid
                );
                status = 1;
            }
            Err(Kept::Live(s)) => {
                outln!("kept {}: {} again", path.display(), s.word());
            }
            Err(Kept::InCreation) | Err(Kept::Changed) => {
                outln!("kept {}: replaced meanwhile", path.display());
            }
            Err(Kept::Error(e)) => {
                eprintln!("capsctl: clean: {}: {e}", path.display());
                status = 1;
            }
        }
    }
    if removed == 0 && status == 0 {
        match name {
            Some(want) => outln!("nothing to remove: no stale node of {want}"),
            None => outln!("nothing to remove"),
        }
    }
    status
}
