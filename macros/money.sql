{#-
  fx_join(alias, currency, on_date): join the month's USD rate of `currency`
  (int_fx_rates_monthly: USD is 1; a month without a rate falls back to the
  latest earlier month; none at all: no row, so the amount becomes null).

  to_usd(amount, rate): amount x rate computed exactly (DECIMAL(18,2) x
  DECIMAL(18,8) is DECIMAL(37,10)) and rounded once, per row, to cents, half
  away from zero (SPEC §2).
-#}
{% macro fx_join(alias, currency, on_date) -%}
left join {{ ref('int_fx_rates_monthly') }} {{ alias }}
  on {{ alias }}.currency = {{ currency }}
 and {{ alias }}.month = cast(date_trunc('month', {{ on_date }}) as date)
{%- endmacro %}

{% macro to_usd(amount, rate) -%}
cast(round({{ amount }} * {{ rate }}, 2) as decimal(18, 2))
{%- endmacro %}
