-- One rate per (currency, month); the latest load wins.
select
    currency,
    month,
    usd_per_unit,
    _loaded_at
from ({{ dedupe_latest(source('raw', 'fx_rates'), ['currency', 'month'], by_updated_at=false) }}) rates
