select
    subscription_id,
    account_id,
    plan,
    currency,
    mrr,
    start_date,
    end_date
from {{ ref('subscriptions') }}
where subscription_id is not null
