set -o pipefail
source .gpu/setup.sh
B="python -m load_tests.files --backend torch --device cuda --model /tmp/subject --rss-rows 0 --no-ray --repeats 3"
timeout 170 $B --pairs 100000 --chunk-rows 32768 --out $OUT/lazy-32k 2>&1 | grep -v Warning | tail -22
timeout 120 $B --pairs 10000 --out $OUT/lazy-10k 2>&1 | grep -v Warning | tail -22
timeout 120 $B --pairs 10000 --no-cuda-graphs --out $OUT/eager-10k 2>&1 | grep -v Warning | tail -22
