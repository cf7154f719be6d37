//! A long-lived async loop as a supervised child ([`ChildSpec::task`]).
//!
//! The child is a worker actor that, each time it starts, calls the spec's `make` function for a
//! fresh future and runs it on its own tokio task. What the loop does decides the child's exit,
//! as OTP would see a worker's:
//!
//! * the future returns `Ok(())`: the child stops with reason `normal`;
//! * it returns `Err(text)` or panics: the child fails with that text (abnormal);
//! * the child is stopped or killed (its supervisor's shutdown, a node shutdown,
//!   `terminate_child`): the loop's task is aborted, so the future is dropped at its next
//!   `.await`. A stop waits until the future has been dropped (within the child's
//!   [`Shutdown`](crate::Shutdown) policy).
//!
//! The default restart type is [`Restart::Transient`]: a loop that fails is started again, one
//! that finishes (its input closed, it was told to stop) stays stopped.

use std::{future::Future, pin::Pin, sync::Arc};

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::{sync::oneshot, task::AbortHandle};

use crate::{ChildSpec, Restart};

/// The future a task child's `make` function returns.
type LoopFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

type MakeFn = Arc<dyn Fn() -> LoopFuture + Send + Sync>;

impl ChildSpec {
    /// A worker child that runs a long-lived async loop: `make` is called at every (re)start for
    /// a fresh future. `Ok(())` ends the child normally; `Err` or a panic fails it; stopping the
    /// child aborts the loop. Defaults: [`Restart::Transient`], shutdown timeout 5 s, start
    /// timeout 5 s (the start only spawns the loop). The snapshot shows it as a worker with `id`.
    ///
    /// ```
    /// use actors::{ChildSpec, Strategy, Supervisor, SupervisorSpec};
    /// use std::sync::{atomic::{AtomicU32, Ordering}, Arc};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let ticks = Arc::new(AtomicU32::new(0));
    /// let t = ticks.clone();
    /// let spec = SupervisorSpec::new(Strategy::OneForOne).child(ChildSpec::task("ticker", move || {
    ///     let t = t.clone();
    ///     async move {
    ///         let mut every = tokio::time::interval(std::time::Duration::from_millis(1));
    ///         loop {
    ///             every.tick().await;
    ///             t.fetch_add(1, Ordering::Relaxed);
    ///         }
    ///     }
    /// }));
    /// let (sup, _handle) = Supervisor::start(None, spec).await.unwrap();
    /// let children = actors::which_children(&sup).await.unwrap();
    /// assert_eq!(children[0].id, "ticker");
    /// sup.stop_and_wait(None, None).await.unwrap(); // aborts the loop
    /// # });
    /// ```
    pub fn task<F, Fut>(id: impl Into<String>, make: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let make: MakeFn = Arc::new(move || Box::pin(make()));
        ChildSpec::worker(id, None, TaskActor { make }, ()).restart(Restart::Transient)
    }
}

impl ChildSpec {
    /// [`ChildSpec::task`] for a loop that has no error to report: it returns `()` once what
    /// it serves is gone, which ends the child normally (a panic still fails it and restarts
    /// it).
    ///
    /// ```
    /// use actors::{ChildSpec, Strategy, Supervisor, SupervisorSpec};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u32>();
    /// let rx = std::sync::Arc::new(tokio::sync::Mutex::new(rx));
    /// let spec = SupervisorSpec::new(Strategy::OneForOne).child(ChildSpec::infallible_task(
    ///     "drain",
    ///     move || {
    ///         let rx = rx.clone();
    ///         async move { while rx.lock().await.recv().await.is_some() {} }
    ///     },
    /// ));
    /// let (sup, _handle) = Supervisor::start(None, spec).await.unwrap();
    /// tx.send(1).unwrap();
    /// assert_eq!(actors::which_children(&sup).await.unwrap()[0].id, "drain");
    /// sup.stop_and_wait(None, None).await.unwrap();
    /// # });
    /// ```
    pub fn infallible_task<F, Fut>(id: impl Into<String>, make: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        ChildSpec::task(id, move || {
            let run = make();
            async move {
                run.await;
                Ok(())
            }
        })
    }
}

