"""Ad hoc: OpenVINO int8 activations with f32 vs bf16 inference precision, shipped model, 16-pair batches of dev."""
import sys, time, numpy as np
import openvino as ov
from models import backends
from models.backends import OpenVinoRuntime
from models.scorer import PairCodec, Scorer
from models.package import read_metadata, reference_scores
from training.data import read_pairs
from training.metrics import sts_metrics
pkg = "models/default"
df = read_pairs("data/klue-sts/klue_sts_dev.jsonl"); pairs = list(zip(df["sentence1"], df["sentence2"])); labels = df["label"].to_numpy()
codec = PairCodec.for_package(pkg)
class Bf16(OpenVinoRuntime):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        cfg = {"INFERENCE_PRECISION_HINT": "bf16", "DYNAMIC_QUANTIZATION_GROUP_SIZE": "32", "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1", "ENABLE_CPU_PINNING": "NO"}
        self.model = ov.Core().compile_model(str(self.path), "CPU", cfg); self._request = self.model.create_infer_request()
        print("bf16 compiled:", self.model.get_property("INFERENCE_PRECISION_HINT"))
scorers = {"f32": Scorer.over(codec, OpenVinoRuntime(pkg, activations="float32")),
           "int8": Scorer.over(codec, OpenVinoRuntime(pkg, activations="int8")),
           "int8+bf16": Scorer.over(codec, Bf16(pkg, activations="int8"))}
chunks = [pairs[i:i + 16] for i in range(0, len(pairs), 16)]
times = {k: [] for k in scorers}; scores = {}
for r in range(int(sys.argv[1])):
    for k, s in scorers.items():
        t = time.perf_counter(); scores[k] = np.concatenate([s.score(c) for c in chunks]); times[k].append(time.perf_counter() - t)
ref_pairs, ref = reference_scores(read_metadata(pkg), "model.onnx")
for k, s in scorers.items():
    inv = np.abs(s.score(pairs) - scores[k]).max(); m = sts_metrics(scores[k], labels)
    print(f"{k:>10}: {len(pairs)/np.median(times[k]):6.1f} pairs/s  x{np.median(times['int8'])/np.median(times[k]):.3f} of int8  runs {[round(len(pairs)/t,1) for t in times[k]]}  max|vs f32| {np.abs(scores[k]-scores['f32']).max():.4f}  inv {inv:.1e}  dev {m['pearson']:.4f}/{m['f1']:.4f}  parity {np.abs(s.score(ref_pairs)-np.asarray(ref)).max():.3f}")
