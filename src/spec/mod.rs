//! The input layer: the host config (`/etc/plumb/plumb.yaml`, the trust
//! root) and flags resolved into [`settings::Settings`]; a deploy repo's
//! `deploy.yaml` and host overlays parsed, merged and validated; the files
//! of a deploy repo at one commit ([`tree::Tree`]); host paths and the
//! allowed roots; crontab schedules; plumb's own layout on a host.
//!
//! Pure: reads only what it is handed (and the host config file in
//! `settings`). The only module importing the YAML crate (`yaml`). May not
//! import `source`, `render`, `plan`, `apply`, `host` or `commands`.

pub mod app;
pub mod deploy;
pub mod health;
pub mod layout;
pub mod overlay;
pub mod paths;
pub mod remote;
pub mod schedule;
pub mod settings;
pub mod tree;
pub mod validate;
pub mod yaml;
