//! The resolved dependency graph: one node per package, one alias-labelled edge per
//! dependency, plus cycle detection, a topological order and DOT export.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use petgraph::Direction;
use petgraph::graph::{DiGraph, EdgeIndex, NodeIndex};
use petgraph::visit::EdgeRef;

use crate::name::{PackageId, PackageName};
use crate::solver::Resolution;

/// A dependency cycle, first package repeated at the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cycle {
    /// The packages along the cycle; `first == last`.
    pub packages: Vec<PackageId>,
}

impl fmt::Display for Cycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.packages.iter().map(ToString::to_string).collect();
        f.write_str(&names.join(" -> "))
    }
}

/// Why a graph could not be built or ordered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    /// A manifest depends on a package the resolution does not contain.
    #[error("{from} depends on {on} (alias `{alias}`), which is not in the resolution")]
    Missing {
        /// The dependent (`name version`).
        from: String,
        /// The alias of the dependency.
        alias: String,
        /// The missing package.
        on: String,
    },
    /// The graph has a cycle, so it has no topological order.
    #[error("dependency cycle: {0}")]
    Cycle(Cycle),
}

/// The packages of a [`Resolution`] and the edges between them.
#[derive(Debug, Clone)]
pub struct ResolvedGraph {
    graph: DiGraph<PackageId, String>,
    root: NodeIndex,
    nodes: BTreeMap<PackageName, NodeIndex>,
}

impl ResolvedGraph {
    /// Builds the graph; edges are added in each manifest's declaration order.
    pub fn new(resolution: &Resolution) -> Result<Self, GraphError> {
        let mut graph = DiGraph::new();
        let mut nodes = BTreeMap::new();
        let root = graph.add_node(resolution.root.id());
        nodes.insert(resolution.root.name.clone(), root);
        // Name order, so node indices (and DOT output) are the same on every run.
        for (name, summary) in &resolution.packages {
            nodes.insert(name.clone(), graph.add_node(summary.manifest.id()));
        }
        let manifests = std::iter::once(&resolution.root)
            .chain(resolution.packages.values().map(|s| &s.manifest));
        for m in manifests {
            let Some(&from) = nodes.get(&m.name) else {
                continue;
            };
            for dep in &m.dependencies {
                let to = nodes.get(&dep.package).ok_or_else(|| GraphError::Missing {
                    from: m.id().to_string(),
                    alias: dep.alias.clone(),
                    on: dep.package.to_string(),
                })?;
                graph.add_edge(from, *to, dep.alias.clone());
            }
        }
        Ok(Self { graph, root, nodes })
    }

    /// The underlying petgraph graph (node weights are ids, edge weights aliases).
    pub fn graph(&self) -> &DiGraph<PackageId, String> {
        &self.graph
    }

    /// The root's node.
    pub fn root(&self) -> NodeIndex {
        self.root
    }

    /// A package's node.
    pub fn node(&self, name: &PackageName) -> Option<NodeIndex> {
        self.nodes.get(name).copied()
    }

    /// A node's package id.
    pub fn id(&self, node: NodeIndex) -> Option<&PackageId> {
        self.graph.node_weight(node)
    }

    /// A node's dependencies as (alias, node), in declaration order.
    pub fn dependencies(&self, node: NodeIndex) -> Vec<(&str, NodeIndex)> {
        let mut edges: Vec<(EdgeIndex, &str, NodeIndex)> = self
            .graph
            .edges_directed(node, Direction::Outgoing)
            .map(|e| (e.id(), e.weight().as_str(), e.target()))
            .collect();
        // petgraph lists outgoing edges newest first; edge ids restore insertion order.
        edges.sort_by_key(|(id, _, _)| *id);
        edges
            .into_iter()
            .map(|(_, alias, to)| (alias, to))
            .collect()
    }

    /// The first cycle met by a depth-first walk from the root, if any.
    pub fn find_cycle(&self) -> Option<Cycle> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            OnPath,
            Done,
        }
        let mut marks = vec![Mark::New; self.graph.node_count()];
        let starts = std::iter::once(self.root).chain(self.graph.node_indices());
        for start in starts {
            if marks.get(start.index()) != Some(&Mark::New) {
                continue;
            }
            // Iterative, so a hostile ten-thousand-deep chain cannot overflow the stack.
            let mut stack: Vec<(NodeIndex, Vec<NodeIndex>)> = Vec::new();
            let children = |n| {
                self.dependencies(n)
                    .into_iter()
                    .rev()
                    .map(|(_, to)| to)
                    .collect()
            };
            set(&mut marks, start, Mark::OnPath);
            stack.push((start, children(start)));
            while let Some((node, pending)) = stack.last_mut() {
                let node = *node;
                match pending.pop() {
                    None => {
                        set(&mut marks, node, Mark::Done);
                        stack.pop();
                    }
                    Some(next) => match marks.get(next.index()).copied() {
                        Some(Mark::New) => {
                            set(&mut marks, next, Mark::OnPath);
                            stack.push((next, children(next)));
                        }
                        Some(Mark::OnPath) => {
                            let from = stack.iter().position(|(n, _)| *n == next)?;
                            let mut packages: Vec<PackageId> = stack
                                .iter()
                                .skip(from)
                                .filter_map(|(n, _)| self.id(*n).cloned())
                                .collect();
                            packages.extend(self.id(next).cloned());
                            return Some(Cycle { packages });
                        }
                        _ => {}
                    },
                }
            }
        }
        None
    }

    /// Every package, dependencies before their dependents (the order to load them in).
    pub fn topological_order(&self) -> Result<Vec<&PackageId>, GraphError> {
        if let Some(cycle) = self.find_cycle() {
            return Err(GraphError::Cycle(cycle));
        }
        let order = petgraph::algo::toposort(&self.graph, None).map_err(|_| {
            GraphError::Cycle(Cycle {
                packages: Vec::new(),
            })
        })?;
        // toposort puts dependents first; loading wants the leaves first.
        Ok(order.into_iter().rev().filter_map(|n| self.id(n)).collect())
    }

    /// The graph in Graphviz DOT, nodes labelled `name version`, edges by alias.
    pub fn to_dot(&self) -> String {
        let mut out = String::from("digraph dependencies {\n");
        for n in self.graph.node_indices() {
            if let Some(id) = self.id(n) {
                let _ = writeln!(
                    out,
                    "    n{} [label=\"{}\"];",
                    n.index(),
                    escape(&id.to_string())
                );
            }
        }
        for e in self.graph.edge_indices() {
            if let (Some((a, b)), Some(alias)) =
                (self.graph.edge_endpoints(e), self.graph.edge_weight(e))
            {
                let _ = writeln!(
                    out,
                    "    n{} -> n{} [label=\"{}\"];",
                    a.index(),
                    b.index(),
                    escape(alias)
                );
            }
        }
        out.push_str("}\n");
        out
    }
}

fn set<T>(marks: &mut [T], node: NodeIndex, mark: T) {
    if let Some(slot) = marks.get_mut(node.index()) {
        *slot = mark;
    }
}

/// Aliases come from manifests; quote them so they cannot break out of the DOT string.
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}
