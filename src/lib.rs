//! decnet-reconcile: one convergence pass over a DECNET host's state file, its
//! `fleet_deckies` table and its Docker containers. The binary is a thin `main`
//! over `pass::run`; the pure planner is in `plan`.

pub mod cli;
pub mod config;
pub mod db;
pub mod docker;
pub mod events;
pub mod exit_codes;
pub mod metrics;
pub mod pass;
pub mod plan;
pub mod render;
pub mod state_file;
pub mod terminal;
