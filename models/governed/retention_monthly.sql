-- SPEC §4.3, trailing twelve months. For each month M whose M-12 is not
-- before the first month of customer_mrr_monthly: the cohort is the accounts
-- with ARR > 0 in M-12.
with cmm as (
    select account_id, month, arr_usd from {{ ref('customer_mrr_monthly') }}
),
months as (
    select distinct c.month
    from cmm c
    cross join (select min(month) as first_month from cmm) f
    where c.month >= f.first_month + interval '12 months'
),
cohort as (
    select
        m.month,
        p.account_id,
        p.arr_usd as arr_then,
        coalesce(n.arr_usd, 0) as arr_now
    from months m
    join cmm p
      on p.month = m.month - interval '12 months'
     and p.arr_usd > 0
    left join cmm n
      on n.account_id = p.account_id
     and n.month = m.month
)
select
    m.month,
    count(c.account_id) as cohort_accounts,
    cast(coalesce(sum(c.arr_then), 0) as decimal(38, 2)) as cohort_start_arr,
    cast(coalesce(sum(c.arr_now), 0) as decimal(38, 2)) as cohort_end_arr,
    {{ ratio('sum(c.arr_now)', 'sum(c.arr_then)') }} as nrr,
    {{ ratio('sum(least(c.arr_now, c.arr_then))', 'sum(c.arr_then)') }} as grr,
    {{ ratio('count(case when c.arr_now > 0 then 1 end)', 'count(c.account_id)') }} as logo_retention
from months m
left join cohort c on c.month = m.month
group by m.month
order by m.month
