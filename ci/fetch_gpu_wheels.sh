#!/usr/bin/env bash
# Fetch, where there is network, the wheels ci/gpu_check.sh installs on the GPU machine (which has
# none): the cuDNN frontend and pytest with its dependencies, for the image's Python 3.12 on x86-64.
# They go to ci/wheels/ (ignored by git; the device tool carries untracked files that git does not
# ignore, so name it in the run's carry list: carry=["ci/wheels"]).
set -euo pipefail
cd "$(dirname "$0")"
mkdir -p wheels
PLAT=(--only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform any)
python -m pip download --no-deps "${PLAT[@]}" -d wheels nvidia-cudnn-frontend pytest pluggy iniconfig packaging
ls -l wheels
