-- SPEC §4.4. Every quarter holding the close_date of any staged opportunity
-- (future quarters included); sums over New Business and Expansion only, in
-- USD. Today's quota (active AEs) applies to every quarter.
with opps as (
    select
        {{ quarter_label('close_date') }} as quarter,
        opportunity_type in ('New Business', 'Expansion') as counted,
        stage not in ('Closed Won', 'Closed Lost') as is_open,
        stage,
        forecast_category,
        amount_usd
    from {{ ref('stg_crm_opportunities') }}
    where close_date is not null
),
quota as (
    select cast(coalesce(sum(quarterly_quota), 0) as decimal(38, 2)) as quota_usd
    from {{ ref('stg_crm_users') }}
    where role = 'AE' and is_active
),
sums as (
    select
        quarter,
        cast(coalesce(sum(case when counted and stage = 'Closed Won' then amount_usd end), 0) as decimal(38, 2)) as closed_won_usd,
        cast(coalesce(sum(case when counted and is_open then amount_usd end), 0) as decimal(38, 2)) as open_pipeline_usd,
        cast(coalesce(sum(case when counted and is_open and forecast_category = 'Commit' then amount_usd end), 0) as decimal(38, 2)) as commit_usd,
        cast(coalesce(sum(case when counted and is_open and forecast_category = 'Best Case' then amount_usd end), 0) as decimal(38, 2)) as best_case_usd,
        cast(round(coalesce(sum(case when counted and is_open then amount_usd * case stage
            when 'Prospecting' then cast(0.05 as decimal(3, 2))
            when 'Discovery' then cast(0.10 as decimal(3, 2))
            when 'Demo' then cast(0.20 as decimal(3, 2))
            when 'Proposal' then cast(0.40 as decimal(3, 2))
            when 'Negotiation' then cast(0.70 as decimal(3, 2))
        end end), 0), 2) as decimal(38, 2)) as weighted_pipeline_usd
    from opps
    group by quarter
)
select
    s.quarter,
    q.quota_usd,
    s.closed_won_usd,
    cast(q.quota_usd - s.closed_won_usd as decimal(38, 2)) as remaining_quota_usd,
    s.open_pipeline_usd,
    s.commit_usd,
    s.best_case_usd,
    s.weighted_pipeline_usd,
    case when q.quota_usd - s.closed_won_usd > 0
        then {{ ratio('s.open_pipeline_usd', 'q.quota_usd - s.closed_won_usd') }}
    end as pipeline_coverage
from sums s
cross join quota q
order by s.quarter
