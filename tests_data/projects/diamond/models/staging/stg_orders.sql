select
    order_id,
    customer_id,
    amount,
    {{ cents('amount') }} as amount_cents,
    cast(ordered_at as date) as ordered_on
from {{ ref('orders') }}
