# The RARL operator: kopf + the rarl SDK (no torch). Build from the repo root:
#   docker build -f docker/operator.Dockerfile -t ghcr.io/rarl-dev/rarl-operator:0.1.0 .
FROM python:3.11.10-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY sdk ./sdk
COPY operator ./operator
COPY trainer ./trainer
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install "kopf==1.45.2" "kubernetes==36.0.3" \
 && /opt/venv/bin/pip install --no-deps . \
 && /opt/venv/bin/pip install "pydantic>=2.7,<3" "pyyaml>=6" "typer>=0.12" "rich>=13" "boto3>=1.34"

FROM python:3.11.10-slim-bookworm
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
COPY --from=build /opt/venv /opt/venv
RUN useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin rarl
USER 10001:10001
EXPOSE 8080 8081
ENTRYPOINT ["python", "-m", "rarl_operator"]
