-- SPEC §4.6. Quarters fully or partly covered by the waterfall; for a partial
-- quarter, its first/last month are the first/last waterfall months inside it.
with wf as (
    select *, {{ quarter_label('month') }} as quarter from {{ ref('arr_waterfall_monthly') }}
),
quarters as (
    select
        quarter,
        min(month) as first_month,
        max(month) as last_month,
        sum(customers_new) as new_customers,
        cast(sum(new_arr) as decimal(38, 2)) as new_arr,
        cast(sum(net_new_arr) as decimal(38, 2)) as net_new_arr,
        sum(customers_churned) as customers_churned
    from wf
    group by quarter
),
spend as (
    select {{ quarter_label('month') }} as quarter, sum(amount_usd) as spend
    from {{ ref('stg_gtm_spend') }}
    group by 1
),
q as (
    select
        q.*,
        cast(coalesce(s.spend, 0) as decimal(38, 2)) as sm_spend_usd,
        prev.spend as prev_spend,
        last_wf.ending_arr as last_ending_arr,
        last_wf.customers_end as last_customers_end,
        first_wf.customers_start as first_customers_start
    from quarters q
    left join spend s on s.quarter = q.quarter
    left join spend prev on prev.quarter = {{ quarter_label("date_trunc('quarter', q.first_month) - interval '3 months'") }}
    join wf last_wf on last_wf.month = q.last_month
    join wf first_wf on first_wf.month = q.first_month
),
ratios as (
    select
        *,
        {{ ratio('sm_spend_usd', 'new_customers') }} as cac,
        {{ ratio('net_new_arr', 'prev_spend') }} as magic_number,
        {{ ratio('last_ending_arr', 'last_customers_end') }} / 12 as arpa_monthly,
        {{ ratio('customers_churned', 'first_customers_start') }} / 3 as monthly_logo_churn
    from q
)
select
    quarter,
    sm_spend_usd,
    new_customers,
    new_arr,
    net_new_arr,
    cac,
    magic_number,
    arpa_monthly,
    monthly_logo_churn,
    arpa_monthly * {{ var('gross_margin') }} / nullif(monthly_logo_churn, 0) as ltv,
    {{ ratio("arpa_monthly * " ~ var('gross_margin') ~ " / nullif(monthly_logo_churn, 0)", 'cac') }} as ltv_to_cac,
    {{ ratio('cac', "arpa_monthly * " ~ var('gross_margin')) }} as cac_payback_months
from ratios
order by quarter
