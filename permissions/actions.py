"""The catalogue of action names a role's statement can allow or deny (docs/contract.md, section 2).

Every name is also a guardian object permission on `Account`, so a check is
`user.has_perm(action, account)`.
"""

BATCH_ACTIONS = (
    "create_upload_url",
    "invalidate_upload_url",
    "create_batch",
    "get_batch",
    "get_batches",
    "update_batch",
    "delete_batch",
)

TWIN_ACTIONS = (
    "create_twin",
    "get_twin",
    "update_twin",
    "terminate_twin",
    "scan_twins",
    "create_twin_identity",
    "get_twin_identities",
    "delete_twin_identity",
    "resolve_twin_identity",
    "add_twin_ledger_entry",
    "get_twin_ledger_entry",
    "update_twin_ledger_entry",
    "delete_twin_ledger_entry",
)

TENANT_ACTIONS = (
    "who_am_i",
    "create_user_role",
    "get_user_role",
    "get_user_roles",
    "update_user_role",
    "delete_user_role",
    "create_user",
    "get_user",
    "get_users",
    "update_user",
    "delete_user",
    "create_user_secret_pin",
    "get_user_secret",
    "update_user_secret",
    "delete_user_secret",
)

NOTIFICATION_ACTIONS = (
    "webhook_subscribe",
    "webhook_confirm_subscription",
    "webhook_unsubscribe",
    "webhook_refresh_subscription",
    # The account's subscriptions with their callback URLs, and ending one without its token.
    "get_webhook_subscriptions",
    "delete_webhook_subscription",
)

# docs/contract.md, section 12: an account's and a user's hourly usage.
USAGE_ACTIONS = (
    "get_account_usage",
    "get_user_usage",
)

ACTIONS = BATCH_ACTIONS + TWIN_ACTIONS + TENANT_ACTIONS + NOTIFICATION_ACTIONS + USAGE_ACTIONS
