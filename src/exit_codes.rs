//! Exit codes in one place (SPEC §2): 2 always means "drift", so usage errors are 1 too.

/// How a run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// The pass succeeded: converged, or changes applied without `--detailed-exitcode`.
    Success,
    /// Anything went wrong; the DB was not changed.
    Error,
    /// With `--detailed-exitcode`: the pass changed (or, dry, would change) something.
    Drift,
}

impl ExitCode {
    /// The code for a successful pass.
    pub fn for_pass(changed: bool, detailed_exitcode: bool) -> Self {
        if changed && detailed_exitcode {
            ExitCode::Drift
        } else {
            ExitCode::Success
        }
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        match code {
            ExitCode::Success => std::process::ExitCode::SUCCESS,
            ExitCode::Error => std::process::ExitCode::from(1),
            ExitCode::Drift => std::process::ExitCode::from(2),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_is_reported_only_when_asked() {
        assert_eq!(ExitCode::for_pass(true, true), ExitCode::Drift);
        assert_eq!(ExitCode::for_pass(true, false), ExitCode::Success);
        assert_eq!(ExitCode::for_pass(false, true), ExitCode::Success);
    }

    #[test]
    fn process_codes_are_0_1_2() {
        for (code, expected) in [
            (ExitCode::Success, 0u8),
            (ExitCode::Error, 1),
            (ExitCode::Drift, 2),
        ] {
            assert_eq!(
                std::process::ExitCode::from(code),
                std::process::ExitCode::from(expected)
            );
        }
    }
}
