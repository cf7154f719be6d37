//! The built-in diagnostic factory `counter`: a typed (non-JSON) actor whose messages cross the
//! network as bincode-2 [`Wire`] values. It shows the Rust-caller path: typed messages, and a
//! malformed payload answered with an error rather than a crash.

use actors::codec::Wire;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use ractor_cluster::RactorClusterMessage;

/// Messages of the `counter` actor.
///
/// ```
/// use actors::codec::Wire;
/// use ractor::Actor;
/// use runtime::counter::{Counter, CounterMsg};
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let (c, _) = Actor::spawn(None, Counter, ()).await.unwrap();
/// c.cast(CounterMsg::Add(Wire::new(&2).unwrap())).unwrap();
/// let total = c
///     .call(|p| CounterMsg::AddAndGet(Wire::new(&3).unwrap(), p), None)
///     .await
///     .unwrap()
///     .unwrap();
/// assert_eq!(total.decode().unwrap(), Ok(5));
/// # });
/// ```
#[derive(RactorClusterMessage)]
pub enum CounterMsg {
    /// Add to the total.
    Add(Wire<i64>),
    /// Add, then answer the new total, or why the argument could not be decoded.
    #[rpc]
    AddAndGet(Wire<i64>, RpcReplyPort<Wire<Result<i64, String>>>),
}

/// The counter actor.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counter;

impl Actor for Counter {
    type Msg = CounterMsg;
    type State = i64;
    type Arguments = ();

    async fn pre_start(&self, _: ActorRef<CounterMsg>, _: ()) -> Result<i64, ActorProcessingErr> {
        Ok(0)
    }

    async fn handle(
        &self,
        _: ActorRef<CounterMsg>,
        msg: CounterMsg,
        total: &mut i64,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            CounterMsg::Add(n) => match n.decode() {
                Ok(n) => *total = total.saturating_add(n),
                Err(e) => tracing::warn!("counter: dropping malformed Add: {e}"),
            },
            CounterMsg::AddAndGet(n, reply) => {
                let answer = n
                    .decode()
                    .map(|n| {
                        *total = total.saturating_add(n);
                        *total
                    })
                    .map_err(|e| e.to_string());
                if let Ok(w) = Wire::new(&answer) {
                    let _ = reply.send(w);
                }
            }
        }
        Ok(())
    }
}
