//! alerts tests.
