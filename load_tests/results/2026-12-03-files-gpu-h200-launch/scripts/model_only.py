"""Model-only ceilings on the 100k file: forward passes on chunks tokenised beforehand, per pass config."""
import json, sys, time, statistics
from pathlib import Path
import pyarrow.csv as pa_csv
import torch
from models.scorer import load_served_scorer, compile_model
from load_tests.files import model_only

source, out = Path(sys.argv[1]), Path(sys.argv[2])
configs = [(32768, 1024), (65536, 4096), (131072, 8192)]
compiled = len(sys.argv) > 3 and sys.argv[3] == "compile"
table = pa_csv.read_csv(source)
pairs = list(zip(table.column("sentence1").to_pylist(), table.column("sentence2").to_pylist()))
results = {}
for tokens, rows in configs:
    scorer = load_served_scorer("/tmp/subject", "torch", device="cuda", max_batch_tokens=tokens, max_batch_rows=rows)
    if compiled:
        compile_model(scorer, True)
    encoded = [scorer.encode(pairs[i : i + 8192]) for i in range(0, len(pairs), 8192)]
    whole = [scorer.encode(pairs)]
    scorer.forward(encoded[0]); torch.cuda.synchronize()
    runs = [model_only(scorer, encoded) for _ in range(3)]
    runs_whole = [model_only(scorer, whole) for _ in range(2)]
    results[f"{tokens}x{rows}"] = {"chunks_8192": runs, "one_call": runs_whole}
    print(tokens, rows, "compiled" if compiled else "eager", [round(r) for r in runs], [round(r) for r in runs_whole], flush=True)
    del scorer, encoded, whole
    torch.cuda.empty_cache()
out.write_text(json.dumps(results, indent=1))
