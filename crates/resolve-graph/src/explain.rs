//! Readable explanations of a failed resolution.
//!
//! pubgrub proves "no solution" with a derivation tree whose leaves are plain facts (`a 1.0
//! depends on b ^2`, `b has no version in [2, 3)`, `c 1.0 cannot be used: ...`) and whose
//! inner nodes are deductions. The facts are what a person needs, so they are collected
//! (causes before conclusions, each once) and phrased as sentences; a fact that a
//! dependency has no matching version is folded into the sentence about that dependency:
//! "acme/app 1.0.0 depends on acme/python ^3.14, but the available versions are 3.11.0,
//! 3.12.0, 3.13.0".

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use pubgrub::{DerivationTree, Derived, External, Ranges};
use semver::{Version, VersionReq};

use crate::name::{PackageId, PackageName};

/// What the explainer may look up about the packages it mentions.
pub(crate) trait Catalog {
    /// The versions that could have been chosen, oldest first.
    fn candidates(&self, name: &PackageName) -> Vec<Version>;
    /// The requirement `from` places on `on`, as written in its manifest.
    fn requirement(&self, from: &PackageId, on: &PackageName) -> Option<VersionReq>;
}

/// Why no solution exists, as sentences.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// One sentence per fact, causes first; the last line is the conclusion.
    pub lines: Vec<String>,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.lines.join("\n"))
    }
}

type Tree = DerivationTree<PackageName, Ranges<Version>, String>;

enum Fact {
    Depends {
        text: String,
        on: PackageName,
        range: Ranges<Version>,
    },
    NoVersions {
        on: PackageName,
        range: Ranges<Version>,
    },
    Other(String),
}

pub(crate) fn explain(tree: &Tree, catalog: &impl Catalog) -> Explanation {
    let mut facts = Vec::new();
    collect(tree, catalog, &mut facts);
    // A dependency whose requirement alone matches nothing absorbs the "no versions" fact
    // about its target, so the reader gets cause and effect in one sentence.
    let alone_fails = |on: &PackageName, range: &Ranges<Version>| {
        !catalog.candidates(on).iter().any(|v| range.contains(v))
    };
    // Looked up once per fact below: sets, so a proof with thousands of facts stays fast.
    let mut absorbing: HashSet<&PackageName> = HashSet::new();
    let mut depended_on: HashSet<&PackageName> = HashSet::new();
    let mut lacking: HashSet<&PackageName> = HashSet::new();
    for fact in &facts {
        match fact {
            Fact::Depends { on, range, .. } => {
                depended_on.insert(on);
                if !absorbing.contains(on) && alone_fails(on, range) {
                    absorbing.insert(on);
                }
            }
            Fact::NoVersions { on, .. } => {
                lacking.insert(on);
            }
            Fact::Other(_) => {}
        }
    }
    let mut lines = Lines::default();
    // The proof is built from the conflict back to the root; read it root first.
    for fact in facts.iter().rev() {
        let line = match fact {
            Fact::Depends { text, on, range } => {
                if lacking.contains(on) && alone_fails(on, range) {
                    format!("{text}, but {}.", available(on, catalog))
                } else {
                    format!("{text}.")
                }
            }
            Fact::NoVersions { on, .. } if absorbing.contains(on) => continue,
            // pubgrub also records the gaps between known versions ("nothing in
            // (1.0.0, 1.1.0)"); once a dependency on the package is stated, the versions
            // it can use are evident, so such a fact is noise.
            Fact::NoVersions { on, .. }
                if depended_on.contains(on) && !catalog.candidates(on).is_empty() =>
            {
                continue;
            }
            Fact::NoVersions { on, range } => {
                format!(
                    "No version of {on} matches {range}: {}.",
                    available(on, catalog)
                )
            }
            Fact::Other(text) => format!("{text}."),
        };
        lines.push(line);
    }
    if lines.list.len() > 1 {
        lines.push("These requirements cannot all be met.".to_owned());
    }
    if lines.list.is_empty() {
        lines.push("No solution exists.".to_owned());
    }
    Explanation { lines: lines.list }
}

/// Drops a derivation tree without recursing: pubgrub's own drop recurses once per level,
/// and a proof about a long chain of packages would overflow the stack.
pub(crate) fn dismantle(tree: Tree) {
    let mut stack = vec![tree];
    while let Some(node) = stack.pop() {
        if let DerivationTree::Derived(Derived { cause1, cause2, .. }) = node {
            for cause in [cause1, cause2] {
                // A cause still shared elsewhere only loses a reference here, which does
                // not recurse; its last holder unwraps it later.
                if let Ok(inner) = Arc::try_unwrap(cause) {
                    stack.push(inner);
                }
            }
        }
    }
}

