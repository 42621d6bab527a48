-- accounts mart
select *
from {{ ref('stg_acounts') }}
