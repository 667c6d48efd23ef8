# The CPU image: one image for the API and the workers; only the command differs (see
# docker-compose.yml). The CUDA image has a file of its own, Dockerfile.gpu, so that a plain
# `docker build .` with any builder (the classic one included) never reads or pulls a CUDA base.
#
#   docker build -t backprop-service .
#   docker build --build-arg PYTHON_IMAGE=registry.example/python:3.11-slim-bookworm .
#
# Everything installed comes from the hashed locks in requirements/ (refreshed with `./dev lock`),
# so the image holds exactly what CI tested. A wheelhouse made by `./dev wheelhouse`
# (requirements/wheelhouse/, ignored by git) is installed from instead of PyPI: then the build
# needs no network at all. That is how a host whose HTTPS goes through a proxy with its own CA
# builds: the CA stays on the host and never enters a layer, and it works with either builder
# (a BuildKit secret would not work with the classic one).
#
# Build argument:
#   PYTHON_IMAGE  base of both stages (the same, so the venv's interpreter path matches); any
#                 Debian-like image with Python >= 3.11 on PATH as `python`, plus venv and useradd

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src
# Dependencies first, from the locks alone: this layer is rebuilt only when requirements/ changes.
COPY requirements/ requirements/
RUN set --; if [ -d requirements/wheelhouse ]; then \
        set -- --no-index --find-links requirements/wheelhouse; fi \
    && pip install "$@" --require-hashes -r requirements/build.txt \
    && pip install "$@" --require-hashes -r requirements/runtime.txt
# Then the local distributions (the build context is an allowlist: see .dockerignore), with no
# dependencies of their own to fetch: the client first, so the server finds it installed.
COPY . ./
RUN for dist in ./client .; do \
        if [ -f "$dist/pyproject.toml" ]; then \
            pip install --no-deps --no-build-isolation "$dist" || exit 1; fi; done \
    && pip check

FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH
# uid and gid both 10001, a regular (not --system) account: no clash with the base image's
# system ids and no useradd warning.
RUN groupadd --gid 10001 backprop \
    && useradd --uid 10001 --gid backprop --no-log-init --create-home \
        --home-dir /home/backprop --shell /usr/sbin/nologin backprop
COPY --from=builder /opt/venv /opt/venv
USER backprop
WORKDIR /home/backprop
# No EXPOSE: workers run this image too and listen on nothing; compose publishes the API's port.
# The API; workers run the same image with `backprop worker`. Health checks live in
# docker-compose.yml because they differ by role (HTTP for the API, RQ registration for workers).
CMD ["backprop", "api", "--host", "0.0.0.0", "--port", "8000"]
