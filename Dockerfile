# llm-gateway on Ray's GPU image: the same image serves every node of a cluster (KubeRay's
# deploy/kuberay/rayservice.yaml runs `ray start` in it; `ray up cluster.yaml` can use it as
# docker.image) and, by default, runs the gateway on one GPU machine.
#
#   docker build -t llm-gateway:0.1.0 .          # tag = the version in pyproject.toml
#   docker run --gpus all --shm-size=4g -p 8000:8000 \
#       -e GATEWAY_ADMIN_KEY=... -e OPENAI_API_KEY=... -e ANTHROPIC_API_KEY=... llm-gateway:0.1.0
#
# The base image's Ray must be the version pinned in pyproject.toml (ray[serve]==2.60.*), and
# its Python the one in requires-python (3.11): tests/test_dockerfile.py checks both.
FROM rayproject/ray:2.60.0-py311-gpu

LABEL org.opencontainers.image.title="llm-gateway" \
      org.opencontainers.image.version="0.1.0"

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RAY_USAGE_STATS_ENABLED=0

# Created as the image's user (ray): a directory WORKDIR creates would belong to root.
RUN mkdir -p /home/ray/llm-gateway /home/ray/models /home/ray/llm-gateway-data
WORKDIR /home/ray/llm-gateway

# Dependencies first, from pyproject.toml alone (empty packages stand in for the code), so
# that a code change does not reinstall torch.
COPY --chown=ray:users pyproject.toml README.md ./
RUN mkdir -p serve_app deployments \
    && touch serve_app/__init__.py deployments/__init__.py \
    && pip install . \
    && pip uninstall -y llm-gateway \
    && rm -rf serve_app deployments build llm_gateway.egg-info

COPY --chown=ray:users serve_app ./serve_app
COPY --chown=ray:users deployments ./deployments
COPY --chown=ray:users configs ./configs
RUN pip install --no-deps . && rm -rf build llm_gateway.egg-info

# The demo fine-tune and its LoRA adapters, baked in where the cluster configs expect them.
RUN python -m deployments.demo.model --out /home/ray/models/demo --threads 4 \
    && python -m deployments.demo.adapters --base /home/ray/models/demo \
        --out /home/ray/models/adapters --if-missing

EXPOSE 8000

# One machine: validate configs/gpu.yaml (needs GATEWAY_ADMIN_KEY), then `serve run` it.
# On a cluster KubeRay and `ray up` replace this command with `ray start`.
CMD ["python", "-m", "serve_app.runtime.launch", "configs/gpu.yaml"]
