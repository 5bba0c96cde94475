//! Text this process writes for people: untrusted text made safe to show
//! (`sanitize`), secrets kept out of it (`secrets`), and the one stderr sink
//! every log record and error goes through (`log`).

pub mod log;
pub mod sanitize;
pub mod secrets;

pub use sanitize::{escape_controls, escape_json_unsafe, escape_untrusted, shorten, shorten_start};
pub use secrets::{names_a_secret, redact_url, redact_urls_in, url_scheme, Secrets};
