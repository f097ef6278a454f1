//! CGI/1.1 translation: HTTP request → ordered CGI params (`params`),
//! and CGI response head from the application → HTTP response head (`response`).

pub mod params;
pub mod response;
