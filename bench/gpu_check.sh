#!/usr/bin/env bash
# For a machine with a CUDA GPU (none is available where sslkit is developed): run the
# gpu-marked tests, then measure MoCo v2 ResNet-50 training (224 px, batch 128, AMP,
# channels_last) through sslkit's engine against a bare torch loop of the same model.
# About 5 minutes on one recent GPU; prints one line per figure.
set -euo pipefail
cd "$(dirname "$0")/.."
python -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "no CUDA device is visible")'
python -m pytest -q -m gpu -p no:cacheprovider | tail -n 1
python bench/bench_pretrain.py --device cuda --arch resnet50 --synthetic 6400 --image-size 224 \
    --batch-size 128 --queue-size 65536 --repeats 2 | python -c '
import json, sys
r = json.load(sys.stdin)
print("bare torch loop:", max(r["bare_images_per_second"]), "images/s")
print("sslkit engine:  ", max(r["engine_images_per_second"]), "images/s")
print("ratio engine / bare:", r["ratio_engine_vs_bare"])
'