/// The worker actor behind [`ChildSpec::task`].
#[derive(Clone)]
struct TaskActor {
    make: MakeFn,
}

/// What the watcher of the loop's task reports to the actor.
enum Ended {
    Returned(Result<(), String>),
    Panicked(String),
}

impl ractor::Message for Ended {}

/// The running loop: aborted when dropped (a stop, or a kill that skips `post_stop`).
struct Running {
    abort: AbortHandle,
    /// Closed (or sent) once the loop's future is gone, however it ended.
    gone: Option<oneshot::Receiver<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.abort.abort();
    }
}

impl Actor for TaskActor {
    type Msg = Ended;
    type State = Running;
    type Arguments = ();

    async fn pre_start(
        &self,
        myself: ActorRef<Ended>,
        _: (),
    ) -> Result<Running, ActorProcessingErr> {
        let handle = tokio::spawn((self.make)());
        let abort = handle.abort_handle();
        let (gone_tx, gone_rx) = oneshot::channel();
        tokio::spawn(async move {
            let ended = match handle.await {
                Ok(result) => Ended::Returned(result),
                Err(e) if e.is_panic() => Ended::Panicked(panic_text(e.into_panic())),
                // Aborted: the actor is stopping and is not listening any more.
                Err(_) => {
                    let _ = gone_tx.send(());
                    return;
                }
            };
            let _ = gone_tx.send(());
            // Fails only when the actor is already stopping: nothing to report then.
            let _ = myself.send_message(ended);
        });
        Ok(Running {
            abort,
            gone: Some(gone_rx),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<Ended>,
        ended: Ended,
        _: &mut Running,
    ) -> Result<(), ActorProcessingErr> {
        match ended {
            Ended::Returned(Ok(())) => {
                myself.stop(Some("normal".into()));
                Ok(())
            }
            Ended::Returned(Err(e)) => Err(format!("loop failed: {e}").into()),
            Ended::Panicked(e) => Err(format!("loop panicked: {e}").into()),
        }
    }

    async fn post_stop(
        &self,
        _: ActorRef<Ended>,
        state: &mut Running,
    ) -> Result<(), ActorProcessingErr> {
        state.abort.abort();
        if let Some(gone) = state.gone.take() {
            let _ = gone.await;
        }
        Ok(())
    }
}

/// The text of a panic's payload (`panic!("...")` gives a `&str` or a `String`).
fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(s) => (*s).to_string(),
            Err(_) => "a panic without a message".into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::atomic::{AtomicU32, Ordering},
        time::Duration,
    };

    use super::*;
    use crate::{
        restart_child, which_children, ChildKind, ChildStatus, Intensity, Strategy, Supervisor,
        SupervisorMsg, SupervisorSpec,
    };

    /// Wait for `cond` with a deadline, polling (no sleep stands in for an event).
    async fn wait_until<F, Fut>(what: &str, mut cond: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !cond().await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for: {what}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn child(sup: &ActorRef<SupervisorMsg>, id: &str) -> crate::ChildInfo {
        which_children(sup)
            .await
            .unwrap()
            .into_iter()
            .find(|c| c.id == id)
            .unwrap()
    }

    fn spec(child: ChildSpec) -> SupervisorSpec {
        SupervisorSpec::new(Strategy::OneForOne)
            .intensity(Intensity {
                max_restarts: 10,
                period: Duration::from_secs(10),
            })
            .child(child)
    }

    #[tokio::test]
    async fn a_panicking_loop_is_restarted() {
        let starts = Arc::new(AtomicU32::new(0));
        let s = starts.clone();
        let task = ChildSpec::task("flaky", move || {
            let n = s.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                if n < 3 {
                    panic!("start {n} panics");
                }
                std::future::pending::<()>().await;
                Ok(())
            }
        });
        let (sup, _) = Supervisor::start(None, spec(task)).await.unwrap();
        wait_until("the third start", || async {
            starts.load(Ordering::SeqCst) == 3
        })
        .await;
        wait_until("two restarts, running", || async {
            let c = child(&sup, "flaky").await;
            c.restarts == 2 && c.status == ChildStatus::Running
        })
        .await;
        assert_eq!(starts.load(Ordering::SeqCst), 3);
        let tree = crate::snapshot(&sup).await.unwrap();
        let shown = &tree.children[0];
        assert_eq!(
            (shown.name.as_str(), shown.kind),
            ("flaky", ChildKind::Worker)
        );
        assert_eq!(shown.restart.as_deref(), Some("transient"));
        sup.stop_and_wait(None, None).await.unwrap();
    }

