//! A real PHP application through the gateway: Debian's DokuWiki, served
//! with a real php-fpm over both `unix:` and `tcp:`.
//!
//! Debian splits DokuWiki into /usr/share/dokuwiki (code), /etc/dokuwiki
//! (config) and /var/lib/dokuwiki (data, plugins, templates), joined by
//! symlinks and a `preload.php` that hard-codes /etc/dokuwiki. The test
//! copies all three, symlinks resolved, into one temp tree and points the
//! copy's `preload.php` at the copied config, so DokuWiki reads and writes
//! (pages cache, sessions, logs) only inside the temp tree.
//!
//! Needs the `dokuwiki` Debian package (`.ci/run` and `scripts/test.sh`
//! install it); its absence is a loud failure.

use crate::support;

use std::fs;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use support::gateway::{self, Gateway, Reply};
use tempfile::TempDir;

const APP: &str = "/usr/share/dokuwiki";
const CONF: &str = "/etc/dokuwiki";
const DATA: &str = "/var/lib/dokuwiki/data";
const TITLE: &str = "Gateway Test Wiki";
const USER: &str = "tester";
const PASSWORD: &str = "gateway-secret";
/// bcrypt of PASSWORD (cost 4: a test account), as DokuWiki's plain auth stores it.
const PASSWORD_HASH: &str = "$2y$04$I9xqUs3ed.ieVA0o2xeUre.4lWApKyq0MUHJrqkRGHnYXEEiDcdE2";

/// The copied wiki: `app/` (document root), `conf/`, `data/`, `sessions/`.
/// Each test makes its own (a few tens of MB), removed when it ends.
struct Wiki {
    _dir: TempDir,
    app: PathBuf,
}

impl Wiki {
    fn copy() -> Wiki {
        assert!(
            Path::new(APP).join("doku.php").is_file(),
            "DokuWiki is not installed: apt-get install --no-install-recommends dokuwiki"
        );
        let dir = tempfile::Builder::new()
            .prefix("dokuwiki-")
            .tempdir()
            .expect("temp dir");
        let base = fs::canonicalize(dir.path()).expect("canonical temp dir");
        let (app, conf, data, sessions) = (
            base.join("app"),
            base.join("conf"),
            base.join("data"),
            base.join("sessions"),
        );
        copy_resolved(Path::new(APP), &app);
        copy_resolved(Path::new(CONF), &conf);
        copy_resolved(Path::new(DATA), &data);
        fs::create_dir_all(&sessions).expect("sessions dir");
        let q = |p: &Path| format!("'{}'", p.display());

        fs::write(
            app.join("inc/preload.php"),
            format!(
                "<?php\n// Written by the fcgi-gateway test: config and sessions stay in the temp tree.\n\
                 define('DOKU_CONF', '{}/');\nini_set('session.save_path', {});\n",
                conf.display(),
                q(&sessions)
            ),
        )
        .expect("write preload.php");
        fs::write(
            conf.join("local.php"),
            format!(
                "<?php\n$conf['title'] = '{TITLE}';\n$conf['savedir'] = {};\n\
                 $conf['userewrite'] = 2;\n$conf['useacl'] = 1;\n$conf['authtype'] = 'authplain';\n\
                 $conf['superuser'] = '@admin';\n$conf['updatecheck'] = 0;\n$conf['dnslookups'] = 0;\n",
                q(&data)
            ),
        )
        .expect("write local.php");
        fs::write(
            conf.join("users.auth.php"),
            format!("# <?php exit()?>\n{USER}:{PASSWORD_HASH}:Test User:tester@localhost:user\n"),
        )
        .expect("write users.auth.php");
        fs::write(
            conf.join("acl.auth.php"),
            "# <?php exit()?>\n*               @ALL          1\n*               @user         8\n",
        )
        .expect("write acl.auth.php");
        Wiki { _dir: dir, app }
    }
}

/// Copies a tree, following symlinks, so the copy has no link back into
/// the system's DokuWiki. `.htaccess` files (Apache's) are left out.
fn copy_resolved(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap_or_else(|e| panic!("mkdir {}: {e}", to.display()));
    for entry in fs::read_dir(from).unwrap_or_else(|e| panic!("read {}: {e}", from.display())) {
        let entry = entry.expect("dir entry");
        let source = entry.path();
        if entry.file_name() == ".htaccess" {
            continue;
        }
        let target = to.join(entry.file_name());
        let meta = fs::metadata(&source).unwrap_or_else(|e| panic!("{}: {e}", source.display()));
        if meta.is_dir() {
            copy_resolved(&source, &target);
        } else {
            fs::copy(&source, &target).unwrap_or_else(|e| panic!("copy {}: {e}", source.display()));
        }
    }
}

/// DokuWiki's private directories, refused like nginx's usual
/// `location ~ /(data|conf|bin|inc|vendor)/ { deny all; }`.
const PRIVATE: [&str; 6] = [
    "--internal-location",
    "/inc",
    "--internal-location",
    "/vendor",
    "--internal-location",
    "/bin",
];

async fn start(wiki: &Wiki, upstream: &str) -> Gateway {
    let root = wiki.app.display().to_string();
    let mut args = vec!["--upstream", upstream, "--root", root.as_str()];
    args.extend_from_slice(&PRIVATE);
    Gateway::start(&args).await
}

