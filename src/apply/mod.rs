//! The executor layer: everything that changes the host, through `Host`.
//! It looks at the host for the planner ([`observe`]), writes releases
//! ([`release`], [`appdir`]), executes plans with a journal ([`executor`],
//! [`journal`]) and keeps `state.json` ([`record`], the only writer).
//!
//! May import `plan`, `render::desired`, `spec` and `host`; never
//! `commands` or `daemon`.

pub mod appdir;
pub mod check;
pub mod executor;
pub mod images;
pub mod journal;
pub mod observe;
pub mod publish;
pub mod record;
mod recycle;
pub mod release;
pub mod secrets;

pub use executor::{Executor, Failure, Outcome};
pub use record::StateStore;

#[cfg(test)]
mod tests;
