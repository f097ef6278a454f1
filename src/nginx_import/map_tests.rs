use crate::nginx_import::import_text;

/// The TOML and the unmapped lines for `text` (file name `t.conf`).
fn import(text: &str) -> (String, Vec<String>) {
    let import = import_text(text, "t.conf").unwrap();
    let parsed: toml::Table = import
        .toml
        .parse()
        .unwrap_or_else(|e| panic!("not TOML: {e}\n{}", import.toml));
    drop(parsed);
    (import.toml, import.unmapped)
}

#[test]
fn tls_site_and_its_https_redirect_server_become_one_site() {
    let (toml, unmapped) = import(
        "server { listen 80; server_name a.test; return 301 https://$host$request_uri; }\n\
         server { listen 443 ssl http2; server_name a.test; root /srv/a;\n\
           ssl_certificate /etc/a.pem; ssl_certificate_key /etc/a.key;\n\
           location ~ \\.php$ { fastcgi_pass 127.0.0.1:9000; } }\n",
    );
    assert!(unmapped.is_empty(), "{unmapped:?}");
    assert!(
        toml.contains("listen = [\"https://0.0.0.0:443\", \"http://0.0.0.0:80\"]"),
        "{toml}"
    );
    assert!(toml.contains("redirect-to-https = true"), "{toml}");
    assert!(toml.contains("tls-cert = \"/etc/a.pem\""), "{toml}");
    assert!(toml.contains("upstream = \"tcp:127.0.0.1:9000\""), "{toml}");
    assert!(!toml.contains("[[site]]"), "one site is left:\n{toml}");
}

#[test]
fn https_redirect_without_a_tls_site_stays_a_redirect() {
    let (toml, unmapped) =
        import("server { listen 80; server_name b.test; return 301 https://$host$request_uri; }");
    assert!(unmapped.is_empty(), "{unmapped:?}");
    assert!(
        toml.contains("[[redirect]]\nto = \"https://$host$request_uri\"\nstatus = 301"),
        "{toml}"
    );
}

#[test]
fn upstream_blocks_keep_weights_and_backups() {
    let (toml, unmapped) = import(
        "upstream fpm { server 10.0.0.5:9000 weight=2; server unix:/run/p.sock backup; least_conn; }\n\
         server { location ~ \\.php$ { fastcgi_pass fpm; } }",
    );
    assert!(unmapped.is_empty(), "{unmapped:?}");
    assert!(
        toml.contains("upstream = [\"tcp:10.0.0.5:9000 weight=2\", \"unix:/run/p.sock backup\"]"),
        "{toml}"
    );
    let (toml, unmapped) = import(
        "upstream fpm { server a:9000 max_fails=3 fail_timeout=30s; server b:9000 down; ip_hash; }",
    );
    assert!(
        toml.contains("max-fails = 3\nfail-timeout = \"30s\"\n"),
        "{toml}"
    );
    assert_eq!(unmapped.len(), 2, "{unmapped:?}");
}

#[test]
fn error_pages_and_their_forms() {
    let (toml, unmapped) = import(
        "server { error_page 404 /404.php; error_page 500 502 /50x.html;\n\
           error_page 403 = /denied.php; error_page 410 https://e.test/;\n\
           error_page 404 =200 /x; error_page 404 @named; error_page 200 /x; }",
    );
    assert!(toml.contains("\"404\" = \"/404.php\""), "{toml}");
    assert!(toml.contains("\"500 502\" = \"/50x.html\""), "{toml}");
    assert!(toml.contains("\"403\" = \"=/denied.php\""), "{toml}");
    assert!(toml.contains("\"410\" = \"https://e.test/\""), "{toml}");
    assert_eq!(unmapped.len(), 3, "{unmapped:?}");
    assert!(
        unmapped
            .iter()
            .all(|l| l.starts_with("t.conf:3: error_page")),
        "{unmapped:?}"
    );
}

#[test]
fn variables_look_around_and_unknown_directives_are_reported_with_their_line() {
    let (_, unmapped) = import(
        "server {\n  root /srv/$host;\n  location ~ ^/(?!api) { deny all; }\n  proxy_pass http://x;\n\
         add_header X-Id $request_id;\n  return 301 https://$http_host$request_uri;\n}",
    );
    let lines: Vec<&str> = unmapped
        .iter()
        .map(|l| l.split(" — ").next().unwrap())
        .collect();
    assert_eq!(
        lines,
        [
            "t.conf:2: root /srv/$host",
            "t.conf:3: location ~ ^/(?!api)",
            "t.conf:4: proxy_pass http://x",
            "t.conf:5: add_header X-Id $request_id",
            "t.conf:6: return 301 https://$http_host$request_uri",
        ]
    );
}

#[test]
fn built_in_behaviour_counts_as_mapped() {
    let (toml, unmapped) = import(
        "http { sendfile on; tcp_nopush on; server_tokens off; charset utf-8;\n\
         server { listen 80 default_server; server_name _; root /srv;\n\
           location / { try_files $uri $uri/ /index.php$is_args$args; }\n\
           location ~ /\\.(?!well-known).* { deny all; }\n\
           location ~ [^/]\\.php(/|$) { fastcgi_split_path_info ^(.+?\\.php)(/.*)$;\n\
             try_files $fastcgi_script_name =404; fastcgi_index index.php;\n\
             fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;\n\
             fastcgi_param HTTPS $https if_not_empty; fastcgi_pass unix:/run/php.sock; } } }",
    );
    assert!(unmapped.is_empty(), "{unmapped:?}");
    assert!(toml.contains("front-controller = \"/index.php\""), "{toml}");
    assert!(
        !toml.contains("deny"),
        "the dotfile idiom is built in:\n{toml}"
    );
    assert!(!toml.contains("server-name"), "{toml}");
}

