//! placeholder; see docs/STACK_API.md
