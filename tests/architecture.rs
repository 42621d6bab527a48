//! The shape of `src/`, checked on its text (this test needs no build of tally):
//!
//! - no import cycle between top-level modules, nor between the files of a
//!   folder module (`assertions/`, `materialize/`, ...), whose `mod.rs` is a
//!   facade: its children may not reach back into it;
//! - no function longer than [`MAX_FN_LINES`] formatted lines;
//! - no `Result<_, String>`: errors are typed.
//!
//! Both read the library's own code: each file up to its `#[cfg(test)]`.
//!
//! The graph is read from the paths the code names: `crate::a::...`, use
//! groups (`use crate::{a::X, b::{Y, Z}}`), `super::...` and, inside a
//! folder module, its children's names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// "No function over about 100 formatted lines" (issue 29).
const MAX_FN_LINES: usize = 100;

/// Folder modules whose `mod.rs` only declares and re-exports: the stages
/// with several files (`commands/` is a dispatcher, whose `mod.rs` holds the
/// helpers its subcommands share, and is left out).
const FACADES: [&str; 2] = ["assertions", "materialize"];

/// One source file of the library: its module path (`a` or `a::b`) and its
/// code with comments and string literals blanked out.
struct File {
    module: Vec<String>,
    path: PathBuf,
    code: String,
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn files() -> Vec<File> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).expect("src/ is readable").flatten().collect();
        entries.sort_by_key(|e| e.path());
        for e in entries {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let root = src();
    let mut paths = Vec::new();
    walk(&root, &mut paths);
    paths
        .into_iter()
        .filter_map(|p| {
            let rel = p.strip_prefix(&root).ok()?.to_path_buf();
            let parts: Vec<String> = rel.iter().map(|s| s.to_string_lossy().into_owned()).collect();
            // Binaries use the library by its name, not `crate::`.
            if parts[0] == "main.rs" || parts[0] == "lib.rs" || parts[0] == "bin" {
                return None;
            }
            let mut module: Vec<String> =
                parts.iter().map(|s| s.trim_end_matches(".rs").to_string()).collect();
            if module.last().is_some_and(|m| m == "mod") {
                module.pop();
            }
            let text = std::fs::read_to_string(&p).expect("source is UTF-8");
            let code = blank(&text);
            // The library's own code: its tests may reach anywhere.
            let lib = match code.find("#[cfg(test)]") {
                Some(at) => code[..at].to_string(),
                None => code,
            };
            Some(File { module, path: rel, code: lib })
        })
        .collect()
}

