//! Integration tests: real database files in temp dirs, the built executable, and checks
//! against independent computations. One binary, one module per capability.

mod alerts;
mod cli;
mod dashboard;
mod jsonl;
mod pricing;
mod reliability;
mod reprice;
mod store;
mod util;