#[tokio::test]
async fn start_page_renders_with_the_wiki_title() {
    let wiki = Wiki::copy();
    for upstream in support::shared_upstreams() {
        let gw = start(&wiki, &upstream).await;
        let r = gateway::get(gw.addr, "/doku.php").await;
        assert_eq!(r.status, 200, "{upstream}: {}", r.text());
        assert!(r
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/html")));
        assert!(r.text().contains(TITLE), "{upstream}: no title");
        assert!(r.text().contains("dokuwiki"), "{upstream}");
        // `/` runs index.php, which sends the browser to the start page.
        let r = gateway::get(gw.addr, "/").await;
        assert!(
            r.status == 302 || r.status == 303,
            "{upstream}: {}",
            r.status
        );
        assert!(r.header("location").is_some_and(|l| l.contains("doku.php")));
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn css_from_css_php_is_text_css() {
    let wiki = Wiki::copy();
    for upstream in support::shared_upstreams() {
        let gw = start(&wiki, &upstream).await;
        let r = gateway::get(gw.addr, "/lib/exe/css.php?t=dokuwiki&tseed=1").await;
        assert_eq!(r.status, 200, "{upstream}: {}", r.text());
        assert!(
            r.header("content-type")
                .is_some_and(|t| t.starts_with("text/css")),
            "{upstream}: {:?}",
            r.header("content-type")
        );
        assert!(
            r.text().contains("body") && r.text().contains('{'),
            "{upstream}"
        );
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn path_info_page_url_renders_that_page() {
    let wiki = Wiki::copy();
    for upstream in support::shared_upstreams() {
        let gw = start(&wiki, &upstream).await;
        let r = gateway::get(gw.addr, "/doku.php/wiki:syntax").await;
        assert_eq!(r.status, 200, "{upstream}: {}", r.text());
        assert!(r.text().contains("Formatting Syntax"), "{upstream}");
        // The start page does not have that heading: PATH_INFO chose the page.
        assert!(!gateway::get(gw.addr, "/doku.php")
            .await
            .text()
            .contains("Formatting Syntax"));
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn static_images_under_lib_are_served() {
    let wiki = Wiki::copy();
    let logo = fs::read(wiki.app.join("lib/tpl/dokuwiki/images/logo.png")).expect("logo");
    for upstream in support::shared_upstreams() {
        let gw = start(&wiki, &upstream).await;
        let r = gateway::get(gw.addr, "/lib/tpl/dokuwiki/images/logo.png").await;
        assert_eq!(r.status, 200, "{upstream}");
        assert_eq!(r.header("content-type").as_deref(), Some("image/png"));
        assert_eq!(r.body, logo);
        let r = gateway::get(gw.addr, "/lib/images/email.svg").await;
        assert_eq!(r.status, 200, "{upstream}");
        assert!(r
            .header("content-type")
            .is_some_and(|t| t.starts_with("image/svg+xml")));
        gw.shutdown().await;
    }
}

#[tokio::test]
async fn private_directories_are_404() {
    let wiki = Wiki::copy();
    for upstream in support::shared_upstreams() {
        let gw = start(&wiki, &upstream).await;
        for path in [
            "/inc/init.php",
            "/inc/lang/en/lang.php",
            "/vendor/autoload.php",
            "/bin/",
        ] {
            let r = gateway::get(gw.addr, path).await;
            assert_eq!(r.status, 404, "{upstream} {path}");
        }
        gw.shutdown().await;
    }
}

/// `name=value` of every Set-Cookie, as a Cookie header would carry them.
fn cookies(r: &Reply) -> Vec<String> {
    r.headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .filter(|pair| !pair.ends_with("=deleted") && !pair.ends_with('='))
        .map(str::to_owned)
        .collect()
}

/// The value of the hidden form field `name` in an HTML page.
fn hidden_field(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} field in the page"))
        + marker.len();
    let end = html[start..].find('"').expect("end of value") + start;
    html[start..end].to_owned()
}

#[tokio::test]
async fn login_post_round_trips_a_session_cookie() {
    let wiki = Wiki::copy();
    for upstream in support::shared_upstreams() {
        let gw = start(&wiki, &upstream).await;
        let form = gateway::get(gw.addr, "/doku.php?do=login").await;
        assert_eq!(form.status, 200, "{upstream}");
        let sectok = hidden_field(&form.text(), "sectok");
        let mut jar = cookies(&form);
        assert!(
            jar.iter().any(|c| c.starts_with("DokuWiki=")),
            "{upstream}: no session cookie in {jar:?}"
        );

        let body = format!("sectok={sectok}&id=start&do=login&u={USER}&p={PASSWORD}");
        let cookie = jar.join("; ");
        let r = gateway::request(
            gw.addr,
            "POST",
            "/doku.php",
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Cookie", &cookie),
            ],
            Bytes::from(body),
        )
        .await;
        assert!(
            r.status == 302 || r.status == 303,
            "{upstream}: {}",
            r.status
        );
        let auth = cookies(&r);
        assert!(
            auth.iter().any(|c| c.starts_with("DW")),
            "{upstream}: no DokuWiki auth cookie in {auth:?}"
        );
        jar.extend(auth);

        let cookie = jar.join("; ");
        let page = gateway::request(
            gw.addr,
            "GET",
            "/doku.php",
            &[("Cookie", &cookie)],
            Bytes::new(),
        )
        .await;
        assert_eq!(page.status, 200, "{upstream}");
        assert!(
            page.text().contains("Logged in as"),
            "{upstream}: not logged in"
        );
        assert!(page.text().contains(USER));
        // Without the cookies the same page is anonymous.
        assert!(!gateway::get(gw.addr, "/doku.php")
            .await
            .text()
            .contains("Logged in as"));
        gw.shutdown().await;
    }
}
