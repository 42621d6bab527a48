{{ config(materialized='table', tags=['t']) }}
{% set cols = ['a', 'b', 'c'] %}
select
{% for c in cols %}
    {{ c }}{% if not loop.last %},{% endif %}
{% endfor %}
from {{ ref('m') }}
{% if is_incremental() %} where a > (select max(a) from {{ this }}) {% endif %}
