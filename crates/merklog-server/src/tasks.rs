//! The reader tasks the service starts beside the transport (the merged
//! proof node reads and the node cache filler), watched for panics.
//!
//! A panic in one of them fails the calls it was serving, or silently stops
//! the cache from filling; a stop that looked clean would hide it. Each
//! task is spawned through [`Tasks`], which records its panic; once the
//! transport has stopped and dropped the service, [`TaskWatch::first_panic`]
//! waits for every such task to end and returns the first panic, which
//! `serve` returns as it does a panicked sequencer.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::AbortHandle;

/// A task's name and its panic's message.
pub(crate) type TaskPanic = (&'static str, String);

/// Spawns watched tasks. Every clone (and every task spawned through one)
/// keeps [`TaskWatch::first_panic`] waiting, so only what starts tasks
/// holds one.
#[derive(Clone)]
pub(crate) struct Tasks {
    panics: Arc<Mutex<Vec<TaskPanic>>>,
    /// Never sent on: its receiver learns that every holder is gone.
    alive: mpsc::Sender<()>,
}

/// Learns of the panics of the tasks spawned through a [`Tasks`].
pub(crate) struct TaskWatch {
    panics: Arc<Mutex<Vec<TaskPanic>>>,
    ended: mpsc::Receiver<()>,
}

/// How long [`TaskWatch::first_panic`] waits for the tasks to end: they end
/// with the service, so this bounds only a shutdown that something holds up.
const END_WAIT: Duration = Duration::from_secs(10);

impl Tasks {
    /// Returns a spawner and the watch of what it spawns.
    pub(crate) fn new() -> (Tasks, TaskWatch) {
        let panics = Arc::default();
        let (alive, ended) = mpsc::channel(1);
        (
            Tasks {
                panics: Arc::clone(&panics),
                alive,
            },
            TaskWatch { panics, ended },
        )
    }

    /// Spawns `task`, named `name` in the panic it may record, and returns
    /// the handle that aborts it (an aborted task records nothing).
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub(crate) fn spawn<F>(&self, name: &'static str, task: F) -> AbortHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let handle = tokio::spawn(task);
        let abort = handle.abort_handle();
        let panics = Arc::clone(&self.panics);
        let alive = self.alive.clone();
        tokio::spawn(async move {
            if let Err(e) = handle.await {
                if e.is_panic() {
                    let message = crate::leadership::panic_message(e.into_panic());
                    tracing::error!(task = name, panic = %message, "a reader task panicked");
                    panics
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push((name, message));
                }
            }
            drop(alive);
        });
        abort
    }
}

impl TaskWatch {
    /// Waits until every task spawned through the [`Tasks`] has ended and
    /// every [`Tasks`] is dropped (the service that held them is gone), at
    /// most [`END_WAIT`], and returns the first panic among them.
    pub(crate) async fn first_panic(mut self) -> Option<TaskPanic> {
        if tokio::time::timeout(END_WAIT, self.ended.recv())
            .await
            .is_err()
        {
            tracing::warn!(
                "reader tasks still running at shutdown; reporting the panics seen so far"
            );
        }
        self.panics
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .first()
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_is_reported_once_the_tasks_end() {
        let (tasks, watch) = Tasks::new();
        let (go, wait) = tokio::sync::oneshot::channel::<()>();
        tasks.spawn("quiet", async {});
        tasks.spawn("panicky", async move {
            let _ = wait.await;
            panic!("injected reader panic");
        });
        drop(tasks);
        // Held until the panicking task ends: the watch cannot report early.
        let report = tokio::spawn(watch.first_panic());
        go.send(()).unwrap();
        let (name, message) = report.await.unwrap().expect("the panic is reported");
        assert_eq!(name, "panicky");
        assert_eq!(message, "injected reader panic");
    }

    #[tokio::test]
    async fn aborted_and_finished_tasks_report_nothing() {
        let (tasks, watch) = Tasks::new();
        tasks.spawn("done", async {});
        let forever = tasks.spawn("forever", std::future::pending());
        forever.abort();
        drop(tasks);
        assert_eq!(watch.first_panic().await, None);
    }
}
