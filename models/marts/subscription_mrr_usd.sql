-- The rate of the subscription's start month, else the latest earlier month
-- with a rate; USD is always 1. No rate at all: mrr_usd is null.
with rates as (
    select
        s.subscription_id,
        r.usd_per_unit,
        row_number() over (partition by s.subscription_id order by r.month desc) as rn
    from {{ ref('stg_subscriptions') }} s
    join {{ ref('fx_rates') }} r
      on r.currency = s.currency
     and r.month <= s.start_date
)
select
    s.subscription_id,
    s.account_id,
    s.start_date,
    s.end_date,
    s.mrr,
    s.currency,
    cast(round(s.mrr * case when s.currency = 'USD' then 1 else rates.usd_per_unit end, 2) as decimal(18,2)) as mrr_usd
from {{ ref('stg_subscriptions') }} s
left join rates
  on rates.subscription_id = s.subscription_id
 and rates.rn = 1
