//! Active health: every `health-interval`, each upstream's ping page
//! (`fpm-ping-path`) is asked on a fresh connection; one that does not
//! answer 2xx within the connect timeout is out of service until it does
//! (`upstream::balance`). Needed where an upstream can be down with no
//! request to notice it, and to bring one back without risking a request.

use std::sync::{Arc, Weak};
use std::time::Duration;

use super::ping::ping;
use crate::upstream::Member;

/// Probes `member` every `every` until it leaves (or the task is aborted).
pub fn spawn_probe(
    member: &Arc<Member>,
    path: String,
    every: Duration,
    timeout: Duration,
) -> tokio::task::JoinHandle<()> {
    let weak: Weak<Member> = Arc::downgrade(member);
    let upstream = member.addr().clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let result = match tokio::time::timeout(timeout, ping(&upstream, &path, timeout)).await
            {
                Ok(result) => result,
                Err(_) => Err(format!(
                    "php-fpm ping {path} not answered within {timeout:?}"
                )),
            };
            let Some(member) = weak.upgrade() else { return };
            match result {
                Ok(()) => member.probed(true, "ping answered"),
                Err(reason) => member.probed(false, &reason),
            }
        }
    })
}
