//! Hostile-registry tests.
