#!/usr/bin/env bash
# The shell-script use sslkit is built for: each step reads the previous step's files and
# --json output (pretrain -> extract -> cluster -> knn -> linear -> semisup -> transfer).
# Runs on the bundled digits, no download.
#   bash examples/pipeline.sh [WORKDIR]        (EPOCHS=N to train longer)
set -euo pipefail

WORK="${1:-runs/pipeline}"
EPOCHS="${EPOCHS:-2}"
mkdir -p "$WORK"

json_get() {  # json_get FILE KEY[.KEY...] -> value (numeric keys index lists)
  python3 -c 'import functools, json, sys
get = lambda d, k: d[int(k)] if isinstance(d, list) else d[k]
print(functools.reduce(get, sys.argv[2].split("."), json.load(open(sys.argv[1]))))' "$1" "$2"
}
score() {  # score FILE KEY[.KEY...] -> the value rounded to one decimal (scores are in %)
  printf '%.1f' "$(json_get "$1" "$2")"
}

sslkit pretrain --method moco --data digits --epochs "$EPOCHS" --workdir "$WORK/moco" \
  --force --no-progress --json "$WORK/pretrain.json"
checkpoint=$(json_get "$WORK/pretrain.json" checkpoint)

for split in train test; do
  sslkit extract --checkpoint "$checkpoint" --data digits --split "$split" \
    --out "$WORK/$split.h5" --force --json "$WORK/extract-$split.json"
done

train_h5=$(json_get "$WORK/extract-train.json" out)
test_h5=$(json_get "$WORK/extract-test.json" out)

sslkit cluster --features "$train_h5" --clusters 10 --out "$WORK/clusters.h5" --force \
  --json "$WORK/cluster.json"

sslkit knn --train-features "$train_h5" --test-features "$test_h5" --json "$WORK/knn.json"

# linear probe on the extracted features: the validated L-BFGS logistic regression
sslkit linear --train-features "$train_h5" --test-features "$test_h5" --json "$WORK/linear.json"

# fine-tune with 10 % of the labels (135 images): HCSC's recipe, shortened to 30 epochs
sslkit semisup --checkpoint "$checkpoint" --data digits --labels 0.1 --recipe hcsc \
  --epochs 30 --milestones 20,25 --batch-size 32 --eval-every 10 --json "$WORK/semisup.json"

# transfer to an ImageFolder (DIR/<class>/<image>): here one written from the digits
python3 - "$WORK/folder" <<'PY'
import sys
from pathlib import Path

from PIL import Image
from sklearn.datasets import load_digits

digits = load_digits()
for i, (image, label) in enumerate(zip(digits.images, digits.target)):
    folder = Path(sys.argv[1], "test" if i % 5 == 0 else "train", str(label))
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray((image * 255 / 16).astype("uint8")).save(folder / f"{i}.png")
PY
# embedded at the checkpoint's size and normalisation (32 px, 0.5 / 0.5), as it was trained
sslkit transfer --task imagefolder --checkpoint "$checkpoint" \
  --train-images "$WORK/folder/train" --test-images "$WORK/folder/test" \
  --json "$WORK/transfer.json"

# every score is in % (the JSON has them exact; rounded here for people)
echo "pipeline ok: kNN top-1 $(score "$WORK/knn.json" best.top1) at k=$(json_get "$WORK/knn.json" best.k)," \
  "AMI $(score "$WORK/cluster.json" levels.0.ami)," \
  "linear top-1 $(score "$WORK/linear.json" result.top1)," \
  "semisup top-1 $(score "$WORK/semisup.json" result.top1)," \
  "transfer top-1 $(score "$WORK/transfer.json" result.top1)"
