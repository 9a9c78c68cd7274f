//! The resolved graph: edges, cycles, order and DOT.

#![allow(clippy::unwrap_used)]

use futures::executor::block_on;
use resolve_graph::{
    GraphError, InMemorySource, Manifest, PackageName, ResolveOptions, ResolvedGraph, resolve,
};
use semver::{Version, VersionReq};

fn name(s: &str) -> PackageName {
    s.parse().unwrap()
}

fn pkg(n: &str, deps: &[(&str, &str)]) -> Manifest {
    let mut m = Manifest::new(name(n), Version::new(1, 0, 0));
    for (alias, d) in deps {
        m = m.with_dependency(alias, name(d), VersionReq::parse("^1").unwrap());
    }
    m
}

fn graph(root: &Manifest, pkgs: &[Manifest]) -> ResolvedGraph {
    let mut source = InMemorySource::new("memory");
    for p in pkgs {
        source.add(p.clone());
    }
    let r = block_on(resolve(&source, root, &ResolveOptions::default())).unwrap();
    ResolvedGraph::new(&r).unwrap()
}

fn diamond() -> ResolvedGraph {
    graph(
        &pkg("acme/app", &[("left", "acme/a"), ("right", "acme/b")]),
        &[
            pkg("acme/a", &[("c", "acme/c")]),
            pkg("acme/b", &[("cee", "acme/c")]),
            pkg("acme/c", &[]),
        ],
    )
}

#[test]
fn edges_are_labelled_by_alias_in_declaration_order() {
    let g = diamond();
    let deps: Vec<(String, String)> = g
        .dependencies(g.root())
        .into_iter()
        .map(|(alias, n)| (alias.to_owned(), g.id(n).unwrap().to_string()))
        .collect();
    assert_eq!(
        deps,
        [
            ("left".to_owned(), "acme/a 1.0.0".to_owned()),
            ("right".to_owned(), "acme/b 1.0.0".to_owned())
        ]
    );
    assert_eq!(g.graph().node_count(), 4);
    assert_eq!(g.graph().edge_count(), 4);
}

#[test]
fn topological_order_puts_dependencies_first() {
    let g = diamond();
    let order: Vec<String> = g
        .topological_order()
        .unwrap()
        .into_iter()
        .map(|id| id.name.to_string())
        .collect();
    let pos = |n: &str| order.iter().position(|x| x == n).unwrap();
    assert!(pos("acme/c") < pos("acme/a") && pos("acme/c") < pos("acme/b"));
    assert_eq!(order.last().unwrap(), "acme/app");
    assert!(g.find_cycle().is_none());
}

#[test]
fn cycle_is_named() {
    let g = graph(
        &pkg("acme/app", &[("a", "acme/cyc-a")]),
        &[
            pkg("acme/cyc-a", &[("b", "acme/cyc-b")]),
            pkg("acme/cyc-b", &[("a", "acme/cyc-a")]),
        ],
    );
    let cycle = g.find_cycle().unwrap();
    assert_eq!(
        cycle.to_string(),
        "acme/cyc-a 1.0.0 -> acme/cyc-b 1.0.0 -> acme/cyc-a 1.0.0"
    );
    match g.topological_order() {
        Err(e @ GraphError::Cycle(_)) => assert_eq!(
            e.to_string(),
            "dependency cycle: acme/cyc-a 1.0.0 -> acme/cyc-b 1.0.0 -> acme/cyc-a 1.0.0"
        ),
        other => panic!("expected a cycle, got {other:?}"),
    }
}

#[test]
fn dot_export() {
    let g = graph(
        &pkg("acme/app", &[("the \"lib\"", "acme/lib")]),
        &[pkg("acme/lib", &[])],
    );
    assert_eq!(
        g.to_dot(),
        "digraph dependencies {\n    n0 [label=\"acme/app 1.0.0\"];\n    n1 [label=\"acme/lib 1.0.0\"];\n    n0 -> n1 [label=\"the \\\"lib\\\"\"];\n}\n"
    );
}
