//! The two NUDGE methods and their per-record rules, free of any backend.
//!
//! These are the formulas both sides need: the fit ([`crate::fit`](mod@crate::fit)) uses
//! them to choose gamma, and every backend ([`crate::backend`]) applies the
//! same per-element rules in its kernels. Keeping them here, below both,
//! means the backends depend on the method and not on the fit.

pub mod nudge_m;
pub mod nudge_n;

/// Which NUDGE variant a fit runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Method {
    /// NUDGE-M: each moved record shifts by `gamma * G/|G|` (output not
    /// unit-norm; search it by dot product). Gamma by an exact interval sweep.
    #[serde(rename = "nudge-m")]
    NudgeM,
    /// NUDGE-N: each moved record rotates towards its G, staying unit-norm,
    /// by at most `gamma` in squared distance. Gamma from a grid.
    #[serde(rename = "nudge-n")]
    NudgeN,
}

impl Method {
    /// `"nudge-m"` or `"nudge-n"`, as reports and the reference name them.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::NudgeM => "nudge-m",
            Method::NudgeN => "nudge-n",
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Method {
    type Err = crate::Error;

    /// `nudge-m` / `nudge-n` (also `m`/`n`, `nudge_m`/`nudge_n`, any case).
    fn from_str(s: &str) -> crate::Result<Method> {
        match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "nudge-m" | "m" => Ok(Method::NudgeM),
            "nudge-n" | "n" => Ok(Method::NudgeN),
            _ => Err(crate::Error::invalid(format!(
                "method {s:?}: expected nudge-m or nudge-n"
            ))),
        }
    }
}
