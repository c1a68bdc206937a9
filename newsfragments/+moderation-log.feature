Moderation and password actions (ban, unban, kick, delete, password) are logged under `parkchat.moderation` with an `action` field, for an audit trail in the server log.
