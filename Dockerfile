FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN pip install --no-cache-dir . && useradd -u 65532 -r pinsync
USER 65532
ENTRYPOINT ["pinsync"]
