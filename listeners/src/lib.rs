//! placeholder
pub mod app;
pub mod processor;
pub mod stats;
