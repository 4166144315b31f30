# dispatch application image: one image for web, worker, sweeper and the migrate job
# (docker-compose.yml picks the command).
# Front-end libraries (Leaflet, socket.io-client) come from npm, pinned by package-lock.json.
FROM node:20-slim AS frontend
WORKDIR /build
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

FROM python:3.11-slim

# Production unless told otherwise: no start without SECRET_KEY (dispatch/infra/config.py).
ENV DISPATCH_ENV=production \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app

# libpq5 for psycopg when it is not the self-contained [binary] build.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpq5 \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --user-group --uid 10001 app

WORKDIR /app
# Runtime dependencies from the lock (exact versions, every file checked against its hash; no
# dev tools), in a layer of their own that is rebuilt only when the lock changes.
COPY requirements/main.lock requirements/main.lock
RUN pip install -r requirements/main.lock

# The app runs from the source in /app (PYTHONPATH): templates/, static/ and migrations/ sit
# beside the packages, where create_app looks for them. dispatch itself is installed without
# dependencies (they came from the lock); pip check fails the build if the lock lacks one
# that pyproject.toml declares (run make lock).
COPY . .
COPY --from=frontend /build/node_modules /app/node_modules
RUN pip install --no-deps . && pip check

USER app
EXPOSE 8000
CMD ["gunicorn", "--bind", "0.0.0.0:8000", "--worker-class", "gevent", \
     "--worker-connections", "10000", "--workers", "1", "--access-logfile", "-", "dispatch.entrypoints.wsgi:app"]
