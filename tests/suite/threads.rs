//! Thread per core (`--workers`): connections spread over the serving
//! threads, each serving its own, sharing one php-fpm.

use crate::support;

use std::time::Duration;

use support::gateway::{self, Gateway};
use support::php_fpm::{fixtures_dir, PhpFpm};
use support::wait;

#[tokio::test]
async fn connections_are_served_on_every_thread() {
    let fpm = PhpFpm::start();
    for upstream in support::upstreams_of(&fpm) {
        let root = fixtures_dir().display().to_string();
        let gw = Gateway::serve(&upstream, &root, &["--workers", "2"]).await;
        let addr = gw.addr;
        let acquired = gw.pool.snapshot().acquired;
        // Six clients at once, each on its own connection: every thread
        // gets some (a thread two connections ahead hands new ones over).
        let slow: Vec<_> = (0..6)
            .map(|_| tokio::spawn(async move { gateway::get(addr, "/slow.php?ms=600").await }))
            .collect();
        wait::until("all six to reach the pool", Duration::from_secs(10), || {
            gw.reached_pool(acquired) >= 6
        })
        .await;
        let snap = gw.pool.snapshot();
        assert_eq!(snap.busy_per_thread.len(), 2, "{upstream}: {snap:?}");
        assert!(
            snap.busy_per_thread.iter().all(|&busy| busy > 0),
            "{upstream}: a thread served none: {snap:?}"
        );
        for reply in slow {
            assert_eq!(reply.await.expect("client").status, 200, "{upstream}");
        }
        gw.shutdown().await;
    }
}
