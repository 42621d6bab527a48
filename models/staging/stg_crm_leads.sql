-- Current, non-deleted leads.
select
    lead_id,
    email,
    company,
    lead_source,
    status,
    owner_id,
    created_at,
    mql_at,
    sql_at,
    converted_at,
    converted_account_id,
    converted_opportunity_id,
    updated_at,
    _loaded_at
from ({{ dedupe_latest(source('raw', 'crm_leads'), ['lead_id'], soft_deletes=true) }}) leads
