# callkpi: one image for every role (ingest, worker, api, migrate).
# Build: docker build -t callkpi .   Run: see docker-compose.yml and docs/scaling.md.

# --- build: wheels for the pinned dependencies and callkpi itself ----------------
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/callkpi
COPY pyproject.toml requirements.lock README.md ./
COPY services ./services
# the lock pins every dependency; the embedded broker and Postgres wheels come
# along (they are dependencies) but production points at real ones by settings
RUN /opt/callkpi/bin/pip install -c requirements.lock . \
 && /opt/callkpi/bin/python -m compileall -q /opt/callkpi

# --- run: the venv on a slim base, as a non-root user ---------------------------
FROM python:3.11-slim-bookworm
RUN groupadd --system --gid 10001 callkpi \
 && useradd --system --uid 10001 --gid callkpi --home-dir /var/lib/callkpi --create-home callkpi
COPY --from=build /opt/callkpi /opt/callkpi
COPY deploy/config /etc/callkpi
ENV PATH=/opt/callkpi/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    CALLKPI_CONFIG=/etc/callkpi/callkpi.example.yaml \
    CALLKPI_DATA_DIR=/var/lib/callkpi
# the worker keeps Faust's table state under its working directory
WORKDIR /var/lib/callkpi
USER callkpi
EXPOSE 8000 8001 8002
ENTRYPOINT ["callkpi"]
CMD ["api", "--host", "0.0.0.0"]
