{#-
  dedupe_latest(relation, key, by_updated_at=true, soft_deletes=false)

  SPEC §2: one row per key, the latest `updated_at` winning (a null
  `updated_at` loses), ties broken by the latest `_loaded_at`; tables without
  `updated_at` keep the latest `_loaded_at`. Rows with a null key (or a null
  part of a composite key) are dropped. With `soft_deletes`, rows whose winning
  version is deleted are dropped *after* deduplication, so a later delete wins;
  a null `is_deleted` means not deleted.
-#}
{% macro dedupe_latest(relation, key, by_updated_at=true, soft_deletes=false) -%}
{%- set order -%}
order by {{ key | join(', ') }}, {% if by_updated_at %}updated_at desc nulls last, {% endif %}_loaded_at desc nulls last
{%- endset -%}
select * exclude (_dedupe_first) from (
    select
        *,
        {% for k in key %}(lag({{ k }}) over ({{ order }}) is distinct from {{ k }}){% if not loop.last %}
        or {% endif %}{% endfor %} as _dedupe_first
    from {{ relation }}
    where {% for k in key %}{{ k }} is not null{% if not loop.last %} and {% endif %}{% endfor %}
) ranked
where _dedupe_first
{%- if soft_deletes %}
  and coalesce(is_deleted, false) = false
{%- endif %}
{%- endmacro %}
