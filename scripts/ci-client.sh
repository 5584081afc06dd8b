#!/usr/bin/env bash
# CI stage "client" (.ci/run, after the tests): the ko-sts-client distribution as applications get it.
#
#   scripts/ci-client.sh                     # after make install; CLIENT_PYTHONS="3.10 3.13" for fewer
#
# 1. starts `bentoml serve` of the tests' tiny model from the main .venv, with the client tests'
#    settings (python -m tests.live_service: the tiny model and launcher the test suite uses);
# 2. builds the client's sdist and, from it, its wheel, once (uv build client), and checks the wheel
#    holds exactly ko_sts/ as git tracks it plus proto/ko_sts/v1/similarity.proto;
# 3. for each Python (3.10 to 3.13), while the model trains: a clean venv with the wheel and pytest
#    only; prints pip list, fails if a server package came with it (bentoml, torch, transformers,
#    onnxruntime, ...); then, the service up, runs tests/test_client_service.py there against it;
# 4. type-checks the package with mypy (strict, as Python 3.10) in a venv of its own (before 3.'s tests).
# Prints each step's duration; any failure stops the stage with a non-zero status.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PYTHONS=${CLIENT_PYTHONS:-3.10 3.11 3.12 3.13}
SERVER_PACKAGES='^(bentoml|torch|transformers|onnxruntime|onnxruntime-gpu|tokenizers|safetensors|numpy|pydantic|ko-sts-serve)$'
WORK=$(mktemp -d /tmp/ko-sts-client-ci.XXXXXX)
SERVER_PID=
step=
timings=()
started=$SECONDS

cleanup() {
    local status=$?
    if [ -n "$step" ]; then
        printf '\n######## FAILED: %s\n' "$step" >&2
        [ -f "$WORK/service/serve.log" ] && { echo "--- service log (tail):" >&2; tail -n 40 "$WORK/service/serve.log" >&2; }
    fi
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID"  # tests.live_service stops its bentoml serve on SIGTERM
        wait "$SERVER_PID" || true
    fi
    rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT

run_step() {  # run_step NAME COMMAND...: under set -e, a failing command in the step ends the stage
    local t0=$SECONDS
    step=$1
    shift
    printf '\n######## %s\n' "$step"
    "$@"
    timings+=("$(printf '%-44s %4d s' "$step" $((SECONDS - t0)))")
    step=
}

find_python() {  # find_python 3.10 -> the path of a working python3.10 (PATH first, then pyenv's versions)
    local version=$1 candidate
    for candidate in "$(command -v "python$version" || true)" "$(pyenv root 2>/dev/null)"/versions/"$version".*/bin/"python$version"; do
        if [ -n "$candidate" ] && [ -x "$candidate" ] && "$candidate" -c 'import sys' 2>/dev/null; then
            "$candidate" -c 'import sys; print(sys.executable)'
            return
        fi
    done
    echo "python$version not found (on PATH or under pyenv's versions); the client is tested on $PYTHONS" >&2
    return 1
}

start_service() {
    mkdir -p "$WORK/service"
    .venv/bin/python -m tests.live_service --env-file "$WORK/service.env" --workdir "$WORK/service" \
        >"$WORK/service/launcher.log" 2>&1 &
    SERVER_PID=$!
    echo "training the tiny model and starting bentoml serve (pid $SERVER_PID) while the wheel is built"
}

wait_for_service() {
    local deadline=$((SECONDS + 600))
    until [ -f "$WORK/service.env" ]; do
        if ! kill -0 "$SERVER_PID" 2>/dev/null || [ $SECONDS -gt $deadline ]; then
            echo "the service did not start:" >&2
            tail -n 40 "$WORK/service/launcher.log" >&2
            return 1
        fi
        sleep 1
    done
    cat "$WORK/service.env"
}

build_wheel() {
    .venv/bin/uv build client --out-dir "$WORK/dist" --native-tls --quiet
    ls -l "$WORK/dist"
    WHEEL=$(ls "$WORK"/dist/ko_sts_client-*.whl)
    .venv/bin/python - "$WHEEL" <<'EOF'
import subprocess, sys, zipfile

names = {n for n in zipfile.ZipFile(sys.argv[1]).namelist() if ".dist-info/" not in n}
tracked = set(subprocess.run(["git", "ls-files", "ko_sts"], capture_output=True, text=True, check=True).stdout.split())
expected = tracked | {"ko_sts/v1/similarity.proto"}
if names != expected:
    sys.exit(f"the wheel holds {sorted(names - expected)} it should not, and lacks {sorted(expected - names)}")
print(f"the wheel holds ko_sts/ as tracked ({len(tracked)} files) and its .proto")
EOF
}

make_venv() {  # make_venv 3.10: a clean venv with the wheel and the test tools, nothing of the server
    local version=$1 python venv unwanted
    python=$(find_python "$version")
    venv="$WORK/venv-$version"
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet "$WHEEL" -r client/requirements-test.txt
    "$venv/bin/python" -m pip list
    unwanted=$("$venv/bin/python" -m pip list --format freeze | cut -d= -f1 | grep -i -E "$SERVER_PACKAGES" || true)
    if [ -n "$unwanted" ]; then
        echo "the client pulled server packages into a clean environment: $unwanted" >&2
        return 1
    fi
}

test_on_python() {  # test_on_python 3.10: the client tests, with the installed wheel, against the service
    local version=$1
    # Run from outside the repository, so that `import ko_sts` finds the wheel, not ./ko_sts; the
    # tests' helpers (tests/*.py) come through a link.
    mkdir -p "$WORK/run-$version"
    ln -s "$REPO/tests" "$WORK/run-$version/tests"
    (
        cd "$WORK/run-$version"
        set -a
        . "$WORK/service.env"
        set +a
        KO_STS_CLIENT_INSTALLED=1 "$WORK/venv-$version/bin/python" -m pytest -c "$REPO/pyproject.toml" \
            --rootdir . -p no:cacheprovider tests/test_client_service.py
    )
}

type_check() {
    local python
    python=$(find_python 3.11)
    "$python" -m venv "$WORK/venv-mypy"
    "$WORK/venv-mypy/bin/python" -m pip install --quiet "$WHEEL" -r client/requirements-typecheck.txt
    "$WORK/venv-mypy/bin/mypy" --config-file client/pyproject.toml
}

run_step "start the tiny model's service" start_service
run_step "build the client wheel (sdist, then wheel)" build_wheel
for version in $PYTHONS; do  # while the tiny model trains
    run_step "Python $version: a clean venv with the wheel" make_venv "$version"
done
run_step "mypy --strict on ko_sts (Python 3.10)" type_check
run_step "wait for the service" wait_for_service
for version in $PYTHONS; do
    run_step "Python $version: client tests" test_on_python "$version"
done

printf '\n######## client stage passed in %d s\n' $((SECONDS - started))
printf '  %s\n' "${timings[@]}"
