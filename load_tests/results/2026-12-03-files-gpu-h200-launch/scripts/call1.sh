. .gpu/setup.sh
nvidia-smi --query-gpu=name,memory.used --format=csv,noheader
python3 -c "
from pathlib import Path
import load_tests.files as lf
lf.write_pairs(lf.klue_pairs(lf.KLUE_TRAIN), 100000, Path('/tmp/p100k.csv'))"
timeout 150 python3 .gpu/f3/model_only.py /tmp/p100k.csv $OUT/model_only_eager.json 2>&1 | grep -v Warning | tail -5
mkdir -p /tmp/stats
run() {  # name, flags...
  name=$1; shift
  timeout 60 python3 -m serving.files score /tmp/p100k.csv /tmp/o.csv --model /tmp/subject --backend torch --device cuda --overwrite --no-progress --stats /tmp/stats/$name-$r.json "$@" 2>&1 | grep "scored\|rror\|captured" | sed 's/.*scored/scored/' | cut -c1-330 | sed "s/^/$name $r: /"
}
for r in 1 2 3; do
  run A
  run B --tokenizer-processes 4
  run C --max-batch-tokens 65536 --max-batch-rows 4096
  run D --tokenizer-processes 4 --max-batch-tokens 65536 --max-batch-rows 4096
done
r=1
timeout 60 python3 -c "import sys; sys.setswitchinterval(2e-4); from serving.files import main; sys.exit(main(sys.argv[1:]))" score /tmp/p100k.csv /tmp/o.csv --model /tmp/subject --backend torch --device cuda --overwrite --no-progress --stats /tmp/stats/E-1.json 2>&1 | grep "scored" | sed 's/.*scored/E switch 0.2ms: scored/' | cut -c1-330
run F --tokenizer-processes 8
python3 -c "
import json, glob, os
print(json.dumps({os.path.basename(p): json.load(open(p)) for p in sorted(glob.glob('/tmp/stats/*.json'))}), file=open('$OUT/stats.json','w'))"
for r in 1 2; do
  KO_STS_FILE_GRAPHS=1 run G
  KO_STS_FILE_GRAPHS=1 run H --max-batch-tokens 65536 --max-batch-rows 4096
done
python3 -c "
import json, glob, os
print(json.dumps({os.path.basename(p): json.load(open(p)) for p in sorted(glob.glob('/tmp/stats/*.json'))}), file=open('$OUT/stats.json','w'))"
