//! A disposable copy of `fixtures/site` (a small PHP app with static files)
//! plus what git cannot carry: a `.git/config`, and symlinks that lead out
//! of the document root into a sibling `outside/` directory.
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

/// Text of `outside/secret.txt`; must never appear in a response unless
/// symlinks out of the root are allowed.
pub const OUTSIDE_SECRET: &str = "outside-secret";

pub struct Site {
    _dir: TempDir,
    /// The document root (canonical), a copy of `fixtures/site`.
    pub root: PathBuf,
    /// A sibling of the root holding `secret.txt` and `hello.php`.
    pub outside: PathBuf,
}

impl Site {
    pub fn new() -> Site {
        let dir = tempfile::Builder::new()
            .prefix("site-")
            .tempdir()
            .expect("temp dir for the site");
        let base = fs::canonicalize(dir.path()).expect("canonical temp dir");
        let root = base.join("root");
        let outside = base.join("outside");
        copy_tree(&fixtures_site(), &root);
        fs::create_dir_all(root.join(".git")).unwrap();
        fs::write(
            root.join(".git/config"),
            "[core]\n\trepositoryformatversion = 0 # git-secret\n",
        )
        .unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("secret.txt"), OUTSIDE_SECRET).unwrap();
        fs::write(
            outside.join("hello.php"),
            "<?php echo 'outside ' . 'ran';\n",
        )
        .unwrap();
        symlink(outside.join("secret.txt"), root.join("escape.txt")).unwrap();
        symlink(&outside, root.join("linkdir")).unwrap();
        symlink(outside.join("hello.php"), root.join("outside.php")).unwrap();
        Site {
            _dir: dir,
            root,
            outside,
        }
    }

    /// A gateway serving this site from `upstream`, with `extra` flags.
    pub async fn gateway(&self, upstream: &str, extra: &[&str]) -> super::gateway::Gateway {
        super::gateway::Gateway::serve(upstream, &self.root_arg(), extra).await
    }

    pub fn root_arg(&self) -> String {
        self.root.display().to_string()
    }

    /// The bytes of a file under the root.
    pub fn bytes(&self, rel: &str) -> Vec<u8> {
        fs::read(self.root.join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }
}

/// Absolute path of `<crate>/fixtures/site`.
pub fn fixtures_site() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join("site")
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}
