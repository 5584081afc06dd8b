import numpy as np, openvino as ov
from models.backends import OpenVinoRuntime
from models.scorer import PairCodec, Scorer
from training.data import read_pairs
from training.contrast import CONTRAST_FILE, read_contrast
pkg = "models/default"
class Bf16(OpenVinoRuntime):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        cfg = {"INFERENCE_PRECISION_HINT": "bf16", "DYNAMIC_QUANTIZATION_GROUP_SIZE": "32", "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1", "ENABLE_CPU_PINNING": "NO"}
        self.model = ov.Core().compile_model(str(self.path), "CPU", cfg); self._request = self.model.create_infer_request()
codec = PairCodec.for_package(pkg)
for name, rt in (("int8", OpenVinoRuntime(pkg, activations="int8")), ("int8+bf16", Bf16(pkg, activations="int8"))):
    s = Scorer.over(codec, rt)
    for label, frame in (("dev", read_pairs("data/klue-sts/klue_sts_dev.jsonl")), ("contrast", read_contrast(CONTRAST_FILE))):
        pairs = list(zip(frame["sentence1"], frame["sentence2"]))[:300]
        full = s.score(pairs)
        worst = {}
        for b in (1, 2, 7, 16, 64):
            got = np.concatenate([s.score(pairs[i:i + b]) for i in range(0, len(pairs), b)])
            worst[b] = float(np.abs(got - full).max())
        print(name, label, {b: f"{v:.1e}" for b, v in worst.items()})