/// `text` with comments, string and char literals replaced by spaces (line
/// breaks kept), so that braces and paths inside them are not read as code.
fn blank(text: &str) -> String {
    let b: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let keep = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(keep(b[i]));
                    i += 1;
                }
            }
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && !ident_char(b.get(i.wrapping_sub(1)))
        {
            // A raw string: r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == '"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            for &ch in &b[i..j.min(b.len())] {
                out.push(keep(ch));
            }
            i = j;
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < b.len() {
                    out.push(keep(b[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' && (b.get(i + 2) == Some(&'\'') || next == Some('\\')) {
            // A char literal ('{', '\n', '\''); a lifetime has no closing quote.
            let mut j = i + 1;
            if b.get(j) == Some(&'\\') {
                j += 1;
            }
            j += 1;
            while j < b.len() && b[j] != '\'' {
                j += 1;
            }
            for _ in i..=j.min(b.len() - 1) {
                out.push(' ');
            }
            i = j + 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn ident_char(c: Option<&char>) -> bool {
    c.is_some_and(|c| c.is_alphanumeric() || *c == '_')
}

/// The first segment of every path `code` names after `prefix` (e.g.
/// `crate::`), use groups expanded: `crate::{a::X, b}` names `a` and `b`.
fn first_segments(code: &str, prefix: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(pos) = rest.find(prefix) {
        let before = rest[..pos].chars().last();
        rest = &rest[pos + prefix.len()..];
        // `pub(in crate::a)` is a visibility, not a use.
        if ident_char(before.as_ref()) || code[..code.len() - rest.len() - prefix.len()].ends_with("in ") {
            continue;
        }
        for path in paths_at(rest) {
            if let Some(first) = path.first() {
                out.push((first.clone(), path[1..].to_vec()));
            }
        }
    }
    out
}

/// The paths that start at the head of `s`: one (`a::b::X`) or a group.
fn paths_at(s: &str) -> Vec<Vec<String>> {
    let s = s.trim_start();
    if let Some(group) = s.strip_prefix('{') {
        let mut depth = 1;
        let mut end = group.len();
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i;
                        break;
                    }
                }
                _ => {}
            }
        }
        let inner = &group[..end];
        let mut items = Vec::new();
        let (mut depth, mut start) = (0, 0);
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    items.push(&inner[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        items.push(&inner[start..]);
        return items.into_iter().filter(|i| !i.trim().is_empty()).flat_map(paths_at).collect();
    }
    let mut path = Vec::new();
    let mut s = s;
    loop {
        let ident: String = s.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        if ident.is_empty() {
            if s.starts_with('{') {
                return paths_at(s).into_iter().map(|p| [path.clone(), p].concat()).collect();
            }
            break;
        }
        s = &s[ident.len()..];
        path.push(ident);
        match s.trim_start().strip_prefix("::") {
            Some(more) => s = more.trim_start(),
            None => break,
        }
    }
    vec![path]
}

/// module -> the modules it uses, at one level: the top-level modules, or
/// the files of the folder module `parent`.
fn graph(files: &[File], parent: Option<&str>) -> BTreeMap<String, BTreeSet<String>> {
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let children: BTreeSet<String> = files
        .iter()
        .filter(|f| f.module.len() == 2 && Some(f.module[0].as_str()) == parent)
        .map(|f| f.module[1].clone())
        .collect();
    for f in files {
        match parent {
            None => {
                let from = f.module[0].clone();
                let to = g.entry(from.clone()).or_default();
                for (first, _) in first_segments(&f.code, "crate::") {
                    if first != from && first != "self" && first != "super" {
                        to.insert(first);
                    }
                }
            }
            Some(parent) if f.module[0] == parent => {
                // The folder's facade is `parent` itself; its files are `parent::x`.
                let from = f.module.get(1).cloned().unwrap_or_else(|| "mod".into());
                let resolve = |rest: &[String]| match rest.first() {
                    Some(x) if children.contains(x) => x.clone(),
                    _ => "mod".to_string(),
                };
                let mut used: BTreeSet<String> = BTreeSet::new();
                for (first, rest) in first_segments(&f.code, "crate::") {
                    if first == parent {
                        used.insert(resolve(&rest));
                    }
                }
                if from != "mod" {
                    for (first, rest) in first_segments(&f.code, "super::") {
                        used.insert(resolve(&[[first].as_slice(), &rest].concat()));
                    }
                } else {
                    for child in &children {
                        let named = first_segments(&f.code, &format!("{child}::"));
                        let declared_only = named.is_empty();
                        if !declared_only {
                            used.insert(child.clone());
                        }
                    }
                }
                used.remove(&from);
                g.entry(from).or_default().extend(used);
            }
            Some(_) => {}
        }
    }
    g
}

/// The cycles of `g`, each as a path `a -> b -> a` (one per strongly
/// connected component, through its smallest member).
fn cycles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let reach = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<&str> = g.get(from).into_iter().flatten().map(String::as_str).collect();
        while let Some(n) = stack.pop() {
            if seen.insert(n.to_string()) {
                stack.extend(g.get(n).into_iter().flatten().map(String::as_str));
            }
        }
        seen
    };
    let mut reported: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::new();
    for n in g.keys() {
        if reported.contains(n) || !reach(n).contains(n) {
            continue;
        }
        // The shortest way back to n, breadth first.
        let mut prev: BTreeMap<String, String> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([n.clone()]);
        'search: while let Some(m) = queue.pop_front() {
            for next in g.get(&m).into_iter().flatten() {
                if next == n {
                    let mut path = vec![n.clone(), m.clone()];
                    let mut at = m.clone();
                    while let Some(p) = prev.get(&at) {
                        path.push(p.clone());
                        at = p.clone();
                    }
                    path.pop();
                    path.reverse();
                    path.insert(0, n.clone());
                    path.dedup();
                    reported.extend(path.iter().cloned());
                    out.push(path.join(" -> "));
                    break 'search;
                }
                if !prev.contains_key(next) && next != n {
                    prev.insert(next.clone(), m.clone());
                    queue.push_back(next.clone());
                }
            }
        }
    }
    out
}

#[test]
fn no_import_cycle_between_top_level_modules() {
    let found = cycles(&graph(&files(), None));
    assert!(found.is_empty(), "import cycles between src/ modules:\n  {}", found.join("\n  "));
}

#[test]
fn no_import_cycle_inside_folder_modules() {
    let files = files();
    let mut found = Vec::new();
    for folder in FACADES {
        for c in cycles(&graph(&files, Some(folder))) {
            found.push(format!("{folder}/: {c}"));
        }
    }
    assert!(
        found.is_empty(),
        "import cycles inside folder modules (`mod` is the folder's mod.rs):\n  {}",
        found.join("\n  ")
    );
}

