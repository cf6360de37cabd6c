//! placeholder
pub mod app;
pub mod control;
pub mod processor;
pub mod stats;
