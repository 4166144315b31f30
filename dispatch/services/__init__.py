"""Domain services: plain functions taking a session and arguments, callable from a view,
a Socket.IO handler, an RQ task, the simulation or a test alike."""
