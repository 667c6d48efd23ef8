# One image for the API and the workers; only the command differs (see docker-compose.yml).
#
#   docker build -t backprop-service .                      CPU image (target `runtime`)
#   docker build --target gpu -t backprop-service-gpu .     CUDA image with the [gpu] extra
#
# Both images keep the project in a virtual environment at /opt/venv, built in a builder stage
# that installs the dependencies listed in pyproject.toml before any source is copied, so
# editing code rebuilds one small layer. BuildKit (Docker's default builder) builds only the
# stages a target needs: the CPU image never pulls the CUDA base.
#
# Build arguments:
#   PYTHON_IMAGE  base of the CPU stages (builder and runtime share it, so the venv's
#                 interpreter path is the same in both)
#   CUDA_IMAGE    base of the GPU stages; pick a CUDA 12 runtime that your host driver supports
#                 (`nvidia-smi` shows the highest CUDA version the driver runs)
#   EXTRAS        more extras of pyproject.toml to install, comma-separated (e.g. plot)

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:12.6.3-runtime-ubuntu24.04
ARG EXTRAS=""


# ---------------------------------------------------------------------------------------------
# GPU image. The CUDA runtime image ships the libraries CuPy loads (cudart, cuBLAS, cuRAND,
# cuSOLVER, cuSPARSE, NVRTC); the host needs only the NVIDIA driver and the container toolkit.
# Ubuntu 24.04's own Python is 3.12 (pyproject requires >=3.11), so no third-party Python build.
# ---------------------------------------------------------------------------------------------
FROM ${CUDA_IMAGE} AS gpu-base
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --create-home --home-dir /home/backprop \
        --shell /usr/sbin/nologin backprop

FROM gpu-base AS gpu-builder
ARG EXTRAS
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv
WORKDIR /src
# Dependencies first: this layer is rebuilt only when pyproject.toml changes.
COPY pyproject.toml ./
RUN python -c 'import sys, tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; extras = [e for e in sys.argv[1].split(",") if e]; print("\n".join(p["dependencies"] + [d for e in extras for d in p["optional-dependencies"][e]]))' "gpu,${EXTRAS}" > requirements.txt \
    && pip install -r requirements.txt
# Then the project itself (the build context is an allowlist: see .dockerignore).
COPY . ./
RUN pip install --no-deps .

FROM gpu-base AS gpu
COPY --from=gpu-builder /opt/venv /opt/venv
USER backprop
WORKDIR /home/backprop
CMD ["backprop", "worker", "--queues", "training-gpu"]


# ---------------------------------------------------------------------------------------------
# CPU image (the default target, last in this file): python:3.11-slim, no compilers, non-root.
# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder
ARG EXTRAS
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src
# Dependencies first: this layer is rebuilt only when pyproject.toml changes.
COPY pyproject.toml ./
RUN python -c 'import sys, tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; extras = [e for e in sys.argv[1].split(",") if e]; print("\n".join(p["dependencies"] + [d for e in extras for d in p["optional-dependencies"][e]]))' "${EXTRAS}" > requirements.txt \
    && pip install -r requirements.txt
# Then the project itself (the build context is an allowlist: see .dockerignore).
COPY . ./
RUN pip install --no-deps .

FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/backprop \
        --shell /usr/sbin/nologin backprop
COPY --from=builder /opt/venv /opt/venv
USER backprop
WORKDIR /home/backprop
EXPOSE 8000
# The API; workers run the same image with `backprop worker`. Health checks live in
# docker-compose.yml because they differ by role (HTTP for the API, RQ registration for workers).
CMD ["backprop", "api", "--host", "0.0.0.0", "--port", "8000"]
