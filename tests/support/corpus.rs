//! The nginx configs of `tests/nginx-corpus/` made concrete: a copy with
//! the placeholders (`@ROOT@`, `@FPM_UNIX@`, `@FPM_TCP@`, `@PORT@`, `@CONF@`;
//! see its README) replaced, and `fcgi-gateway import-nginx` run on it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What the placeholders stand for.
pub struct Placeholders {
    pub root: PathBuf,
    pub fpm_unix: String,
    pub fpm_tcp: String,
    pub port: u16,
}

/// `tests/nginx-corpus/<name>`.
pub fn corpus_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/nginx-corpus")
        .join(name)
}

/// `fixtures/sites/<name>`.
pub fn fixture_site(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/sites")
        .join(name)
}

/// Copies the corpus config `name` into `dest` with the placeholders
/// replaced in every file.
pub fn copy_config(name: &str, dest: &Path, with: &Placeholders) {
    copy_replacing(&corpus_dir(name), dest, dest, with);
}

fn copy_replacing(from: &Path, to: &Path, conf: &Path, with: &Placeholders) {
    fs::create_dir_all(to).expect("corpus copy dir");
    for entry in fs::read_dir(from).expect("read corpus dir") {
        let entry = entry.expect("corpus entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_replacing(&entry.path(), &target, conf, with);
            continue;
        }
        let text = fs::read_to_string(entry.path()).expect("read corpus file");
        let text = text
            .replace("@ROOT@", &with.root.display().to_string())
            .replace("@FPM_UNIX@", &with.fpm_unix)
            .replace("@FPM_TCP@", &with.fpm_tcp)
            .replace("@PORT@", &with.port.to_string())
            .replace("@CONF@", &conf.display().to_string());
        fs::write(&target, text).expect("write corpus copy");
    }
}

/// What `import-nginx` answered.
pub struct Imported {
    pub code: Option<i32>,
    pub toml: String,
    pub stderr: String,
}

impl Imported {
    pub fn table(&self) -> toml::Table {
        self.toml
            .parse()
            .unwrap_or_else(|e| panic!("import-nginx printed no valid TOML ({e}):\n{}", self.toml))
    }

    /// Writes the TOML to `path` and returns it.
    pub fn write_to(&self, path: &Path) -> PathBuf {
        fs::write(path, &self.toml).expect("write the imported TOML");
        path.to_path_buf()
    }
}

/// Runs `fcgi-gateway import-nginx FILES…`.
pub fn import(files: &[&Path]) -> Imported {
    let out = Command::new(env!("CARGO_BIN_EXE_fcgi-gateway"))
        .arg("import-nginx")
        .args(files)
        .output()
        .expect("run fcgi-gateway import-nginx");
    Imported {
        code: out.status.code(),
        toml: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `fcgi-gateway check-config FILE`: (exit code, what it printed).
pub fn check_config(file: &Path) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fcgi-gateway"))
        .arg("check-config")
        .arg(file)
        .output()
        .expect("run fcgi-gateway check-config");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}
