//! The capnp server around the sans-IO [`Chan`]: each RPC call becomes one
//! operation; a call that is cancelled or whose caller disconnects (capnp drops
//! its future) is withdrawn from the channel, and a value offered to a receive
//! that vanished goes back to the front of the queue.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use capnp::capability::Rc as CapRc;
use capnp_rpc::ImbuedMessageBuilder;
use tokio::sync::oneshot;

use super::{Chan, ChanConfig, ChanError, Effect, OpId};
use crate::schema::channel_capnp::{chan, closer, recver, sender};
use crate::transport::PeerId;

/// One value in a channel: a copy of the sent pointer (with its capabilities)
/// and, when known, the authenticated peer that sent it.
pub struct Item {
    origin: Option<PeerId>,
    message: RefCell<ImbuedMessageBuilder<capnp::message::HeapAllocator>>,
}

impl Item {
    /// Copies `value` (and any capabilities in it) out of an incoming call.
    pub fn copy_from(
        origin: Option<PeerId>,
        value: capnp::any_pointer::Reader<'_>,
    ) -> Result<Rc<Self>, capnp::Error> {
        let mut message = ImbuedMessageBuilder::new(capnp::message::HeapAllocator::new());
        message.set_root(value)?;
        Ok(Rc::new(Item {
            origin,
            message: RefCell::new(message),
        }))
    }

    /// The peer that sent the value over the network, if it came through a
    /// per-peer facet.
    pub fn origin(&self) -> Option<PeerId> {
        self.origin
    }

    /// Reads the value as the struct `O` (for example one holding a capability).
    pub fn read<O, R>(
        &self,
        read: impl for<'a> FnOnce(O::Reader<'a>) -> Result<R, capnp::Error>,
    ) -> Result<R, capnp::Error>
    where
        O: capnp::traits::Owned,
    {
        let mut message = self.message.borrow_mut();
        let root: capnp::any_pointer::Builder = message.get_root()?;
        let reader = root.into_reader().get_as::<O::Reader<'_>>()?;
        // A binding, not a tail expression: the reader must be dropped before the
        // borrow of `message` ends.
        #[allow(clippy::let_and_return)]
        let result = read(reader);
        result
    }

    fn write_into(&self, mut out: capnp::any_pointer::Builder<'_>) -> Result<(), capnp::Error> {
        let mut message = self.message.borrow_mut();
        let root: capnp::any_pointer::Builder = message.get_root()?;
        out.set_as(root.into_reader())
    }
}

type Value = Rc<Item>;

enum Outcome {
    Sent,
    Offered(Value),
    Failed(ChanError),
}

struct State {
    chan: Chan<Value>,
    next_op: OpId,
    waiting: BTreeMap<OpId, oneshot::Sender<Outcome>>,
}

impl State {
    fn new_op(&mut self) -> (OpId, oneshot::Receiver<Outcome>) {
        self.next_op += 1;
        let (sender, receiver) = oneshot::channel();
        self.waiting.insert(self.next_op, sender);
        (self.next_op, receiver)
    }

    /// Carries out effects; an offer whose receive has vanished is aborted at once,
    /// which may produce more effects.
    fn dispatch(&mut self, effects: Vec<Effect<Value>>) {
        let mut queue: std::collections::VecDeque<Effect<Value>> = effects.into();
        while let Some(effect) = queue.pop_front() {
            let (op, outcome) = match effect {
                Effect::SendDone(op) => (op, Outcome::Sent),
                Effect::SendFailed(op, e) | Effect::RecvFailed(op, e) => (op, Outcome::Failed(e)),
                Effect::Offer { recv, value } => (recv, Outcome::Offered(value)),
            };
            let delivered = match self.waiting.remove(&op) {
                Some(waiter) => match waiter.send(outcome) {
                    Ok(()) => true,
                    Err(Outcome::Offered(_)) => false,
                    Err(_) => true,
                },
                None => true,
            };
            if !delivered {
                // The receive's caller is gone before it saw the value: put it back.
                if let Ok(more) = self.chan.abort(op) {
                    queue.extend(more);
                }
            }
        }
    }
}

/// Withdraws an operation whose call future is dropped before it finished.
struct Pending {
    state: Rc<RefCell<State>>,
    op: OpId,
    answer: Option<oneshot::Receiver<Outcome>>,
}

impl Pending {
    async fn outcome(&mut self) -> Outcome {
        let answer = self.answer.as_mut().expect("outcome awaited once");
        let outcome = answer.await.unwrap_or(Outcome::Failed(ChanError::Closed));
        self.answer = None;
        outcome
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let Some(mut answer) = self.answer.take() else {
            return;
        };
        let mut state = self.state.borrow_mut();
        state.waiting.remove(&self.op);
        let effects = match answer.try_recv() {
            // Offered but never handed over: the value goes back to the front.
            Ok(Outcome::Offered(_)) => state.chan.abort(self.op).unwrap_or_default(),
            Ok(_) => Vec::new(),
            Err(_) => state.chan.cancel(self.op),
        };
        state.dispatch(effects);
    }
}

/// A channel served over Cap'n Proto. Clones share the channel.
#[derive(Clone)]
pub struct ChannelServer {
    state: Rc<RefCell<State>>,
}

impl ChannelServer {
    /// A new channel.
    pub fn new(config: ChanConfig) -> Result<Self, ChanError> {
        Ok(ChannelServer {
            state: Rc::new(RefCell::new(State {
                chan: Chan::new(config)?,
                next_op: 0,
                waiting: BTreeMap::new(),
            })),
        })
    }

