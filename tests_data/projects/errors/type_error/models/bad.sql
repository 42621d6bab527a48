{{ config(materialized='table') }}
select
    id,
    amount + true as broken
from {{ ref('base') }}
