//! The integration tests, one binary: the real server on 127.0.0.1:0 (in process, or the
//! `callmux` binary itself) against real HTTP upstreams on loopback.
//!
//! Every test runs in this one process beside the others, so none may depend on running
//! alone: a test that reads process-wide state (the Prometheus registry behind `/metrics`)
//! names its orgs and providers with `common::unique`.

mod common;

mod auth;
mod capacity;
mod cli;
mod clients;
mod coalescing;
mod config;
mod conformance;
mod connections;
mod dashboard;
mod end;
mod error_codes;
mod faults;
mod hooks;
mod http_machinery;
mod keys;
mod merge;
mod methods;
mod one_row;
mod openapi;
mod ops;
mod partial_failure;
mod passthrough;
mod place;
mod placing;
mod platform_hooks;
mod properties;
mod pushed;
mod reference_examples;
mod rendering;
mod replicas;
mod retell;
mod routes;
mod secrets;
mod static_kind;
mod stop_all;
mod stream_connections;
mod streams;
mod twilio;
mod vapi;
mod webhooks;
