//! Tokens → a tree of directives (`name args… ;` or `name args… { … }`).
//! Pure: no I/O; `include` is left as a directive for `include.rs`.

use super::lexer::{tokenize, Token, TokenKind};

/// One directive, with where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    pub name: String,
    pub args: Vec<String>,
    /// Index into the list of files read (`Loaded::files`), set by the loader.
    pub file: usize,
    /// 1-based line of the directive's name.
    pub line: usize,
    /// The directives inside `{ }`, for block directives.
    pub block: Option<Vec<Directive>>,
}

impl Directive {
    /// The argument at `index`, or "" (callers check counts where it matters).
    pub fn arg(&self, index: usize) -> &str {
        self.args.get(index).map_or("", String::as_str)
    }
}

/// A syntax error at a 1-based line of the text given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: usize,
    pub message: String,
}

/// Parses a whole file's text into its top-level directives (`file` 0).
pub fn parse(text: &str) -> Result<Vec<Directive>, SyntaxError> {
    let tokens = tokenize(text).map_err(|e| SyntaxError {
        line: e.line,
        message: e.message,
    })?;
    let mut tokens = tokens.into_iter();
    let (directives, end) = parse_block(&mut tokens, 0)?;
    match end {
        BlockEnd::Eof => Ok(directives),
        BlockEnd::Brace(line) => Err(SyntaxError {
            line,
            message: "unexpected \"}\"".into(),
        }),
    }
}

/// Deeper than any real config (nginx's are 3–5 levels).
const MAX_DEPTH: usize = 50;

enum BlockEnd {
    Eof,
    /// A `}` at this line.
    Brace(usize),
}

/// Directives until a `}` (returned, for the caller to judge) or the end.
fn parse_block(
    tokens: &mut impl Iterator<Item = Token>,
    depth: usize,
) -> Result<(Vec<Directive>, BlockEnd), SyntaxError> {
    let mut directives = Vec::new();
    // The directive being collected: its name, line and arguments so far.
    let mut current: Option<(String, usize, Vec<String>)> = None;
    while let Some(token) = tokens.next() {
        match token.kind {
            TokenKind::Word { text, .. } => match &mut current {
                Some((_, _, args)) => args.push(text),
                None => current = Some((text, token.line, Vec::new())),
            },
            TokenKind::Semicolon => match current.take() {
                Some((name, line, args)) => directives.push(Directive {
                    name,
                    args,
                    file: 0,
                    line,
                    block: None,
                }),
                None => return Err(unexpected(";", token.line)),
            },
            TokenKind::OpenBrace => {
                let Some((name, line, args)) = current.take() else {
                    return Err(unexpected("{", token.line));
                };
                // Bounded so that no input can overflow the stack.
                if depth >= MAX_DEPTH {
                    return Err(SyntaxError {
                        line,
                        message: format!("blocks nested deeper than {MAX_DEPTH}"),
                    });
                }
                let (inner, end) = parse_block(tokens, depth + 1)?;
                if let BlockEnd::Eof = end {
                    return Err(SyntaxError {
                        line,
                        message: format!("unexpected end of file, \"{name}\" block not closed"),
                    });
                }
                directives.push(Directive {
                    name,
                    args,
                    file: 0,
                    line,
                    block: Some(inner),
                });
            }
            TokenKind::CloseBrace => {
                if let Some((name, line, _)) = current {
                    return Err(SyntaxError {
                        line,
                        message: format!("directive \"{name}\" is not terminated by \";\""),
                    });
                }
                return Ok((directives, BlockEnd::Brace(token.line)));
            }
        }
    }
    if let Some((name, line, _)) = current {
        return Err(SyntaxError {
            line,
            message: format!("unexpected end of file, directive \"{name}\" not terminated"),
        });
    }
    Ok((directives, BlockEnd::Eof))
}

fn unexpected(what: &str, line: usize) -> SyntaxError {
    SyntaxError {
        line,
        message: format!("unexpected \"{what}\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_blocks_keep_names_args_and_lines() {
        let tree = parse("http {\n server {\n  listen 80 default_server;\n }\n}\n").unwrap();
        assert_eq!(tree.len(), 1);
        let server = &tree[0].block.as_ref().unwrap()[0];
        assert_eq!(server.name, "server");
        assert_eq!(server.line, 2);
        let listen = &server.block.as_ref().unwrap()[0];
        assert_eq!(listen.args, ["80", "default_server"]);
        assert_eq!(listen.line, 3);
        assert_eq!(listen.block, None);
    }

    #[test]
    fn errors_name_the_line() {
        assert_eq!(parse("a;\n}\n").unwrap_err().line, 2);
        assert_eq!(parse("server {\n listen 80;\n").unwrap_err().line, 1);
        assert_eq!(parse("server {\n listen 80\n}").unwrap_err().line, 2);
        assert_eq!(parse("a 1;\n;").unwrap_err().line, 2);
        assert_eq!(parse("x\n").unwrap_err().line, 1);
        assert_eq!(parse("{ }").unwrap_err().line, 1);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let text = "a {".repeat(100_000);
        assert!(parse(&text).is_err());
    }

    #[test]
    fn empty_text_is_no_directives() {
        assert_eq!(parse("# only a comment\n").unwrap(), Vec::new());
    }
}
