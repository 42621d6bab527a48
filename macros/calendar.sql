{#- Calendar helpers (SPEC §3): months are calendar months, quarters `YYYY-Qn`, all in UTC. -#}

{% macro month_of(expr) -%}
cast(date_trunc('month', {{ expr }}) as date)
{%- endmacro %}

{% macro quarter_label(expr) -%}
concat(cast(cast(date_part('year', {{ expr }}) as int) as varchar), '-Q', cast(cast(date_part('quarter', {{ expr }}) as int) as varchar))
{%- endmacro %}

{#- month_spine(from, to): one row per month `from`..`to` (inclusive), as `month`. -#}
{% macro month_spine(from, to) -%}
unnest(generate_series({{ from }}, {{ to }}, interval '1 month'))
{%- endmacro %}

{#- Divide as DOUBLE; null when the denominator is 0 or null. -#}
{% macro ratio(num, den) -%}
(cast({{ num }} as double) / nullif(cast({{ den }} as double), 0))
{%- endmacro %}
