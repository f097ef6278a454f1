//! What doctor learns about the site before judging it: the start page
//! (following at most two redirects on the same origin), the links on it
//! (scripts, static files, their directories), one script that really runs,
//! and how the site answers a path that does not exist. The checks test
//! with these instead of guessing names.

use super::client::{Answer, Client, ProbeError};
use super::target::{dir_of, extension_of, path_of};

/// Redirects of the start page followed, same origin only.
const MAX_REDIRECTS: usize = 2;
/// Links kept from one page; enough to find a script and a few files.
const MAX_LINKS: usize = 200;
/// Requests discovery may make: the start page and its redirects, the
/// missing path, and at most two tries at a running script.
#[cfg(test)]
pub const DISCOVERY_REQUESTS: usize = 1 + MAX_REDIRECTS + 1 + 2;

/// Extensions of files a site serves as they are; the ones a PHP site
/// lets users upload come first in [`Site::statics`].
const STATIC_EXTENSIONS: &[&str] = &[
    "jpg", "jpeg", "png", "gif", "webp", "svg", "ico", "bmp", "pdf", "txt", "css", "js", "woff",
    "woff2", "ttf", "xml", "json", "csv", "zip", "mp4", "mp3",
];
const UPLOAD_LIKE: &[&str] = &["jpg", "jpeg", "png", "gif", "webp", "bmp", "pdf", "txt"];

#[derive(Debug)]
pub struct Site {
    /// The start page's answer, after redirects.
    pub start: Answer,
    /// The directory the probes go under (of the start page, after
    /// redirects), ending in `/`.
    pub base: String,
    /// Same-origin `.php` paths linked (no query), start page first if it is one.
    pub scripts: Vec<String>,
    /// Same-origin paths with a static extension, likely uploads first.
    pub statics: Vec<String>,
    /// A script that answered 2xx, with that answer.
    pub script: Option<Answer>,
    /// The body of a missing path, when the site answered it with 2xx (a
    /// catch-all): an answer with exactly this body proves nothing.
    pub catch_all: Option<bytes::Bytes>,
    /// Every redirect followed, as `from → to`.
    pub redirects: Vec<String>,
}

impl Site {
    /// Adds the links on `page` (e.g. a directory listing) to what is known.
    pub fn learn_links(&mut self, client: &Client, page: &Answer) {
        for link in links(&page.text()).into_iter().take(MAX_LINKS) {
            let Some(target) = client.target().resolve(&page.target, &link) else {
                continue;
            };
            let path = script_of(path_of(&target)).to_owned();
            match extension_of(&path).as_deref() {
                Some("php") => push_new(&mut self.scripts, path),
                Some(ext) if STATIC_EXTENSIONS.contains(&ext) => push_new(&mut self.statics, path),
                _ => {}
            }
        }
        // Stable: files that look like uploads first, in the order seen.
        self.statics.sort_by_key(|p| {
            let ext = extension_of(p).unwrap_or_default();
            (!p.contains("upload"), !UPLOAD_LIKE.contains(&ext.as_str()))
        });
    }

    /// Directories of the scripts and files seen, other than the base.
    pub fn dirs(&self) -> Vec<String> {
        let mut out = Vec::new();
        for path in self.statics.iter().chain(&self.scripts) {
            let dir = dir_of(path);
            if dir != self.base && dir.starts_with(&self.base) {
                push_new(&mut out, dir.to_owned());
            }
        }
        out
    }

    /// Whether `answer` is just the site's answer to anything.
    pub fn is_catch_all(&self, answer: &Answer) -> bool {
        self.catch_all
            .as_ref()
            .is_some_and(|body| answer.ok() && *body == answer.body)
    }
}

