//! catalogd integration tests: the registry contract (ADR-020, versions,
//! concurrency, fault injection, rehydrate), the conformance suite run against
//! the registry and the client alike, the HTTP edge (every status)
//! and the HTTP client (typed errors over the wire).

mod conformance;
mod fuzz;
mod http;
mod ownership;
mod registry;
mod support;
mod tables;
