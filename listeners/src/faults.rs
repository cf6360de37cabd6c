//! Whether the test-only fault is armed in this process: compiled in by
//! the `test-faults` feature (test builds only, through the root
//! package's dev-dependency) and armed only when the process was started
//! with `VNIC_TEST_FAULTS=1`.
//!
//! Why both: `cargo test` (and `cargo build --bin vnic --example X`)
//! builds the vnic binary with the feature on, and that binary is the one
//! a developer may run by hand or measure. Armed by the environment, it
//! behaves like a release build unless a test asks: a segment carrying
//! the marker is an ordinary segment, and the per-segment cost is one
//! predictable branch on a value read once.

/// The environment variable that arms the fault (value `1`).
pub const ENV: &str = "VNIC_TEST_FAULTS";

/// True when the test-only fault is compiled in and this process was
/// started with [`ENV`]`=1`; read from the environment once. `vnic up`
/// warns when it is; a processor checks it before looking at a segment.
pub fn armed() -> bool {
    #[cfg(feature = "test-faults")]
    {
        static ARMED: std::sync::LazyLock<bool> =
            std::sync::LazyLock::new(|| std::env::var_os(ENV).is_some_and(|v| v == "1"));
        *ARMED
    }
    #[cfg(not(feature = "test-faults"))]
    {
        false
    }
}
