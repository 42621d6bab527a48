select
    id,
    amont
from {{ ref('base') }}
