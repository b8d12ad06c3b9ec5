# One image for every qrflow service; docker-compose.yml picks the subcommand.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /srv/qrflow
COPY pyproject.toml README.md celeryconfig.py ./
COPY app ./app
COPY workers ./workers
COPY tasks ./tasks
RUN pip install . && useradd --create-home --uid 10001 qrflow && mkdir -p /data && chown qrflow /data
USER qrflow
ENV QRFLOW_DATA_DIR=/data QRFLOW_ENVIRONMENT=production
ENTRYPOINT ["qrflow"]
CMD ["--help"]
