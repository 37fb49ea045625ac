# One image for the whole stack: Prefect CPU workers (orchestration), Dask GPU workers (the model),
# Kubernetes pair Jobs. The base ships CUDA, cuDNN and a CUDA torch >= 2.6 (transformers 5 needs it);
# constraints.txt pins everything else (torch is left out of it, so pip keeps the base's build).
FROM pytorch/pytorch:2.7.1-cuda12.6-cudnn9-runtime

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    TOKENIZERS_PARALLELISM=false \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    DREAMMOVER_HOME=/var/cache/dreammover \
    HF_HOME=/var/cache/huggingface

# ffmpeg for encoding; imageio-ffmpeg's binary is the fallback if this is ever removed.
RUN apt-get update && apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/dreammover
# Dependencies first (better layer caching), then the code.
COPY pyproject.toml README.md constraints.txt ./
RUN for d in dreammover dreammover/backends dreammover/evaluation tasks flows studio; do \
        mkdir -p "$d" && touch "$d/__init__.py"; done \
    && pip install -c constraints.txt ".[kubernetes]" && pip uninstall -y dreammover \
    && python -c "import torch, transformers; assert tuple(map(int, torch.__version__.split('.')[:2])) >= (2, 6)"
COPY dreammover ./dreammover
COPY tasks ./tasks
COPY flows ./flows
COPY studio ./studio
COPY deploy ./deploy
RUN pip install --no-deps . \
    && useradd --uid 10001 --create-home --shell /usr/sbin/nologin dreammover \
    && mkdir -p "$DREAMMOVER_HOME" "$HF_HOME" && chown -R dreammover "$DREAMMOVER_HOME" "$HF_HOME"

USER 10001
# The model cache is a volume: weights are downloaded once per volume, not per container.
VOLUME ["/var/cache/huggingface"]
# Healthy when the role's process answers: a Dask worker's /health, else Prefect's API (for Prefect workers).
HEALTHCHECK --interval=30s --timeout=10s --start-period=120s --retries=3 \
    CMD ["/opt/dreammover/deploy/entrypoint.sh", "healthcheck"]

ENTRYPOINT ["/opt/dreammover/deploy/entrypoint.sh"]
CMD ["prefect-worker"]
