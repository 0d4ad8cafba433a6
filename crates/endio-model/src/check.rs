//! Deciding the properties on an explored graph, and narrating
//! counterexamples.
//!
//! - Safety properties broken by a step (a handler run twice, a list
//!   modified without mutual exclusion, a sleeping lock in atomic context, a
//!   handler-less bio run) are faults of the state the step leads to; the
//!   first faulted state in breadth-first order is a nearest one.
//! - "Nothing stranded" and "exactly once" are checked on every quiescent
//!   state: nothing left to happen but new submissions and new hotplug
//!   operations.
//! - "Exactly once" also needs every bio's handler to run at all: from every
//!   reachable state a quiescent state must stay reachable. A state from
//!   which none is reachable leads into a cycle (or a dead end) where some
//!   handler never runs; its counterexample is that lasso.
//! - "No unbounded re-deferral" is a reachable cycle through a step that
//!   defers a bio deferred before; "bounded handlers between checks" is a
//!   reachable cycle through handler runs with no `need_resched()` check,
//!   or else the largest count of handlers since a check over all states.

use std::collections::VecDeque;
use std::time::Instant;

use crate::config::Config;
use crate::explore::{Graph, System, adjacency, explore, strongly_connected_components};
use crate::kernel::{CHECKPOINT, REDEFER, Scenario, State, WORKER_HANDLER, names};
use crate::property::Property;
use crate::question::CaseSpec;
use crate::report::{Bound, Case, PropertyResult, Trace, Verdict};

/// Explores one case and decides its properties.
pub(crate) fn run(spec: &CaseSpec, config: &Config) -> Case {
    let start = Instant::now();
    let graph = explore(&spec.scenario, config.max_states);
    let analysis = Analysis::new(&spec.scenario, &graph);
    let mut results: Vec<PropertyResult> = spec
        .properties
        .iter()
        .map(|&p| analysis.evaluate(p))
        .collect();
    for result in &mut results {
        result.asked = true;
        if let Some(note) = spec.note {
            result.detail = format!("{}; {note}", result.detail);
        }
    }
    // Any other property found violated is reported too: nothing is hidden
    // because a question was about something else. The handler count is
    // only meaningful where bios keep coming (the run budget's models).
    for property in Property::ALL {
        if spec.properties.contains(&property) || property == Property::BoundedHandlerRun {
            continue;
        }
        let result = analysis.evaluate(property);
        if result.verdict == Verdict::Violated {
            results.push(result);
        }
    }
    Case {
        name: spec.name.to_owned(),
        scenario: spec.scenario.describe(),
        states: graph.states.len(),
        transitions: graph.transitions,
        bound_reached: graph.bound_reached,
        time: start.elapsed(),
        results,
    }
}

struct Analysis<'a> {
    scenario: &'a Scenario,
    graph: &'a Graph<State>,
    quiescent: Vec<bool>,
}

