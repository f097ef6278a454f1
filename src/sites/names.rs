//! Server names as nginx's `server_name` matches them: exact names, a
//! leading `*.` (any subdomain), a leading `.` (the name and any
//! subdomain); case-insensitive, with the Host's port and trailing dot
//! ignored. Exact names win over wildcards, longer wildcards over shorter.

use std::fmt;
use std::str::FromStr;

/// One `server-names` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerName {
    /// `example.com`: this name only.
    Exact(String),
    /// `*.example.com` (stored as `.example.com`): any subdomain, not the name.
    Subdomains(String),
    /// `.example.com` (stored as `example.com`): the name and any subdomain.
    NameAndSubdomains(String),
}

/// How well a name matched, higher is better (nginx: exact, then the
/// longest leading wildcard).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fit {
    Wildcard(usize),
    Exact,
}

impl ServerName {
    /// How `host` (already normalised by [`normalise_host`]) fits, if it does.
    pub fn fit(&self, host: &str) -> Option<Fit> {
        match self {
            ServerName::Exact(name) => (host == name).then_some(Fit::Exact),
            ServerName::Subdomains(suffix) => (host.len() > suffix.len() && host.ends_with(suffix))
                .then_some(Fit::Wildcard(suffix.len())),
            ServerName::NameAndSubdomains(name) => {
                let sub = host.len() > name.len()
                    && host.ends_with(name.as_str())
                    && host.as_bytes()[host.len() - name.len() - 1] == b'.';
                (host == name || sub).then_some(Fit::Wildcard(name.len() + 1))
            }
        }
    }

    /// The name SERVER_NAME carries for a site named by this entry.
    pub fn exact(&self) -> Option<&str> {
        match self {
            ServerName::Exact(name) => Some(name),
            _ => None,
        }
    }
}

impl FromStr for ServerName {
    type Err = String;

    fn from_str(text: &str) -> Result<ServerName, String> {
        let lower = text.trim().trim_end_matches('.').to_ascii_lowercase();
        let (kind, rest): (fn(String) -> ServerName, &str) =
            if let Some(rest) = lower.strip_prefix("*.") {
                (|r| ServerName::Subdomains(format!(".{r}")), rest)
            } else if let Some(rest) = lower.strip_prefix('.') {
                (ServerName::NameAndSubdomains, rest)
            } else {
                (ServerName::Exact, lower.as_str())
            };
        let valid = !rest.is_empty()
            && rest.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !valid {
            return Err(format!(
                "`{text}` is not a server name: expected example.com, *.example.com or \
                 .example.com"
            ));
        }
        Ok(kind(rest.to_owned()))
    }
}

impl fmt::Display for ServerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerName::Exact(name) => f.write_str(name),
            ServerName::Subdomains(suffix) => write!(f, "*{suffix}"),
            ServerName::NameAndSubdomains(name) => write!(f, ".{name}"),
        }
    }
}

/// The host part of a Host header or URI authority, lowercased, without
/// port or trailing dot; `[v6]` literals keep their brackets.
pub fn normalise_host(host: &str) -> String {
    let host = host.trim();
    let name = if host.starts_with('[') {
        host.split_inclusive(']').next().unwrap_or(host)
    } else {
        host.rsplit_once(':').map_or(host, |(name, _port)| name)
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fit(pattern: &str, host: &str) -> Option<Fit> {
        pattern
            .parse::<ServerName>()
            .unwrap()
            .fit(&normalise_host(host))
    }

    #[test]
    fn exact_names_ignore_case_port_and_trailing_dot() {
        assert_eq!(fit("Example.com", "EXAMPLE.com:8080"), Some(Fit::Exact));
        assert_eq!(fit("example.com.", "example.com."), Some(Fit::Exact));
        assert_eq!(fit("example.com", "www.example.com"), None);
    }

    #[test]
    fn star_dot_takes_subdomains_only() {
        assert!(fit("*.example.com", "a.b.example.com").is_some());
        assert_eq!(fit("*.example.com", "example.com"), None);
        assert_eq!(fit("*.example.com", "badexample.com"), None);
    }

    #[test]
    fn leading_dot_takes_the_name_and_subdomains() {
        assert!(fit(".example.com", "example.com").is_some());
        assert!(fit(".example.com", "www.example.com").is_some());
        assert_eq!(fit(".example.com", "badexample.com"), None);
    }

    #[test]
    fn exact_beats_wildcards_and_longer_wildcards_win() {
        assert!(fit("a.example.com", "a.example.com") > fit("*.example.com", "a.example.com"));
        assert!(
            fit("*.a.example.com", "x.a.example.com") > fit("*.example.com", "x.a.example.com")
        );
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in ["", "*.", "exa mple.com", "a..b", "*example.com", "ex/ample"] {
            assert!(bad.parse::<ServerName>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ipv6_hosts_keep_their_brackets() {
        assert_eq!(normalise_host("[::1]:8080"), "[::1]");
        assert_eq!(normalise_host("[::1]"), "[::1]");
    }
}
