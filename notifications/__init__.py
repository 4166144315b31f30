"""Outgoing messages: Twilio masking, SMS and realtime emits (issues 3 and 4).

Sits below `dispatch` and never imports it; it knows jobs only through ids."""