/// Every function of the library: (file, line, name, lines).
fn functions(files: &[File]) -> Vec<(PathBuf, usize, String, usize)> {
    let mut out = Vec::new();
    for f in files {
        let lines: Vec<&str> = f.code.lines().collect();
        let end =
            lines.iter().position(|l| l.trim_start().starts_with("#[cfg(test)]")).unwrap_or(lines.len());
        let mut i = 0;
        while i < end {
            let t = lines[i].trim_start();
            let head = t
                .trim_start_matches("pub(crate) ")
                .trim_start_matches("pub(super) ")
                .trim_start_matches("pub ")
                .trim_start_matches("const ")
                .trim_start_matches("async ")
                .trim_start_matches("unsafe ");
            if let Some(rest) = head.strip_prefix("fn ") {
                let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                // From the signature to the brace that closes the body.
                let (mut depth, mut opened, mut j) = (0i32, false, i);
                'body: while j < lines.len() {
                    for c in lines[j].chars() {
                        match c {
                            '{' => {
                                depth += 1;
                                opened = true;
                            }
                            '}' => depth -= 1,
                            ';' if !opened && depth == 0 => break 'body,
                            _ => {}
                        }
                        if opened && depth == 0 {
                            break 'body;
                        }
                    }
                    j += 1;
                }
                if opened {
                    out.push((f.path.clone(), i + 1, name, j - i + 1));
                }
            }
            i += 1;
        }
    }
    out
}

#[test]
fn no_function_over_max_lines() {
    let mut fns = functions(&files());
    fns.sort_by_key(|f| std::cmp::Reverse(f.3));
    let longest: Vec<String> =
        fns.iter().take(5).map(|(p, l, n, len)| format!("{}:{l} {n}: {len} lines", p.display())).collect();
    // The longest five, for the record (`cargo test --test architecture -- --nocapture`).
    println!("longest functions in src/:\n  {}", longest.join("\n  "));
    let over: Vec<String> = fns
        .iter()
        .filter(|f| f.3 > MAX_FN_LINES)
        .map(|(p, l, n, len)| format!("{}:{l} {n}: {len} lines", p.display()))
        .collect();
    assert!(over.is_empty(), "functions over {MAX_FN_LINES} lines; split them:\n  {}", over.join("\n  "));
}

/// Every `Result<_, String>` in the library: (file, line).
fn string_errors(files: &[File]) -> Vec<(PathBuf, usize)> {
    let mut out = Vec::new();
    for f in files {
        for (at, _) in f.code.match_indices("Result<") {
            let args = &f.code[at + "Result<".len()..];
            let (mut depth, mut end, mut last_comma) = (1, args.len(), None);
            for (i, c) in args.char_indices() {
                match c {
                    '<' | '(' | '[' => depth += 1,
                    '>' | ')' | ']' => {
                        depth -= 1;
                        if depth == 0 {
                            end = i;
                            break;
                        }
                    }
                    ',' if depth == 1 => last_comma = Some(i),
                    _ => {}
                }
            }
            if let Some(comma) = last_comma
                && args[comma + 1..end].trim() == "String"
            {
                out.push((f.path.clone(), f.code[..at].lines().count()));
            }
        }
    }
    out
}

/// Errors are typed (thiserror) end to end: a caller can tell a user's
/// mistake from a bug, and a message is not parsed back.
#[test]
fn no_string_errors() {
    let found: Vec<String> =
        string_errors(&files()).iter().map(|(p, l)| format!("{}:{l}", p.display())).collect();
    assert!(found.is_empty(), "`Result<_, String>` in src/ (use a typed error):\n  {}", found.join("\n  "));
}

#[cfg(test)]
mod checker {
    use super::*;

    #[test]
    fn use_groups_name_every_module() {
        let code =
            blank("use crate::{a::X, b::{Y, Z}, c};\nfn f() { crate::d::g(\"crate::e\"); } // crate::f");
        let firsts: BTreeSet<String> = first_segments(&code, "crate::").into_iter().map(|(f, _)| f).collect();
        assert_eq!(firsts, ["a", "b", "c", "d"].map(String::from).into());
    }

    #[test]
    fn string_errors_are_found_in_nested_types() {
        let f = File {
            module: vec!["x".into()],
            path: "x.rs".into(),
            code: blank("fn a() -> Result<Vec<(u64, u64)>, String> {}\nfn b() -> Result<(), Error> {}\n"),
        };
        assert_eq!(string_errors(&[f]), [(PathBuf::from("x.rs"), 1)]);
    }

    #[test]
    fn a_cycle_is_reported_with_its_path() {
        let g: BTreeMap<String, BTreeSet<String>> =
            [("a", vec!["b"]), ("b", vec!["c"]), ("c", vec!["a"]), ("d", vec!["a"])]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
                .collect();
        assert_eq!(cycles(&g), ["a -> b -> c -> a"]);
    }

    #[test]
    fn braces_in_strings_and_chars_do_not_count() {
        let f = File {
            module: vec!["x".into()],
            path: "x.rs".into(),
            code: blank("fn a() {\n let s = \"}}\";\n let c = '}';\n}\nfn b<'a>(x: &'a str) {\n}\n"),
        };
        let fns = functions(&[f]);
        assert_eq!(fns.iter().map(|f| (f.2.as_str(), f.3)).collect::<Vec<_>>(), [("a", 4), ("b", 2)]);
    }
}
