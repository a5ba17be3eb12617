//! plumb's integration tests: one binary, a module per area. Every test runs
//! the real `plumb` binary against real git repositories in temp dirs.

mod backup;
mod build;
mod commands;
mod confine;
mod converge;
mod crash;
mod daemon;
mod e2e;
mod example;
mod fetch;
mod harness;
mod https;
mod lock;
mod nginx;
mod nspawn;
mod operator;
mod podman;
mod publish;
mod reconcile;
mod regressions;
mod safety;
mod schedule;
pub mod secrets;
mod serve;
mod sshd;
mod systemd;
mod trust;
