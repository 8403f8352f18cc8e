#!/usr/bin/env bash
# The shell-script use sslkit is built for: each step reads the previous step's files and
# --json output. Runs on the bundled digits, no download.
#   bash examples/pipeline.sh [WORKDIR]        (EPOCHS=N to train longer)
set -euo pipefail

WORK="${1:-runs/pipeline}"
EPOCHS="${EPOCHS:-2}"
mkdir -p "$WORK"

json_get() {  # json_get FILE KEY[.KEY...] -> value
  python3 -c 'import functools, json, sys
print(functools.reduce(lambda d, k: d[k], sys.argv[2].split("."), json.load(open(sys.argv[1]))))' "$1" "$2"
}

sslkit pretrain --method moco --data digits --epochs "$EPOCHS" --workdir "$WORK/moco" \
  --force --no-progress --json "$WORK/pretrain.json"
checkpoint=$(json_get "$WORK/pretrain.json" checkpoint)

for split in train test; do
  sslkit extract --checkpoint "$checkpoint" --data digits --split "$split" \
    --out "$WORK/$split.h5" --force --json "$WORK/extract-$split.json"
done

sslkit knn --train "$(json_get "$WORK/extract-train.json" out)" \
  --test "$(json_get "$WORK/extract-test.json" out)" --json "$WORK/knn.json"

echo "pipeline ok: kNN top-1 $(json_get "$WORK/knn.json" best.top1) at k=$(json_get "$WORK/knn.json" best.k)"
