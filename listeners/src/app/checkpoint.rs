//! The checkpoint of an app whose whole state is a plain value (echo,
//! discard, chargen, http, a user's request handler, the distributor's
//! forwarder): a copy of that value, taken between polls, handed the new
//! processor's context when it is restored. The apps that hold kernel
//! descriptors (proxy, exec) have checkpoints of their own that share them.

use crate::app::{App, AppCheckpoint, AppContext, Refused};

/// A copy of an app, taken by [`App::checkpoint`], that goes on as the
/// app itself once `rebind` has told it where it now runs. It exists so
/// that each plain app only says how to copy itself and what of its
/// context to replace, not how to be a checkpoint.
pub(crate) struct Copied<A> {
    app: A,
    /// Bytes the copy holds (its buffers), for [`AppCheckpoint::memory`].
    bytes: usize,
    /// Points the copy at the processor it is restored on.
    rebind: fn(&mut A, AppContext),
}

impl<A> Copied<A> {
    /// The checkpoint of `app` (already a copy, holding `bytes` bytes of
    /// buffers), restored by calling `rebind` with the new context.
    pub(crate) fn new(app: A, bytes: usize, rebind: fn(&mut A, AppContext)) -> Copied<A> {
        Copied { app, bytes, rebind }
    }

    /// Boxed, as [`App::checkpoint`] returns it.
    pub(crate) fn boxed(self) -> Box<dyn AppCheckpoint>
    where
        A: App + 'static,
    {
        Box::new(self)
    }
}

/// For apps that do not care where they run (echo, discard, chargen).
pub(crate) fn keep_context<A>(_app: &mut A, _ctx: AppContext) {}

impl<A: App + 'static> AppCheckpoint for Copied<A> {
    fn restore(self: Box<Self>, ctx: AppContext) -> Result<Box<dyn App>, Refused> {
        let Copied {
            mut app, rebind, ..
        } = *self;
        rebind(&mut app, ctx);
        Ok(Box::new(app))
    }

    fn memory(&self) -> usize {
        self.bytes
    }
}
