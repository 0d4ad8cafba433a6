//! What a check returns: verdicts, measurements and counterexamples.

use std::fmt;
use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::design::Design;
use crate::property::Property;
use crate::question::Question;

/// The outcome of checking one property.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Every reachable state (and cycle) was explored and none violates the
    /// property.
    Holds,
    /// A reachable state or cycle violates the property; the check carries a
    /// shortest counterexample.
    Violated,
    /// The state bound stopped the exploration before it was complete and
    /// no violation was found in the part explored: nothing is claimed.
    BoundReached,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Holds => "holds",
            Verdict::Violated => "VIOLATED",
            Verdict::BoundReached => "bound reached",
        })
    }
}

/// How many handlers a worker runs between `need_resched()` checks, at most
/// ([`Question::RunBudget`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Bound {
    /// At most this many, in every reachable state.
    Finite(u32),
    /// A reachable cycle runs handlers and never checks.
    Unbounded,
}

impl Serialize for Bound {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Bound::Finite(n) => serializer.serialize_u32(*n),
            Bound::Unbounded => serializer.serialize_str("unbounded"),
        }
    }
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bound::Finite(n) => write!(f, "{n}"),
            Bound::Unbounded => f.write_str("unbounded"),
        }
    }
}

/// A shortest counterexample: numbered steps in kernel terms.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Trace {
    /// The steps, first to last. The last one may be a conclusion rather
    /// than a step ("quiescent: A, B stranded").
    pub steps: Vec<String>,
    /// For a cycle (an infinite behaviour): the index in `steps` where the
    /// repeating part starts; the steps from there to the end repeat
    /// forever.
    pub cycle_start: Option<usize>,
}

/// The verdict on one property in one case.
#[derive(Clone, Debug, Serialize)]
pub struct PropertyResult {
    /// What was checked.
    pub property: Property,
    /// The outcome.
    pub verdict: Verdict,
    /// One sentence: what was found, in kernel terms.
    pub detail: String,
    /// For [`Property::BoundedHandlerRun`]: the most handlers a worker runs
    /// between `need_resched()` checks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handlers_between_checks: Option<Bound>,
    /// A shortest counterexample when violated.
    pub counterexample: Option<Trace>,
    /// Whether the question is about this property; `false` for another
    /// property found violated by the same exploration (reported so that
    /// nothing found is hidden).
    pub asked: bool,
}

/// One exploration: a scenario of the question, on one design, with the
/// properties checked on it.
#[derive(Clone, Debug, Serialize)]
pub struct Case {
    /// A short name of the case ("as designed", "rescuer unbound", ...).
    pub name: String,
    /// What the model contains: configuration, CPUs, bios, contexts,
    /// workers, hotplug steps.
    pub scenario: String,
    /// Distinct states explored.
    pub states: usize,
    /// Transitions generated.
    pub transitions: u64,
    /// Whether the state bound cut the exploration short.
    pub bound_reached: bool,
    /// Time to explore and analyse.
    #[serde(rename = "time_ms", serialize_with = "serialize_ms")]
    pub time: Duration,
    /// The properties of the question, then any other property found
    /// violated.
    pub results: Vec<PropertyResult>,
}

fn serialize_ms<S: Serializer>(time: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(time.as_secs_f64() * 1e3)
}

/// The answer to one question for one design.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The question.
    pub question: Question,
    /// The design checked.
    pub design: Design,
    /// The cases explored.
    pub cases: Vec<Case>,
}

impl Report {
    /// The verdict on `property` in the case named `case`, if checked.
    pub fn verdict(&self, case: &str, property: Property) -> Option<Verdict> {
        self.result(case, property).map(|r| r.verdict)
    }

    /// The result for `property` in the case named `case`, if checked.
    pub fn result(&self, case: &str, property: Property) -> Option<&PropertyResult> {
        self.cases
            .iter()
            .filter(|c| c.name == case)
            .flat_map(|c| &c.results)
            .find(|r| r.property == property)
    }

    /// Every property result of every case.
    pub fn results(&self) -> impl Iterator<Item = (&Case, &PropertyResult)> {
        self.cases
            .iter()
            .flat_map(|c| c.results.iter().map(move |r| (c, r)))
    }

    /// Distinct states explored over all cases.
    pub fn states(&self) -> usize {
        self.cases.iter().map(|c| c.states).sum()
    }

    /// Time spent over all cases.
    pub fn time(&self) -> Duration {
        self.cases.iter().map(|c| c.time).sum()
    }
}
