//! Text this process writes for people: untrusted text made safe to show
//! (`sanitize`), secrets kept out of it (`secrets`), and the one stderr sink
//! every log record and error goes through (`log`).

pub mod log;
pub mod sanitize;
pub mod secrets;

pub use sanitize::{escape_controls, escape_untrusted};
pub use secrets::{redact_url, url_scheme, Secrets};
