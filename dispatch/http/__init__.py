"""HTTP: the JSON API (blueprints, schemas, serializers), the pages, authentication, and the
one place a refusal becomes an HTTP status (`dispatch.http.errors`)."""
