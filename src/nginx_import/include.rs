//! Reading the files: each FILE given, and every `include` inside them,
//! expanded in place. The only part of the importer that does I/O.

use std::fs;
use std::path::{Path, PathBuf};

use super::parse::{parse, Directive};

/// Everything read: the files (for `file:line` messages) and the
/// directives of all FILEs in order, includes expanded.
#[derive(Debug)]
pub struct Loaded {
    pub files: Vec<PathBuf>,
    pub directives: Vec<Directive>,
}

/// A file that cannot be read or parsed; `Display` is `file:line: why`.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{file}: {why}")]
    Unreadable { file: String, why: String },
    #[error("{file}:{line}: {why}")]
    At {
        file: String,
        line: usize,
        why: String,
    },
}

/// Includes nested deeper than this are taken for a loop.
const MAX_INCLUDE_DEPTH: usize = 16;

/// Files nginx installs that hold only what the gateway does by itself
/// (the standard CGI params, the PHP location snippet, MIME types): a
/// missing one is taken as its usual content, so a site file copied out of
/// /etc/nginx still imports.
pub const BUILT_IN_INCLUDES: &[&str] = &[
    "fastcgi_params",
    "fastcgi.conf",
    "snippets/fastcgi-php.conf",
    "mime.types",
];

/// Reads `files` in order, expanding includes.
pub fn load(files: &[PathBuf]) -> Result<Loaded, LoadError> {
    let conf_dir = files
        .first()
        .and_then(|f| f.parent())
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut loader = Loader {
        conf_dirs: conf_dirs(&conf_dir),
        files: Vec::new(),
    };
    let mut directives = Vec::new();
    for file in files {
        directives.extend(loader.read(file, 0)?);
    }
    Ok(Loaded {
        files: loader.files,
        directives,
    })
}

/// Where relative includes are looked for after the including file's own
/// directory: the first FILE's directory (nginx's conf dir), and its parent
/// when that is a `sites-enabled`-style directory (Debian's layout).
fn conf_dirs(first_dir: &Path) -> Vec<PathBuf> {
    let mut dirs = vec![first_dir.to_path_buf()];
    let layout_dir = first_dir
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| matches!(n, "sites-enabled" | "sites-available" | "conf.d"));
    if let (true, Some(parent)) = (layout_dir, first_dir.parent()) {
        dirs.push(parent.to_path_buf());
    }
    dirs
}

struct Loader {
    conf_dirs: Vec<PathBuf>,
    files: Vec<PathBuf>,
}

impl Loader {
    fn read(&mut self, path: &Path, depth: usize) -> Result<Vec<Directive>, LoadError> {
        let text = fs::read_to_string(path).map_err(|e| LoadError::Unreadable {
            file: path.display().to_string(),
            why: e.to_string(),
        })?;
        let mut tree = parse(&text).map_err(|e| LoadError::At {
            file: path.display().to_string(),
            line: e.line,
            why: e.message,
        })?;
        let index = self.files.len();
        self.files.push(path.to_path_buf());
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        set_file(&mut tree, index);
        self.expand(tree, &dir, depth)
    }

    /// `tree` with each `include` replaced by what it names.
    fn expand(
        &mut self,
        tree: Vec<Directive>,
        dir: &Path,
        depth: usize,
    ) -> Result<Vec<Directive>, LoadError> {
        let mut out = Vec::with_capacity(tree.len());
        for mut directive in tree {
            if directive.name == "include" && directive.block.is_none() {
                out.extend(self.include(&directive, dir, depth)?);
                continue;
            }
            if let Some(block) = directive.block.take() {
                directive.block = Some(self.expand(block, dir, depth)?);
            }
            out.push(directive);
        }
        Ok(out)
    }

    fn include(
        &mut self,
        directive: &Directive,
        dir: &Path,
        depth: usize,
    ) -> Result<Vec<Directive>, LoadError> {
        let at = |why: String| LoadError::At {
            file: self.file_name(directive.file),
            line: directive.line,
            why,
        };
        if directive.args.len() != 1 {
            return Err(at("include takes one file name".into()));
        }
        if depth >= MAX_INCLUDE_DEPTH {
            return Err(at(format!(
                "includes nested deeper than {MAX_INCLUDE_DEPTH} (a loop?)"
            )));
        }
        let pattern = directive.arg(0);
        let found = self.find(dir, pattern);
        if found.is_empty() {
            if has_glob(pattern) || BUILT_IN_INCLUDES.contains(&pattern) {
                return Ok(Vec::new());
            }
            return Err(at(format!("include {pattern}: no such file")));
        }
        let mut out = Vec::new();
        for file in found {
            out.extend(self.read(&file, depth + 1)?);
        }
        Ok(out)
    }

