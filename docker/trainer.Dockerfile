# The RARL trainer: torch (CUDA) + TRL/PEFT + rarl_trainer, run by the operator as
#   python -m rarl_trainer.entrypoint <torchrun args> -m rarl_trainer --config /etc/rarl/job.yaml --resume auto --run-dir /workspace/run
# Build from the repo root:
#   docker build -f docker/trainer.Dockerfile -t ghcr.io/rarl-dev/rarl-trainer:0.1.0 .
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    HOME=/workspace HF_HOME=/workspace/.cache/huggingface
WORKDIR /src
COPY pyproject.toml README.md ./
COPY sdk ./sdk
COPY operator ./operator
COPY trainer ./trainer
# torch comes from the base image; the rest is pinned by the extras' lower bounds.
RUN pip install ".[trainer]" && rm -rf /src \
 && useradd --uid 1000 --create-home --home-dir /workspace --shell /usr/sbin/nologin rarl \
 && mkdir -p /workspace/run && chown -R 1000:1000 /workspace
WORKDIR /workspace
USER 1000:1000
ENTRYPOINT []
CMD ["torchrun", "--help"]
