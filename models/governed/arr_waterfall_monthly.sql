-- SPEC §4.2. Each account's ARR in M (cur) against M-1 (prev, 0 when absent).
-- "New" when the account never had ARR > 0 before M (its first paying month
-- is M), "reactivation" when it had. ending = starting + new + reactivation
-- + expansion - contraction - churned holds to the cent by construction.
with cmm as (
    select account_id, month, arr_usd from {{ ref('customer_mrr_monthly') }}
),
first_paying as (
    select account_id, min(month) as first_month from cmm group by account_id
),
moves as (
    select
        c.month,
        c.arr_usd as cur,
        coalesce(p.arr_usd, 0) as prev,
        f.first_month
    from cmm c
    join first_paying f on f.account_id = c.account_id
    left join cmm p
      on p.account_id = c.account_id
     and p.month = c.month - interval '1 month'
)
select
    month,
    cast(sum(prev) as decimal(38, 2)) as starting_arr,
    cast(sum(case when prev = 0 and cur > 0 and first_month = month then cur else 0 end) as decimal(38, 2)) as new_arr,
    cast(sum(case when prev = 0 and cur > 0 and first_month < month then cur else 0 end) as decimal(38, 2)) as reactivation_arr,
    cast(sum(case when prev > 0 and cur > prev then cur - prev else 0 end) as decimal(38, 2)) as expansion_arr,
    cast(sum(case when prev > 0 and cur > 0 and cur < prev then prev - cur else 0 end) as decimal(38, 2)) as contraction_arr,
    cast(sum(case when prev > 0 and cur = 0 then prev else 0 end) as decimal(38, 2)) as churned_arr,
    cast(sum(cur) as decimal(38, 2)) as ending_arr,
    cast(sum(cur) - sum(prev) as decimal(38, 2)) as net_new_arr,
    count(case when prev > 0 then 1 end) as customers_start,
    count(case when prev = 0 and cur > 0 and first_month = month then 1 end) as customers_new,
    count(case when prev = 0 and cur > 0 and first_month < month then 1 end) as customers_reactivated,
    count(case when prev > 0 and cur = 0 then 1 end) as customers_churned,
    count(case when cur > 0 then 1 end) as customers_end
from moves
group by month
order by month
