//! CGI/1.1 translation: HTTP request → ordered CGI params (`params`),
//! CGI response head from the application → HTTP response head
//! (`response`), and the application's error stream → logs (`stderr`).

pub mod params;
mod php_stderr;
pub mod response;
pub mod stderr;
