//! decnet-reconcile: one convergence pass over a DECNET host's state file, its
//! `fleet_deckies` table and its Docker containers.
//!
//! Layers, each importing only those below it (docs/architecture.md):
//! `core` and `text` at the bottom; the adapters `net`, `state_file`,
//! `docker`, `store`, `bus` and `render` over them; `config`; `pass` and `doctor`; `app`.

pub mod app;
pub mod bus;
pub mod config;
pub mod core;
pub mod docker;
pub mod doctor;
pub mod exit_codes;
pub mod metrics;
pub mod net;
pub mod pass;
pub mod regular_file;
pub mod render;
pub mod state_file;
pub mod store;
pub mod text;
pub mod tls;
