//! Several sites in one gateway, as nginx server blocks: which site a Host
//! names (`names`), and what a site adds around routing (`rules`: error
//! pages, response headers, redirects, deny patterns). Pure; the server
//! applies them per request.

mod names;
mod rules;

pub use names::{normalise_host, Fit, ServerName};
pub use rules::{
    error_page_for, headers_for, redirect_for, DenyRule, ErrorPage, ErrorTarget, HeaderRule,
    PathMatch, Redirect, RequestVars,
};

/// The site whose names fit `host` best (exact, then the longest
/// wildcard; the first site among equals, as nginx's first server block);
/// `None` when no site's names fit (or no host was sent).
pub fn choose<'a>(
    sites: impl Iterator<Item = &'a [ServerName]>,
    host: Option<&str>,
) -> Option<usize> {
    let host = normalise_host(host?);
    let mut best: Option<(Fit, usize)> = None;
    for (i, names) in sites.enumerate() {
        let Some(fit) = names.iter().filter_map(|n| n.fit(&host)).max() else {
            continue;
        };
        if best.is_none_or(|(b, _)| fit > b) {
            best = Some((fit, i));
        }
    }
    best.map(|(_, i)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<ServerName> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn the_best_fit_wins_then_the_first() {
        let sites = [
            names(&["*.example.com"]),
            names(&["www.example.com"]),
            names(&[".example.com"]),
            names(&["other.org", "*.example.com"]),
        ];
        let pick = |host| choose(sites.iter().map(Vec::as_slice), host);
        assert_eq!(pick(Some("WWW.example.com:80")), Some(1));
        assert_eq!(pick(Some("a.example.com")), Some(0));
        assert_eq!(pick(Some("example.com.")), Some(2));
        assert_eq!(pick(Some("other.org")), Some(3));
        assert_eq!(pick(Some("nowhere.net")), None);
        assert_eq!(pick(None), None);
    }
}
