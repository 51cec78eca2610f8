//! End-to-end tests: spawn the real `lakehouse` binary.