    /// The files `pattern` names: relative to `dir`, then to the conf dirs;
    /// a `*`/`?` in the last component matches like a shell glob, sorted.
    fn find(&self, dir: &Path, pattern: &str) -> Vec<PathBuf> {
        let pattern_path = Path::new(pattern);
        let bases: Vec<PathBuf> = if pattern_path.is_absolute() {
            vec![PathBuf::new()]
        } else {
            std::iter::once(dir.to_path_buf())
                .chain(self.conf_dirs.iter().cloned())
                .collect()
        };
        for base in bases {
            let full = base.join(pattern_path);
            let matches = if has_glob(pattern) {
                glob_last_component(&full)
            } else if full.is_file() {
                vec![full]
            } else {
                Vec::new()
            };
            if !matches.is_empty() {
                return matches;
            }
        }
        Vec::new()
    }

    fn file_name(&self, index: usize) -> String {
        self.files
            .get(index)
            .map_or_else(String::new, |f| f.display().to_string())
    }
}

fn set_file(tree: &mut [Directive], index: usize) {
    for directive in tree {
        directive.file = index;
        if let Some(block) = &mut directive.block {
            set_file(block, index);
        }
    }
}

fn has_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?'])
}

/// Regular files in `full`'s directory whose names match its last component.
fn glob_last_component(full: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (full.parent(), full.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|entry| {
            entry.file_name().to_str().is_some_and(|candidate| {
                // As glob(3): a leading dot is matched only by a literal one.
                (!candidate.starts_with('.') || name.starts_with('.'))
                    && glob_matches(name.as_bytes(), candidate.as_bytes())
            })
        })
        .map(|entry| entry.path())
        .filter(|path| path.is_file())
        .collect();
    found.sort();
    found
}

/// Shell-style match of `*` (any run) and `?` (one byte).
pub(super) fn glob_matches(pattern: &[u8], name: &[u8]) -> bool {
    // Iterative with one backtrack point: linear enough, and no recursion.
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == b'?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((star_p, star_n)) => {
                    p = star_p + 1;
                    n = star_n + 1;
                    star = Some((star_p, star_n + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matching() {
        assert!(glob_matches(b"*", b"default"));
        assert!(glob_matches(b"*.conf", b"a.conf"));
        assert!(!glob_matches(b"*.conf", b"a.conf.bak"));
        assert!(glob_matches(b"a?c*", b"abcdef"));
        assert!(!glob_matches(b"a?c", b"ac"));
    }

    #[test]
    fn includes_expand_relative_then_from_the_conf_dir_with_globs() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::create_dir_all(d.join("sites-enabled")).unwrap();
        fs::create_dir_all(d.join("snippets")).unwrap();
        fs::write(
            d.join("nginx.conf"),
            "http {\n include sites-enabled/*;\n}\n",
        )
        .unwrap();
        fs::write(
            d.join("sites-enabled/b"),
            "server { include snippets/x.conf; }",
        )
        .unwrap();
        fs::write(d.join("sites-enabled/a"), "server { listen 81; }").unwrap();
        fs::write(d.join("sites-enabled/.hidden"), "broken {").unwrap();
        fs::write(d.join("snippets/x.conf"), "\nlisten 82;").unwrap();
        let loaded = load(&[d.join("nginx.conf")]).unwrap();
        let http = loaded.directives[0].block.as_ref().unwrap();
        assert_eq!(http.len(), 2);
        let b = http[1].block.as_ref().unwrap();
        assert_eq!(b[0].args, ["82"]);
        assert_eq!(loaded.files[b[0].file], d.join("snippets/x.conf"));
        assert_eq!(b[0].line, 2);
    }

    #[test]
    fn site_file_in_sites_enabled_finds_snippets_in_the_parent() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::create_dir_all(d.join("sites-enabled")).unwrap();
        fs::create_dir_all(d.join("snippets")).unwrap();
        fs::write(d.join("sites-enabled/default"), "include snippets/y.conf;").unwrap();
        fs::write(d.join("snippets/y.conf"), "root /srv;").unwrap();
        let loaded = load(&[d.join("sites-enabled/default")]).unwrap();
        assert_eq!(loaded.directives[0].name, "root");
    }

    #[test]
    fn missing_files_loops_and_syntax_errors_say_where() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(d.join("a.conf"), "\ninclude missing.conf;").unwrap();
        let e = load(&[d.join("a.conf")]).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{}:2: ", d.join("a.conf").display())),
            "{e}"
        );
        fs::write(d.join("loop.conf"), "include loop.conf;").unwrap();
        let e = load(&[d.join("loop.conf")]).unwrap_err().to_string();
        assert!(e.contains("loop"), "{e}");
        fs::write(d.join("bad.conf"), "a {\n").unwrap();
        assert!(load(&[d.join("bad.conf")]).is_err());
        assert!(load(&[d.join("nope.conf")]).is_err());
        // The standard files, missing, are their usual (built-in) content.
        fs::write(d.join("php.conf"), "include fastcgi_params;").unwrap();
        assert!(load(&[d.join("php.conf")]).unwrap().directives.is_empty());
    }
}
