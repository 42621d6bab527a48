{% macro money(col, scale=2) -%}
    round({{ col }} / 100.0, {{ scale }})
{%- endmacro %}
{% macro wrap() %}({{ caller() }}){% endmacro %}
{% call wrap() %}select {{ money('x') }}{% endcall %}
{{ var('x', 0) | int + 1 }} {{ "a,b" .split(',') | join('|') }} {{ target.name ~ '_' ~ this.name }}
