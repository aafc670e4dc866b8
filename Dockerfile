# The image holds the operator and its runtime dependencies only. The wheel is built without
# pinsync.devenv (the servers the test suite starts) and installed without the `test` extra
# (pytest, pyftpdlib, ...). tests/e2e/test_deploy.py runs these same steps in a fresh venv.
# BASE: any image with Python 3.11 and pip; the real-node tests build a local stand-in from Debian
# (hack/build-image.sh base) because they run without a registry.
ARG BASE=python:3.11-slim
FROM ${BASE} AS wheel
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN rm -rf operator/pinsync/devenv && pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM ${BASE}
COPY --from=wheel /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels && useradd -u 65532 -r pinsync
USER 65532
ENTRYPOINT ["pinsync"]
