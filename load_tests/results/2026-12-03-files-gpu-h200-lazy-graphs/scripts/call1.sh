set -o pipefail
source .gpu/setup.sh
nvidia-smi --query-gpu=name,memory.used,clocks.sm --format=csv,noheader
timeout 240 python -m pytest -m gpu tests/test_gpu.py -q -p no:cacheprovider -k "not shipped_default" 2>&1 | tail -25 | tee $OUT/gpu-tests.log
B="python -m load_tests.files --backend torch --device cuda --model /tmp/subject --rss-rows 0 --no-ray --repeats 3"
timeout 150 $B --pairs 100000 --out $OUT/lazy 2>&1 | grep -v Warning | tail -22
timeout 150 $B --pairs 100000 --no-cuda-graphs --out $OUT/eager 2>&1 | grep -v Warning | tail -22
