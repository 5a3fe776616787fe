# The mmlake image used by docker-compose.yml: the registry, the command line, Ray head and
# workers, Spark master and workers (Java for Spark; pyspark's spark-class on PATH), so every
# engine process runs the project's own code and Python.
FROM python:3.11-slim-bookworm
RUN apt-get update \
    && apt-get install -y --no-install-recommends tar ca-certificates default-jre-headless procps \
       tesseract-ocr tesseract-ocr-eng \
    && rm -rf /var/lib/apt/lists/*
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PYSPARK_PYTHON=python SPARK_LOCAL_IP=0.0.0.0
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
RUN pip install --no-cache-dir -c constraints.txt -e '.[engines]' \
    && useradd --create-home --uid 10001 mmlake && mkdir -p /data && chown mmlake /data
USER 10001