impl<'a> Analysis<'a> {
    fn new(scenario: &'a Scenario, graph: &'a Graph<State>) -> Analysis<'a> {
        let quiescent = graph.states.iter().map(|s| scenario.quiescent(s)).collect();
        Analysis {
            scenario,
            graph,
            quiescent,
        }
    }

    fn quiescent_count(&self) -> usize {
        self.quiescent.iter().filter(|&&q| q).count()
    }

    /// `Holds`, or `BoundReached` if the exploration was cut short.
    fn not_violated(&self) -> Verdict {
        if self.graph.bound_reached {
            Verdict::BoundReached
        } else {
            Verdict::Holds
        }
    }

    fn result(
        &self,
        property: Property,
        verdict: Verdict,
        detail: String,
        counterexample: Option<Trace>,
    ) -> PropertyResult {
        PropertyResult {
            property,
            verdict,
            detail,
            handlers_between_checks: None,
            counterexample,
            asked: false,
        }
    }

    fn holds(&self, property: Property, detail: String) -> PropertyResult {
        let verdict = self.not_violated();
        let detail = if verdict == Verdict::BoundReached {
            format!(
                "no violation in the {} states explored, but the state bound stopped the exploration",
                self.graph.states.len()
            )
        } else {
            detail
        };
        self.result(property, verdict, detail, None)
    }

    fn evaluate(&self, property: Property) -> PropertyResult {
        match property {
            Property::HandlerPresent => self.fault(
                property,
                "a bio without bi_end_io is run from a list: NULL pointer dereference",
                "every bio a worker or the dead callback takes off a list has a bi_end_io",
            ),
            Property::MutualExclusion => self.fault(
                property,
                "a list is modified by two contexts at once: an interrupt adds a bio an executor on another CPU then loses",
                "every list modification excludes every other (or is a single atomic operation)",
            ),
            Property::NoSleepInAtomic => self.fault(
                property,
                "a sleeping lock (a PREEMPT_RT spinlock_t) is taken in a context that must not sleep",
                "no context that must not sleep takes a sleeping lock",
            ),
            Property::ExactlyOnce => self.exactly_once(),
            Property::NothingStranded => self.nothing_stranded(),
            Property::BoundedRedeferral => self.bounded_redeferral(),
            Property::BoundedHandlerRun => self.bounded_handler_run(),
        }
    }

    fn first_fault(&self, property: Property) -> Option<u32> {
        let i = self
            .graph
            .states
            .iter()
            .position(|s| s.fault == Some(property))?;
        Some(u32::try_from(i).expect("state numbers fit in u32"))
    }

    fn fault(&self, property: Property, violated: &str, holds: &str) -> PropertyResult {
        match self.first_fault(property) {
            Some(i) => {
                let steps = self.steps(&self.graph.path_to(i));
                self.result(
                    property,
                    Verdict::Violated,
                    violated.to_owned(),
                    Some(Trace {
                        steps,
                        cycle_start: None,
                    }),
                )
            }
            None => self.holds(
                property,
                format!("{holds} ({} states)", self.graph.states.len()),
            ),
        }
    }

    fn first_quiescent(&self, bad: impl Fn(&State) -> bool) -> Option<u32> {
        let i = (0..self.graph.states.len())
            .find(|&i| self.quiescent[i] && bad(&self.graph.states[i]))?;
        Some(u32::try_from(i).expect("state numbers fit in u32"))
    }

    fn stranded(&self, s: &State) -> String {
        let mut parts = Vec::new();
        for (c, cpu) in s.cpus.iter().enumerate().take(self.scenario.cpus) {
            if !cpu.list.is_empty() {
                parts.push(format!("{} on cpu{c}'s list", names(cpu.list.iter())));
            }
        }
        parts.join(", ")
    }

    fn nothing_stranded(&self) -> PropertyResult {
        let property = Property::NothingStranded;
        match self.first_quiescent(|s| s.cpus.iter().any(|c| !c.list.is_empty())) {
            Some(i) => {
                let s = &self.graph.states[i as usize];
                let mut steps = self.steps(&self.graph.path_to(i));
                let stranded = self.stranded(s);
                steps.push(format!(
                    "quiescent: {stranded} stranded, the work idle: nothing will run them"
                ));
                self.result(
                    property,
                    Verdict::Violated,
                    format!("quiescent with {stranded} stranded"),
                    Some(Trace {
                        steps,
                        cycle_start: None,
                    }),
                )
            }
            None => self.holds(
                property,
                format!(
                    "{} reached, none with a queued bio",
                    quiescent_states(self.quiescent_count())
                ),
            ),
        }
    }

    fn exactly_once(&self) -> PropertyResult {
        let property = Property::ExactlyOnce;
        let twice = self.first_fault(property);
        let unhandled = self.first_quiescent(|s| !self.scenario.unhandled(s).is_empty());
        let first = match (twice, unhandled) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(i) = first {
            let mut steps = self.steps(&self.graph.path_to(i));
            let s = &self.graph.states[i as usize];
            let detail = if s.fault == Some(property) {
                "a handler runs twice".to_owned()
            } else {
                let never = handlers_of(&self.scenario.unhandled(s));
                let stranded = self.stranded(s);
                steps.push(if stranded.is_empty() {
                    format!("quiescent: {never} never ran")
                } else {
                    format!("quiescent: {stranded} stranded: {never} never ran")
                });
                format!("quiescent, and {never} never ran")
            };
            return self.result(
                property,
                Verdict::Violated,
                detail,
                Some(Trace {
                    steps,
                    cycle_start: None,
                }),
            );
        }
        if !self.graph.bound_reached
            && let Some(trace) = self.never_quiescent()
        {
            return self.result(
                property,
                Verdict::Violated,
                "a handler never runs to its end: from some reachable state no quiescent state is reachable".to_owned(),
                Some(trace),
            );
        }
        self.holds(
            property,
            format!(
                "{} reached, in each every handler ran once; none ran twice; quiescence stays reachable from every state",
                quiescent_states(self.quiescent_count())
            ),
        )
    }

    /// A shortest path to the first state from which no quiescent state is
    /// reachable, continued into the cycle (or dead end) it leads to.
    fn never_quiescent(&self) -> Option<Trace> {
        let g = self.graph;
        let n = g.states.len();
        let mut forward = vec![Vec::new(); n];
        let mut backward = vec![Vec::new(); n];
        for e in &g.edges {
            forward[e.from as usize].push(e.to);
            backward[e.to as usize].push(e.from);
        }
        let mut reaches = self.quiescent.clone();
        let mut queue: VecDeque<usize> = (0..n).filter(|&i| reaches[i]).collect();
        while let Some(x) = queue.pop_front() {
            for &y in &backward[x] {
                if !reaches[y as usize] {
                    reaches[y as usize] = true;
                    queue.push_back(y as usize);
                }
            }
        }
        let trapped = |i: usize| !reaches[i] && g.states[i].fault.is_none();
        let u = (0..n).find(|&i| trapped(i))?;
        // Every successor of a trapped state is trapped (or faulted: another
        // property's business). The states on a cycle of trapped states:
        let inside = g
            .edges
            .iter()
            .filter(|e| trapped(e.from as usize) && trapped(e.to as usize));
        let (offsets, targets) = adjacency(n, inside.clone());
        let component = strongly_connected_components(n, &offsets, &targets);
        let mut size = vec![0_usize; n];
        for &c in &component {
            size[c as usize] += 1;
        }
        let on_cycle = |x: usize| {
            size[component[x] as usize] > 1
                || targets[offsets[x]..offsets[x + 1]].contains(&u32::try_from(x).expect("u32"))
        };
        // Breadth first from u to the nearest state on such a cycle, or with
        // no trapped successor (a dead end).
        let mut parent = vec![usize::MAX; n];
        let mut queue = VecDeque::from([u]);
        parent[u] = u;
        let x = loop {
            let x = queue.pop_front()?;
            let next = &targets[offsets[x]..offsets[x + 1]];
            if next.is_empty() || on_cycle(x) {
                break x;
            }
            for &y in next {
                if parent[y as usize] == usize::MAX {
                    parent[y as usize] = x;
                    queue.push_back(y as usize);
                }
            }
        };
        let mut tail = vec![u32::try_from(x).expect("u32")];
        let mut at = x;
        while at != u {
            at = parent[at];
            tail.push(u32::try_from(at).expect("u32"));
        }
        tail.reverse();
        let mut path = g.path_to(u32::try_from(u).expect("u32"));
        path.extend_from_slice(&tail[1..]);
        let mut steps = self.steps(&path);
        let never = handlers_of(&self.scenario.unhandled(&g.states[x]));
        if !on_cycle(x) {
            steps.push(format!("stuck: nothing can happen, {never} never ran"));
            return Some(Trace {
                steps,
                cycle_start: None,
            });
        }
        // Around the cycle: breadth first from x's successors in its
        // component back to x.
        let same = |y: usize| component[y] == component[x];
        let starts: Vec<u32> = targets[offsets[x]..offsets[x + 1]]
            .iter()
            .copied()
            .filter(|&y| same(y as usize))
            .collect();
        let around = path_within(&offsets, &targets, &same, &starts, x)?;
        let start = steps.len();
        let mut cycle = vec![u32::try_from(x).expect("u32")];
        cycle.extend(around);
        steps.extend(self.steps(&cycle));
        steps.push(format!(
            "back to the state before step {}: this repeats forever, {never} never runs to its end",
            start + 1
        ));
        Some(Trace {
            steps,
            cycle_start: Some(start),
        })
    }

    /// Narrates a lasso: the prefix to `u`, the bad step, the way back.
    fn lasso_trace(
        &self,
        prefix: &[u32],
        cycle: &[u32],
        need: u8,
        forbid: u8,
        end: String,
    ) -> Trace {
        let mut steps = self.steps(prefix);
        let start = steps.len();
        let u = *prefix.last().expect("a prefix has the initial state");
        let g = self.graph;
        steps.push(narrate(
            self.scenario,
            &g.states[u as usize],
            &g.states[cycle[0] as usize],
            need,
            forbid,
        ));
        for pair in cycle.windows(2) {
            steps.push(narrate(
                self.scenario,
                &g.states[pair[0] as usize],
                &g.states[pair[1] as usize],
                0,
                forbid,
            ));
        }
        steps.push(format!(
            "back to the state before step {}: {end}",
            start + 1
        ));
        Trace {
            steps,
            cycle_start: Some(start),
        }
    }

    fn bounded_redeferral(&self) -> PropertyResult {
        let property = Property::BoundedRedeferral;
        match self.graph.lasso(REDEFER, 0) {
            Some((prefix, cycle)) => {
                let trace = self.lasso_trace(
                    &prefix,
                    &cycle,
                    REDEFER,
                    0,
                    "this repeats forever, re-deferring the bio each time".to_owned(),
                );
                let len = cycle.len();
                self.result(
                    property,
                    Verdict::Violated,
                    format!("a reachable cycle of {len} steps re-defers a bio forever"),
                    Some(trace),
                )
            }
            None => {
                let redefers = self
                    .graph
                    .edges
                    .iter()
                    .filter(|e| e.flags & REDEFER != 0)
                    .count();
                let detail = if redefers == 0 {
                    "no bio is ever deferred twice".to_owned()
                } else {
                    format!(
                        "bios are re-deferred ({redefers} such steps), but no reachable cycle re-defers"
                    )
                };
                self.holds(property, detail)
            }
        }
    }

    fn bounded_handler_run(&self) -> PropertyResult {
        let property = Property::BoundedHandlerRun;
        if let Some((prefix, cycle)) = self.graph.lasso(WORKER_HANDLER, CHECKPOINT) {
            let trace = self.lasso_trace(
                &prefix,
                &cycle,
                WORKER_HANDLER,
                CHECKPOINT,
                "this repeats forever: the worker runs handlers and never checks need_resched()"
                    .to_owned(),
            );
            return PropertyResult {
                property,
                verdict: Verdict::Violated,
                detail: "unbounded: interrupts refill the list and the worker's loop takes it again, forever, without a check".to_owned(),
                handlers_between_checks: Some(Bound::Unbounded),
                counterexample: Some(trace),
                asked: false,
            };
        }
        let count = |s: &State| {
            s.executor_states()
                .map(|e| e.since_check)
                .max()
                .unwrap_or(0)
        };
        let max = self.graph.states.iter().map(count).max().unwrap_or(0);
        let bound = Some(Bound::Finite(u32::from(max)));
        if max <= 1 {
            let mut result = self.holds(
                property,
                format!("at most {max} handler between need_resched()/cond_resched() checks"),
            );
            if result.verdict == Verdict::Holds {
                result.handlers_between_checks = bound;
            }
            return result;
        }
        let i = self
            .graph
            .states
            .iter()
            .position(|s| count(s) == max)
            .expect("the maximum is attained");
        let mut steps = self.steps(&self.graph.path_to(u32::try_from(i).expect("u32")));
        let bios = self.scenario.bios.len();
        steps.push(format!(
            "{max} handlers ran back to back without a need_resched() check: the whole batch ({bios} bio{} in flight)",
            if bios == 1 { "" } else { "s" }
        ));
        let verdict = Verdict::Violated;
        PropertyResult {
            property,
            verdict,
            detail: format!(
                "{max} handlers between checks: bounded only by the batch size (all {bios} bios in flight here){}",
                if self.graph.bound_reached {
                    ", or more beyond the state bound"
                } else {
                    ""
                }
            ),
            handlers_between_checks: if self.graph.bound_reached {
                None
            } else {
                bound
            },
            counterexample: Some(Trace {
                steps,
                cycle_start: None,
            }),
            asked: false,
        }
    }

    /// The narrated steps along a path of states.
    fn steps(&self, path: &[u32]) -> Vec<String> {
        path.windows(2)
            .map(|pair| {
                narrate(
                    self.scenario,
                    &self.graph.states[pair[0] as usize],
                    &self.graph.states[pair[1] as usize],
                    0,
                    0,
                )
            })
            .collect()
    }
}

