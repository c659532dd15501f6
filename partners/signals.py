"""What happens to connect sessions, for whoever keeps an audit of it (the api app does).

    connect_session_event.send(sender=ConnectSession, session=..., action="created"|"opened"|"completed"|"failed",
                               result="...")
"""

from django.dispatch import Signal

connect_session_event = Signal()
