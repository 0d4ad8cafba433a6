//! Breadth-first explicit-state exploration.
//!
//! 1. States are numbered in the order they are discovered, starting from the
//!    initial state at 0. A hash map from state to number makes every state
//!    be expanded once.
//! 2. States are expanded in number order, so a state's number is at least
//!    that of every state nearer to the initial state: the first state with
//!    some property is a nearest one, and the path to it through the parent
//!    pointers is a shortest counterexample.
//! 3. Every transition is kept as an edge with its flags, so that properties
//!    about infinite behaviours ("re-deferred forever") can be decided as
//!    reachable cycles after the fact: a flagged edge lies on a cycle iff both
//!    its ends are in the same strongly connected component.
//! 4. Exploration stops adding states at the bound; the graph then says so,
//!    and no property that was not violated within it may be reported as
//!    holding.
//!
//! Transitions are produced without their text while exploring (no
//! allocation per edge); a counterexample is narrated afterwards by expanding
//! the states on its path again, with text.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// A transition system: an initial state and the transitions out of a state.
pub(crate) trait System {
    /// A state. Equal states are one node of the graph.
    type State: Clone + Eq + Hash;

    /// The state exploration starts from.
    fn initial(&self) -> Self::State;

    /// Appends the transitions enabled in `state` to `out`. With `narrate`,
    /// each carries a readable description of what happened; without, its
    /// text is empty.
    fn successors(
        &self,
        state: &Self::State,
        narrate: bool,
        out: &mut Vec<Transition<Self::State>>,
    );
}

/// One step of a [`System`].
#[derive(Debug)]
pub(crate) struct Transition<S> {
    /// The state after the step.
    pub(crate) target: S,
    /// What kind of step it is, for cycle properties (bits defined by the
    /// system).
    pub(crate) flags: u8,
    /// What happened, when narrated.
    pub(crate) text: String,
}

/// An edge of the explored graph.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Edge {
    pub(crate) from: u32,
    pub(crate) to: u32,
    pub(crate) flags: u8,
}

/// Parent of the initial state.
const NO_PARENT: u32 = u32::MAX;

/// The reachable part of a system's state graph, in breadth-first order.
#[derive(Debug)]
pub(crate) struct Graph<S> {
    /// The states, numbered in discovery order.
    pub(crate) states: Vec<S>,
    /// The state each was first reached from.
    parent: Vec<u32>,
    /// Number of steps from the initial state.
    pub(crate) depth: Vec<u32>,
    /// Every transition between explored states.
    pub(crate) edges: Vec<Edge>,
    /// Transitions generated, including those to states beyond the bound.
    pub(crate) transitions: u64,
    /// Whether the state bound cut the exploration short.
    pub(crate) bound_reached: bool,
}

/// Explores `system` breadth first, up to `max_states` states (at least 1).
pub(crate) fn explore<M: System>(system: &M, max_states: usize) -> Graph<M::State> {
    let max_states = max_states.clamp(1, NO_PARENT as usize);
    let initial = system.initial();
    let mut index: HashMap<M::State, u32> = HashMap::new();
    index.insert(initial.clone(), 0);
    let mut graph = Graph {
        states: vec![initial],
        parent: vec![NO_PARENT],
        depth: vec![0],
        edges: Vec::new(),
        transitions: 0,
        bound_reached: false,
    };
    let mut out = Vec::new();
    let mut next = 0;
    while next < graph.states.len() {
        system.successors(&graph.states[next], false, &mut out);
        let from = u32::try_from(next).expect("state numbers fit in u32: bounded above");
        for transition in out.drain(..) {
            graph.transitions += 1;
            let to = match index.get(&transition.target) {
                Some(&to) => to,
                None if graph.states.len() >= max_states => {
                    graph.bound_reached = true;
                    continue;
                }
                None => {
                    let to = u32::try_from(graph.states.len()).expect("bounded above");
                    index.insert(transition.target.clone(), to);
                    graph.states.push(transition.target);
                    graph.parent.push(from);
                    graph.depth.push(graph.depth[next] + 1);
                    to
                }
            };
            graph.edges.push(Edge {
                from,
                to,
                flags: transition.flags,
            });
        }
        next += 1;
    }
    graph
}

impl<S> Graph<S> {
    /// The shortest path from the initial state to `to`, both included.
    pub(crate) fn path_to(&self, to: u32) -> Vec<u32> {
        let mut path = vec![to];
        let mut at = to;
        while self.parent[at as usize] != NO_PARENT {
            at = self.parent[at as usize];
            path.push(at);
        }
        path.reverse();
        path
    }

    /// A reachable cycle through an edge flagged `bad`, using only edges
    /// without any `forbidden` flag: the shortest path from the initial state
    /// to the source `u` of the chosen bad edge (the bad edge nearest to the
    /// initial state), and the path from its target `v` back to `u` (from `v`
    /// through `u`, both included). `None` if there is no such cycle.
    pub(crate) fn lasso(&self, bad: u8, forbidden: u8) -> Option<(Vec<u32>, Vec<u32>)> {
        let allowed = |e: &Edge| e.flags & forbidden == 0;
        let n = self.states.len();
        let (offsets, targets) = adjacency(n, self.edges.iter().filter(|e| allowed(e)));
        let component = strongly_connected_components(n, &offsets, &targets);
        let edge = self
            .edges
            .iter()
            .filter(|e| allowed(e) && e.flags & bad != 0)
            .filter(|e| component[e.from as usize] == component[e.to as usize])
            .min_by_key(|e| (self.depth[e.from as usize], e.from))?;
        let (u, v) = (edge.from, edge.to);
        let scc = component[u as usize];
        // Breadth first from v back to u inside the component.
        let mut back = vec![NO_PARENT; n];
        let mut seen = vec![false; n];
        let mut queue = VecDeque::from([v]);
        seen[v as usize] = true;
        while let Some(x) = queue.pop_front() {
            if x == u {
                break;
            }
            let x_us = x as usize;
            for &y in &targets[offsets[x_us]..offsets[x_us + 1]] {
                if component[y as usize] == scc && !seen[y as usize] {
                    seen[y as usize] = true;
                    back[y as usize] = x;
                    queue.push_back(y);
                }
            }
        }
        let mut cycle = vec![u];
        let mut at = u;
        while at != v {
            at = back[at as usize];
            cycle.push(at);
        }
        cycle.reverse();
        Some((self.path_to(u), cycle))
    }
}

