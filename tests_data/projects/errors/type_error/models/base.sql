{{ config(materialized='table') }}
select 1 as id, cast(2.50 as decimal(18,2)) as amount, 'x' as label
