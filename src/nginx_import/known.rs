//! What the gateway does by itself: nginx directives and FastCGI params
//! that need no key because the gateway already behaves so (checked
//! against `route`, `cgi::params` and `static_files`).

/// Directives whose behaviour the gateway has by itself.
pub fn is_built_in(name: &str, value: &str) -> bool {
    match name {
        // The kernel's sendfile and TCP options are the gateway's business.
        "sendfile" | "tcp_nopush" | "tcp_nodelay" => true,
        // Text types get `; charset=utf-8` already; no version is announced.
        "charset" => value.eq_ignore_ascii_case("utf-8"),
        "server_tokens" => value == "off",
        // nginx's own table sizes; the gateway has no such tables.
        "types_hash_max_size"
        | "types_hash_bucket_size"
        | "server_names_hash_bucket_size"
        | "server_names_hash_max_size"
        | "variables_hash_max_size" => true,
        // The gateway has its own MIME table, octet-stream for the unknown.
        "types" | "default_type" => name == "types" || value == "application/octet-stream",
        // Missing files are not logged as errors.
        "log_not_found" => value == "off",
        // Responses stream through; php-fpm connections are kept.
        "fastcgi_buffers"
        | "fastcgi_buffer_size"
        | "fastcgi_busy_buffers_size"
        | "fastcgi_temp_file_write_size"
        | "fastcgi_buffering" => true,
        "fastcgi_keep_conn" => value == "on",
        "fastcgi_index" => true,
        "http2" => true,
        "allow" => value == "all",
        _ => false,
    }
}

/// A `fastcgi_param` the gateway sends by itself with that meaning.
pub fn is_standard_param(name: &str, value: &str) -> bool {
    let accepted: &[&str] = match name {
        "QUERY_STRING" => &["$query_string", "$args"],
        "REQUEST_METHOD" => &["$request_method"],
        "CONTENT_TYPE" => &["$content_type"],
        "CONTENT_LENGTH" => &["$content_length"],
        "SCRIPT_NAME" => &["$fastcgi_script_name"],
        "SCRIPT_FILENAME" => &[
            "$document_root$fastcgi_script_name",
            "$realpath_root$fastcgi_script_name",
            "$request_filename",
        ],
        "REQUEST_URI" => &["$request_uri"],
        "DOCUMENT_URI" => &["$document_uri"],
        "DOCUMENT_ROOT" => &["$document_root", "$realpath_root"],
        "SERVER_PROTOCOL" => &["$server_protocol"],
        "REQUEST_SCHEME" => &["$scheme"],
        "HTTPS" => &["$https"],
        "GATEWAY_INTERFACE" => &["CGI/1.1"],
        // The gateway names itself here.
        "SERVER_SOFTWARE" => &["nginx/$nginx_version", "nginx"],
        "REMOTE_ADDR" => &["$remote_addr"],
        "REMOTE_PORT" => &["$remote_port"],
        "SERVER_ADDR" => &["$server_addr"],
        "SERVER_PORT" => &["$server_port"],
        "SERVER_NAME" => &["$server_name"],
        "REDIRECT_STATUS" => &["200"],
        "PATH_INFO" => &["$fastcgi_path_info", "$path_info"],
        "PATH_TRANSLATED" => &[
            "$document_root$fastcgi_path_info",
            "$document_root$path_info",
        ],
        // httpoxy: the gateway never passes a Proxy header on.
        "HTTP_PROXY" => &[""],
        _ => &[],
    };
    accepted.contains(&value)
}
