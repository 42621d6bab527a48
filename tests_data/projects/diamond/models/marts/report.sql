{{ config(tags=['nightly']) }}
{% set kinds = ['customer', 'month'] %}
select 'customers' as kind, count(*) * {{ var('multiplier') }} as n from {{ ref('by_customer') }}
union all
select 'months' as kind, count(*) * {{ var('multiplier') }} as n from {{ ref('by_month') }}
union all
select 'big_orders' as kind, count(*) as n from {{ ref('big_orders') }}
{% for k in kinds %}
-- covered: {{ k }}
{% endfor %}
