# GPU image for DreamMover Prefect workers (and Kubernetes flow-run jobs).
# The base ships CUDA, cuDNN and a CUDA build of torch, so pip keeps that torch (>= 2.1 satisfies it).
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime

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
COPY pyproject.toml README.md* ./
RUN mkdir -p dreammover tasks flows && touch dreammover/__init__.py tasks/__init__.py flows/__init__.py \
    && pip install . && pip uninstall -y dreammover
COPY dreammover ./dreammover
COPY tasks ./tasks
COPY flows ./flows
COPY deploy ./deploy
RUN pip install --no-deps . && mkdir -p "$DREAMMOVER_HOME" "$HF_HOME"

ENTRYPOINT ["/opt/dreammover/deploy/entrypoint.sh"]
CMD ["worker"]
