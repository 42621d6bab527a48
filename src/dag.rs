//! The dependency graph of models and seeds: topological order, cycles named
//! by their path, ancestors and descendants.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

#[derive(Debug)]
pub struct Dag {
    names: Vec<String>,
    index: BTreeMap<String, usize>,
    parents: Vec<Vec<usize>>,
    children: Vec<Vec<usize>>,
    order: Vec<usize>,
}

/// A dependency cycle, as the list of nodes along it (first == last).
#[derive(Debug, PartialEq, Eq)]
pub struct Cycle(pub Vec<String>);

impl std::fmt::Display for Cycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join(" -> "))
    }
}

impl Dag {
    /// `deps` maps each node to the nodes it references. References to names
    /// that are not nodes are ignored (they were reported while rendering).
    pub fn build(deps: &BTreeMap<String, Vec<String>>) -> Result<Dag, Cycle> {
        let names: Vec<String> = deps.keys().cloned().collect();
        let index: BTreeMap<String, usize> = names.iter().enumerate().map(|(i, n)| (n.clone(), i)).collect();
        let mut parents = vec![Vec::new(); names.len()];
        let mut children = vec![Vec::new(); names.len()];
        for (name, refs) in deps {
            let i = index[name];
            for r in refs {
                if let Some(&p) = index.get(r)
                    && !parents[i].contains(&p)
                {
                    parents[i].push(p);
                    children[p].push(i);
                }
            }
        }
        let mut dag = Dag { names, index, parents, children, order: Vec::new() };
        dag.order = dag.topological()?;
        Ok(dag)
    }

    /// Kahn's algorithm, smallest name first among ready nodes, so the order is stable.
    fn topological(&self) -> Result<Vec<usize>, Cycle> {
        let mut indegree: Vec<usize> = self.parents.iter().map(Vec::len).collect();
        let mut ready: BTreeSet<usize> = (0..self.names.len()).filter(|&i| indegree[i] == 0).collect();
        let mut order = Vec::with_capacity(self.names.len());
        while let Some(i) = ready.pop_first() {
            order.push(i);
            for &c in &self.children[i] {
                indegree[c] -= 1;
                if indegree[c] == 0 {
                    ready.insert(c);
                }
            }
        }
        if order.len() == self.names.len() {
            return Ok(order);
        }
        let stuck: BTreeSet<usize> = (0..self.names.len()).filter(|&i| indegree[i] > 0).collect();
        Err(self.find_cycle(&stuck))
    }

    /// Walk parent links inside the stuck set until a node repeats: that is a cycle.
    fn find_cycle(&self, stuck: &BTreeSet<usize>) -> Cycle {
        let Some(&start) = stuck.first() else { return Cycle(Vec::new()) };
        let mut path = vec![start];
        let mut seen = BTreeMap::from([(start, 0usize)]);
        let mut cur = start;
        loop {
            let Some(&next) = self.parents[cur].iter().filter(|p| stuck.contains(p)).min() else {
                return Cycle(path.iter().map(|&i| self.names[i].clone()).collect());
            };
            if let Some(&pos) = seen.get(&next) {
                let mut cycle: Vec<String> = path[pos..].iter().map(|&i| self.names[i].clone()).collect();
                cycle.push(self.names[next].clone());
                return Cycle(cycle);
            }
            seen.insert(next, path.len());
            path.push(next);
            cur = next;
        }
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// Node names in topological order (dependencies first).
    pub fn topo_order(&self) -> impl Iterator<Item = &str> {
        self.order.iter().map(|&i| self.names[i].as_str())
    }

    /// Nodes grouped by depth: each level's nodes depend only on earlier
    /// levels, so one level's nodes can be processed in parallel.
    pub fn levels(&self) -> Vec<Vec<&str>> {
        let mut depth = vec![0usize; self.names.len()];
        let mut levels: Vec<Vec<&str>> = Vec::new();
        for &i in &self.order {
            depth[i] = self.parents[i].iter().map(|&p| depth[p] + 1).max().unwrap_or(0);
            if levels.len() <= depth[i] {
                levels.resize_with(depth[i] + 1, Vec::new);
            }
            levels[depth[i]].push(self.names[i].as_str());
        }
        levels
    }

    pub fn parents(&self, name: &str) -> Vec<&str> {
        self.index
            .get(name)
            .map(|&i| self.parents[i].iter().map(|&p| self.names[p].as_str()).collect())
            .unwrap_or_default()
    }

    pub fn children(&self, name: &str) -> Vec<&str> {
        self.index
            .get(name)
            .map(|&i| self.children[i].iter().map(|&c| self.names[c].as_str()).collect())
            .unwrap_or_default()
    }

    pub fn ancestors(&self, name: &str) -> BTreeSet<String> {
        self.reach(name, &self.parents)
    }

    pub fn descendants(&self, name: &str) -> BTreeSet<String> {
        self.reach(name, &self.children)
    }

    fn reach(&self, name: &str, edges: &[Vec<usize>]) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let Some(&start) = self.index.get(name) else { return out };
        let mut queue = VecDeque::from([start]);
        let mut seen = vec![false; self.names.len()];
        while let Some(i) = queue.pop_front() {
            for &n in &edges[i] {
                if !seen[n] {
                    seen[n] = true;
                    out.insert(self.names[n].clone());
                    queue.push_back(n);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deps(edges: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        edges.iter().map(|(n, d)| (n.to_string(), d.iter().map(|s| s.to_string()).collect())).collect()
    }

    #[test]
    fn levels_hold_nodes_whose_parents_are_all_in_earlier_levels() {
        let dag = Dag::build(&deps(&[
            ("a", &[]),
            ("b", &["a"]),
            ("c", &["a"]),
            ("d", &["b", "c"]),
            ("e", &["a", "d"]),
            ("f", &[]),
        ]))
        .unwrap();
        assert_eq!(dag.levels(), vec![vec!["a", "f"], vec!["b", "c"], vec!["d"], vec!["e"]]);
    }

    #[test]
    fn diamond_orders_dependencies_first() {
        let dag = Dag::build(&deps(&[("a", &[]), ("b", &["a"]), ("c", &["a"]), ("d", &["b", "c"])])).unwrap();
        assert_eq!(dag.topo_order().collect::<Vec<_>>(), ["a", "b", "c", "d"]);
        assert_eq!(dag.ancestors("d"), BTreeSet::from(["a".into(), "b".into(), "c".into()]));
        assert_eq!(dag.descendants("b"), BTreeSet::from(["d".into()]));
    }

    #[test]
    fn cycle_is_reported_as_a_path() {
        let err = Dag::build(&deps(&[("a", &["c"]), ("b", &["a"]), ("c", &["b"]), ("x", &[])])).unwrap_err();
        assert_eq!(err.to_string(), "a -> c -> b -> a");
    }
}
