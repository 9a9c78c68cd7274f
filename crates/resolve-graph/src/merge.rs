//! Merging a resolution into one loadable package: commands and filesystem mappings.
//!
//! Rules (DESIGN.md "A package is an OCI artifact"):
//! - every package's commands are exposed; the root shadows its dependencies, a nearer
//!   package a farther one, and at equal distance the package met first in a breadth-first
//!   walk that follows each manifest's dependencies in declaration order wins;
//! - the entrypoint is the root's, else the root's only command, else none;
//! - every package's fs mappings apply; on one mount path the nearer package wins, and two
//!   different packages at the same distance claiming it is a [`MergeError::MountConflict`].
//!
//! Distance is the shortest path from the root, so a package reachable both directly and
//! transitively counts as direct.

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::graph::{GraphError, ResolvedGraph};
use crate::manifest::Manifest;
use crate::name::PackageId;
use crate::path::AbsPath;
use crate::solver::Resolution;

/// A command as exposed by the loaded package.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedCommand {
    /// The command's name.
    pub name: String,
    /// The package whose manifest declares it.
    pub declared_by: PackageId,
    /// Which runner executes it.
    pub runner: String,
    /// The atom's name.
    pub atom: String,
    /// The package the atom is taken from (the declarer or one of its dependencies).
    pub atom_package: PackageId,
    /// Runner settings, verbatim.
    pub annotations: BTreeMap<String, serde_json::Value>,
}

/// A filesystem mapping of the loaded tree: `path` inside `volume` of `package` appears at
/// `mount`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedMapping {
    /// Where it appears.
    pub mount: AbsPath,
    /// The package whose volume it is.
    pub package: PackageId,
    /// The volume's name.
    pub volume: String,
    /// The directory inside the volume.
    pub path: AbsPath,
    /// The package whose manifest declares the mapping.
    pub declared_by: PackageId,
}

/// The merged view of a resolution.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedPackage {
    /// The root package.
    pub id: PackageId,
    /// Exposed commands, by name.
    pub commands: BTreeMap<String, ResolvedCommand>,
    /// The command to run by default.
    pub entrypoint: Option<String>,
    /// Filesystem mappings, by mount path.
    pub fs: BTreeMap<AbsPath, ResolvedMapping>,
}

/// Why a resolution cannot be merged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    /// Two packages at the same distance from the root map the same path.
    #[error(
        "mount {mount} is claimed by both {first} and {second}, at the same distance from the root"
    )]
    MountConflict {
        /// The contested mount path.
        mount: String,
        /// The package met first.
        first: String,
        /// The other package.
        second: String,
    },
    /// A command or mapping names an alias its package does not declare (a manifest that
    /// skipped validation).
    #[error("{package}: field `{field}`: no dependency has the alias `{alias}`")]
    UnknownAlias {
        /// The package.
        package: String,
        /// The field.
        field: String,
        /// The alias.
        alias: String,
    },
    /// The resolution is not a consistent graph.
    #[error(transparent)]
    Graph(#[from] GraphError),
}

impl ResolvedPackage {
    /// Merges the commands and mappings of every package in `resolution`.
    pub fn new(resolution: &Resolution) -> Result<Self, MergeError> {
        let graph = ResolvedGraph::new(resolution)?;
        let mut commands = BTreeMap::new();
        let mut fs: BTreeMap<AbsPath, (usize, ResolvedMapping)> = BTreeMap::new();
        for (depth, node) in breadth_first(&graph) {
            let Some(id) = graph.id(node) else { continue };
            let Some(manifest) = resolution.manifest(&id.name) else {
                continue;
            };
            let aliases: HashMap<&str, &PackageId> = graph
                .dependencies(node)
                .into_iter()
                .filter_map(|(alias, to)| Some((alias, graph.id(to)?)))
                .collect();
            let owner = |field: String, alias: &Option<String>| match alias {
                None => Ok(id.clone()),
                Some(a) => aliases
                    .get(a.as_str())
                    .map(|p| (*p).clone())
                    .ok_or_else(|| MergeError::UnknownAlias {
                        package: id.to_string(),
                        field,
                        alias: a.clone(),
                    }),
            };
            for c in &manifest.commands {
                let atom_package = owner(format!("commands.{}.dependency", c.name), &c.dependency)?;
                // Breadth-first order means the first declaration seen is the nearest one.
                commands
                    .entry(c.name.clone())
                    .or_insert_with(|| ResolvedCommand {
                        name: c.name.clone(),
                        declared_by: id.clone(),
                        runner: c.runner.clone(),
                        atom: c.atom.clone(),
                        atom_package,
                        annotations: c.annotations.clone(),
                    });
            }
            for (i, m) in manifest.fs.iter().enumerate() {
                let package = owner(format!("fs[{i}].dependency"), &m.dependency)?;
                if let Some((seen_depth, seen)) = fs.get(&m.mount) {
                    if *seen_depth < depth {
                        continue;
                    }
                    return Err(MergeError::MountConflict {
                        mount: m.mount.to_string(),
                        first: seen.declared_by.to_string(),
                        second: id.to_string(),
                    });
                }
                let mapping = ResolvedMapping {
                    mount: m.mount.clone(),
                    package,
                    volume: m.volume.clone(),
                    path: m.path.clone(),
                    declared_by: id.clone(),
                };
                fs.insert(m.mount.clone(), (depth, mapping));
            }
        }
        Ok(Self {
            id: resolution.root.id(),
            entrypoint: entrypoint(&resolution.root),
            commands,
            fs: fs.into_iter().map(|(k, (_, m))| (k, m)).collect(),
        })
    }
}

fn entrypoint(root: &Manifest) -> Option<String> {
    match (&root.entrypoint, root.commands.as_slice()) {
        (Some(e), _) => Some(e.clone()),
        (None, [only]) => Some(only.name.clone()),
        _ => None,
    }
}

/// (distance from the root, node) for every reachable node, nearest first; children in
/// declaration order, so equal distances are ordered by alias order.
fn breadth_first(graph: &ResolvedGraph) -> Vec<(usize, petgraph::graph::NodeIndex)> {
    let mut seen = vec![false; graph.graph().node_count()];
    let mut order = Vec::new();
    let mut queue = VecDeque::from([(0, graph.root())]);
    if let Some(s) = seen.get_mut(graph.root().index()) {
        *s = true;
    }
    while let Some((depth, node)) = queue.pop_front() {
        order.push((depth, node));
        for (_, next) in graph.dependencies(node) {
            if let Some(s) = seen.get_mut(next.index())
                && !*s
            {
                *s = true;
                queue.push_back((depth + 1, next));
            }
        }
    }
    order
}
