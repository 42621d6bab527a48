-- Current, non-deleted opportunities, with the amount in USD at the rate of
-- the close_date's month (SPEC §2).
select
    o.opportunity_id,
    o.account_id,
    o.owner_id,
    o.opportunity_type,
    o.stage,
    o.forecast_category,
    o.amount,
    o.currency,
    {{ to_usd('o.amount', 'fx.usd_per_unit') }} as amount_usd,
    o.close_date,
    o.created_at,
    o.updated_at,
    o._loaded_at
from ({{ dedupe_latest(source('raw', 'crm_opportunities'), ['opportunity_id'], soft_deletes=true) }}) o
{{ fx_join('fx', 'o.currency', 'o.close_date') }}
