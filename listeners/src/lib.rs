//! placeholder
pub mod app;
pub mod control;
pub mod distributor;
pub mod processor;
pub mod stats;
