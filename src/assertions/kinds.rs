//! The registry of check kinds: one line per kind, its type (in a file of
//! its own) and the name outcomes, reports and the scorecard give it. The
//! [`Kind`] enum and its [`KindTag`] are generated from it, so a match on
//! either is checked for every kind.

use serde::Serialize;

pub use super::accepted_values::AcceptedValues;
pub use super::completeness::Completeness;
pub use super::custom::Custom;
pub use super::duplicates::Duplicates;
pub use super::expression::Expression;
pub use super::freshness::Freshness;
use super::kind::{Args, CheckKind, Registered};
pub use super::reconciliation::Reconciliation;
pub use super::relationships::Relationships;
pub use super::row_count::RowCount;
use super::verdict::Measure;
use crate::diagnostic::Diagnostic;

macro_rules! registry {
    ($($kind:ident = $name:literal),* $(,)?) => {
        /// What a check asserts, with its arguments.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Kind {
            $($kind($kind)),*
        }

        /// A check's kind without its arguments, as outcomes, reports and
        /// the scorecard name it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
        pub enum KindTag {
            $(#[serde(rename = $name)] $kind),*
        }

        impl KindTag {
            pub fn as_str(&self) -> &'static str {
                match self {
                    $(KindTag::$kind => $name),*
                }
            }

            /// What an outcome of this kind found, in words.
            pub fn describe(&self, m: &Measure) -> String {
                match self {
                    $(KindTag::$kind => <$kind as Registered>::describe(m)),*
                }
            }
        }

        impl Kind {
            /// Which kind it is, without its arguments: what an outcome records.
            pub fn tag(&self) -> KindTag {
                match self {
                    $(Kind::$kind(_) => KindTag::$kind),*
                }
            }

            /// What every kind answers (see [`CheckKind`]).
            pub fn check(&self) -> &dyn CheckKind {
                match self {
                    $(Kind::$kind(k) => k),*
                }
            }

            /// The kind declared as `test` (no package prefix), or None
            /// when no kind is declared so.
            pub(super) fn parse(test: &str, args: &Args) -> Option<Result<Kind, Diagnostic>> {
                $(
                    if <$kind as Registered>::NAMES.contains(&test) {
                        return Some(<$kind as Registered>::parse(args, test).map(Kind::$kind));
                    }
                )*
                None
            }

            /// Every test name a kind is declared as.
            pub fn known_tests() -> impl Iterator<Item = &'static str> {
                [$(<$kind as Registered>::NAMES),*].into_iter().flatten().copied()
            }
        }
    };
}

registry! {
    Completeness = "completeness",
    Duplicates = "duplicates",
    AcceptedValues = "accepted_values",
    Relationships = "relationships",
    RowCount = "row_count",
    Expression = "expression",
    Freshness = "freshness",
    Reconciliation = "reconciliation",
    Custom = "custom",
}

impl std::fmt::Display for KindTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Kind {
    pub fn name(&self) -> &'static str {
        self.tag().as_str()
    }

    /// The other relation this check reads, if any.
    pub fn other_relation(&self) -> Option<&str> {
        self.check().other().map(|(to, _)| to)
    }

    pub fn columns(&self) -> Vec<String> {
        self.check().columns()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_test_name_is_one_kind() {
        let names: Vec<&str> = Kind::known_tests().collect();
        let unique: std::collections::BTreeSet<&str> = names.iter().copied().collect();
        assert_eq!(names.len(), unique.len(), "{names:?}");
        assert!(names.contains(&"not_null") && names.contains(&"unique_combination_of_columns"));
    }

    #[test]
    fn tags_serialize_as_their_names() {
        assert_eq!(serde_json::to_string(&KindTag::AcceptedValues).unwrap(), "\"accepted_values\"");
        assert_eq!(KindTag::RowCount.to_string(), "row_count");
    }
}
