# syntax=docker/dockerfile:1
#
# pilothouse container images.
#
#   docker build -t pilothouse:0.1.0 .                       # control plane (default target)
#   docker build -t pilothouse-node:0.1.0 --target node .    # kubelet + runtime shim
#
# The default target runs as an unprivileged user (uid 10001) and is what the
# apiserver, scheduler and controller-manager use:
#
#   docker run -p 6443:6443 -p 6444:6444 -v ph:/var/lib/pilothouse pilothouse:0.1.0 \
#       apiserver --bind-address 0.0.0.0 --data-dir /var/lib/pilothouse
#
# The `node` target is for `pilothouse kubelet` and `pilothouse runtime-shim`: they
# create network namespaces, mounts and cgroups, so it runs as root (and must be
# started privileged, with the host's /sys/fs/cgroup), and it carries Debian's
# busybox-static, from which the shim builds the local `busybox` and `pause` images
# (`pilothouse image build busybox|pause`), plus iproute2 and util-linux (nsenter,
# mount, unshare) that the process backend calls.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# -- build: pilothouse and its dependencies into a virtualenv ------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/pilothouse
WORKDIR /src
# Packaging metadata first: setup.py reads pilothouse_layout.py, pyproject.toml reads
# README.md.
COPY pyproject.toml setup.py pilothouse_layout.py README.md ./
COPY pilothouse/ pilothouse/
COPY services/ services/
COPY runtime_shim/ runtime_shim/
COPY cloud_controller/ cloud_controller/
# A regular (not editable) install: the image needs no source tree.
RUN /opt/pilothouse/bin/pip install . \
    && /opt/pilothouse/bin/pilothouse apiserver --help >/dev/null

# -- runtime: the virtualenv on a clean base ----------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/pilothouse/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /opt/pilothouse /opt/pilothouse
# REST (kubectl), gRPC, kubelet, controller-manager, scheduler.
EXPOSE 6443 6444 10250 10257 10259
ENTRYPOINT ["pilothouse"]
CMD ["--help"]

# -- node: kubelet and runtime shim (root, busybox-static) --------------------------
FROM runtime AS node
RUN apt-get update \
    && apt-get install -y --no-install-recommends busybox-static iproute2 util-linux \
    && rm -rf /var/lib/apt/lists/*
USER root
WORKDIR /var/lib/pilothouse

# -- control-plane: the default target, as an unprivileged user ----------------------
FROM runtime AS control-plane
RUN groupadd --system --gid 10001 pilothouse \
    && useradd --system --uid 10001 --gid pilothouse --no-create-home \
        --home-dir /var/lib/pilothouse --shell /usr/sbin/nologin pilothouse \
    && mkdir -p /var/lib/pilothouse \
    && chown pilothouse:pilothouse /var/lib/pilothouse
WORKDIR /var/lib/pilothouse
USER 10001:10001
