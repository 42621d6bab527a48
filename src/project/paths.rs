//! Paths and names that must stay inside their root.
//!
//! Every folder tally reads project files from, writes to or deletes (model,
//! seed, macro and test paths, `target-path`, `clean-targets`) is a path
//! relative to the project that, once normalised, stays inside it; every file
//! it reads resolves, through symlinks, inside it too. Node names become
//! folder names in the warehouse and SQL identifiers, so they are limited to
//! a portable set and may not take the names tally's own tables use.

use std::path::{Component, Path, PathBuf};

/// Why a configured path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Escape {
    #[error("is an absolute path")]
    Absolute,
    #[error("leaves the project folder (`..` above it)")]
    Parent,
    #[error("is the project folder itself")]
    Root,
    #[error("resolves through a symlink to {0}, outside the project folder")]
    Symlink(PathBuf),
}

/// `rel` (a path the project configures) normalised without touching the
/// disk: `.` dropped, `a/..` folded. An absolute path, or one whose `..`
/// climbs above the project, is refused.
pub fn normalise(rel: &Path) -> Result<PathBuf, Escape> {
    let mut out = PathBuf::new();
    for c in rel.components() {
        match c {
            Component::Prefix(_) | Component::RootDir => return Err(Escape::Absolute),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return Err(Escape::Parent);
                }
            }
            Component::Normal(n) => out.push(n),
        }
    }
    Ok(out)
}

/// [`normalise`], then check on disk that the deepest existing ancestor of
/// `dir/rel` resolves inside `dir` (a canonical path): a symlinked folder
/// cannot carry a configured path outside the project.
pub fn inside(dir: &Path, rel: &Path) -> Result<PathBuf, Escape> {
    let norm = normalise(rel)?;
    let mut probe = dir.join(&norm);
    loop {
        if let Ok(real) = std::fs::canonicalize(&probe) {
            if !real.starts_with(dir) {
                return Err(Escape::Symlink(real));
            }
            return Ok(norm);
        }
        if !probe.pop() || !probe.starts_with(dir) {
            return Ok(norm);
        }
    }
}

/// Like [`inside`], for a folder that is deleted or written wholesale: the
/// project folder itself is refused too.
pub fn strictly_inside(dir: &Path, rel: &Path) -> Result<PathBuf, Escape> {
    let norm = inside(dir, rel)?;
    if norm.as_os_str().is_empty() {
        return Err(Escape::Root);
    }
    Ok(norm)
}

/// Names tally's own tables and folders take in the warehouse.
pub const RESERVED_NAMES: &[&str] = &["dq_scorecard", "dq_history", "_tally", "_audit"];

/// Why a node name was refused, or None when it is valid: 1-128 ASCII
/// letters, digits, `_` or `-`, not one of [`RESERVED_NAMES`] (in any case),
/// and not starting with `__tally`.
pub fn invalid_name(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("is empty".into());
    }
    if name.len() > 128 {
        return Some(format!("is {} characters long; the limit is 128", name.len()));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-')) {
        return Some(format!("contains {c:?}; names may use only ASCII letters, digits, `_` and `-`"));
    }
    let lower = name.to_ascii_lowercase();
    if RESERVED_NAMES.contains(&lower.as_str()) || lower.starts_with("__tally") {
        return Some("is reserved for tally's own tables".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalise_folds_dots_and_refuses_escapes() {
        assert_eq!(normalise(Path::new("target/./x/../y")).unwrap(), PathBuf::from("target/y"));
        assert_eq!(normalise(Path::new("target/..")).unwrap(), PathBuf::new());
        assert_eq!(normalise(Path::new("target/../..")), Err(Escape::Parent));
        assert_eq!(normalise(Path::new("/etc")), Err(Escape::Absolute));
    }

    #[test]
    fn strictly_inside_refuses_the_root_and_symlinks_out() {
        let d = tempfile::tempdir().unwrap();
        let dir = std::fs::canonicalize(d.path()).unwrap();
        assert_eq!(strictly_inside(&dir, Path::new("target/..")), Err(Escape::Root));
        assert_eq!(strictly_inside(&dir, Path::new("target")).unwrap(), PathBuf::from("target"));
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.join("out")).unwrap();
        assert!(matches!(strictly_inside(&dir, Path::new("out/target")), Err(Escape::Symlink(_))));
    }

    #[test]
    fn names_are_portable_and_not_reserved() {
        assert_eq!(invalid_name("stg_accounts"), None);
        assert_eq!(invalid_name("daily-revenue2"), None);
        assert!(invalid_name("x%2F..%2FESCAPED").unwrap().contains("'%'"));
        assert!(invalid_name("DQ_History").unwrap().contains("reserved"));
        assert!(invalid_name("__tally_staged__x").unwrap().contains("reserved"));
        assert!(invalid_name("a b").is_some());
        assert!(invalid_name("é").is_some());
    }
}
