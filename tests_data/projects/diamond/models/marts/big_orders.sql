{{ config(materialized='ephemeral') }}
select order_id, customer_id from {{ ref('stg_orders') }} where amount >= 20
