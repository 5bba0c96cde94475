//! What `doctor` found: every setting with where it came from, and each
//! check with the problem it found, if any. Plain data; `render` prints it.

/// One setting as resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShownSetting {
    pub setting: &'static str,
    /// As it may be shown: no password.
    pub value: String,
    /// `option`, `environment`, `decnet-ini`, `discovered` or `default`.
    pub origin: &'static str,
    /// The option, the variable, the ini's file and line, or how it was found.
    pub place: Option<String>,
}

/// One check, and the problem it found: one line saying what is wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    pub check: &'static str,
    pub problem: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnosis {
    pub settings: Vec<ShownSetting>,
    pub checks: Vec<CheckResult>,
}

impl Diagnosis {
    /// All is well: no check found a problem.
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|check| check.problem.is_none())
    }
}
