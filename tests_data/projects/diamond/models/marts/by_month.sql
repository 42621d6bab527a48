select date_trunc('month', ordered_on) as month, sum(amount_cents) as cents
from {{ ref('stg_orders') }}
group by 1
