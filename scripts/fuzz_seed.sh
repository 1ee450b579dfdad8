#!/bin/sh
# Seeds the fuzz corpora (fuzz/corpus/TARGET/, not committed) from the test fixtures and a
# few small examples of each text format. Run from the repository root:
#   sh scripts/fuzz_seed.sh
# then, one target at a time (docs/reliability.md):
#   cd fuzz && cargo +nightly fuzz run TARGET -- -max_total_time=240 -rss_limit_mb=2048 -malloc_limit_mb=1024
set -eu
fx=crates/recur/tests/fixtures
c=fuzz/corpus
for t in state_dict model_file checkpoint onnx_model npy_tensor pb_tensor text_corpus \
    labelled_sequences ts_sequences toml_config vocabulary config_json csv_series; do
    mkdir -p "$c/$t"
done
cp "$fx"/pytorch/*.safetensors "$fx"/legacy/*.state_dict.safetensors "$c/state_dict/"
for f in "$fx"/model/*.safetensors "$fx"/legacy/*.model.safetensors; do
    case "$f" in *.expected.*) ;; *) cp "$f" "$c/model_file/" ;; esac
done
cp "$fx"/legacy/*.checkpoint.safetensors "$c/checkpoint/"
find "$fx/onnx" -name '*.onnx' | while read -r f; do
    cp "$f" "$c/onnx_model/$(echo "$f" | tr '/' '_')"
done
find "$fx/onnx" -name '*.pb' | head -n 120 | while read -r f; do
    cp "$f" "$c/pb_tensor/$(echo "$f" | tr '/' '_')"
done
python3 - "$c/npy_tensor" <<'PY'
import sys, numpy as np
d = sys.argv[1]
np.save(f"{d}/f32.npy", np.arange(12, dtype=np.float32).reshape(3, 4))
np.save(f"{d}/f64.npy", np.linspace(0, 1, 5))
np.save(f"{d}/i64.npy", np.array([[1, 2], [3, 4]], dtype=np.int64))
np.save(f"{d}/i32.npy", np.array([7], dtype=np.int32))
np.save(f"{d}/scalar.npy", np.float32(2.5))
PY
cp README.md docs/cli.md "$c/text_corpus/"
printf 'the cat sat\non the mat\n' > "$c/text_corpus/words.txt"
printf '# label<TAB>steps\nwalk\t0.1,2 0.3,4 0.5,6\nrun\t1,-3\n' > "$c/labelled_sequences/class.txt"
printf '7.5\t1 2 3 4\n-2\t5\n' > "$c/labelled_sequences/regression.txt"
printf '@problemName Toy\n@univariate false\n@dimensions 2\n@classLabel true up down\n@data\n1,2,3:4,5,6:up\n3,2:1,0:down\n' > "$c/ts_sequences/multi.ts"
printf '@problemName R\n@univariate true\n@equalLength true\n@seriesLength 3\n@targetLabel true\n@data\n1,2,3:0.5\n' > "$c/ts_sequences/regression.ts"
printf 't,id,y,x\n1,a,1.5,2\n2,a,2.5,3\n3,a,NA,4\n1,b,0,0\n' > "$c/csv_series/series.csv"
printf 'cell = "gru"\nhidden-size = 32\nlr = 0.01\nsplit = "0.8,0.1,0.1"\nepochs = 3\n' > "$c/toml_config/run.toml"
printf 'recur-vocabulary 1 word\n<unk>\n<eos>\nthe\ncat\n' > "$c/vocabulary/word.vocab"
printf 'recur-vocabulary 1 char\n<unk>\n\\n\na\nb\n' > "$c/vocabulary/char.vocab"
printf '{"cell":{"kind":"lstm"},"input_size":3,"hidden_size":4,"num_layers":2,"bias":true,"batch_first":false,"direction":"bidirectional","dropout":0.0}' > "$c/config_json/stack.json"
python3 - "$c/config_json" "$fx/model/lm_lstm_tied.safetensors" <<'PY'
import json, struct, sys
d, f = sys.argv[1], sys.argv[2]
raw = open(f, "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
meta = json.loads(raw[8:8 + n]).get("__metadata__", {})
open(f"{d}/model.json", "w").write(meta.get("recur.model", "{}"))
PY
echo "seeded: $(find "$c" -type f | wc -l) files under $c"
