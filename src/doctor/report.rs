//! The report: findings by severity with their evidence and fix, then what
//! was clean or could not be told, as text for a person or as JSON for a
//! script, and the exit code.
//!
//! # JSON, schema `fcgi-gateway-doctor/1`
//! ```text
//! {
//!   "schema": "fcgi-gateway-doctor/1",
//!   "target": "http://127.0.0.1:8080/",
//!   "requests": 41, "max_requests": 60,
//!   "findings": [ {                     // high first, then medium, then low
//!     "id": "secret-files", "severity": "high" | "medium" | "low",
//!     "title": "…", "fix": "…",
//!     "evidence": [ { "method": "GET", "url": "http://…/.env", "status": 200 | null,
//!                     "detail": "…" } ]
//!   } ],
//!   "checks": [ {                       // every check, in the order run
//!     "id": "trace", "result": "found" | "clean" | "cannot-tell" | "skipped",
//!     "severity": "low" | null,         // set when found
//!     "note": "…" | null                // set when not found
//!   } ],
//!   "summary": { "high": 0, "medium": 1, "low": 2, "clean": 9, "cannot_tell": 1,
//!                "skipped": 0, "exit_code": 0 }
//! }
//! ```

use serde::Serialize;

use super::checks::{Check, Evidence, Severity, Verdict};
use super::client::MAX_REQUESTS;

pub const SCHEMA: &str = "fcgi-gateway-doctor/1";
/// Text output wraps fix texts at this width.
const WIDTH: usize = 78;
/// Longer queries are cut in the text output (the JSON keeps them whole).
const QUERY_SHOWN: usize = 40;

pub struct Outcome {
    pub check: &'static Check,
    pub verdict: Verdict,
}

pub struct Report {
    /// The start page's URL.
    pub target: String,
    pub requests: usize,
    pub redirects: Vec<String>,
    pub outcomes: Vec<Outcome>,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    schema: &'static str,
    target: &'a str,
    requests: usize,
    max_requests: usize,
    findings: Vec<JsonFinding<'a>>,
    checks: Vec<JsonCheck<'a>>,
    summary: Summary,
}

#[derive(Serialize)]
struct JsonFinding<'a> {
    id: &'static str,
    severity: Severity,
    title: &'static str,
    evidence: &'a [Evidence],
    fix: &'static str,
}

#[derive(Serialize)]
struct JsonCheck<'a> {
    id: &'static str,
    result: &'static str,
    severity: Option<Severity>,
    note: Option<&'a str>,
}

#[derive(Serialize, Default)]
struct Summary {
    high: usize,
    medium: usize,
    low: usize,
    clean: usize,
    cannot_tell: usize,
    skipped: usize,
    exit_code: u8,
}

impl Report {
    /// 1 when anything of high severity was found, else 0.
    pub fn exit_code(&self) -> u8 {
        let high = self.findings().any(|(_, s, _)| s == Severity::High);
        u8::from(high)
    }

    /// Findings, most severe first, in check order within a severity.
    fn findings(&self) -> impl Iterator<Item = (&'static Check, Severity, &[Evidence])> {
        let mut found: Vec<_> = self
            .outcomes
            .iter()
            .enumerate()
            .filter_map(|(i, o)| match &o.verdict {
                Verdict::Found { severity, evidence } => {
                    Some((i, o.check, *severity, evidence.as_slice()))
                }
                _ => None,
            })
            .collect();
        found.sort_by_key(|(i, _, severity, _)| (std::cmp::Reverse(*severity), *i));
        found.into_iter().map(|(_, c, s, e)| (c, s, e))
    }

    fn summary(&self) -> Summary {
        let mut s = Summary {
            exit_code: self.exit_code(),
            ..Summary::default()
        };
        for o in &self.outcomes {
            match &o.verdict {
                Verdict::Found { severity, .. } => match severity {
                    Severity::High => s.high += 1,
                    Severity::Medium => s.medium += 1,
                    Severity::Low => s.low += 1,
                },
                Verdict::Clean(_) => s.clean += 1,
                Verdict::CannotTell(_) => s.cannot_tell += 1,
                Verdict::Skipped(_) => s.skipped += 1,
            }
        }
        s
    }

    pub fn json(&self) -> String {
        let report = JsonReport {
            schema: SCHEMA,
            target: &self.target,
            requests: self.requests,
            max_requests: MAX_REQUESTS,
            findings: self
                .findings()
                .map(|(check, severity, evidence)| JsonFinding {
                    id: check.id,
                    severity,
                    title: check.title,
                    evidence,
                    fix: check.fix,
                })
                .collect(),
            checks: self
                .outcomes
                .iter()
                .map(|o| {
                    let (result, severity, note) = match &o.verdict {
                        Verdict::Found { severity, .. } => ("found", Some(*severity), None),
                        Verdict::Clean(n) => ("clean", None, Some(n.as_str())),
                        Verdict::CannotTell(n) => ("cannot-tell", None, Some(n.as_str())),
                        Verdict::Skipped(n) => ("skipped", None, Some(n.as_str())),
                    };
                    JsonCheck {
                        id: o.check.id,
                        result,
                        severity,
                        note,
                    }
                })
                .collect(),
            summary: self.summary(),
        };
        // Plain structs of strings and numbers: serializing cannot fail.
        serde_json::to_string_pretty(&report).unwrap_or_default()
    }

