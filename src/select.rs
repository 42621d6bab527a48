//! Node selection: `name`, `+name` (with ancestors), `name+` (with
//! descendants), `tag:x`, `path:models/staging`, `source:crm.accounts`, and
//! `*` wildcards in names. Space-separated selectors form a union; `--exclude`
//! removes its own union afterwards.

use std::collections::BTreeSet;
use std::path::Path;

use crate::dag::Dag;
use crate::diagnostic::did_you_mean;
use crate::error::{Error, Result};

/// What selection needs to know about a node.
pub struct NodeFacts<'a> {
    pub name: &'a str,
    pub path: &'a Path,
    pub tags: &'a BTreeSet<String>,
    pub sources: &'a [(String, String)],
}

#[derive(Debug, PartialEq, Eq)]
enum Method {
    Name(String),
    Tag(String),
    Path(String),
    Source(String),
}

#[derive(Debug, PartialEq, Eq)]
struct Selector {
    ancestors: bool,
    descendants: bool,
    method: Method,
}

fn parse(token: &str) -> Result<Selector> {
    let (ancestors, rest) = match token.strip_prefix('+') {
        Some(r) => (true, r),
        None => (false, token),
    };
    let (descendants, body) = match rest.strip_suffix('+') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let method = match body.split_once(':') {
        None => Method::Name(body.to_string()),
        Some(("tag", v)) => Method::Tag(v.to_string()),
        Some(("path", v)) => Method::Path(v.trim_end_matches('/').to_string()),
        Some(("source", v)) => Method::Source(v.to_string()),
        Some(("fqn" | "model", v)) => Method::Name(v.to_string()),
        Some((m, _)) => {
            return Err(Error::Usage(format!(
                "selector `{token}`: unknown method `{m}:`; use a name, tag:, path: or source:"
            )));
        }
    };
    if body.is_empty()
        || matches!(&method, Method::Name(n) | Method::Tag(n) | Method::Path(n) | Method::Source(n) if n.is_empty())
    {
        return Err(Error::Usage(format!("selector `{token}` is empty")));
    }
    Ok(Selector { ancestors, descendants, method })
}

/// Resolve `--select` (empty: everything) minus `--exclude`.
pub fn resolve(
    dag: &Dag,
    nodes: &[NodeFacts<'_>],
    select: &[String],
    exclude: &[String],
) -> Result<BTreeSet<String>> {
    if let Some(flag) = [("--select", select), ("--exclude", exclude)]
        .iter()
        .find(|(_, v)| !v.is_empty() && tokens(v).is_empty())
        .map(|(f, _)| f)
    {
        // `-s ''` (an unset shell variable) would otherwise select everything.
        return Err(Error::Usage(format!(
            "{flag} was given an empty selector; name a model, tag:x, path:dir or source:s.t, or leave {flag} out"
        )));
    }
    let select = tokens(select);
    let mut chosen = if select.is_empty() {
        nodes.iter().map(|n| n.name.to_string()).collect()
    } else {
        union(dag, nodes, &select)?
    };
    for name in union(dag, nodes, &tokens(exclude))? {
        chosen.remove(&name);
    }
    Ok(chosen)
}

fn union(dag: &Dag, nodes: &[NodeFacts<'_>], tokens: &[String]) -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for token in tokens {
        let sel = parse(token)?;
        let base: BTreeSet<String> =
            nodes.iter().filter(|n| matches(&sel.method, n)).map(|n| n.name.to_string()).collect();
        if base.is_empty()
            && let Method::Name(name) = &sel.method
            && !name.contains('*')
        {
            let hint = did_you_mean(name, nodes.iter().map(|n| n.name)).unwrap_or_default();
            return Err(Error::Usage(
                format!("selector `{token}` matches no model or seed. {hint}").trim_end().to_string(),
            ));
        }
        for name in &base {
            if sel.ancestors {
                out.extend(dag.ancestors(name));
            }
            if sel.descendants {
                out.extend(dag.descendants(name));
            }
        }
        out.extend(base);
    }
    Ok(out)
}

fn matches(method: &Method, node: &NodeFacts<'_>) -> bool {
    match method {
        Method::Name(pattern) => wildcard(pattern, node.name),
        Method::Tag(tag) => node.tags.contains(tag),
        Method::Path(prefix) => {
            let p = Path::new(prefix);
            node.path.starts_with(p) || node.path.with_extension("") == p || node.path == p
        }
        Method::Source(s) => node.sources.iter().any(|(src, table)| source_matches(s, src, table)),
    }
}

/// Whether `source:<pattern>` names source table `src.table`: the whole
/// source, the table, or a wildcard over `src.table`.
fn source_matches(pattern: &str, src: &str, table: &str) -> bool {
    pattern == src || wildcard(pattern, &format!("{src}.{table}"))
}

/// The source tables whose own checks a selection takes in: every one of
/// `all` when `select` is empty, else those its `source:` selectors name;
/// minus those `exclude`'s `source:` selectors name. (Graph operators on a
/// `source:` selector add the nodes reading it, which [`resolve`] returns.)
pub fn sources<'a>(
    all: impl IntoIterator<Item = &'a (String, String)>,
    select: &[String],
    exclude: &[String],
) -> Result<BTreeSet<(String, String)>> {
    let patterns = |v: &[String]| -> Result<Vec<String>> {
        let mut out = Vec::new();
        for token in tokens(v) {
            if let Method::Source(s) = parse(&token)?.method {
                out.push(s);
            }
        }
        Ok(out)
    };
    let (wanted, unwanted) = (patterns(select)?, patterns(exclude)?);
    let named = |patterns: &[String], (src, table): &(String, String)| {
        patterns.iter().any(|p| source_matches(p, src, table))
    };
    Ok(all
        .into_iter()
        .filter(|key| (tokens(select).is_empty() || named(&wanted, key)) && !named(&unwanted, key))
        .cloned()
        .collect())
}

