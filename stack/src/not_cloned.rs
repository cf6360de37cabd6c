//! [`NotCloned`]: a field that a clone of its owner starts without.

use std::ops::{Deref, DerefMut};

/// A value its owner's clone does not copy: the clone gets `T::default()`.
///
/// It exists for the buffers a send or receive buffer keeps for reuse
/// (acknowledged pieces, segments read to the end): a checkpoint clones the
/// connection, and a copy of those would only hold memory (or a shared
/// buffer the owner could no longer reuse) on the backup's side.
#[derive(Debug, Default)]
pub(crate) struct NotCloned<T: Default>(pub(crate) T);

impl<T: Default> Clone for NotCloned<T> {
    fn clone(&self) -> Self {
        NotCloned(T::default())
    }
}

impl<T: Default> Deref for NotCloned<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Default> DerefMut for NotCloned<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clone_starts_empty() {
        let kept = NotCloned(vec![vec![1u8; 8]]);
        assert_eq!(kept.len(), 1);
        assert!(kept.clone().is_empty());
    }
}