/// The text of a transition from `from` to `to` with all `need` flags and
/// none of `forbid`.
fn narrate(scenario: &Scenario, from: &State, to: &State, need: u8, forbid: u8) -> String {
    let mut out = Vec::new();
    scenario.successors(from, true, &mut out);
    out.into_iter()
        .find(|t| &t.target == to && t.flags & need == need && t.flags & forbid == 0)
        .map(|t| t.text)
        .expect("every explored edge is a transition of its source")
}

/// A shortest path from one of `starts` to `target` through nodes satisfying
/// `inside`, ending at `target`.
fn path_within(
    offsets: &[usize],
    targets: &[u32],
    inside: &impl Fn(usize) -> bool,
    starts: &[u32],
    target: usize,
) -> Option<Vec<u32>> {
    let n = offsets.len() - 1;
    let mut parent = vec![u32::MAX; n];
    let mut seen = vec![false; n];
    let mut queue = VecDeque::new();
    for &s in starts {
        if !seen[s as usize] {
            seen[s as usize] = true;
            queue.push_back(s);
        }
    }
    while let Some(x) = queue.pop_front() {
        if x as usize == target {
            let mut path = vec![x];
            let mut at = x;
            while parent[at as usize] != u32::MAX {
                at = parent[at as usize];
                path.push(at);
            }
            path.reverse();
            return Some(path);
        }
        for &y in &targets[offsets[x as usize]..offsets[x as usize + 1]] {
            if inside(y as usize) && !seen[y as usize] {
                seen[y as usize] = true;
                parent[y as usize] = x;
                queue.push_back(y);
            }
        }
    }
    None
}

