//! nginx config text through `nginx_import::import_text` (what
//! `import-nginx` runs on each file, minus reading it and its includes).
//!
//! Input: the file's text (anything not UTF-8 is skipped: nginx configs
//! are read as text).
//!
//! Checked: no panic (deep nesting, unclosed quotes and blocks, odd
//! listen/size/time/regex values); a syntax error names a line within the
//! text; an import is valid TOML, the same when run again, and each
//! unmapped finding is one line `f.conf:LINE: directive — why` with a line
//! within the text.
#![no_main]

use fcgi_gateway::nginx_import::import_text;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = text.split('\n').count();
    match import_text(text, "f.conf") {
        Err(e) => {
            assert!(e.line >= 1 && e.line <= lines, "error line {} of {lines}", e.line);
            assert!(!e.message.is_empty());
        }
        Ok(import) => {
            if let Err(e) = import.toml.parse::<toml::Table>() {
                panic!("not valid TOML ({e}):\n{}", import.toml);
            }
            for finding in &import.unmapped {
                assert!(!finding.contains('\n'), "multi-line finding {finding:?}");
                let rest = finding.strip_prefix("f.conf:").expect("names the file");
                let (line, rest) = rest.split_once(": ").expect("a line number");
                let line: usize = line.parse().expect("a number");
                assert!(line >= 1 && line <= lines, "finding line {line} of {lines}");
                assert!(rest.contains(" — "), "no reason in {finding:?}");
            }
            let again = import_text(text, "f.conf").expect("parsed once");
            assert_eq!(again, import, "not deterministic");
        }
    }
});
