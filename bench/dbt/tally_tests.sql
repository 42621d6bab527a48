{#- tally's own checks as dbt generic tests (DuckDB SQL), so the bench's dbt
    project runs the same checks as `tally build`. Each returns failing rows,
    the way dbt tests do. bench/dbt_project.py renames `completeness:` to
    `tally_completeness:` and so on when it copies the YAML. -#}

{% test tally_completeness(model, column_name=none, columns=none, min_ratio=1.0) %}
{%- set cols = columns if columns else [column_name] -%}
select * from (
    select count(*) as n,
           count(case when {% for c in cols %}{{ c }} is not null{% if not loop.last %} and {% endif %}{% endfor %} then 1 end) as complete
    from {{ model }}
) t
where n > 0 and cast(complete as double) / n < {{ min_ratio }}
{% endtest %}

{% test tally_duplicates(model, column_name=none, columns=none, max_ratio=0.0) %}
{%- set cols = columns if columns else [column_name] -%}
with keys as (
    select {{ cols | join(', ') }} from {{ model }}
    where {% for c in cols %}{{ c }} is not null{% if not loop.last %} and {% endif %}{% endfor %}
)
select * from (
    select count(*) as n, (select count(*) from (select distinct * from keys) d) as distinct_keys from keys
) t
where n > 0 and cast(n - distinct_keys as double) / n > {{ max_ratio }}
{% endtest %}

{% test tally_expression(model, expression) %}
select * from {{ model }} where ({{ expression }}) is false
{% endtest %}

{% test tally_row_count(model, min=none, max=none) %}
select * from (select count(*) as n from {{ model }}) t
where {% if min is not none %}n < {{ min }}{% else %}false{% endif %} or {% if max is not none %}n > {{ max }}{% else %}false{% endif %}
{% endtest %}

{% test tally_reconciliation(model, measure, to, to_measure, by=[], tolerance=0) %}
with a as (select {% for b in by %}{{ b }}, {% endfor %}{{ measure }} as m from {{ model }}{% if by %} group by {{ by | join(', ') }}{% endif %}),
     b as (select {% for b in by %}{{ b }}, {% endfor %}{{ to_measure }} as m from {{ to }}{% if by %} group by {{ by | join(', ') }}{% endif %})
select * from a full outer join b {% if by %}using ({{ by | join(', ') }}){% else %}on true{% endif %}
where abs(coalesce(a.m, 0) - coalesce(b.m, 0)) > {{ tolerance }}
{% endtest %}

{% test tally_freshness(model, hours, column=none, upstream=none) %}
select * from (
{%- if upstream %}
    select min(newest) as newest from (
    {%- for t in upstream %}
        select max(_loaded_at) as newest from {{ source('raw', t) }}{% if not loop.last %} union all{% endif %}
    {%- endfor %}
    ) n
{%- else %}
    select max({{ column }}) as newest from {{ model }}
{%- endif %}
) f
where newest is null or newest < timestamptz '{{ var("bench_as_of") }}' - interval {{ hours }} hour
{% endtest %}