/// Leaves in order, left cause before right cause, so facts precede what follows from them.
///
/// With an explicit stack: a proof about a chain thousands of packages deep is that deep,
/// and recursion would overflow the thread's stack.
fn collect(tree: &Tree, catalog: &impl Catalog, out: &mut Vec<Fact>) {
    let mut stack = vec![tree];
    while let Some(node) = stack.pop() {
        let e = match node {
            DerivationTree::Derived(d) => {
                stack.push(&d.cause2);
                stack.push(&d.cause1);
                continue;
            }
            DerivationTree::External(e) => e,
        };
        match e {
            // "The root must be chosen" is the premise, not news to the reader.
            External::NotRoot(..) => {}
            External::NoVersions(p, range) => out.push(Fact::NoVersions {
                on: p.clone(),
                range: range.clone(),
            }),
            External::FromDependencyOf(p, prange, dep, drange) => {
                let (who, plural) = versions_phrase(p, prange, catalog);
                let req = requirement_phrase(p, prange, dep, drange, catalog);
                let verb = if plural { "depend" } else { "depends" };
                out.push(Fact::Depends {
                    text: format!("{who} {verb} on {dep} {req}"),
                    on: dep.clone(),
                    range: drange.clone(),
                });
            }
            External::Custom(p, range, reason) => {
                let (who, _) = versions_phrase(p, range, catalog);
                out.push(Fact::Other(format!("{who} cannot be used: {reason}")));
            }
        }
    }
}

/// "acme/a 1.0.0", "acme/a 1.0.0 and 1.1.0", "All versions of acme/a (1.0.0 and 1.1.0)",
/// or "acme/a >=2.0.0" when no known version is inside; and whether that is plural.
fn versions_phrase(
    p: &PackageName,
    range: &Ranges<Version>,
    catalog: &impl Catalog,
) -> (String, bool) {
    let all = catalog.candidates(p);
    let inside: Vec<Version> = all.iter().filter(|v| range.contains(v)).cloned().collect();
    match inside.as_slice() {
        [] => (format!("{p} {range}"), false),
        [v] => (format!("{p} {v}"), false),
        many if many.len() == all.len() => {
            (format!("All versions of {p} ({})", and_list(many)), true)
        }
        many => (format!("{p} {}", and_list(many)), true),
    }
}

/// "1.0.0", "1.0.0 and 1.1.0", "1.0.0, 1.1.0 and 1.2.0".
fn and_list(versions: &[Version]) -> String {
    match versions.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", list(rest)),
        _ => list(versions),
    }
}

/// The requirement as its manifests spell it (`^3.14`) when they agree, else the range.
fn requirement_phrase(
    p: &PackageName,
    prange: &Ranges<Version>,
    dep: &PackageName,
    drange: &Ranges<Version>,
    catalog: &impl Catalog,
) -> String {
    let mut texts: Vec<String> = catalog
        .candidates(p)
        .into_iter()
        .filter(|v| prange.contains(v))
        .filter_map(|v| catalog.requirement(&PackageId::new(p.clone(), v), dep))
        .map(|r| r.to_string())
        .collect();
    texts.dedup();
    match texts.as_slice() {
        [one] => one.clone(),
        _ => drange.to_string(),
    }
}

/// "the available versions are …", or that there are none.
fn available(on: &PackageName, catalog: &impl Catalog) -> String {
    let all = catalog.candidates(on);
    if all.is_empty() {
        return format!("{on} has no versions at all");
    }
    // Name the versions so the reader can see how far off the requirement is; cap the list.
    const SHOWN: usize = 10;
    let shown = list(all.get(all.len().saturating_sub(SHOWN)..).unwrap_or(&all));
    let more = all.len().saturating_sub(SHOWN);
    let listed = if more > 0 {
        format!("{shown} (and {more} older)")
    } else {
        shown
    };
    if all.len() == 1 {
        format!("the only available version is {listed}")
    } else {
        format!("the available versions are {listed}")
    }
}

/// Lines in order, each once: a fact shared by two branches of the proof is stated once.
#[derive(Default)]
struct Lines {
    list: Vec<String>,
    seen: HashSet<String>,
}

impl Lines {
    fn push(&mut self, line: String) {
        if self.seen.insert(line.clone()) {
            self.list.push(line);
        }
    }
}

fn list(versions: &[Version]) -> String {
    versions
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
