-- Current state of each CRM user (SPEC §2: latest updated_at, then _loaded_at).
select
    user_id,
    full_name,
    role,
    team,
    region,
    quarterly_quota,
    hired_at,
    coalesce(is_active, false) as is_active,
    updated_at,
    _loaded_at
from ({{ dedupe_latest(source('raw', 'crm_users'), ['user_id']) }}) users
