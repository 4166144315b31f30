"""The Socket.IO server: who may connect, which rooms they may join, and location pings.
Services never import it; they push through `dispatch.services.push` after the commit."""