    /// The full capability: send, receive, close, and each facet alone.
    pub fn client(&self) -> chan::Client {
        capnp_rpc::new_client(Facet {
            server: self.clone(),
            origin: None,
        })
    }

    /// A send-only facet that records `origin` with every value (for serving
    /// one per authenticated connection).
    pub fn sender_for(&self, origin: PeerId) -> sender::Client {
        capnp_rpc::new_client(Facet {
            server: self.clone(),
            origin: Some(origin),
        })
    }

    /// Sends in-process; completes as a remote send would.
    pub async fn send_local(&self, value: Value) -> Result<(), ChanError> {
        let (op, answer) = self.state.borrow_mut().new_op();
        let mut pending = Pending {
            state: self.state.clone(),
            op,
            answer: Some(answer),
        };
        let effects = self.state.borrow_mut().chan.send(op, value);
        self.state.borrow_mut().dispatch(effects);
        match pending.outcome().await {
            Outcome::Sent => Ok(()),
            Outcome::Failed(e) => Err(e),
            Outcome::Offered(_) => Err(ChanError::UnknownOp(op)),
        }
    }

    /// Receives in-process: the value is committed (taken) when returned.
    pub async fn recv_local(&self) -> Result<Value, ChanError> {
        let (op, answer) = self.state.borrow_mut().new_op();
        let mut pending = Pending {
            state: self.state.clone(),
            op,
            answer: Some(answer),
        };
        let effects = self.state.borrow_mut().chan.recv(op);
        self.state.borrow_mut().dispatch(effects);
        match pending.outcome().await {
            Outcome::Offered(value) => {
                let mut state = self.state.borrow_mut();
                let effects = state.chan.commit(op)?;
                state.dispatch(effects);
                Ok(value)
            }
            Outcome::Failed(e) => Err(e),
            Outcome::Sent => Err(ChanError::UnknownOp(op)),
        }
    }

    /// Closes the channel.
    pub fn close(&self) -> Result<(), ChanError> {
        let mut state = self.state.borrow_mut();
        let effects = state.chan.close()?;
        state.dispatch(effects);
        Ok(())
    }

    /// Values buffered now (not counting offers out).
    pub fn len(&self) -> usize {
        self.state.borrow().chan.len()
    }

    /// Whether no value is buffered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn to_capnp(e: ChanError) -> capnp::Error {
    match e {
        ChanError::Closed => capnp::Error::failed("closed".into()),
        ChanError::QueueFull { .. } => capnp::Error::overloaded(e.to_string()),
        other => capnp::Error::failed(other.to_string()),
    }
}

/// One facet of a channel; `origin` tags values sent through it.
struct Facet {
    server: ChannelServer,
    origin: Option<PeerId>,
}

impl sender::Server for Facet {
    async fn send(
        self: CapRc<Self>,
        params: sender::SendParams,
        _: sender::SendResults,
    ) -> Result<(), capnp::Error> {
        let item = Item::copy_from(self.origin, params.get()?.get_value())?;
        self.server.send_local(item).await.map_err(to_capnp)
    }
}

impl recver::Server for Facet {
    async fn recv(
        self: CapRc<Self>,
        _: recver::RecvParams,
        mut results: recver::RecvResults,
    ) -> Result<(), capnp::Error> {
        let state = self.server.state.clone();
        let (op, answer) = state.borrow_mut().new_op();
        let mut pending = Pending {
            state: state.clone(),
            op,
            answer: Some(answer),
        };
        let effects = state.borrow_mut().chan.recv(op);
        state.borrow_mut().dispatch(effects);
        match pending.outcome().await {
            Outcome::Offered(value) => {
                let written = value.write_into(results.get().init_value());
                let mut state = state.borrow_mut();
                let effects = match written {
                    Ok(()) => state.chan.commit(op),
                    Err(_) => state.chan.abort(op),
                }
                .map_err(to_capnp)?;
                state.dispatch(effects);
                written
            }
            Outcome::Failed(e) => Err(to_capnp(e)),
            Outcome::Sent => Err(to_capnp(ChanError::UnknownOp(op))),
        }
    }
}

impl closer::Server for Facet {
    async fn close(
        self: CapRc<Self>,
        _: closer::CloseParams,
        _: closer::CloseResults,
    ) -> Result<(), capnp::Error> {
        self.server.close().map_err(to_capnp)
    }
}

impl chan::Server for Facet {
    async fn sender(
        self: CapRc<Self>,
        _: chan::SenderParams,
        mut results: chan::SenderResults,
    ) -> Result<(), capnp::Error> {
        let facet: sender::Client = capnp_rpc::new_client(Facet {
            server: self.server.clone(),
            origin: self.origin,
        });
        results.get().set_sender(facet);
        Ok(())
    }

    async fn recver(
        self: CapRc<Self>,
        _: chan::RecverParams,
        mut results: chan::RecverResults,
    ) -> Result<(), capnp::Error> {
        let facet: recver::Client = capnp_rpc::new_client(Facet {
            server: self.server.clone(),
            origin: None,
        });
        results.get().set_recver(facet);
        Ok(())
    }

    async fn closer(
        self: CapRc<Self>,
        _: chan::CloserParams,
        mut results: chan::CloserResults,
    ) -> Result<(), capnp::Error> {
        let facet: closer::Client = capnp_rpc::new_client(Facet {
            server: self.server.clone(),
            origin: None,
        });
        results.get().set_closer(facet);
        Ok(())
    }
}