/// Compressed adjacency lists: the targets of node `i` are
/// `targets[offsets[i]..offsets[i + 1]]`.
pub(crate) fn adjacency<'a>(
    n: usize,
    edges: impl Iterator<Item = &'a Edge> + Clone,
) -> (Vec<usize>, Vec<u32>) {
    let mut offsets = vec![0_usize; n + 1];
    for e in edges.clone() {
        offsets[e.from as usize + 1] += 1;
    }
    for i in 0..n {
        offsets[i + 1] += offsets[i];
    }
    let mut fill = offsets.clone();
    let mut targets = vec![0_u32; offsets[n]];
    for e in edges {
        targets[fill[e.from as usize]] = e.to;
        fill[e.from as usize] += 1;
    }
    (offsets, targets)
}

/// Tarjan's algorithm, iterative (the graphs are deep): the component number
/// of every node.
pub(crate) fn strongly_connected_components(
    n: usize,
    offsets: &[usize],
    targets: &[u32],
) -> Vec<u32> {
    const UNSEEN: u32 = u32::MAX;
    let mut index = vec![UNSEEN; n];
    let mut low = vec![0_u32; n];
    let mut on_stack = vec![false; n];
    let mut component = vec![UNSEEN; n];
    let mut stack: Vec<usize> = Vec::new();
    let mut calls: Vec<(usize, usize)> = Vec::new();
    let mut next_index = 0_u32;
    let mut components = 0_u32;
    for root in 0..n {
        if index[root] != UNSEEN {
            continue;
        }
        index[root] = next_index;
        low[root] = next_index;
        next_index += 1;
        stack.push(root);
        on_stack[root] = true;
        calls.push((root, offsets[root]));
        while let Some(&(v, at)) = calls.last() {
            if at < offsets[v + 1] {
                if let Some(top) = calls.last_mut() {
                    top.1 += 1;
                }
                let w = targets[at] as usize;
                if index[w] == UNSEEN {
                    index[w] = next_index;
                    low[w] = next_index;
                    next_index += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    calls.push((w, offsets[w]));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
            } else {
                calls.pop();
                if let Some(&(parent, _)) = calls.last() {
                    low[parent] = low[parent].min(low[v]);
                }
                if low[v] == index[v] {
                    while let Some(w) = stack.pop() {
                        on_stack[w] = false;
                        component[w] = components;
                        if w == v {
                            break;
                        }
                    }
                    components += 1;
                }
            }
        }
    }
    component
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A counter modulo `m` that can step by 1 or 2; the step 0 -> 1 is
    /// flagged.
    struct Ring {
        m: u8,
    }

    impl System for Ring {
        type State = u8;
        fn initial(&self) -> u8 {
            0
        }
        fn successors(&self, s: &u8, narrate: bool, out: &mut Vec<Transition<u8>>) {
            for step in [1, 2] {
                out.push(Transition {
                    target: (s + step) % self.m,
                    flags: u8::from(*s == 0 && step == 1),
                    text: if narrate {
                        format!("+{step}")
                    } else {
                        String::new()
                    },
                });
            }
        }
    }

    /// A chain 0 -> 1 -> ... -> 9 that stops.
    struct Chain;

    impl System for Chain {
        type State = u8;
        fn initial(&self) -> u8 {
            0
        }
        fn successors(&self, s: &u8, _: bool, out: &mut Vec<Transition<u8>>) {
            if *s < 9 {
                out.push(Transition {
                    target: s + 1,
                    flags: 1,
                    text: String::new(),
                });
            }
        }
    }

    #[test]
    fn breadth_first_paths_are_shortest() {
        let g = explore(&Ring { m: 7 }, 100);
        assert_eq!(g.states.len(), 7);
        assert!(!g.bound_reached);
        let six = g.states.iter().position(|&s| s == 6).unwrap();
        // 0 -> 2 -> 4 -> 6.
        assert_eq!(g.path_to(u32::try_from(six).unwrap()).len(), 4);
    }

    #[test]
    fn lasso_through_flagged_edge() {
        let g = explore(&Ring { m: 5 }, 100);
        let (prefix, cycle) = g.lasso(1, 0).expect("0 -> 1 lies on a cycle");
        assert_eq!(prefix, vec![0]);
        assert_eq!(g.states[cycle[0] as usize], 1);
        assert_eq!(*cycle.last().unwrap(), 0);
        // Forbidding the flagged edge's own flag leaves no bad edge.
        assert!(g.lasso(1, 1).is_none());
        assert!(explore(&Chain, 100).lasso(1, 0).is_none());
    }

    #[test]
    fn bound_is_reported() {
        let g = explore(&Chain, 4);
        assert_eq!(g.states.len(), 4);
        assert!(g.bound_reached);
    }
}
