//! nginx config text → tokens, each with its line number. Pure: no I/O.
//!
//! Follows nginx's own reader (`ngx_conf_read_token`): `#` starts a comment
//! only where a token could start, quotes group a word, `;` `{` `}` end
//! words (except `${name}`), and `\"`, `\'`, `\\`, `\t`, `\r`, `\n` are
//! unescaped while any other backslash is kept, so regexes such as
//! `\.php$` arrive intact.

/// One token of nginx's config syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenKind {
    /// A directive name or argument, unescaped; `quoted` when written in quotes.
    Word {
        text: String,
        quoted: bool,
    },
    Semicolon,
    OpenBrace,
    CloseBrace,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub kind: TokenKind,
    /// 1-based line the token starts on.
    pub line: usize,
}

/// A syntax error at a 1-based line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LexError {
    pub line: usize,
    pub message: String,
}

/// Splits `text` into tokens.
pub fn tokenize(text: &str) -> Result<Vec<Token>, LexError> {
    let mut lexer = Lexer {
        chars: text.chars().peekable(),
        line: 1,
    };
    let mut tokens = Vec::new();
    while let Some(c) = lexer.chars.peek().copied() {
        let line = lexer.line;
        let kind = match c {
            '#' => {
                lexer.skip_comment();
                continue;
            }
            c if c.is_whitespace() => {
                lexer.bump();
                continue;
            }
            ';' => TokenKind::Semicolon,
            '{' => TokenKind::OpenBrace,
            '}' => TokenKind::CloseBrace,
            '"' | '\'' => {
                lexer.bump();
                let raw = lexer.quoted(c)?;
                tokens.push(Token {
                    kind: TokenKind::Word {
                        text: unescape(&raw),
                        quoted: true,
                    },
                    line,
                });
                continue;
            }
            _ => {
                let raw = lexer.bare();
                tokens.push(Token {
                    kind: TokenKind::Word {
                        text: unescape(&raw),
                        quoted: false,
                    },
                    line,
                });
                continue;
            }
        };
        lexer.bump();
        tokens.push(Token { kind, line });
    }
    Ok(tokens)
}

struct Lexer<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    line: usize,
}

impl Lexer<'_> {
    fn bump(&mut self) -> Option<char> {
        let c = self.chars.next()?;
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn skip_comment(&mut self) {
        while let Some(&c) = self.chars.peek() {
            if c == '\n' {
                return;
            }
            self.bump();
        }
    }

    /// The raw text up to the closing `quote` (escapes kept for `unescape`).
    fn quoted(&mut self, quote: char) -> Result<String, LexError> {
        let start = self.line;
        let mut raw = String::new();
        while let Some(c) = self.bump() {
            if c == quote {
                return Ok(raw);
            }
            raw.push(c);
            if c == '\\' {
                if let Some(next) = self.bump() {
                    raw.push(next);
                }
            }
        }
        Err(LexError {
            line: start,
            message: format!("unexpected end of file, expecting closing {quote}"),
        })
    }

    /// An unquoted word: up to whitespace, `;`, `{` or `}`.
    fn bare(&mut self) -> String {
        let mut raw = String::new();
        // Inside `${name}` the braces belong to the variable.
        let mut in_variable = false;
        while let Some(&c) = self.chars.peek() {
            let ends_word = c.is_whitespace()
                || c == ';'
                || (c == '{' && !raw.ends_with('$'))
                || (c == '}' && !in_variable);
            if ends_word {
                break;
            }
            self.bump();
            raw.push(c);
            match c {
                '{' => in_variable = true,
                '}' => in_variable = false,
                '\\' => {
                    if let Some(next) = self.bump() {
                        raw.push(next);
                    }
                }
                _ => {}
            }
        }
        raw
    }
}

/// nginx's unescaping of a word: quotes, backslash and `\t\r\n` lose their
/// backslash; any other backslash stays.
fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(q @ ('"' | '\'' | '\\')) => out.push(q),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        tokenize(text)
            .unwrap()
            .into_iter()
            .map(|t| match t.kind {
                TokenKind::Word { text, .. } => text,
                TokenKind::Semicolon => ";".into(),
                TokenKind::OpenBrace => "{".into(),
                TokenKind::CloseBrace => "}".into(),
            })
            .collect()
    }

    #[test]
    fn splits_directives_blocks_and_comments() {
        let text = "server { # comment ; {\n  listen 80;\n}\n";
        assert_eq!(words(text), ["server", "{", "listen", "80", ";", "}"]);
        let lines: Vec<usize> = tokenize(text).unwrap().iter().map(|t| t.line).collect();
        assert_eq!(lines, [1, 1, 2, 2, 2, 3]);
    }

    #[test]
    fn regex_backslashes_stay_and_quotes_unescape() {
        assert_eq!(
            words(r"location ~ \.php$ {"),
            ["location", "~", r"\.php$", "{"]
        );
        assert_eq!(
            words(r#"add_header X "a \"b\" c";"#),
            ["add_header", "X", r#"a "b" c"#, ";"]
        );
        assert_eq!(words(r"x 'it\'s';"), ["x", "it's", ";"]);
    }

    #[test]
    fn hash_inside_a_word_is_not_a_comment() {
        assert_eq!(words("return 302 /a#b;"), ["return", "302", "/a#b", ";"]);
    }

    #[test]
    fn braced_variables_stay_in_the_word() {
        assert_eq!(
            words("return 301 https://${host}x;"),
            ["return", "301", "https://${host}x", ";"]
        );
    }

    #[test]
    fn unclosed_quote_is_an_error_at_its_line() {
        let err = tokenize("a;\nb \"open\n\n").unwrap_err();
        assert_eq!(err.line, 2);
    }

    #[test]
    fn quoted_words_remember_it_and_span_lines() {
        let tokens = tokenize("a \"x\ny\" b;").unwrap();
        assert_eq!(
            tokens[1].kind,
            TokenKind::Word {
                text: "x\ny".into(),
                quoted: true
            }
        );
        assert_eq!(tokens[2].line, 2);
    }
}
