# syntax=docker/dockerfile:1
# Multi-stage: build the wheel (compiles the Cython core) in a full image, run it
# from a slim one as a non-root user. The engine binds 0.0.0.0 only inside the
# container (FASTEXEC_HOST); publish ports deliberately.
FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY src ./src
RUN python -m pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 fastexec
COPY --from=build /wheels /wheels
RUN python -m pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER fastexec
WORKDIR /home/fastexec
ENV FASTEXEC_HOST=0.0.0.0 \
    FASTEXEC_DATA_DIR=/home/fastexec/var \
    PYTHONUNBUFFERED=1
EXPOSE 8004 8091
HEALTHCHECK --interval=10s --timeout=2s --start-period=10s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8004/health', timeout=2).status == 200 else 1)"
CMD ["fastexec", "serve"]
