//! One integration binary: the real hkrun, real `sh` and `python3` children, real signals.

mod harness;

mod check_and_run;
mod container;
mod control;
mod input;
mod logs;
mod pid1;
mod pipeline;
mod router;
mod shutdown;
mod start;
mod supervision;
mod terminal;
