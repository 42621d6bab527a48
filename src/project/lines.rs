//! Where things are declared in a properties file, so diagnostics and test
//! results can name the line. serde gives values without positions, so the
//! lines are found in the text: `- name: <x>` entries are indexed once per
//! file (searching the whole text for each model made loading a project with
//! many models per file quadratic).

use std::collections::HashMap;

pub struct PropertiesText {
    text: String,
    /// Byte range of each line, without its line break.
    lines: Vec<(usize, usize)>,
    /// Each `name:` entry's value -> the 0-based lines declaring it, ascending.
    names: HashMap<String, Vec<usize>>,
    /// Each `key:` -> the first 0-based line that starts with it (`models:`, `tables:`).
    keys: HashMap<String, usize>,
}

impl PropertiesText {
    pub fn new(text: String) -> Self {
        let mut lines = Vec::new();
        let mut names: HashMap<String, Vec<usize>> = HashMap::new();
        let mut keys = HashMap::new();
        let mut start = 0;
        for (i, line) in text.split_inclusive('\n').enumerate() {
            let body = line.trim_end_matches(['\n', '\r']);
            lines.push((start, start + body.len()));
            start += line.len();
            if let Some(name) = name_entry(body) {
                names.entry(name.to_string()).or_default().push(i);
            }
            if let Some((key, _)) = body.trim_start().split_once(':') {
                keys.entry(key.to_string()).or_insert(i);
            }
        }
        PropertiesText { text, lines, names, keys }
    }

    /// Line `i` (0-based), without its line break.
    fn line(&self, i: usize) -> &str {
        self.lines.get(i).map_or("", |&(a, b)| &self.text[a..b])
    }

    /// The first 0-based line at or after `from` declaring `name: <name>`.
    pub fn name_line(&self, name: &str, from: usize) -> Option<usize> {
        self.names.get(name)?.iter().copied().find(|&l| l >= from)
    }

    /// 1-based line of `- name: <name>` below the first `<section>:` line; 0 if absent.
    pub fn line_in_section(&self, section: &str, name: &str) -> usize {
        let start = self.keys.get(section).copied().unwrap_or(0);
        self.name_line(name, start).map_or(0, |i| i + 1)
    }

    /// The line after the block that starts at `line` (the first later line
    /// indented no deeper than it, blank lines and comments aside).
    pub fn block_end(&self, line: usize) -> usize {
        let indent = |l: &str| l.len() - l.trim_start().len();
        let own = indent(self.line(line));
        (line + 1..self.lines.len())
            .find(|&i| {
                let l = self.line(i);
                let t = l.trim_start();
                !t.is_empty() && !t.starts_with('#') && indent(l) <= own
            })
            .unwrap_or(self.lines.len())
    }

    /// The first 0-based line at or after `from` that declares `key:`.
    pub fn key_line(&self, key: &str, from: usize) -> Option<usize> {
        (from..self.lines.len()).find(|&i| {
            let t = self.line(i).trim_start().trim_start_matches("- ");
            t.strip_prefix(key).is_some_and(|r| r.trim_start().starts_with(':'))
        })
    }

    /// The first 0-based line in `from..end` that is a list entry for the
    /// test `name` (`- unique`, `- accepted_values:`).
    /// A flow list (`tests: [unique, not_null]`) names it on its key's line.
    pub fn test_line(&self, name: &str, from: usize, end: usize) -> Option<usize> {
        let range = from..end.min(self.lines.len());
        let entry = range.clone().find(|&i| {
            self.line(i)
                .trim_start()
                .strip_prefix("- ")
                .and_then(|r| r.trim_start().strip_prefix(name))
                .is_some_and(|rest| rest.is_empty() || rest.starts_with([':', ' ']))
        });
        entry.or_else(|| {
            range.into_iter().find(|&i| {
                let t = self.line(i).trim_start();
                let list =
                    t.strip_prefix("tests:").or_else(|| t.strip_prefix("data_tests:")).map(str::trim_start);
                list.is_some_and(|l| {
                    l.starts_with('[')
                        && l.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '.'))
                            .any(|w| w == name)
                })
            })
        })
    }
}

/// `- name: x`, `name: "x"` -> `x`.
fn name_entry(line: &str) -> Option<&str> {
    let t = line.trim_start().trim_start_matches("- ").trim_start();
    t.strip_prefix("name:").map(|v| v.trim().trim_matches(['"', '\'']))
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = "version: 2\nsources:\n  - name: crm\n    tables:\n      - name: orders\nmodels:\n  - name: orders\n    columns:\n      - name: \"id\"\n        tests:\n          - unique\n          - not_null\n  - name: customers\n    tests:\n      - dbt_utils.expression: {}\n";

    #[test]
    fn names_are_found_below_their_section() {
        let t = PropertiesText::new(YAML.to_string());
        assert_eq!(t.line_in_section("models", "orders"), 7);
        assert_eq!(t.line_in_section("tables", "orders"), 5);
        assert_eq!(t.line_in_section("models", "customers"), 13);
        assert_eq!(t.line_in_section("models", "missing"), 0);
        assert_eq!(t.name_line("id", 0), Some(8));
    }

    #[test]
    fn tests_are_found_after_a_line() {
        let t = PropertiesText::new(YAML.to_string());
        let end = t.block_end(6);
        assert_eq!(end, 12, "the `orders` model's block ends where `customers` starts");
        assert_eq!(t.test_line("unique", 8, end), Some(10));
        assert_eq!(t.test_line("not_null", 10, end), Some(11));
        assert_eq!(t.test_line("unique", 11, end), None);
        assert_eq!(
            t.test_line("dbt_utils.expression", 6, end),
            None,
            "another model's test is not this one's"
        );
        assert_eq!(t.test_line("dbt_utils.expression", 12, t.block_end(12)), Some(14));
        assert_eq!(t.block_end(12), 15);
    }

    #[test]
    fn crlf_line_breaks_are_not_part_of_a_line() {
        let t = PropertiesText::new("models:\r\n  - name: a\r\n".to_string());
        assert_eq!(t.line_in_section("models", "a"), 2);
    }
}
