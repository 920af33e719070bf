//! Death notices for supervised actors.
//!
//! actix's own `Supervisor` restarts an actor only when it *stops*; a panic inside a handler
//! unwinds out of the actor's task, tokio drops the task, and nobody is told. A [`Lifeline`]
//! is a field of the supervised actor: when the actor is dropped — after a stop or a panic
//! alike — the lifeline's drop sends the death notice it was armed with. An actor that is
//! retired on purpose disarms its lifeline first.

use actix::prelude::*;

pub struct Lifeline {
    notify: Option<Box<dyn FnOnce() + Send>>,
}

impl Lifeline {
    /// A lifeline that delivers `notice` to `to` when dropped.
    pub fn new<M>(to: Recipient<M>, notice: M) -> Self
    where
        M: Message + Send + 'static,
        M::Result: Send,
    {
        Lifeline {
            notify: Some(Box::new(move || to.do_send(notice))),
        }
    }

    /// A lifeline that tells nobody (for actors run outside a supervisor, e.g. in tests).
    pub fn detached() -> Self {
        Lifeline { notify: None }
    }

    /// The actor is going away on purpose: no notice.
    pub fn disarm(&mut self) {
        self.notify = None;
    }
}

impl Drop for Lifeline {
    fn drop(&mut self) {
        if let Some(notify) = self.notify.take() {
            notify();
        }
    }
}
