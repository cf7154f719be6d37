//! Waiting on a condition with a deadline: poll it, sleeping between polls, until it holds
//! or the deadline passes. A timeout is an error naming what was awaited.

use std::{
    future::Future,
    time::{Duration, Instant},
};

use crate::{Error, Result};

/// How often [`wait_until`] polls.
pub const POLL: Duration = Duration::from_millis(50);

/// Poll `cond` every [`POLL`] until it holds, for at most `limit`; [`Error::TimedOut`]
/// naming `what` if it never did. `cond` runs at least once, also past the deadline.
pub fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + limit;
    while !cond() {
        if Instant::now() >= deadline {
            return Err(timed_out(what, limit));
        }
        std::thread::sleep(POLL);
    }
    Ok(())
}

/// [`wait_until`] for a condition that can say what it saw: poll `check` every `every` until
/// it returns `Ok(())`, for at most `limit`. An `Err(seen)` means "not yet"; on timeout the
/// [`Error::TimedOut`] names `what` and the last `seen`, so a failure says how far things got.
/// For conditions that are dear to poll (each one runs CLI processes), `every` can be longer
/// than [`POLL`].
///
/// ```
/// use std::time::Duration;
/// let mut n = 0;
/// testkit::wait_until_seen("n reaches 3", Duration::from_secs(5), Duration::from_millis(1), || {
///     n += 1;
///     if n >= 3 { Ok(()) } else { Err(format!("n = {n}")) }
/// })
/// .unwrap();
/// let err = testkit::wait_until_seen("never", Duration::ZERO, Duration::ZERO, || {
///     Err("n = 0".to_string())
/// })
/// .unwrap_err();
/// assert!(err.to_string().contains("last seen: n = 0"));
/// ```
pub fn wait_until_seen(
    what: &str,
    limit: Duration,
    every: Duration,
    mut check: impl FnMut() -> std::result::Result<(), String>,
) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        match check() {
            Ok(()) => return Ok(()),
            Err(seen) if Instant::now() >= deadline => {
                return Err(timed_out(&format!("{what} (last seen: {seen})"), limit))
            }
            Err(_) => std::thread::sleep(every),
        }
    }
}

/// The async twin of [`wait_until`] for a condition that yields a value: poll `f` every
/// `every` until it returns `Ok(Some(v))` (then `Ok(v)`), for at most `limit`. An `Err` from
/// `f` ends the wait with that error; running out of time is [`Error::TimedOut`] naming `what`,
/// converted into `E`.
pub async fn wait_for<T, E, F, Fut>(
    what: &str,
    limit: Duration,
    every: Duration,
    mut f: F,
) -> Result<T, E>
where
    E: From<Error>,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>, E>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(timed_out(what, limit).into());
        }
        tokio::time::sleep(every).await;
    }
}

/// [`wait_for`] for an async condition that only holds or not: poll `cond` every `every`
/// until it returns `true`, for at most `limit`; [`Error::TimedOut`] naming `what` if it never
/// did.
///
/// ```
/// use std::time::Duration;
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let mut polls = 0;
/// testkit::wait_until_async("the second poll", Duration::from_secs(5), Duration::from_millis(1), || {
///     polls += 1;
///     let held = polls == 2;
///     async move { held }
/// })
/// .await
/// .unwrap();
/// assert_eq!(polls, 2);
/// # });
/// ```
pub async fn wait_until_async<F, Fut>(
    what: &str,
    limit: Duration,
    every: Duration,
    mut cond: F,
) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_for(what, limit, every, || {
        let held = cond();
        async move { Ok::<_, Error>(held.await.then_some(())) }
    })
    .await
}

fn timed_out(what: &str, limit: Duration) -> Error {
    Error::TimedOut {
        what: what.to_string(),
        limit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_until_returns_once_the_condition_holds() {
        let mut polls = 0;
        wait_until("the third poll", Duration::from_secs(10), || {
            polls += 1;
            polls == 3
        })
        .expect("holds on the third poll");
        assert_eq!(polls, 3);
    }

    #[test]
    fn wait_until_times_out_naming_what_it_waited_for() {
        let err = wait_until("never", Duration::from_millis(120), || false)
            .expect_err("the condition never holds");
        assert!(matches!(&err, Error::TimedOut { what, .. } if what == "never"));
        assert!(err.to_string().contains("waiting for: never"), "{err}");
    }

    #[tokio::test]
    async fn wait_for_yields_the_value_or_the_first_error() {
        let mut n = 0;
        let v: Result<u32> = wait_for("n", Duration::from_secs(10), Duration::ZERO, || {
            n += 1;
            let now = n;
            async move { Ok((now == 2).then_some(now)) }
        })
        .await;
        assert_eq!(v.expect("a value"), 2);

        let e: Result<()> = wait_for("x", Duration::from_secs(10), Duration::ZERO, || async {
            Err(Error::NotRunning { name: "a".into() })
        })
        .await;
        assert!(matches!(e, Err(Error::NotRunning { .. })));

        let t: Result<()> = wait_for(
            "none",
            Duration::from_millis(20),
            Duration::from_millis(5),
            || async { Ok(None) },
        )
        .await;
        assert!(matches!(t, Err(Error::TimedOut { .. })));
    }
}
