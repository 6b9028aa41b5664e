# The RARL trainer: torch (CUDA) + TRL/PEFT + rarl_trainer, run by the operator as
#   python -m rarl_trainer.entrypoint <torchrun args> -m rarl_trainer --config /etc/rarl/job.yaml --resume auto --run-dir /workspace/run
# Build from the repo root:
#   docker build -f docker/trainer.Dockerfile -t ghcr.io/rarl-dev/rarl-trainer:0.1.0 .
#
# Versions: everything the tests run, through constraints-trainer.txt (torch 2.13.0, transformers,
# trl, peft, accelerate, datasets, tokenizers, safetensors, huggingface-hub pinned exactly; `make
# setup` and CI install through the same file). Why each choice:
# * torch 2.13.0 from PyPI: its Linux x86_64 wheel is a CUDA 13.0 build that brings its own CUDA
#   user-space libraries (cuda-toolkit 13.0.3, cuDNN, NCCL) and triton 3.7.1 as wheels (read from
#   the wheel's metadata), so the base needs no CUDA toolkit; the node's NVIDIA driver must support
#   CUDA 13 (NVIDIA's CUDA 13.0 release notes list the minimum driver). transformers 5 disables
#   torch < 2.6 (transformers/utils/import_utils.py), which is what broke the old 2.5.1 image; torch
#   2.13's torchrun reads TORCH_ELASTIC_SHUTDOWN_TIMEOUT (torch/distributed/launcher/api.py), so the
#   preemption window the operator sets applies instead of torch's 30 s.
# * A C compiler (build-essential): TRL's loss runs Triton kernels on CUDA
#   (trl/kernels/chunked_logprob.py) and torch.compile (the rollout engine's decode step) emits
#   Triton kernels too; Triton compiles a small C launcher per kernel signature at first launch and
#   fails with "Failed to find C compiler" without one (e.g. sgl-project/sglang#1067, after a move
#   from a -devel to a -runtime CUDA image). Triton also needs the interpreter's headers (Python.h):
#   the docker-library Python images install them; docker/check_install.sh checks both at build time.
# * Base python:3.11.10-slim-bookworm, the operator image's base (docker/operator.Dockerfile): the
#   tests run CPython 3.11. Neither that tag nor this Dockerfile could be pulled or built where it
#   was written (no docker daemon); the install commands below were run in a fresh venv with the CPU
#   torch wheel instead: the commands are in docker/check_install.sh, which the build runs too.
# * A cluster whose driver predates CUDA 13: build with another torch index, e.g.
#     --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
#   (not tested: whether that index carries torch 2.13.0 was not checked).
FROM python:3.11.10-slim-bookworm
ARG TORCH_INDEX_URL=
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 \
    HOME=/workspace HF_HOME=/workspace/.cache/huggingface
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY constraints-trainer.txt pyproject.toml README.md ./
COPY sdk ./sdk
COPY operator ./operator
COPY trainer ./trainer
COPY docker/check_install.sh ./docker/check_install.sh
# torch first (from TORCH_INDEX_URL when given, else PyPI), then the package with every library pinned.
RUN pip install -c constraints-trainer.txt ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} torch \
 && pip install -c constraints-trainer.txt ".[trainer]" \
 && sh docker/check_install.sh --image \
 && rm -rf /src /tmp/rarl-check-install \
 && useradd --uid 1000 --create-home --home-dir /workspace --shell /usr/sbin/nologin rarl \
 && mkdir -p /workspace/run && chown -R 1000:1000 /workspace
WORKDIR /workspace
USER 1000:1000
ENTRYPOINT []
CMD ["torchrun", "--help"]
