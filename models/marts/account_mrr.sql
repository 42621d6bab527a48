select
    account_id,
    count(*) as subscriptions,
    sum(mrr_usd) as mrr_usd,
    sum(mrr_usd) * 12 as arr_usd
from {{ ref('subscription_mrr_usd') }}
where start_date <= date '{{ var("as_of") }}'
  and (end_date is null or end_date > date '{{ var("as_of") }}')
group by account_id