    pub fn text(&self) -> String {
        let mut out = format!(
            "fcgi-gateway doctor: {} ({} requests, at most {MAX_REQUESTS})\n",
            self.target, self.requests
        );
        for r in &self.redirects {
            out.push_str(&format!("followed the redirect {r}\n"));
        }
        let mut any = false;
        for (check, severity, evidence) in self.findings() {
            any = true;
            out.push('\n');
            out.push_str(&format!(
                "{:<7} {}: {}\n",
                severity.label().to_ascii_uppercase(),
                check.id,
                check.title
            ));
            for e in evidence {
                let status = e
                    .status
                    .map_or_else(|| "no answer".to_owned(), |s| s.to_string());
                out.push_str(&format!(
                    "        {} {} → {status}: {}\n",
                    e.method,
                    shorten(&e.url),
                    e.detail
                ));
            }
            out.push_str(&wrap(&format!("fix: {}", check.fix), "        "));
        }
        if !any {
            out.push_str("\nno findings\n");
        }
        out.push('\n');
        for o in &self.outcomes {
            let (result, note) = match &o.verdict {
                Verdict::Found { .. } => continue,
                Verdict::Clean(n) => ("clean", n),
                Verdict::CannotTell(n) => ("cannot tell", n),
                Verdict::Skipped(n) => ("skipped", n),
            };
            out.push_str(&format!("{result:<12} {:<20} {note}\n", o.check.id));
        }
        let s = self.summary();
        out.push_str(&format!(
            "\n{} high, {} medium, {} low; {} clean, {} cannot tell, {} skipped; exit {}\n",
            s.high, s.medium, s.low, s.clean, s.cannot_tell, s.skipped, s.exit_code
        ));
        out
    }
}

/// Cuts a long URL (the padded query of the CVE probe) for the text output.
fn shorten(url: &str) -> String {
    match url.split_once('?') {
        Some((head, query)) if query.len() > QUERY_SHOWN => {
            let kept: String = query.chars().take(8).collect();
            format!("{head}?{kept}… ({} bytes of query)", query.len())
        }
        _ => url.to_owned(),
    }
}

/// Word-wraps `text` at [`WIDTH`], every line indented by `indent`.
fn wrap(text: &str, indent: &str) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && indent.len() + line.len() + 1 + word.len() > WIDTH {
            out.push_str(indent);
            out.push_str(&line);
            out.push('\n');
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        out.push_str(indent);
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::checks::CHECKS;

    fn evidence(url: &str, status: u16, detail: &str) -> Evidence {
        Evidence {
            method: "GET".into(),
            url: url.into(),
            target: String::new(),
            status: Some(status),
            detail: detail.into(),
        }
    }

    fn report(verdicts: Vec<(&str, Verdict)>) -> Report {
        let outcomes = verdicts
            .into_iter()
            .map(|(id, verdict)| Outcome {
                check: CHECKS.iter().find(|c| c.id == id).unwrap_or(&CHECKS[0]),
                verdict,
            })
            .collect();
        Report {
            target: "http://h/".into(),
            requests: 3,
            redirects: Vec::new(),
            outcomes,
        }
    }

    #[test]
    fn json_orders_findings_and_counts() {
        let r = report(vec![
            (
                "version-disclosure",
                Verdict::Found {
                    severity: Severity::Low,
                    evidence: vec![evidence("http://h/", 200, "Server: nginx/1.22.1")],
                },
            ),
            (
                "secret-files",
                Verdict::Found {
                    severity: Severity::High,
                    evidence: vec![evidence("http://h/.env", 200, "an environment file")],
                },
            ),
            ("trace", Verdict::Skipped("--no-trace".into())),
            ("httpoxy", Verdict::CannotTell("no page".into())),
            ("phpinfo", Verdict::Clean("nothing".into())),
        ]);
        assert_eq!(r.exit_code(), 1);
        let v: serde_json::Value = serde_json::from_str(&r.json()).unwrap_or_default();
        assert_eq!(v["schema"], SCHEMA);
        assert_eq!(v["findings"][0]["id"], "secret-files");
        assert_eq!(v["findings"][0]["severity"], "high");
        assert_eq!(v["findings"][0]["evidence"][0]["status"], 200);
        assert_eq!(v["findings"][1]["id"], "version-disclosure");
        assert_eq!(v["checks"][2]["result"], "skipped");
        assert_eq!(v["checks"][3]["result"], "cannot-tell");
        assert_eq!(v["checks"][4]["note"], "nothing");
        let s = &v["summary"];
        assert_eq!((s["high"].as_u64(), s["low"].as_u64()), (Some(1), Some(1)));
        assert_eq!(
            (s["clean"].as_u64(), s["exit_code"].as_u64()),
            (Some(1), Some(1))
        );
        let text = r.text();
        assert!(text.find("HIGH    secret-files") < text.find("LOW     version-disclosure"));
        assert!(text.contains("cannot tell  httpoxy"), "{text}");
    }

    #[test]
    fn clean_when_nothing_is_high() {
        let r = report(vec![(
            "security-headers",
            Verdict::Found {
                severity: Severity::Low,
                evidence: vec![evidence("http://h/", 200, "missing: X")],
            },
        )]);
        assert_eq!(r.exit_code(), 0);
        assert!(r.text().ends_with("exit 0\n"));
    }

    #[test]
    fn wraps_and_shortens() {
        let wrapped = wrap(&"word ".repeat(40), "  ");
        assert!(wrapped
            .lines()
            .all(|l| l.len() <= WIDTH && l.starts_with("  ")));
        let long = format!("http://h/x.php/a%0a.php?{}", "Q".repeat(1700));
        assert_eq!(
            shorten(&long),
            "http://h/x.php/a%0a.php?QQQQQQQQ… (1700 bytes of query)"
        );
        assert_eq!(shorten("http://h/"), "http://h/");
    }
}
