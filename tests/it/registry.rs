//! Real-registry tests.
