-- One amount per (month, department, category); the latest load wins.
select
    month,
    department,
    category,
    amount_usd,
    _loaded_at
from ({{ dedupe_latest(source('raw', 'gtm_spend'), ['month', 'department', 'category'], by_updated_at=false) }}) spend
