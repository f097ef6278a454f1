//! The one request the bench sends over and over, encoded once: a GET of the
//! script with the CGI params a gateway would send, and an empty STDIN.

use bytes::Bytes;

use crate::upstream::request::{self, Stdin};

/// BEGIN_REQUEST + PARAMS + empty STDIN for a GET of `script_filename`
/// (absolute, as php-fpm sees it). SCRIPT_NAME is `/` + its file name and
/// DOCUMENT_ROOT its directory, as if the script sat at the docroot.
pub fn script_request(script_filename: &str, query: &str, keep_conn: bool) -> Bytes {
    let (root, name) = match script_filename.rsplit_once('/') {
        Some((root, name)) => (root, name),
        None => ("", script_filename),
    };
    let script_name = format!("/{name}");
    encode(script_filename, &script_name, root, query, keep_conn)
}

/// A GET of php-fpm's own status page: php-fpm recognises it by SCRIPT_NAME
/// (and needs SCRIPT_FILENAME set); `?json` selects the JSON format.
fn encode(
    script_filename: &str,
    script_name: &str,
    document_root: &str,
    query: &str,
    keep_conn: bool,
) -> Bytes {
    let request_uri = if query.is_empty() {
        script_name.to_owned()
    } else {
        format!("{script_name}?{query}")
    };
    let params: [(&str, &str); 14] = [
        ("SCRIPT_FILENAME", script_filename),
        ("QUERY_STRING", query),
        ("REQUEST_METHOD", "GET"),
        ("SCRIPT_NAME", script_name),
        ("REQUEST_URI", &request_uri),
        ("DOCUMENT_URI", script_name),
        ("DOCUMENT_ROOT", document_root),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("GATEWAY_INTERFACE", "CGI/1.1"),
        ("SERVER_SOFTWARE", "fcgi-gateway-bench"),
        ("REMOTE_ADDR", "127.0.0.1"),
        ("SERVER_NAME", "localhost"),
        ("SERVER_PORT", "80"),
        ("REDIRECT_STATUS", "200"),
    ];
    request::encode(&params, keep_conn, Stdin::Complete(&[]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fastcgi::{RequestDecoder, RequestEvent};
    use bytes::BytesMut;

    fn decode(mut buf: BytesMut) -> (bool, Vec<(String, String)>, bool) {
        let mut dec = RequestDecoder::new();
        let (mut keep, mut params, mut stdin_end) = (false, Vec::new(), false);
        while let Some(ev) = dec.decode(&mut buf).unwrap() {
            match ev {
                RequestEvent::Begin { keep_conn, .. } => keep = keep_conn,
                RequestEvent::Params(p) => {
                    params = p
                        .into_iter()
                        .map(|(n, v)| {
                            (
                                String::from_utf8_lossy(&n).into_owned(),
                                String::from_utf8_lossy(&v).into_owned(),
                            )
                        })
                        .collect()
                }
                RequestEvent::StdinEnd => stdin_end = true,
                _ => {}
            }
        }
        (keep, params, stdin_end)
    }

    fn get<'a>(params: &'a [(String, String)], name: &str) -> &'a str {
        params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("<missing>")
    }

    #[test]
    fn script_request_params() {
        let (keep, params, end) = decode(BytesMut::from(
            &script_request("/srv/app/hello.php", "a=1", true)[..],
        ));
        assert!(keep && end);
        assert_eq!(get(&params, "SCRIPT_FILENAME"), "/srv/app/hello.php");
        assert_eq!(get(&params, "SCRIPT_NAME"), "/hello.php");
        assert_eq!(get(&params, "DOCUMENT_ROOT"), "/srv/app");
        assert_eq!(get(&params, "REQUEST_URI"), "/hello.php?a=1");
        assert_eq!(get(&params, "QUERY_STRING"), "a=1");
    }
}
