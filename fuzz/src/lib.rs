//! Helpers shared by the fuzz targets: cutting an input into pieces the
//! way a socket might deliver it, and the file tree the routing targets
//! resolve against.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use fcgi_gateway::route::RouteConfig;

/// Chunk sizes for feeding one input in pieces, from one seed byte.
///
/// Seed 0 means "all at once"; otherwise the low 3 bits pick the largest
/// piece (1 byte up to 64 KiB) and the whole byte seeds a xorshift that
/// picks each piece's size, so the fuzzer can steer the split by mutating
/// a single byte.
pub struct Splits {
    state: u32,
    cap: usize,
}

impl Splits {
    pub fn new(seed: u8) -> Splits {
        const CAPS: [usize; 8] = [1, 2, 7, 9, 16, 63, 255, 65536];
        let cap = if seed == 0 {
            usize::MAX
        } else {
            CAPS[usize::from(seed & 7)]
        };
        Splits {
            state: u32::from(seed).wrapping_mul(0x9E37_79B9) | 1,
            cap,
        }
    }

    /// The next piece's size (at least 1).
    pub fn next_len(&mut self) -> usize {
        if self.cap == usize::MAX {
            return usize::MAX;
        }
        self.state ^= self.state << 13;
        self.state ^= self.state >> 17;
        self.state ^= self.state << 5;
        1 + (self.state as usize) % self.cap
    }

    /// `data` cut into pieces (none when `data` is empty).
    pub fn pieces(mut self, mut data: &[u8]) -> Vec<&[u8]> {
        let mut out = Vec::new();
        while !data.is_empty() {
            let (piece, rest) = data.split_at(self.next_len().min(data.len()));
            out.push(piece);
            data = rest;
        }
        out
    }
}

/// The document root and its neighbours, made once per process.
pub struct Tree {
    /// Canonical temp dir holding everything below.
    pub base: PathBuf,
    /// The document root (canonical).
    pub root: PathBuf,
    /// A sibling of the root no route may reach.
    pub outside: PathBuf,
    /// The `--sendfile-dir` (canonical).
    pub files: PathBuf,
}

static TREE: OnceLock<Tree> = OnceLock::new();

/// The tree, made on first use (a few dozen files and symlinks in a temp
/// dir, removed when the process exits normally).
pub fn tree() -> &'static Tree {
    TREE.get_or_init(|| {
        let tree = make_tree();
        // libFuzzer ends a timed run with exit(), which runs atexit handlers.
        // SAFETY: registering a plain `extern "C" fn` with no arguments.
        unsafe { libc::atexit(remove_tree) };
        tree
    })
}

extern "C" fn remove_tree() {
    if let Some(tree) = TREE.get() {
        let _ = fs::remove_dir_all(&tree.base);
    }
}

fn write(path: &Path, contents: &[u8]) {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).expect("create a directory of the fuzz tree");
    }
    fs::write(path, contents).expect("write a file of the fuzz tree");
}

fn make_tree() -> Tree {
    let dir = tempfile::Builder::new()
        .prefix("fcgi-gateway-fuzz-")
        .tempdir()
        .expect("make the fuzz tree's temp dir")
        .keep();
    let base = fs::canonicalize(dir).expect("canonicalize the temp dir");
    let root = base.join("root");
    let outside = base.join("outside");
    let files = base.join("files");
    for name in [
        "index.php",
        "a.php",
        "info.php",
        "a b.php",
        "x.PHP",
        "readme.txt",
        "100%.txt",
        "caf\u{e9}.txt",
        "fw.\u{ff50}\u{ff48}\u{ff50}",
        "sub/index.php",
        "sub/page.php",
        "sub/deeper/file.css",
        "uploads/evil.jpg",
        "html/index.html",
        "multi/home.php",
        "multi/index.html",
        "...",
        ".env",
        ".git/config",
        ".git/hooks/run.php",
        "sub/.hidden.php",
        ".well-known/x.txt",
        ".well-known/.hidden",
        ".well-known/acme.php",
        "secret.inc",
        "view.PHTML",
        "tool.phar",
        "protected/file.zip",
        "protected/run.php",
        "protected/.hidden",
        "protected/sub/a.txt",
        "protectedx/a.txt",
    ] {
        write(&root.join(name), b"<?php\n");
    }
    fs::create_dir_all(root.join("d.php")).expect("mkdir d.php");
    fs::create_dir_all(root.join("empty")).expect("mkdir empty");
    for name in ["secret.php", "index.php", "notes.txt", ".dot.txt"] {
        write(&outside.join(name), b"outside\n");
    }
    for name in ["a.bin", "sub/b.txt", ".private/c.txt", "code.php", "x.inc"] {
        write(&files.join(name), b"file\n");
    }
    let links: [(&Path, PathBuf); 15] = [
        (&outside.join("secret.php"), root.join("link.php")),
        (&outside, root.join("escape")),
        (&root.join("info.php"), root.join("alias.php")),
        (&outside.join("notes.txt"), root.join("out.txt")),
        (&outside.join(".dot.txt"), root.join("outdot.txt")),
        (&root.join("info.php"), root.join("source.txt")),
        (&root.join(".env"), root.join("env.txt")),
        (&root.join("protected/file.zip"), root.join("pub.zip")),
        (&root.join("protected"), root.join("aliasdir")),
        (Path::new("loop"), root.join("loop")),
        (Path::new("missing"), root.join("dangling.txt")),
        (&outside.join("notes.txt"), files.join("out.txt")),
        (&files.join("a.bin"), files.join("in.txt")),
        (&root.join("readme.txt"), files.join("root.txt")),
        (&files.join(".private"), files.join("open")),
    ];
    for (target, link) in links {
        symlink(target, &link).expect("make a symlink of the fuzz tree");
    }
    // A FIFO: routing must stat it and never serve it (a read would block).
    let fifo = std::ffi::CString::new(root.join("pipe.txt").into_os_string().into_encoded_bytes())
        .expect("no NUL in the temp path");
    // SAFETY: a valid NUL-terminated path.
    if unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) } != 0 {
        panic!("mkfifo: {}", std::io::Error::last_os_error());
    }
    Tree {
        base,
        root,
        outside,
        files,
    }
}

