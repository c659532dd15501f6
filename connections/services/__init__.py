"""Connecting, reconnecting and disconnecting brokerage accounts: the rules views, admin
actions and tasks call; none of them re-implements a rule. One job per module:

    failures    what a person sees when a connect or reconnect fails (`FAILURES`, `ConnectFailed`)
    connect     connect and reconnect: `connect_authorize_url`, `connection_reconnect_url`,
                `connection_authorize_complete`
    callback    the broker's callback, checked and finished: `connection_callback_finish`
    disconnect  disconnect and revocation at the broker: `connection_disconnect`, `connection_revoke_retry`,
                `connection_revocation_preview`
    edits       the person's own edits: `connection_rename`, `connection_archive`, `connection_remove`

    callback.connection_callback_finish(request, slug=..., params=...)   -> CallbackResult  (callback view)
    connect.connection_authorize_complete(user=..., flow=..., code=...)  -> ConnectOutcome  (callback, hand-offs)
    disconnect.connection_disconnect(connection, actor)                  -> DisconnectOutcome
"""
