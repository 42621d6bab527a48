-- SPEC §4.5. Cohort = month of the lead's created_at (UTC), not bounded by
-- as_of. `won` needs the converted opportunity to be a staged opportunity in
-- Closed Won (deleted or unknown ids are not won).
with leads as (
    select
        l.*,
        o.stage = 'Closed Won' as is_won
    from {{ ref('stg_crm_leads') }} l
    left join {{ ref('stg_crm_opportunities') }} o
      on o.opportunity_id = l.converted_opportunity_id
),
counts as (
    select
        {{ month_of('created_at') }} as month,
        count(*) as leads,
        count(mql_at) as mqls,
        count(sql_at) as sqls,
        count(converted_opportunity_id) as converted,
        count(case when converted_opportunity_id is not null and is_won then 1 end) as won,
        avg(case when converted_opportunity_id is not null and converted_at is not null
            then (date_part('epoch', converted_at) - date_part('epoch', created_at)) / 86400.0
        end) as avg_days_to_convert
    from leads
    group by 1
)
select
    month,
    leads,
    mqls,
    sqls,
    converted,
    won,
    {{ ratio('mqls', 'leads') }} as lead_to_mql,
    {{ ratio('sqls', 'mqls') }} as mql_to_sql,
    {{ ratio('converted', 'sqls') }} as sql_to_opportunity,
    {{ ratio('won', 'converted') }} as opportunity_to_won,
    avg_days_to_convert
from counts
order by month
