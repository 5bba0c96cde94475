//! The integration tests, one binary that links once: one module per area,
//! all on the fixture in `fixture/` (read its module doc first). They drive
//! the built binary against real services; fakes stand in only for faults the
//! real thing cannot produce on demand.

mod fixture;

mod architecture;
mod broken_stdout;
mod db_files;
mod decnet_bus;
mod decnet_host;
mod environment;
mod events;
mod faults;
mod generated;
mod hostile;
mod lookups;
mod metrics;
mod mysql;
mod mysql_faults;
mod mysql_scope;
mod odd_rows;
mod output;
mod pass;
mod secrets;
mod state_file;
mod systemd;
mod tls;
