//! placeholder
pub mod app;
pub mod stats;
