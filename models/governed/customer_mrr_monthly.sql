-- SPEC §4.1. A line is active in month M when start_date <= month_end(M) and
-- (end_date is null or end_date > month_end(M)), i.e. for the months from
-- month(start_date) up to the month before month(end_date). One row per
-- account and month from its first month with MRR > 0 through the as_of
-- month, including months with MRR 0. Lines without an account are left out.
with as_of as (
    select as_of_month from {{ ref('int_as_of') }}
),
lines as (
    select
        s.account_id,
        s.mrr_usd,
        {{ month_of('s.start_date') }} as first_month,
        case
            when s.end_date is null then a.as_of_month
            else least({{ month_of('s.end_date') }} - interval '1 month', a.as_of_month)
        end as last_month
    from {{ ref('stg_billing_subscriptions') }} s
    cross join as_of a
    where s.account_id is not null
),
active as (
    select account_id, mrr_usd, {{ month_spine('first_month', 'last_month') }} as month
    from lines
    where first_month <= last_month
),
account_month as (
    select account_id, month, sum(mrr_usd) as mrr_usd
    from active
    group by account_id, month
),
first_paying as (
    select account_id, min(month) as first_month
    from account_month
    where mrr_usd > 0
    group by account_id
),
grid as (
    select f.account_id, {{ month_spine('f.first_month', 'a.as_of_month') }} as month
    from first_paying f
    cross join as_of a
)
select
    g.account_id,
    g.month,
    cast(coalesce(m.mrr_usd, 0) as decimal(38, 2)) as mrr_usd,
    cast(coalesce(m.mrr_usd, 0) * 12 as decimal(38, 2)) as arr_usd
from grid g
left join account_month m
  on m.account_id = g.account_id
 and m.month = g.month
order by g.account_id, g.month
