//! One integration binary: the real hkrun, real `sh` and `python3` children, real signals.

mod harness;

mod check_and_run;
mod container;
mod control;
mod exec;
mod growth;
mod input;
mod leftovers;
mod logs;
mod output;
mod pid1;
mod pipeline;
mod router;
mod scale;
mod shutdown;
mod soak;
mod start;
mod supervision;
mod terminal;
