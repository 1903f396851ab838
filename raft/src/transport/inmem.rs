//! In-memory transport for tests and simulations.
