//! Parse YAML into typed structs, turning errors into located diagnostics and
//! unknown keys into warnings that name the file and line.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::diagnostic::Diagnostic;

/// A warning about the project (e.g. an unknown key): it does not stop the build.
pub type Warning = Diagnostic;

/// Parse `text` (the contents of `file`, a project-relative path).
///
/// Keys the structs do not know are collected as warnings; `known_unsupported`
/// lists keys we recognise (from dbt) but ignore, which get a softer message.
pub fn parse<T: DeserializeOwned>(
    file: &Path,
    text: &str,
    known_unsupported: &[&str],
    warnings: &mut Vec<Warning>,
) -> Result<T, Diagnostic> {
    if text.trim().is_empty() {
        return serde_yaml_ng::from_str("{}").map_err(|e| located(file, text, &e));
    }
    let de = serde_yaml_ng::Deserializer::from_str(text);
    let mut unknown = Vec::new();
    let value: T = serde_ignored::deserialize(de, |path| unknown.push(path.to_string()))
        .map_err(|e| located(file, text, &e))?;
    for path in unknown {
        let key = path.rsplit('.').next().unwrap_or(&path).to_string();
        let line = line_of_key(text, &path);
        let (message, help) = if known_unsupported.contains(&key.as_str()) {
            (format!("`{path}` is a dbt setting tally does not use; it is ignored"), None)
        } else {
            (
                format!("unknown key `{path}`; it is ignored"),
                Some("check the spelling against README.md, \"Project format\"".to_string()),
            )
        };
        let mut w = Diagnostic::error(message).at(file, line, 0);
        if let Some(h) = help {
            w = w.with_help(h);
        }
        warnings.push(w);
    }
    Ok(value)
}

fn located(file: &Path, text: &str, e: &serde_yaml_ng::Error) -> Diagnostic {
    let message = strip_location(&e.to_string());
    let d = Diagnostic::error(format!("invalid YAML: {message}"))
        .with_help("fix the YAML syntax or the value's type at this position");
    match e.location() {
        Some(loc) => d.at(file, loc.line(), loc.column()),
        None => d.at(file, last_line(text), 0),
    }
}

/// serde_yaml appends " at line X column Y" to messages; we print the position ourselves.
fn strip_location(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

fn last_line(text: &str) -> usize {
    text.lines().count().max(1)
}

/// Best-effort line of a dotted key path like `models.0.columns.1.descrption`:
/// the first line declaring the last key after the lines of its parents.
pub fn line_of_key(text: &str, path: &str) -> usize {
    let mut from = 0usize;
    let mut found = 0usize;
    for seg in path.split('.').filter(|s| s.parse::<usize>().is_err()) {
        let pos = text.lines().enumerate().skip(from).find(|(_, l)| declares_key(l, seg));
        if let Some((i, _)) = pos {
            found = i + 1;
            from = i + 1;
        }
    }
    found
}

fn declares_key(line: &str, key: &str) -> bool {
    let t = line.trim_start().trim_start_matches("- ").trim_start();
    let t = t.trim_start_matches(['"', '\'']);
    t.strip_prefix(key).is_some_and(|rest| {
        let rest = rest.trim_start_matches(['"', '\'']);
        rest.trim_start().starts_with(':')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Doc {
        name: String,
        #[serde(default)]
        items: Vec<Item>,
    }
    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Item {
        name: String,
    }

    #[test]
    fn unknown_keys_are_warnings_with_lines() {
        let text = "name: x\nitems:\n  - name: a\n    colour: red\n";
        let mut w = Vec::new();
        let d: Doc = parse(Path::new("f.yml"), text, &[], &mut w).unwrap();
        assert_eq!(d.items.len(), 1);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].headline(), "f.yml:4: unknown key `items.0.colour`; it is ignored");
    }

    #[test]
    fn syntax_errors_are_located() {
        let text = "name: x\nitems:\n  - name: [unclosed\n";
        let mut w = Vec::new();
        let e = parse::<Doc>(Path::new("f.yml"), text, &[], &mut w).unwrap_err();
        let loc = e.location.unwrap();
        assert_eq!(loc.file, Path::new("f.yml"));
        assert!(loc.line >= 3, "{loc:?}");
    }
}
