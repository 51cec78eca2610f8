//! End-to-end tests: spawn the real `lakehouse` binary (one test binary for
//! the crate, because linking is the slow part).

mod acceptance;
mod adversarial;
mod catalog;
mod console;
mod dropped;
mod edges;
mod evolution;
mod ingest;
mod protocols;
mod query;
mod storage;
mod support;
mod tables;
mod vector_datasets;
mod vectors;
mod writes;