    #[tokio::test]
    async fn a_loop_that_returns_an_error_is_restarted() {
        let starts = Arc::new(AtomicU32::new(0));
        let s = starts.clone();
        let task = ChildSpec::task("fails-once", move || {
            let n = s.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                if n == 1 {
                    return Err("input closed early".to_string());
                }
                std::future::pending::<()>().await;
                Ok(())
            }
        });
        let (sup, _) = Supervisor::start(None, spec(task)).await.unwrap();
        wait_until("one restart, running", || async {
            let c = child(&sup, "fails-once").await;
            c.restarts == 1 && c.status == ChildStatus::Running
        })
        .await;
        assert_eq!(starts.load(Ordering::SeqCst), 2);
        sup.stop_and_wait(None, None).await.unwrap();
    }

    #[tokio::test]
    async fn a_loop_that_returns_ok_is_not_restarted_under_transient() {
        let starts = Arc::new(AtomicU32::new(0));
        let s = starts.clone();
        let task = ChildSpec::task("once", move || {
            s.fetch_add(1, Ordering::SeqCst);
            async { Ok(()) }
        });
        let (sup, _) = Supervisor::start(None, spec(task)).await.unwrap();
        wait_until("the child stopped", || async {
            child(&sup, "once").await.status == ChildStatus::Stopped
        })
        .await;
        let c = child(&sup, "once").await;
        assert_eq!((c.restarts, c.restart), (0, Restart::Transient));
        assert_eq!(starts.load(Ordering::SeqCst), 1);
        // Asked to, the supervisor starts it again: `make` gives a fresh loop.
        restart_child(&sup, "once").await.unwrap();
        wait_until("the second start", || async {
            starts.load(Ordering::SeqCst) == 2
        })
        .await;
        sup.stop_and_wait(None, None).await.unwrap();
    }

    #[tokio::test]
    async fn stopping_the_supervisor_aborts_the_loop() {
        // The loop holds the sender: the receiver sees the channel close when the loop's
        // future is dropped, and only then.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        let tx = Arc::new(std::sync::Mutex::new(Some(tx)));
        let started = Arc::new(AtomicU32::new(0));
        let (t, s) = (tx.clone(), started.clone());
        let task = ChildSpec::task("holder", move || {
            let held = t.lock().unwrap().take();
            s.fetch_add(1, Ordering::SeqCst);
            async move {
                let _held = held;
                std::future::pending::<()>().await;
                Ok(())
            }
        });
        let (sup, _) = Supervisor::start(None, spec(task)).await.unwrap();
        wait_until("the loop started", || async {
            started.load(Ordering::SeqCst) == 1
        })
        .await;
        assert!(rx
            .try_recv()
            .is_err_and(|e| e == tokio::sync::mpsc::error::TryRecvError::Empty));
        sup.stop_and_wait(None, None).await.unwrap();
        // The child's stop waits for the loop to be dropped, so the channel is closed by now;
        // the deadline only guards against a hang.
        let closed = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await;
        assert!(matches!(closed, Ok(None)), "the loop was not aborted");
    }

    #[test]
    fn panic_text_reads_str_and_string_payloads() {
        assert_eq!(panic_text(Box::new("plain")), "plain");
        assert_eq!(
            panic_text(Box::new(String::from("formatted 1"))),
            "formatted 1"
        );
        assert_eq!(panic_text(Box::new(7_u8)), "a panic without a message");
    }
}
