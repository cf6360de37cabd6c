//! Test-only faults (feature `test-faults`, which only test builds turn
//! on, through the root package's dev-dependency): a deliberately broken
//! stack, so a test can show that a regression test emitted by
//! `vnic replay --emit-test` catches a bug. Per thread, so a test that
//! breaks the stack breaks it for itself alone.

use std::cell::Cell;

thread_local! {
    static HALVE_WINDOW: Cell<bool> = const { Cell::new(false) };
}

/// While on (in this thread), every window a connection advertises is
/// half what it should be.
pub fn set_halve_window(on: bool) {
    HALVE_WINDOW.with(|c| c.set(on));
}

/// True while [`set_halve_window`] is on in this thread.
pub(crate) fn halve_window() -> bool {
    HALVE_WINDOW.with(Cell::get)
}
