//! Warden's integration tests: one binary, one harness (`common`).

mod common;

mod audit_chain;
mod audit_durable;
mod chain;
mod conformance;
mod contract;
mod endpoints;
mod gateway;
mod gateway_config;
mod gateway_remote;
mod gateway_share;
mod identity;
mod in_process;
mod languages;
mod lifecycle;
mod listener;
mod modern;
mod oauth;
mod one_reading;
mod operations;
mod per_identity;
mod plugins_hold;
mod quotas;
mod relay;
mod reload;
mod remote;
mod sandbox;
mod server_everything;
mod tls;
mod traces;
mod upstreams;
mod upstreams_hostile;
