//! The library's shape (issue 26): its top-level modules form no import cycle, so each can
//! be read and tested from the layers below it.

use std::collections::{BTreeMap, BTreeSet};

/// Every top-level module of `src/` (not the binary's `cli/` and `main.rs`) with the
/// top-level modules its code names (`crate::x`, `use crate::{x, …}`), comments and test
/// modules left out.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                files.push(p);
            }
        }
    }
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in files {
        let rel = f
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let top = rel
            .split('/')
            .next()
            .unwrap()
            .trim_end_matches(".rs")
            .to_owned();
        if ["cli", "bin", "main", "lib"].contains(&top.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        let text = text.split("#[cfg(test)]\nmod tests").next().unwrap();
        let mut refs = BTreeSet::new();
        for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for (i, _) in line.match_indices("crate::") {
                let rest = &line[i + "crate::".len()..];
                if let Some(list) = rest.strip_prefix('{') {
                    for part in list.split([',', '}']) {
                        let name = part.trim().split("::").next().unwrap_or("");
                        refs.insert(name.to_owned());
                    }
                } else {
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                        .collect();
                    refs.insert(name);
                }
            }
        }
        refs.remove(&top);
        out.entry(top).or_default().extend(refs);
    }
    let names: BTreeSet<String> = out.keys().cloned().collect();
    for deps in out.values_mut() {
        deps.retain(|d| names.contains(d));
    }
    out
}

#[test]
fn the_library_has_no_import_cycle() {
    let g = graph();
    assert!(g.len() > 20 && g["store"].contains("audit"), "{g:?}");
    // Depth-first search for a back edge; the path says where the cycle is.
    fn visit(
        g: &BTreeMap<String, BTreeSet<String>>,
        m: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if done.contains(m) {
            return;
        }
        if let Some(at) = path.iter().position(|p| p == m) {
            panic!("import cycle: {} -> {m}", path[at..].join(" -> "));
        }
        path.push(m.to_owned());
        for d in &g[m] {
            visit(g, d, path, done);
        }
        path.pop();
        done.insert(m.to_owned());
    }
    let mut done = BTreeSet::new();
    for m in g.keys() {
        visit(&g, m, &mut Vec::new(), &mut done);
    }
}
