//! The engine's side of backpressure (see `broker/pressure.rs`): after a run pressed a full
//! subscriber, the engine stops decoding what the client sent (the rest waits in the read
//! buffer) and the shell reads nothing more until the subscribers have room, or the wait's
//! bound has passed.

use super::{Engine, Open, State};
use std::task::Waker;
use std::time::Instant;

/// Whether the shell may read from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reading {
    /// Read as usual.
    Free,
    /// Read nothing until woken, or until [`Engine::paused_until`] at the latest (then call
    /// [`Engine::expire_pressure`]).
    Paused,
    /// A wait just ended: handle what is in the read buffer before reading more.
    Resumed,
}

impl Open {
    /// Takes what the runs routed so far pressed; whether the client must now wait.
    pub(super) fn note_pressure(&mut self, now: Instant) -> bool {
        if !crate::broker::pressed_any() {
            return self.extras.as_ref().is_some_and(|e| e.pressure.is_some());
        }
        let (broker, grace_ms) = (self.link.broker().clone(), self.grace_ms);
        let extras = self.extras.get_or_insert_with(Default::default);
        broker.take_pressure(now, grace_ms, &mut extras.pressure);
        extras.pressure.is_some()
    }
}

impl Engine {
    /// Whether the shell may read, registering `waker` with the full subscribers this
    /// connection waits for.
    pub(crate) fn poll_pressure(&mut self, waker: &Waker) -> Reading {
        let State::Open(open) = &mut self.state else {
            return Reading::Free;
        };
        let Some(extras) = open.extras.as_mut() else {
            return Reading::Free;
        };
        let Some(pressure) = extras.pressure.as_mut() else {
            return Reading::Free;
        };
        if pressure.poll(waker) {
            return Reading::Paused;
        }
        extras.pressure = None;
        Reading::Resumed
    }

    /// Until when the client is not read at the latest, while it waits for full subscribers.
    pub(crate) fn paused_until(&self) -> Option<Instant> {
        match &self.state {
            State::Open(open) => open.extras.as_ref()?.pressure.as_ref().map(|p| p.until()),
            State::Connecting { .. } | State::Closed => None,
        }
    }

    /// The wait reached its bound at `now`: subscribers that took nothing since are given up
    /// on (see `Pressure::expire`). Whether the client must still wait. A client that waits on
    /// is marked heard from: it is not read while it waits, so its keep alive cannot be
    /// checked (the bound is at most half its grace, so this comes in time).
    pub(crate) fn expire_pressure(&mut self, now: Instant) -> bool {
        let State::Open(open) = &mut self.state else {
            return false;
        };
        let Some(extras) = open.extras.as_mut() else {
            return false;
        };
        let waiting = extras.pressure.as_mut().is_some_and(|p| p.expire(now));
        if waiting {
            open.heard_from(now);
        } else {
            extras.pressure = None;
        }
        waiting
    }
}
