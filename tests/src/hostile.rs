//! The hostile registry: see the module docs once written.
