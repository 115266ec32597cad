//! dashboard tests.
