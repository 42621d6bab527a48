//! Typed errors of the library, one variant per kind of failure.
//!
//! The CLI classifies them once, in [`Error::exit_code`]: a user mistake in the
//! project (exit 2) is never confused with a model that failed at run time
//! (exit 1, reported per model rather than as an `Error`).

use crate::diagnostic::Diagnostic;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// One or more problems in the user's project files, each with a location.
    #[error("{}", .0.iter().map(|d| d.message.as_str()).collect::<Vec<_>>().join("; "))]
    Project(Vec<Diagnostic>),

    /// Bad command-line usage that clap cannot catch (e.g. an unknown model in `show`).
    #[error("{0}")]
    Usage(String),

    /// A file or folder could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },

    /// The query engine failed outside of a model (e.g. while reading a table for `show`).
    #[error(transparent)]
    Engine(#[from] datafusion::error::DataFusionError),

    /// The Delta Lake layer failed outside of a model.
    #[error(transparent)]
    Delta(#[from] deltalake::DeltaTableError),

    /// Another run holds the target's lease.
    #[error("{0}")]
    Busy(String),
}

impl Error {
    /// The process exit status for this error (see README, "Exit codes").
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Project(_) | Error::Usage(_) | Error::Io { .. } => 2,
            Error::Engine(_) | Error::Delta(_) => 1,
            Error::Busy(_) => 3,
        }
    }

    pub fn io(action: &'static str, path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        Error::Io { action, path: path.as_ref().display().to_string(), source }
    }
}

impl From<Diagnostic> for Error {
    fn from(d: Diagnostic) -> Self {
        Error::Project(vec![d])
    }
}
