//! One integration binary: the real hkrun, real `sh`, `hkrun-test-child` (the stand-in app,
//! tests/support/child.rs) and `python3` children, real signals.

mod harness;

// The chaos soak, the longest test: its name sorts first (`chaos::`), and tests start in
// name order, so the rest run beside it rather than after.
mod chaos;
mod check_and_run;
mod commands;
mod config_vars;
mod connect;
mod container;
mod control;
mod dashboard;
mod drains;
mod exec;
mod export;
mod growth;
mod herokus_app_json;
mod http_router;
mod input;
mod leftovers;
mod logs;
mod metrics;
mod neighbours;
mod output;
mod pid1;
mod pipeline;
mod router;
mod scale;
mod scheduler;
mod settings;
mod shutdown;
mod signals;
mod start;
mod supervision;
mod terminal;
