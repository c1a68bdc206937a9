"""The domain logic of a parkchat instance, one handler per area.

``parkchat.service.ChatService`` is a thin façade over these; ``parkchat.tap``
builds them and hands each its collaborators by constructor. A handler uses
only the public methods of the handlers below it, never their state::

    ConnectionHandler   connections: ids, per-account index, connection limits
    RoomHandler         rooms and presence: membership, local delivery, force-out
    ModerationHandler   bans and kicks
    SessionHandler      tokens: logout, cut-offs, revocations; single session
    AccountHandler      register, login (throttled), passwords
    MessageHandler      room messages: post, notify, history, delete
    DirectMessageHandler  direct messages
    ResyncHandler       catching up after a bus outage
    StateHandler        account state: joined rooms, conversations, read
                        markers, mutes, on every connection of the account
    RefreshTokenHandler long-lived logins: refresh tokens, their rotation

Each one above depends on some of those listed before it, none on one after.
"""
