//! Build script: generates the struct and prototype part of each public C
//! header with cbindgen, and gives the shared library its SONAME.
//!
//! Generated headers go to `$OUT_DIR/gen/`. The committed copies live in
//! `include/libcaps/gen/`; `tests/headers.rs` fails when they drift, and
//! `make headers` (which sets `LIBCAPS_UPDATE_HEADERS=1`) refreshes them.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

/// One generated header: its name under `gen/`, the Rust files it is made
/// from, the headers it includes, the functions the hand-written part
/// provides as `static inline` (so they must not be declared twice), and
/// the C struct/union tags it refers to but another header defines
/// (cbindgen must spell them with their tag).
struct GenHeader {
    name: &'static str,
    sources: &'static [&'static str],
    includes: &'static [&'static str],
    inline_fns: &'static [&'static str],
    foreign_tags: &'static [(&'static str, &'static str)],
    /// Types to emit even though no function of the header uses them.
    extra_types: &'static [&'static str],
}

const HEADERS: &[GenHeader] = &[
    GenHeader {
        name: "msgport",
        sources: &["src/abi/msgport.rs", "src/capi/msgport.rs"],
        includes: &["sys/types.h", "stdint.h"],
        inline_fns: &[
            "lwkt_initmsg",
            "lwkt_reinitmsg",
            "lwkt_beginmsg",
            "lwkt_forwardmsg",
            "lwkt_waitmsg",
            "lwkt_abortmsg",
            "lwkt_replymsg",
        ],
        foreign_tags: &[("thread", "struct thread")],
        extra_types: &[],
    },
    GenHeader {
        name: "thread",
        sources: &["src/abi/sys_thread.rs", "src/capi/thread.rs"],
        includes: &["sys/types.h", "stdint.h"],
        inline_fns: &[],
        foreign_tags: &[
            ("globaldata", "struct globaldata"),
            ("lwkt_port", "struct lwkt_port"),
            ("proc", "struct proc"),
            ("pcb", "struct pcb"),
            ("md_intr_info", "struct md_intr_info"),
        ],
        extra_types: &["lwkt_ipiq", "lwkt_ipiq_t", "ipifunc_t", "lwkt_queue"],
    },
    GenHeader {
        name: "globaldata",
        sources: &["src/abi/libcaps_globaldata.rs", "src/capi/globaldata.rs"],
        includes: &["sys/types.h", "stdint.h"],
        inline_fns: &[],
        foreign_tags: &[
            ("thread", "struct thread"),
            ("thread_queue", "struct thread_queue"),
            ("lwkt_ipiq", "struct lwkt_ipiq"),
        ],
        extra_types: &["globaldata_t"],
    },
];

/// Symbols defined by the C shim that libcaps.so must export (rustc's
/// version script only lists Rust items; a second anonymous version script
/// adds these).
const SHIM_EXPORTS: &[&str] = &["__libcaps_mycpu", "panicstr", "lwkt_create", "lwkt_set_comm", "panic"];

fn main() {
    let major = env::var("CARGO_PKG_VERSION_MAJOR").unwrap();
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libcaps.so.{major}");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-env-changed=LIBCAPS_UPDATE_HEADERS");

    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("gen");
    fs::create_dir_all(&out).unwrap();
    let update = env::var_os("LIBCAPS_UPDATE_HEADERS").is_some();

    build_shim(&root, &out);

    for h in HEADERS {
        let text = generate(&root, h);
        fs::write(out.join(format!("{}.h", h.name)), &text).unwrap();
        if update {
            let dst = root
                .join("include/libcaps/gen")
                .join(format!("{}.h", h.name));
            fs::write(dst, &text).unwrap();
        }
    }
}

fn generate(root: &Path, h: &GenHeader) -> String {
    let mut config = cbindgen::Config::from_file(root.join("cbindgen.toml")).unwrap();
    config.include_guard = Some(format!("_LIBCAPS_GEN_{}_H_", h.name.to_uppercase()));
    config.sys_includes = h.includes.iter().map(|s| s.to_string()).collect();
    config.export.exclude.extend(h.inline_fns.iter().map(|s| s.to_string()));
    config.export.include.extend(h.extra_types.iter().map(|s| s.to_string()));
    for (rust, c) in h.foreign_tags {
        config.export.rename.insert(rust.to_string(), c.to_string());
    }
    let mut builder = cbindgen::Builder::new().with_config(config);
    for src in h.sources {
        println!("cargo:rerun-if-changed={src}");
        builder = builder.with_src(root.join(src));
    }
    let mut buf = Vec::new();
    builder.generate().expect("cbindgen failed").write(&mut buf);
    String::from_utf8(buf).unwrap()
}

/// Compile the C shim (variadic functions, TLS `mycpu`, valgrind client
/// requests) and export its symbols from the shared library.
fn build_shim(root: &Path, out: &Path) {
    let src = root.join("src/capi/shim.c");
    println!("cargo:rerun-if-changed={}", src.display());
    let mut build = cc::Build::new();
    build.file(&src).warnings(true).extra_warnings(true).flag_if_supported("-Werror");
    // valgrind.h comes with the valgrind package (Debian: `valgrind`).
    // Without it the stack registration calls compile to nothing.
    let vg = Path::new("/usr/include/valgrind/valgrind.h");
    println!("cargo:rerun-if-changed={}", vg.display());
    if vg.exists() {
        build.define("LIBCAPS_HAVE_VALGRIND", None);
    } else {
        println!("cargo:warning=valgrind.h not found: thread stacks will not be registered with valgrind");
    }
    build.compile("caps_shim");
    let map = out.join("shim-exports.map");
    let list: String = SHIM_EXPORTS.iter().map(|s| format!("{s}; ")).collect();
    fs::write(&map, format!("{{ global: {list}}};\n")).unwrap();
    println!("cargo:rustc-cdylib-link-arg=-Wl,--version-script={}", map.display());
}