/// Whether `path` is `dir` or below it, comparing whole components.
pub fn is_under(path: &Path, dir: &Path) -> bool {
    path.starts_with(dir)
}

/// The names below `dir` in `path` (which must be under it).
pub fn names_below<'a>(path: &'a Path, dir: &Path) -> Vec<&'a str> {
    path.strip_prefix(dir)
        .map(|rest| {
            rest.components()
                .map(|c| c.as_os_str().to_str().unwrap_or("\u{fffd}"))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a name ends in `.` + `ext` (ASCII case-insensitive), as the
/// gateway compares extensions.
pub fn has_ext(name: &str, ext: &str) -> bool {
    let (name, ext) = (name.as_bytes(), ext.as_bytes());
    name.len() > ext.len()
        && name[name.len() - ext.len() - 1] == b'.'
        && name[name.len() - ext.len()..].eq_ignore_ascii_case(ext)
}

/// Percent-encodes every byte but unreserved ones and '/', so the result
/// decodes back to exactly `path` and has nothing left to normalise away.
pub fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len() * 3);
    for &b in path.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

const NEVER_SERVE: [&str; 4] = ["php", "phtml", "phar", "inc"];

fn configs(t: &Tree) -> [RouteConfig; 4] {
    let base = RouteConfig {
        root: t.root.clone(),
        index: vec!["index.php".to_owned(), "index.html".to_owned()],
        front_controller: None,
        php_only_front_controller: false,
        never_serve_ext: NEVER_SERVE.map(str::to_owned).to_vec(),
        follow_symlinks_outside_root: false,
        internal_locations: Vec::new(),
        // The tree never changes, so a script found stays found: with the
        // cache on (below, once) every answer must be the same as without.
        script_stat_cache: Duration::ZERO,
    };
    [
        base.clone(),
        RouteConfig {
            front_controller: Some("/index.php".to_owned()),
            internal_locations: vec!["/protected".to_owned()],
            ..base.clone()
        },
        RouteConfig {
            front_controller: Some("/index.php".to_owned()),
            php_only_front_controller: true,
            index: vec![
                "home.php".to_owned(),
                "index.html".to_owned(),
                "../x".to_owned(),
            ],
            script_stat_cache: Duration::from_secs(3600),
            ..base.clone()
        },
        RouteConfig {
            follow_symlinks_outside_root: true,
            internal_locations: vec!["/protected".to_owned()],
            never_serve_ext: vec!["txt".to_owned()],
            ..base
        },
    ]
}

/// The four configurations the routing targets try every input under.
pub fn route_configs() -> &'static [RouteConfig; 4] {
    static CFGS: OnceLock<[RouteConfig; 4]> = OnceLock::new();
    CFGS.get_or_init(|| configs(tree()))
}

pub fn never_served(cfg: &RouteConfig, name: &str) -> bool {
    has_ext(name, "php") || cfg.never_serve_ext.iter().any(|e| has_ext(name, e))
}

/// Whether a real path below the root lies in an internal location.
pub fn in_internal(cfg: &RouteConfig, real: &Path) -> bool {
    let names = names_below(real, &cfg.root);
    cfg.internal_locations.iter().any(|loc| {
        let want: Vec<&str> = loc.split('/').filter(|s| !s.is_empty()).collect();
        names.len() >= want.len() && names[..want.len()] == want[..]
    })
}

/// A file the gateway may send or run. Static files (`static_rules`) may
/// not really be hidden; internal locations are allowed only for
/// `X-Accel-Redirect` (`allow_internal`).
pub fn check_file(
    cfg: &RouteConfig,
    path: &Path,
    what: &str,
    static_rules: bool,
    allow_internal: bool,
) {
    assert!(
        path.starts_with(&cfg.root),
        "{what} {path:?} not named under the root"
    );
    let meta = fs::metadata(path).unwrap_or_else(|e| panic!("{what} {path:?}: {e}"));
    assert!(meta.is_file(), "{what} {path:?} is not a regular file");
    let real = fs::canonicalize(path).unwrap_or_else(|e| panic!("{what} {path:?}: {e}"));
    if real.starts_with(&cfg.root) {
        let names = names_below(&real, &cfg.root);
        let hidden = names
            .iter()
            .enumerate()
            .any(|(i, n)| n.starts_with('.') && !(i == 0 && *n == ".well-known"));
        assert!(
            !(static_rules && hidden),
            "{what} {path:?} is hidden (really {real:?})"
        );
        assert!(
            allow_internal || !in_internal(cfg, &real),
            "{what} {path:?} is internal (really {real:?})"
        );
    } else {
        assert!(
            cfg.follow_symlinks_outside_root,
            "{what} {path:?} escapes to {real:?}"
        );
    }
    if static_rules {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let real_name = real.file_name().and_then(|n| n.to_str()).unwrap_or("");
        assert!(!never_served(cfg, name), "{what} {path:?} is never served");
        assert!(!never_served(cfg, real_name), "{what} {path:?} is {real:?}");
        assert!(!real_name.starts_with('.'), "{what} {path:?} is {real:?}");
    }
}
