//! Warden's integration tests: one binary, one harness (`common`).

mod common;

mod chain;
mod conformance;
mod contract;
mod gateway;
mod languages;
mod lifecycle;
mod modern;
mod reload;
mod relay;
mod remote;
mod sandbox;
mod server_everything;
