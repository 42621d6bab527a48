{#- SPEC §3. The build's as_of date, its instant (for freshness) and month.
    Default: the largest _loaded_at over all sources (date and instant).
    With the `as_of` var: that date, and the end of that day as the instant. -#}
{%- set as_of = var('as_of', none) -%}
{%- set raw_tables = ['crm_users', 'crm_accounts', 'crm_leads', 'crm_opportunities', 'crm_opportunity_history',
                      'billing_subscriptions', 'fx_rates', 'gtm_spend'] -%}
select
    as_of_date,
    as_of_instant,
    {{ month_of('as_of_date') }} as as_of_month
from (
{%- if as_of %}
    select
        date '{{ as_of }}' as as_of_date,
        arrow_cast(date '{{ as_of }}' + interval '1 day', 'Timestamp(Microsecond, Some("UTC"))') as as_of_instant
{%- else %}
    select
        cast(max(loaded_at) as date) as as_of_date,
        max(loaded_at) as as_of_instant
    from (
    {%- for t in raw_tables %}
        select max(_loaded_at) as loaded_at from {{ source('raw', t) }}{% if not loop.last %} union all{% endif %}
    {%- endfor %}
    ) loads
{%- endif %}
) a