/// "1 quiescent state", "2 quiescent states".
fn quiescent_states(n: usize) -> String {
    format!("{n} quiescent state{}", if n == 1 { "" } else { "s" })
}

/// "the handler of A", "the handlers of A, B".
fn handlers_of(bios: &[u8]) -> String {
    let plural = if bios.len() == 1 {
        "handler"
    } else {
        "handlers"
    };
    format!("the {plural} of {}", names(bios.iter().copied()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::design::Design;
    use crate::kernel::BioSpec;
    use crate::question::Question;

    /// "Handler mandatory" holding is not vacuous: break the submitters'
    /// convention (flag a bio that has no bi_end_io) and the model finds the
    /// NULL dereference, in the worker and in the dead callback.
    #[test]
    fn a_flagged_bio_without_handler_is_found() {
        for design in Design::ALL {
            let mut spec = Question::HandlerMandatory
                .cases(design, &Config::default())
                .remove(0);
            spec.scenario.bios[1] = BioSpec {
                flagged: true,
                handler: false,
                punts: false,
            };
            let case = run(&spec, &Config::default());
            let result = &case.results[0];
            assert_eq!(result.property, Property::HandlerPresent);
            assert_eq!(result.verdict, Verdict::Violated, "{design}");
            let steps = &result.counterexample.as_ref().unwrap().steps;
            assert!(steps.len() <= 4, "{design}: {steps:#?}");
            assert!(
                steps.last().unwrap().contains("dereferences NULL"),
                "{design}: {steps:#?}"
            );
        }
    }
}
