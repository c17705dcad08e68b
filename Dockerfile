# perfloop's bundled engine behind `perfloop serve`, CUDA build (triton attention, CUDA graphs).
#
#   docker build -t perfloop:cuda .
#   docker run --rm --gpus all --network host --ipc host \
#       -v ~/.cache/perfloop:/cache/perfloop -v "$PWD/profiles:/profiles" perfloop:cuda \
#       --model preset:qwen3-0.6b --port 8000 --profile-dir /profiles
#
# The torch CUDA wheels bring their own CUDA runtime libraries; the base image only supplies
# the NVIDIA container environment (the driver comes from the host through --gpus).
# TORCH_INDEX_URL picks the CUDA build of torch (cu128 by default; cu126/cu130 also exist).
ARG BASE_IMAGE=nvidia/cuda:12.8.1-base-ubuntu22.04
FROM ${BASE_IMAGE}

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
ARG PIP_INSTALL_FLAGS=""
# GitPython (imported by the loop's CLI) must not fail at import without a git binary: serving needs none.
ENV PYTHONUNBUFFERED=1 \
    GIT_PYTHON_REFRESH=quiet \
    PERFLOOP_CACHE=/cache/perfloop \
    DEBIAN_FRONTEND=noninteractive \
    PATH=/opt/venv/bin:${PATH}

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-dev gcc \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv
# gcc and python3-dev: triton compiles its small launcher stubs at first use.

WORKDIR /opt/perfloop
RUN python -m pip install --no-cache-dir --index-url ${TORCH_INDEX_URL} ${PIP_INSTALL_FLAGS} "torch>=2.4,<2.14"
COPY pyproject.toml README.md ./
COPY perfloop ./perfloop
COPY skills ./skills
COPY prompts ./prompts
RUN python -m pip install --no-cache-dir ${PIP_INSTALL_FLAGS} . && perfloop --help > /dev/null

WORKDIR /work
EXPOSE 8000
ENTRYPOINT ["perfloop", "serve"]
CMD ["--model", "preset:qwen3-0.6b", "--host", "0.0.0.0", "--port", "8000", "--profile-dir", "/profiles"]
