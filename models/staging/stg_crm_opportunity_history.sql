-- One row per (opportunity, change); re-deliveries keep the latest load.
select
    opportunity_id,
    stage,
    forecast_category,
    amount,
    close_date,
    changed_at,
    _loaded_at
from ({{ dedupe_latest(source('raw', 'crm_opportunity_history'), ['opportunity_id', 'changed_at'], by_updated_at=false) }}) history
