# Sourced at the start of each device call: wheels into /tmp/site (once per machine), the KoELECTRA-base subject.
if [ ! -f /tmp/site/.done ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl && touch /tmp/site/.done || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
[ -f /tmp/subject/config.json ] || python -m load_tests.subjects koelectra-base /tmp/subject > /tmp/subject.log 2>&1 || { cat /tmp/subject.log; exit 1; }
