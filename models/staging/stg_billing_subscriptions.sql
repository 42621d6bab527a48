-- Current subscription lines, with MRR in USD at the rate of the start_date's
-- month: the rate is locked at booking, so currency moves never show up as
-- expansion or contraction (SPEC §2).
select
    s.subscription_id,
    s.account_id,
    s.plan,
    s.mrr,
    s.currency,
    {{ to_usd('s.mrr', 'fx.usd_per_unit') }} as mrr_usd,
    s.start_date,
    s.end_date,
    s.updated_at,
    s._loaded_at
from ({{ dedupe_latest(source('raw', 'billing_subscriptions'), ['subscription_id']) }}) s
{{ fx_join('fx', 's.currency', 's.start_date') }}
