# The mmlake image used by docker-compose.yml (tools, Ray head and workers).
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends tar ca-certificates && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/mmlake
COPY pyproject.toml constraints.txt README.md ./
COPY datalake datalake
COPY pipelines pipelines
COPY registry registry
COPY loader loader
COPY synth synth
COPY dashboards dashboards
COPY training training
COPY mmlake mmlake
RUN pip install --no-cache-dir -c constraints.txt -e '.[engines]'
