//! `import-nginx`: reads nginx config files (`include.rs`, the only I/O;
//! `lexer.rs` and `parse.rs` to a directive tree), maps what the gateway
//! can do to its TOML (`map.rs`, `location.rs`, `values.rs`, `emit.rs`) and
//! lists what it cannot, one `file:line: directive — why` each.

mod emit;
mod include;
mod known;
mod lexer;
mod location;
mod map;
mod parse;
mod site;
mod values;

use std::path::PathBuf;
use std::process::ExitCode;

pub use include::LoadError;
pub use parse::SyntaxError;

/// What an import produced: the TOML, and the lines for what did not map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    pub toml: String,
    /// `file:line: directive — why`, in file order.
    pub unmapped: Vec<String>,
}

/// Imports the files (and their includes) as nginx would read them together.
pub fn import_files(files: &[PathBuf]) -> Result<Import, LoadError> {
    let loaded = include::load(files)?;
    let names: Vec<String> = loaded
        .files
        .iter()
        .map(|f| f.display().to_string())
        .collect();
    Ok(finish(&loaded.directives, &names))
}

/// Imports one file's text with no includes read (pure: for tests and the
/// fuzz target). Its lines are named `name`.
pub fn import_text(text: &str, name: &str) -> Result<Import, SyntaxError> {
    let directives = parse::parse(text)?;
    Ok(finish(&directives, &[name.to_string()]))
}

fn finish(directives: &[parse::Directive], names: &[String]) -> Import {
    let mapped = map::map(directives);
    let toml = emit::emit(&mapped, names);
    let mut findings = mapped.findings;
    findings.sort_by_key(|f| (f.file, f.line));
    let unmapped = findings
        .iter()
        .map(|f| {
            let file = names.get(f.file).map_or("?", String::as_str);
            one_line(&format!("{file}:{}: {} — {}", f.line, f.directive, f.why))
        })
        .collect();
    Import { toml, unmapped }
}

/// `text` with control characters escaped, so a quoted argument holding a
/// newline still gives one line per finding.
fn one_line(text: &str) -> String {
    text.chars()
        .flat_map(|c| match c.is_control() {
            true => c.escape_default().collect::<Vec<_>>(),
            false => vec![c],
        })
        .collect()
}

/// The subcommand: TOML to stdout, unmapped lines to stderr; exit 0 when
/// everything mapped, 3 when something did not, 2 when a file cannot be read.
pub fn run(files: &[PathBuf]) -> ExitCode {
    match import_files(files) {
        Ok(import) => {
            print!("{}", import.toml);
            for line in &import.unmapped {
                eprintln!("{line}");
            }
            if import.unmapped.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            }
        }
        Err(e) => {
            eprintln!("fcgi-gateway import-nginx: {e}");
            ExitCode::from(2)
        }
    }
}
