//! `tally init <dir>`: a small project that builds at once on the local profile.

use std::path::Path;

use crate::error::{Error, Result};

const FILES: &[(&str, &str)] = &[
    (
        "tally_project.yml",
        "name: my_project\n\
         vars:\n  min_mrr: 0\n\
         models:\n  my_project:\n    staging:\n      +materialized: view\n    marts:\n      +materialized: table\n\
         seeds:\n  my_project:\n    +column_types:\n      monthly_price: decimal(10,2)\n      start_date: date\n",
    ),
    (
        "seeds/plans.csv",
        "plan_id,plan_name,monthly_price\n1,Starter,49.00\n2,Growth,199.00\n3,Enterprise,999.00\n",
    ),
    (
        "seeds/subscriptions.csv",
        "subscription_id,account_id,plan_id,seats,start_date\ns1,a1,1,3,2024-01-15\ns2,a2,2,10,2024-02-01\ns3,a3,3,1,2024-02-20\ns4,a1,2,5,2024-03-01\n",
    ),
    (
        "models/staging/stg_subscriptions.sql",
        "select\n    subscription_id,\n    account_id,\n    plan_id,\n    seats,\n    cast(start_date as date) as start_date\nfrom {{ ref('subscriptions') }}\n",
    ),
    (
        "models/marts/account_mrr.sql",
        "select\n    s.account_id,\n    sum(s.seats * p.monthly_price) as mrr\nfrom {{ ref('stg_subscriptions') }} s\njoin {{ ref('plans') }} p on p.plan_id = s.plan_id\ngroup by s.account_id\nhaving sum(s.seats * p.monthly_price) > {{ var('min_mrr') }}\n",
    ),
    (
        "models/schema.yml",
        "version: 2\nmodels:\n  - name: stg_subscriptions\n    description: One row per subscription.\n  - name: account_mrr\n    description: Monthly recurring revenue per account.\n    columns:\n      - name: account_id\n        description: The account.\n      - name: mrr\n        description: Sum of seats x monthly price.\n",
    ),
    ("macros/.gitkeep", ""),
    (".gitignore", "target/\nwarehouse/\n"),
];

pub fn init(dir: &Path) -> Result<()> {
    if dir.exists() && dir.read_dir().map(|mut d| d.next().is_some()).unwrap_or(true) {
        return Err(Error::Usage(format!(
            "{} exists and is not empty; choose a new directory",
            dir.display()
        )));
    }
    for (rel, text) in FILES {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io("cannot create", parent, e))?;
        }
        std::fs::write(&path, text).map_err(|e| Error::io("cannot write", &path, e))?;
    }
    println!("Created a tally project in {}.\nNext: cd {} && tally build", dir.display(), dir.display());
    Ok(())
}
