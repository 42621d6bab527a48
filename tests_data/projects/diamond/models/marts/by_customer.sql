select customer_id, count(*) as orders, sum(amount_cents) as cents
from {{ ref('stg_orders') }}
group by customer_id
