//! storaged integration tests (one binary for the crate).

mod atomic;
mod router;
mod rules;
mod suite;
mod support;
