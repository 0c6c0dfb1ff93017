//! Output of capsctl: JSON written by hand, user and group names, the
//! text tables.

use std::collections::HashMap;
use std::ffi::CStr;
use std::fmt::Write as _;

/// `s` as a JSON string, quotes included (RFC 8259: `"`, `\` and the
/// control characters escaped; bytes that are not UTF-8 become U+FFFD).
pub fn json_str(s: &[u8]) -> String {
    let text = String::from_utf8_lossy(s);
    let mut o = String::with_capacity(text.len() + 2);
    o.push('"');
    for c in text.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(o, "\\u{:04x}", c as u32);
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// A JSON object built field by field, in order.
#[derive(Default)]
pub struct Obj(Vec<(String, String)>);

impl Obj {
    /// Add a field whose value is already JSON.
    pub fn raw(mut self, key: &str, value: String) -> Obj {
        self.0.push((key.to_string(), value));
        self
    }

    pub fn str(self, key: &str, value: &[u8]) -> Obj {
        self.raw(key, json_str(value))
    }

    pub fn num(self, key: &str, value: impl std::fmt::Display) -> Obj {
        self.raw(key, value.to_string())
    }

    /// A number, or `null`.
    pub fn opt(self, key: &str, value: Option<impl std::fmt::Display>) -> Obj {
        self.raw(key, value.map_or_else(|| "null".into(), |v| v.to_string()))
    }

    /// A string, or `null`.
    pub fn opt_str(self, key: &str, value: Option<&[u8]>) -> Obj {
        self.raw(key, value.map_or_else(|| "null".into(), json_str))
    }

    pub fn build(&self) -> String {
        let fields: Vec<String> = self
            .0
            .iter()
            .map(|(k, v)| format!("{}: {v}", json_str(k.as_bytes())))
            .collect();
        format!("{{{}}}", fields.join(", "))
    }
}

/// A JSON array of already-JSON values, one per line.
pub fn json_array(items: &[String]) -> String {
    if items.is_empty() {
        return "[]".into();
    }
    format!("[\n    {}\n  ]", items.join(",\n    "))
}

/// User and group names, looked up once each.
#[derive(Default)]
pub struct Names {
    users: HashMap<u32, Option<String>>,
    groups: HashMap<u32, Option<String>>,
}

/// Call `f(buf)` with a growing buffer while it says `ERANGE`.
fn with_buf(mut f: impl FnMut(&mut Vec<libc::c_char>) -> libc::c_int) -> bool {
    let mut buf = vec![0 as libc::c_char; 1024];
    loop {
        match f(&mut buf) {
            0 => return true,
            libc::ERANGE if buf.len() < 1 << 20 => buf.resize(buf.len() * 2, 0),
            _ => return false,
        }
    }
}

impl Names {
    /// The name of user `uid` (`getpwuid_r`), if it has one.
    pub fn user(&mut self, uid: u32) -> Option<String> {
        self.users
            .entry(uid)
            .or_insert_with(|| {
                // SAFETY: passwd is plain data.
                let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
                let mut res: *mut libc::passwd = std::ptr::null_mut();
                let mut name = None;
                with_buf(|buf| {
                    // SAFETY: valid out-pointers and a buffer of its length.
                    let r = unsafe {
                        libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut res)
                    };
                    if r == 0 && !res.is_null() {
                        // SAFETY: on success pw_name points into `buf`.
                        name = Some(
                            unsafe { CStr::from_ptr(pw.pw_name) }
                                .to_string_lossy()
                                .into(),
                        );
                    }
                    r
                });
                name
            })
            .clone()
    }

    /// The name of group `gid` (`getgrgid_r`), if it has one.
    pub fn group(&mut self, gid: u32) -> Option<String> {
        self.groups
            .entry(gid)
            .or_insert_with(|| {
                // SAFETY: group is plain data.
                let mut gr: libc::group = unsafe { std::mem::zeroed() };
                let mut res: *mut libc::group = std::ptr::null_mut();
                let mut name = None;
                with_buf(|buf| {
                    // SAFETY: valid out-pointers and a buffer of its length.
                    let r = unsafe {
                        libc::getgrgid_r(gid, &mut gr, buf.as_mut_ptr(), buf.len(), &mut res)
                    };
                    if r == 0 && !res.is_null() {
                        // SAFETY: on success gr_name points into `buf`.
                        name = Some(
                            unsafe { CStr::from_ptr(gr.gr_name) }
                                .to_string_lossy()
                                .into(),
                        );
                    }
                    r
                });
                name
            })
            .clone()
    }

    /// `user:group`, numbers where there is no name.
    pub fn owner(&mut self, uid: u32, gid: u32) -> String {
        format!(
            "{}:{}",
            self.user(uid).unwrap_or_else(|| uid.to_string()),
            self.group(gid).unwrap_or_else(|| gid.to_string())
        )
    }
}

/// Rows of cells printed as left-aligned columns, two spaces apart.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let width: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut o = String::new();
    for r in rows {
        let mut line = String::new();
        for (c, cell) in r.iter().enumerate() {
            if c + 1 == r.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ", w = width[c]);
            }
        }
        o.push_str(line.trim_end());
        o.push('\n');
    }
    o
}

/// Write to standard output and flush. A reader that went away (`EPIPE`:
/// `capsctl list | head -1`) ends capsctl at once with status 1 and no
/// message, as a C tool killed by `SIGPIPE` would end quietly; any other
/// write error (`ENOSPC`, ...) is said on standard error, status 1.
/// `print!` would panic instead.
pub fn emit(args: std::fmt::Arguments) {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    if let Err(e) = o.write_fmt(args).and_then(|()| o.flush()) {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("capsctl: standard output: {e}");
        }
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_str(b"a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(json_str(b"x\ny\x01\x7f"), r#""x\ny\u0001\u007f""#);
        assert_eq!(json_str(b"\xff"), "\"\u{fffd}\"");
        let o = Obj::default()
            .str("n", b"q\"")
            .opt("p", None::<u32>)
            .num("k", 3);
        assert_eq!(o.build(), r#"{"n": "q\"", "p": null, "k": 3}"#);
    }

    #[test]
    fn root_has_a_name() {
        let mut n = Names::default();
        assert_eq!(n.user(0).as_deref(), Some("root"));
        assert_eq!(n.owner(0, 0), "root:root");
        assert_eq!(n.user(4_000_000_000), None);
    }

    #[test]
    fn table_aligns_columns() {
        let t = table(&[
            vec!["A".into(), "BB".into(), "C".into()],
            vec!["aaa".into(), "b".into(), "c".into()],
        ]);
        assert_eq!(t, "A    BB  C\naaa  b   c\n");
    }
}
