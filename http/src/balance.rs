//! Accept balancing between the worker threads of one listener: a worker with more open
//! connections than the least loaded one by more than [`SLACK`] stops accepting until that
//! changes, so that the kernel's "whichever worker accepts first" cannot leave one thread
//! serving most of a burst of new connections (a player fleet or a load test opening them
//! at once): the busier thread would set every viewer's tail latency and cap throughput at
//! one core's.
//!
//! The least loaded worker always accepts, so a connection never waits for balance unless
//! that worker is busy; a worker waiting for its turn wakes when any worker of the listener
//! accepts or closes a connection, not on a timer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// How many more open connections than the least loaded worker a worker may have and still
/// accept.
pub(crate) const SLACK: usize = 1;

/// One listener's open connections per worker.
#[derive(Debug)]
pub(crate) struct Balance {
    open: Box<[Padded]>,
    changed: Notify,
}

/// A worker's count on a cache line of its own (the workers update theirs, not each
/// other's).
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded(AtomicUsize);

/// One worker's place in the [`Balance`].
#[derive(Clone, Debug)]
pub(crate) struct Turn {
    balance: Arc<Balance>,
    worker: usize,
}

/// An open connection of one worker: counted until dropped.
#[derive(Debug)]
pub(crate) struct Open(Turn);

impl Balance {
    /// The turns of `workers` workers (indices `0..workers`).
    pub(crate) fn turns(workers: usize) -> Vec<Turn> {
        let balance = Arc::new(Balance {
            open: (0..workers).map(|_| Padded::default()).collect(),
            changed: Notify::new(),
        });
        (0..workers)
            .map(|worker| Turn {
                balance: balance.clone(),
                worker,
            })
            .collect()
    }

    fn may_accept(&self, worker: usize) -> bool {
        let load = |p: &Padded| p.0.load(Ordering::Relaxed);
        let least = self.open.iter().map(load).min().unwrap_or(0);
        load(&self.open[worker]) <= least + SLACK
    }
}

impl Turn {
    /// Resolves once this worker may accept (at once if it is within [`SLACK`] of the least
    /// loaded one).
    pub(crate) async fn ready(&self) {
        let b = &self.balance;
        loop {
            let changed = b.changed.notified();
            tokio::pin!(changed);
            // Registered before looking, so a change in between is not missed.
            changed.as_mut().enable();
            if b.may_accept(self.worker) {
                return;
            }
            changed.await;
        }
    }

    /// Counts a connection this worker accepted, until the returned guard is dropped.
    pub(crate) fn open(&self) -> Open {
        self.balance.open[self.worker]
            .0
            .fetch_add(1, Ordering::Relaxed);
        self.balance.changed.notify_waiters();
        Open(self.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        let b = &self.0.balance;
        b.open[self.0.worker].0.fetch_sub(1, Ordering::Relaxed);
        b.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Whether each worker may accept, for open connection counts.
    #[test]
    fn only_workers_within_the_slack_of_the_least_loaded_accept() {
        let table: [(&[usize], &[bool]); 6] = [
            (&[0, 0], &[true, true]),
            (&[1, 0], &[true, true]),
            (&[2, 0], &[false, true]),
            (&[5, 4, 9], &[true, true, false]),
            (&[7], &[true]),
            (&[3, 3, 3, 5], &[true, true, true, false]),
        ];
        for (open, expected) in table {
            let turns = Balance::turns(open.len());
            let guards: Vec<Open> = open
                .iter()
                .zip(&turns)
                .flat_map(|(&n, t)| (0..n).map(|_| t.open()))
                .collect();
            let may: Vec<bool> = turns
                .iter()
                .map(|t| t.balance.may_accept(t.worker))
                .collect();
            assert_eq!(may, expected, "{open:?}");
            drop(guards);
            assert!(turns.iter().all(|t| t.balance.may_accept(t.worker)));
        }
    }

    /// A worker over the slack waits, and is let go when the other accepts or it closes one.
    #[tokio::test]
    async fn a_waiting_worker_goes_on_when_the_balance_changes() {
        for change in ["the other accepts", "it closes one"] {
            let turns = Balance::turns(2);
            let (busy, idle) = (turns[0].clone(), turns[1].clone());
            let mut held: Vec<Open> = (0..2).map(|_| busy.open()).collect();
            let waiting = tokio::spawn({
                let busy = busy.clone();
                async move { busy.ready().await }
            });
            tokio::task::yield_now().await;
            assert!(!waiting.is_finished(), "{change}: 2 against 0 waits");
            match change {
                "the other accepts" => held.push(idle.open()),
                _ => drop(held.pop()),
            }
            tokio::time::timeout(Duration::from_secs(10), waiting)
                .await
                .unwrap_or_else(|_| panic!("{change}: still waiting"))
                .unwrap();
        }
    }
}
