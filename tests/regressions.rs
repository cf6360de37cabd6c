//! Regression tests emitted by `vnic replay TRACE --emit-test
//! tests/regressions/NAME.rs`: each file holds a trace's TCP connections
//! as stack-level cases ([`vnic::replay::stack_case`]) and its own
//! `#[test]`. To add one: emit it, add `#[rustfmt::skip] #[path =
//! "regressions/NAME.rs"] mod NAME;` below and its
//! `(NAME::CASES, NAME::tcp)` to [`EMITTED`].
//!
//! `lossy_session`: curl, an echo of 6 KiB, 16 KiB of chargen and a GET
//! on 2 processors under `--impair loss=2%,reorder=5%` with SYN cookies
//! for every connection (tests/replay.rs records it again:
//! `record_the_checked_in_session`, ignored; tests/replay.rs also checks
//! that the file is what `--emit-test` writes from the trace).
//!
//! `emitted_cases_catch_a_broken_stack` runs every case against the
//! stack with its test-only fault on (`vnic_stack::faults`: every window
//! it advertises halved): each must fail, so a passing emitted test says
//! something.

// As emitted: rustfmt leaves the file alone (tests/replay.rs checks it is
// what `--emit-test` writes).
#[rustfmt::skip]
#[path = "regressions/lossy_session.rs"]
mod lossy_session;

use vnic::replay::stack_case::{check, Case};
use vnic_stack::TcpConfig;

/// One emitted file: its cases and its TCP settings.
type Emitted = (&'static [Case], fn() -> TcpConfig);

/// Every emitted file.
const EMITTED: &[Emitted] = &[(lossy_session::CASES, lossy_session::tcp)];

#[test]
fn emitted_cases_catch_a_broken_stack() {
    let mut cases = 0;
    for (list, tcp) in EMITTED {
        for case in *list {
            assert_eq!(check(case, &tcp()), Ok(()), "the stack as it is passes");
            vnic_stack::faults::set_halve_window(true);
            let broken = check(case, &tcp());
            vnic_stack::faults::set_halve_window(false);
            let why = broken.expect_err("a stack advertising half its window fails the case");
            assert!(why.contains("win"), "the window is what differs: {why}");
            cases += 1;
        }
    }
    assert!(cases > 0, "no emitted case");
}
