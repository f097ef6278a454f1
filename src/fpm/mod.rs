//! php-fpm itself, above `upstream` (which only speaks FastCGI to it) and
//! `cgi`: its own pages (`page`), the status page that sizes the pool and
//! feeds the metrics (`status`), the ping page behind /readyz (`ping`) and
//! the active health checks of several upstreams (`health`),
//! and php-fpm run as our supervised child when no upstream is given
//! (`embedded`).

pub mod embedded;
pub mod health;
pub mod page;
pub mod ping;
pub mod status;
