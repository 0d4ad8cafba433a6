//! How large the models are and how far to explore them.

/// How large the models are and how far to explore them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// The most distinct states to explore per case. Properties not violated
    /// within the bound are reported as
    /// [`Verdict::BoundReached`](crate::Verdict::BoundReached).
    pub max_states: usize,
    /// CPUs in each model (1 to 3), instead of the smallest number that
    /// shows the question's answer. Raised to a question's minimum (2 where
    /// a CPU goes down or the rescuer runs elsewhere: handler mandatory,
    /// nothing stranded after a rollback, the rescuer on another CPU).
    pub cpus: Option<usize>,
    /// Bios in each model (1 to 4), instead of the question's default.
    /// Raised to a question's minimum (3 for
    /// handler mandatory, one of each kind; 2 for the rescuer on another
    /// CPU, one taken and one added meanwhile).
    pub bios: Option<usize>,
}

impl Config {
    /// The default state bound: far above what any question needs with the
    /// default sizes (a few thousand states), low enough to stop in seconds.
    pub const MAX_STATES: usize = 1_000_000;
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_states: Config::MAX_STATES,
            cpus: None,
            bios: None,
        }
    }
}