/// Fetches the start page (an error there ends the run), then a missing
/// path and a running script. `marker` makes the missing name unique.
pub async fn discover(client: &mut Client, marker: &str) -> Result<Site, ProbeError> {
    let mut target = client.target().start.clone();
    let mut redirects = Vec::new();
    let start = loop {
        let answer = client.get(&target, &[]).await?;
        let next = matches!(answer.status, 301 | 302 | 303 | 307 | 308)
            .then(|| answer.header("location"))
            .flatten()
            .and_then(|loc| client.target().resolve(&target, loc));
        match next {
            Some(next) if redirects.len() < MAX_REDIRECTS && next != target => {
                redirects.push(format!("{target} → {next}"));
                target = next;
            }
            _ => break answer,
        }
    };
    let base = dir_of(&start.target).to_owned();
    let mut site = Site {
        base: base.clone(),
        scripts: Vec::new(),
        statics: Vec::new(),
        script: None,
        catch_all: None,
        redirects,
        start,
    };
    if extension_of(&site.start.target).as_deref() == Some("php") {
        site.scripts.push(path_of(&site.start.target).to_owned());
    }
    let start = site.start.clone();
    site.learn_links(client, &start);

    // A name nobody has: how the site answers a path that does not exist.
    if let Ok(missing) = client
        .get(&format!("{base}doctor-{marker}-missing.txt"), &[])
        .await
    {
        if missing.ok() {
            site.catch_all = Some(missing.body);
        }
    }

    if site.start.ok() && site.scripts.first() == Some(&path_of(&site.start.target).to_owned()) {
        site.script = Some(site.start.clone());
    } else {
        let index = format!("{base}index.php");
        let mut tries = vec![index.clone()];
        if let Some(linked) = site.scripts.iter().find(|s| **s != index) {
            tries.push(linked.clone());
        }
        for path in tries {
            match client.get(&path, &[]).await {
                Ok(a) if a.ok() && !site.is_catch_all(&a) => {
                    push_new(&mut site.scripts, path);
                    site.script = Some(a);
                    break;
                }
                _ => {}
            }
        }
    }
    Ok(site)
}

/// A path up to its first segment ending in `.php`: `/info.php/a/b` is
/// the script `/info.php` with path info.
fn script_of(path: &str) -> &str {
    let mut end = 0;
    for segment in path.split('/') {
        end += segment.len();
        if segment.to_ascii_lowercase().ends_with(".php") && segment.len() > 4 {
            return &path[..end];
        }
        end += 1;
    }
    path
}

fn push_new(list: &mut Vec<String>, item: String) {
    if !list.contains(&item) {
        list.push(item);
    }
}

/// The values of `href` and `src` attributes, in page order. A plain scan,
/// not an HTML parser: enough to find the files a page points at.
pub fn links(html: &str) -> Vec<String> {
    let lower = html.to_ascii_lowercase();
    let bytes = html.as_bytes();
    let mut out = Vec::new();
    for attr in ["href=", "src="] {
        let mut from = 0;
        while let Some(found) = lower[from..].find(attr) {
            let at = from + found;
            from = at + attr.len();
            // An attribute name starts after a space, quote or tag opening.
            let before = at.checked_sub(1).map(|i| bytes[i]);
            if !matches!(before, Some(b' ' | b'\t' | b'\n' | b'\r' | b'"' | b'\'')) {
                continue;
            }
            let rest = &html[from..];
            let value = match rest.chars().next() {
                Some(q @ ('"' | '\'')) => rest[1..].split(q).next().unwrap_or(""),
                _ => rest
                    .split(|c: char| c.is_whitespace() || c == '>')
                    .next()
                    .unwrap_or(""),
            };
            out.push((at, value.to_owned()));
        }
    }
    out.sort_by_key(|(at, _)| *at);
    out.into_iter().map(|(_, v)| v).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_of_cuts_path_info() {
        assert_eq!(script_of("/info.php/some/path"), "/info.php");
        assert_eq!(script_of("/a/b.PHP"), "/a/b.PHP");
        assert_eq!(script_of("/a/.php/x"), "/a/.php/x");
        assert_eq!(script_of("/img/a.jpg"), "/img/a.jpg");
    }

    #[test]
    fn finds_links_in_page_order() {
        let html = r#"<html><head><link rel="stylesheet" HREF="/css/app.css">
            <script src='js/app.js'></script></head>
            <body><img src=/uploads/a.jpg alt=x><a href="info.php?x=1">i</a>
            <p>data-src="no" xsrc="no"</p><a href="">empty</a></body></html>"#;
        assert_eq!(
            links(html),
            [
                "/css/app.css",
                "js/app.js",
                "/uploads/a.jpg",
                "info.php?x=1",
                ""
            ]
        );
    }
}
