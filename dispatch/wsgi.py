"""WSGI entry point: `gunicorn dispatch.wsgi:app`."""

from dispatch import create_app

app = create_app()
