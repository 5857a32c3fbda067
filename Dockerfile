# One image for every redray node; docker-compose.yml runs it as the head and as workers.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    REDRAY_STATE_DIR=/tmp/redray

WORKDIR /opt/redray
COPY pyproject.toml setup.cfg README.md ./
COPY redray ./redray
RUN pip install .

# Overridden by docker-compose.yml; alone, this image shows the cluster it can reach.
CMD ["redray", "status"]
