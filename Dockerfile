# svcpulse images (docs/deploy.md). Two targets from one file:
#   runtime   - svcpulse load / api / otlp / migrate / retention / dlq / collect load; runs as uid 10001
#   collector - runtime + Debian's bcc (python3-bpfcc) for `svcpulse collect tcp`; runs as root
#               (eBPF needs CAP_BPF/CAP_PERFMON/CAP_SYS_ADMIN; the container is privileged anyway)
#   docker build --target runtime   -t svcpulse/svcpulse:0.1.0 .
#   docker build --target collector -t svcpulse/svcpulse-collector:0.1.0 .

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/svcpulse
WORKDIR /src
# Dependencies first (pinned in pyproject.toml), so code edits do not reinstall them.
COPY pyproject.toml README.md ./
RUN mkdir -p svcpulse && touch svcpulse/__init__.py \
 && /opt/svcpulse/bin/pip install . && /opt/svcpulse/bin/pip uninstall -y svcpulse
COPY svcpulse svcpulse
COPY core core
COPY weights weights
COPY otlp otlp
COPY pipeline pipeline
COPY collectors collectors
COPY api api
COPY balancer balancer
COPY dashboards dashboards
RUN /opt/svcpulse/bin/pip install --no-deps . \
 && /opt/svcpulse/bin/svcpulse --help >/dev/null

FROM python:3.11-slim-bookworm AS runtime
ENV PATH=/opt/svcpulse/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
COPY --from=build /opt/svcpulse /opt/svcpulse
RUN groupadd --gid 10001 svcpulse \
 && useradd --uid 10001 --gid 10001 --home-dir /var/lib/svcpulse --create-home --shell /usr/sbin/nologin svcpulse
USER 10001:10001
WORKDIR /var/lib/svcpulse
EXPOSE 8000 4317 4318
ENTRYPOINT ["svcpulse"]
CMD ["--help"]

FROM runtime AS collector
USER root
# bcc's Python module is Debian's (the PyPI package named bcc is another project). It is pure
# Python over libbcc, so linking it into the venv is enough; kernel headers come from the host
# (/lib/modules and /usr/src mounted read-only), BTF from /sys/kernel/btf.
RUN apt-get update \
 && apt-get install -y --no-install-recommends bpfcc-tools python3-bpfcc \
 && rm -rf /var/lib/apt/lists/* \
 && ln -s /usr/lib/python3/dist-packages/bcc \
      "$(/opt/svcpulse/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/bcc" \
 && /opt/svcpulse/bin/python -c "import bcc"
WORKDIR /var/lib/svcpulse
