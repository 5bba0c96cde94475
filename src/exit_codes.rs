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

    /// The code of a pass whose report could not be written to stdout (a
    /// closed pipe, a full disk). A pass that may have written keeps its code:
    /// 1 would claim nothing was changed, and the output is not what the pass
    /// did. A dry run's report is its only product, so one that cannot be
    /// delivered failed, and it changed nothing, as 1 says.
    pub fn for_unprinted_report(self, dry_run: bool) -> Self {
        if dry_run {
            ExitCode::Error
        } else {
            self
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
    fn an_unprinted_report_fails_only_a_dry_run() {
        for code in [ExitCode::Success, ExitCode::Drift] {
            assert_eq!(code.for_unprinted_report(false), code);
            assert_eq!(code.for_unprinted_report(true), ExitCode::Error);
        }
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