/// The selectors of `--select` or `--exclude`: each value may hold several, space-separated.
fn tokens(values: &[String]) -> Vec<String> {
    values.iter().flat_map(|s| s.split_whitespace().map(str::to_string)).collect()
}

/// `*` matches any run of characters.
fn wildcard(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else { return false };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            let Some(pos) = rest.find(part) else { return false };
            rest = &rest[pos + part.len()..];
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_graph_operators() {
        let s = parse("+tag:nightly+").unwrap();
        assert!(s.ancestors && s.descendants);
        assert_eq!(s.method, Method::Tag("nightly".into()));
        assert!(parse("bogus:x").is_err());
    }

    #[test]
    fn sources_named_by_a_selection() {
        let all = [
            ("crm".to_string(), "accounts".to_string()),
            ("crm".to_string(), "leads".to_string()),
            ("billing".to_string(), "subs".to_string()),
        ];
        let names = |select: &[&str], exclude: &[&str]| -> Vec<String> {
            let (select, exclude): (Vec<String>, Vec<String>) = (
                select.iter().map(|s| s.to_string()).collect(),
                exclude.iter().map(|s| s.to_string()).collect(),
            );
            sources(&all, &select, &exclude).unwrap().into_iter().map(|(s, t)| format!("{s}.{t}")).collect()
        };
        // No selection: every source; models named alone take in none.
        assert_eq!(names(&[], &[]), ["billing.subs", "crm.accounts", "crm.leads"]);
        assert!(names(&["stg_accounts", "tag:x"], &[]).is_empty());
        // A table, a whole source, a wildcard; `+` changes nothing here.
        assert_eq!(names(&["source:crm.leads"], &[]), ["crm.leads"]);
        assert_eq!(names(&["source:crm+ stg_x"], &[]), ["crm.accounts", "crm.leads"]);
        assert_eq!(names(&["source:*.subs"], &[]), ["billing.subs"]);
        // Excluded by `source:` only.
        assert_eq!(names(&[], &["source:crm.accounts", "billing"]), ["billing.subs", "crm.leads"]);
        assert!(sources(&all, &["nope:x".to_string()], &[]).is_err());
    }

    #[test]
    fn wildcards() {
        assert!(wildcard("stg_*", "stg_accounts"));
        assert!(wildcard("*_monthly", "arr_waterfall_monthly"));
        assert!(!wildcard("stg_*", "fct_x"));
    }
}
