-- Current, non-deleted accounts (a delete after dedupe wins).
select
    account_id,
    account_name,
    industry,
    segment,
    region,
    employee_count,
    owner_id,
    created_at,
    updated_at,
    _loaded_at
from ({{ dedupe_latest(source('raw', 'crm_accounts'), ['account_id'], soft_deletes=true) }}) accounts
