-- One USD rate per currency and month, for every month any amount may need
-- (SPEC §2): the month's own rate, else the latest earlier month's; USD is 1
-- in every month. A currency with no rate at or before a month has no row
-- for it, so amounts in that month convert to null.
with bounds as (
    select min(m) as first_month, max(m) as last_month
    from (
        select month as m from {{ ref('stg_fx_rates') }}
        union all
        -- A month is monotonic in its date, so the bounds of the months are
        -- the months of the dates' bounds, which Parquet footers hold (no scan).
        select {{ month_of('d') }} from (
            select min(start_date) as d from {{ source('raw', 'billing_subscriptions') }}
            union all
            select max(start_date) from {{ source('raw', 'billing_subscriptions') }}
            union all
            select min(close_date) from {{ source('raw', 'crm_opportunities') }}
            union all
            select max(close_date) from {{ source('raw', 'crm_opportunities') }}
        ) dates
        union all
        select as_of_month from {{ ref('int_as_of') }}
    ) months
),
spine as (
    select {{ month_spine('first_month', 'last_month') }} as month from bounds
),
rates as (
    select currency, month, usd_per_unit from {{ ref('stg_fx_rates') }} where currency <> 'USD'
),
latest as (
    select r.currency, s.month, max(r.month) as rate_month
    from spine s
    join rates r on r.month <= s.month
    group by r.currency, s.month
)
select l.currency, l.month, r.usd_per_unit, l.rate_month
from latest l
join rates r on r.currency = l.currency and r.month = l.rate_month
union all
select 'USD' as currency, month, cast(1 as decimal(18, 8)) as usd_per_unit, month as rate_month
from spine
