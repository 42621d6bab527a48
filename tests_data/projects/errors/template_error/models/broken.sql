select
    id
from {{ ref('ok') }}
where id > {{ var('threshold' }}
