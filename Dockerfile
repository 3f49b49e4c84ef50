# The DriftSketch round as a GPU container for the Docker and Kubernetes work pools (prefect.yaml:
# round-docker, round-kubernetes). Build from the repository root:
#
#   docker build -t driftsketch:cuda .
#   docker run --rm --gpus all driftsketch:cuda python -c "import torch; print(torch.cuda.is_available())"
#
# torch from PyPI is the CUDA build on Linux x86_64 (its CUDA runtime comes as nvidia-* wheels), so the
# image needs no CUDA base image: only the host's NVIDIA driver and container toolkit (or, on Kubernetes,
# the NVIDIA device plugin). The Label Studio server is not in this image: it runs beside Prefect and
# PostgreSQL, and rounds reach it over HTTP. Pin TORCH to the version scripts/setup.sh uses.
FROM python:3.11-slim-bookworm

ARG TORCH=torch==2.13.0
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    WANDB_MODE=offline

# cairosvg renders the PNGs Label Studio shows; it needs the cairo library
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libcairo2 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/driftsketch
RUN pip install "$TORCH"

COPY . .
RUN pip install -e . \
 && python -c "import driftsketch, dpo, labeling, tasks, flows, torch, prefect; print('torch', torch.__version__, 'cuda', torch.version.cuda)"

# the worker replaces this with `prefect flow-run execute`; the pull step of the GPU deployments
# sets the working directory to /opt/driftsketch, so flows/online_dpo.py and configs/ are found here
CMD ["python", "-m", "flows.online_dpo", "--help"]
