//! PHP's error lines as they arrive on FastCGI STDERR, split into fields
//! (level, message, file, line) so logs can be searched by them.
//! Format (php-fpm prefixes "PHP message: "):
//! `PHP Warning:  Undefined variable $x in /srv/app/a.php on line 3`.

/// One PHP error line, borrowing from the text it was parsed from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhpError<'a> {
    /// As PHP names it: `Warning`, `Fatal error`, `Notice`, `Deprecated`, `Parse error`...
    pub level: &'a str,
    pub message: &'a str,
    pub file: &'a str,
    pub line: u32,
}

/// Parses a line in PHP's error format; None for anything else (such lines
/// are logged as they are).
pub fn parse(line: &str) -> Option<PhpError<'_>> {
    let rest = line.strip_prefix("PHP message: ").unwrap_or(line);
    let rest = rest.strip_prefix("PHP ")?;
    let (level, rest) = rest.split_once(':')?;
    if level.is_empty()
        || level.len() > 32
        || !level.chars().all(|c| c.is_ascii_alphabetic() || c == ' ')
    {
        return None;
    }
    let rest = rest.trim_start();
    // The message itself may contain " in "; the location is the last one.
    let (message, location) = rest.rsplit_once(" in ")?;
    let (file, line_no) = location.rsplit_once(" on line ")?;
    let line_no: u32 = line_no.trim().parse().ok()?;
    if file.is_empty() {
        return None;
    }
    Some(PhpError {
        level,
        message: message.trim(),
        file,
        line: line_no,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_php_fpm_lines() {
        let e =
            parse("PHP message: PHP Warning:  Undefined variable $x in /srv/app/a.php on line 3")
                .unwrap();
        assert_eq!(e.level, "Warning");
        assert_eq!(e.message, "Undefined variable $x");
        assert_eq!(e.file, "/srv/app/a.php");
        assert_eq!(e.line, 3);
        let e = parse(
            "PHP Fatal error:  Uncaught Exception: boom in /a b/x.php:7 in /a b/x.php on line 12",
        )
        .unwrap();
        assert_eq!(e.level, "Fatal error");
        assert_eq!(e.message, "Uncaught Exception: boom in /a b/x.php:7");
        assert_eq!(e.file, "/a b/x.php");
        assert_eq!(e.line, 12);
    }

    #[test]
    fn other_lines_are_not_php_errors() {
        for line in [
            "Primary script unknown",
            "PHP message: fixture stderr line",
            "PHP Warning:  no location here",
            "PHP Warning:  x in /a.php on line twelve",
            "PHP 123: x in /a.php on line 1",
            "",
        ] {
            assert_eq!(parse(line), None, "{line}");
        }
    }
}