#[test]
fn locations_for_redirects_internal_paths_and_prefix_headers() {
    let (toml, unmapped) = import(
        "server { root /srv; location /blog/ { return 302 https://blog.test$request_uri; }\n\
           location /protected/ { internal; }\n\
           location /api/ { add_header X-Api yes always; }\n\
           location ^~ /vendor/ { return 403; }\n\
           location = /a { return 308 /b; } }",
    );
    assert!(unmapped.is_empty(), "{unmapped:?}");
    assert!(
        toml.contains("prefix = \"/blog/\"\nto = \"https://blog.test$request_uri\"\nstatus = 302"),
        "{toml}"
    );
    assert!(
        toml.contains("internal-location = [\"/protected\"]"),
        "{toml}"
    );
    assert!(
        toml.contains(
            "[[add-header]]\nname = \"X-Api\"\nvalue = \"yes\"\nprefix = \"/api/\"\nalways = true"
        ),
        "{toml}"
    );
    assert!(toml.contains("deny = [\"^/vendor/\"]"), "{toml}");
    assert!(
        toml.contains("path = \"/a\"\nto = \"/b\"\nstatus = 308"),
        "{toml}"
    );
}

#[test]
fn sites_with_different_timeouts_are_reported() {
    let (toml, unmapped) = import(
        "server { server_name a; fastcgi_read_timeout 30; }\n\
         server { server_name b; fastcgi_read_timeout 60s; }",
    );
    assert!(toml.contains("read-timeout = \"30s\""), "{toml}");
    assert_eq!(unmapped.len(), 1, "{unmapped:?}");
    assert!(
        unmapped[0].starts_with("t.conf:2: fastcgi_read_timeout 60s — differs"),
        "{unmapped:?}"
    );
}

#[test]
fn a_lone_php_location_runs_every_script_and_symfony_runs_one() {
    let (toml, _) = import("server { location ~ \\.php$ { fastcgi_pass unix:/s; } }");
    assert!(!toml.contains("php-only"), "{toml}");
    let (toml, unmapped) = import(
        "server { location / { try_files $uri /index.php$is_args$args; }\n\
           location ~ ^/index\\.php(/|$) { fastcgi_pass unix:/s; internal; }\n\
           location ~ \\.php$ { return 404; } }",
    );
    assert!(unmapped.is_empty(), "{unmapped:?}");
    assert!(toml.contains("php-only-front-controller = true"), "{toml}");
}

#[test]
fn toml_strings_escape_what_they_must() {
    let (toml, _) = import("server { add_header X-A \"say \\\"hi\\\"\\t\"; }");
    assert!(
        toml.contains(r#"add-header = ["X-A: say \"hi\"\t"]"#),
        "{toml}"
    );
}

#[test]
fn certbots_redirect_server_becomes_redirect_to_https() {
    let (toml, unmapped) = import(
        "server { server_name c.test; listen 443 ssl; root /srv/c;\n\
           ssl_certificate /etc/le/c.pem; ssl_certificate_key /etc/le/c.key; }\n\
         server {\n  if ($host = c.test) {\n    return 301 https://$host$request_uri;\n  }\n\
           listen 80; server_name c.test; return 404; }\n",
    );
    assert!(unmapped.is_empty(), "{unmapped:?}");
    assert!(toml.contains("redirect-to-https = true"), "{toml}");
    assert!(toml.contains("\"http://0.0.0.0:80\""), "{toml}");
    assert!(!toml.contains("[[site]]"), "{toml}");
}

#[test]
fn allow_all_and_log_only_locations_are_served_as_any_path() {
    let (_, unmapped) = import(
        "server { location ^~ /.well-known/acme-challenge/ { allow all; }\n\
           location = /robots.txt { allow all; log_not_found off; }\n\
           location ~ /\\.well-known { allow all; } }",
    );
    assert_eq!(unmapped.len(), 1, "{unmapped:?}");
    assert!(
        unmapped[0].starts_with("t.conf:3: location ~"),
        "{unmapped:?}"
    );
}

#[test]
fn one_server_serves_every_host_and_several_keep_their_names() {
    let (toml, _) = import(
        "server { listen 80 default_server; server_name *.a.test a.test b.test; root /srv; }",
    );
    assert!(toml.contains("server-name = \"a.test\"\n"), "{toml}");
    assert!(
        !toml.contains("server-names") && !toml.contains("default"),
        "{toml}"
    );
    let (toml, _) = import(
        "server { listen 80 default_server; server_name *.a.test a.test; root /a; }\n\
         server { server_name b.test; root /b; }",
    );
    assert!(
        toml.contains("[[site]]\nserver-names = [\"*.a.test\", \"a.test\"]\ndefault = true\n"),
        "{toml}"
    );
    assert!(
        toml.contains("[[site]]\nserver-names = [\"b.test\"]\n"),
        "{toml}"
    );
}
