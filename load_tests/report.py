"""The benchmark's outputs: ``results.json`` (every point), ``results.md`` (tables) and PNG plots.

Ratios are computed within the run, at the same request mix and load: ``x in-process`` is a
server's pairs/s over the in-process ceiling's (d), ``x baseline`` over the seed design's (b).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from load_tests.servers import SERVERS

ORDER = [kind.name for kind in sorted(SERVERS.values(), key=lambda k: k.key)]
COLORS = {"service": "C0", "baseline": "C3", "unbatched": "C1", "in-process": "C2", "model-only": "C7"}
COLORS |= {"grpc": "C4", "rank": "C5", "grpc-rank": "C6"}


def write_report(results: dict[str, Any], output: Path) -> None:
    """Writes results.json, results.md and one PNG per request mix into ``output``."""
    output.mkdir(parents=True, exist_ok=True)
    text = json.dumps(_without_nan(results), indent=2, default=_jsonable, allow_nan=False)
    (output / "results.json").write_text(text + "\n")
    plots = write_plots(results, output)
    (output / "results.md").write_text(markdown(results, plots))


def _without_nan(value: Any) -> Any:
    """NaN (no successful request, no CPU reading) as null: results.json stays strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _without_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nan(v) for v in value]
    return value


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _closed(results: dict, server: str, mix: int) -> list[dict]:
    points = [p for p in results["points"] if (p["server"], p["mix"], p["mode"]) == (server, mix, "closed")]
    return sorted(points, key=lambda p: p["concurrency"])


def _same_load(results: dict, point: dict, server: str) -> dict | None:
    for other in results["points"]:
        if (other["server"], other["mix"], other["mode"], other.get("concurrency"), other.get("rate")) == (
            server,
            point["mix"],
            point["mode"],
            point.get("concurrency"),
            point.get("rate"),
        ):
            return other
    return None


def _ratio(value: float | None, reference: float | None) -> str:
    if value is None or not reference:
        return "-"
    return f"{value / reference:.2f}x"


def _num(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if abs(value) >= 100 or digits == 0:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _errors(errors: dict[str, int]) -> str:
    return ", ".join(f"{label}: {count}" for label, count in errors.items()) or "0"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _mixes(results: dict) -> list[int]:
    return sorted({p["mix"] for p in results["points"]})


def _servers(results: dict) -> list[str]:
    present = set(results["servers"])
    return [name for name in ORDER if name in present]


def markdown(results: dict, plots: dict[int, str]) -> str:
    """The report: setup, peaks and ratios, target points, burst probe, every point, failures."""
    config, machine = results["config"], results["machine"]
    model = results.get("model", {})
    gpu = "; ".join(machine["gpu"]) if machine.get("gpu") else "none"
    lines = [
        f"# Load test, {results['started']} on {machine['host']}",
        "",
        f"- machine: {machine['cpu_count']} CPU cores, GPU: {gpu}; Python {machine['python']}; "
        f"load average {machine.get('load_average_start')} at start, {machine.get('load_average_end')} at end",
        f"- model: `{model.get('tag') or model.get('spec')}` ({model.get('folder')}); backend `{config['backend']}`, "
        f"device `{config['device']}`; extra settings: {config['env'] or 'none'}",
        f"- {config['seconds']:g} s per point after {config['warmup']:g} s warm-up; target points "
        f"{', '.join(config['targets']) or 'none'} repeated {config['repeats']}x (medians); "
        f"requests cycle through `{config['data']}`",
        "- client: the benchmark's own asyncio process (keep-alive HTTP/1.1); its CPU use is the `client CPU` "
        "column, in cores (for in-process: the whole process, clients and engine); `server CPU` is the server's "
        "process tree",
        f"- wall time {results.get('wall_s', '-')} s",
        *_busy_warning(results),
        "",
        "## Servers",
        "",
    ]
    rows = []
    for name in _servers(results):
        entry = results["servers"][name]
        rows.append(
            [
                entry["key"],
                name,
                entry["description"],
                f"running ({entry['shared_with']}'s)" if entry.get("shared_with") else _num(entry.get("ready_after_s")),
                entry.get("runtime") or "-",
                _num(entry.get("gpu_memory_peak_mib")),
            ]
        )
    lines += _table(["", "server", "what", "ready after (s)", "runtime", "GPU memory peak (MiB)"], rows)

    failures = results["failures"]
    if failures:
        lines += ["", "## Failures", ""]
        for failure in failures:
            first, _, rest = failure["message"].partition("\n")
            lines.append(f"- **{failure['server']}** ({failure['phase']}): {first}")
            if rest.strip():
                lines += ["", "  ```", *("  " + line for line in rest.strip().splitlines()[-15:]), "  ```"]

    if results.get("notes"):
        lines += ["", "## Notes", "", *(f"- {note}" for note in results["notes"])]

    lines += ["", "## Peak throughput (closed loop, best concurrency per server)", ""]
    lines += _peaks(results)
    targets = [p for p in results["points"] if p["mode"] == "closed" and len(p["runs"]) > 1]
    if targets:
        lines += ["", f"## Target points (median of {config['repeats']} runs)", ""]
        lines += _points_table(results, sorted(targets, key=lambda p: (p["mix"], p["concurrency"], _rank(p))), True)
    if results["probes"]:
        lines += ["", "## Lone single pair before and right after a saturating burst", ""]
        lines += _probes(results)
    if results.get("model_only"):
        lines += ["", "## Model-only ceiling (e)", ""]
        lines += _model_only(results)
    for mix in _mixes(results):
        lines += ["", f"## All points: {mix} pair{'s' if mix > 1 else ''} per request", ""]
        points = [p for p in results["points"] if p["mix"] == mix]
        points.sort(key=lambda p: (p["mode"] != "closed", p.get("concurrency") or p.get("rate_pairs_s") or 0, _rank(p)))
        lines += _points_table(results, points, False)
        if mix in plots:
            lines += ["", f"![throughput vs latency, {mix} pairs per request]({plots[mix]})"]
    lines += ["", "## Reading this", "", *READING, ""]
    return "\n".join(lines)


def _busy_warning(results: dict) -> list[str]:
    """A warning when other work competed for the CPU: the 1-minute load average over twice the cores.

    The benchmark alone keeps about one runnable thread per busy core plus the client, so twice
    the cores means someone else was running too.
    """
    loads = [run["load_1m"] for p in results["points"] for run in p["runs"] if run.get("load_1m") is not None]
    cores = results["machine"]["cpu_count"] or 1
    if not loads or max(loads) <= 2 * cores:
        return []
    return [
        f"- **the machine was busy**: 1-minute load average up to {max(loads):.1f} on {cores} cores during the "
        "points (median {:.1f}); other work competed with the servers, so absolute numbers and even ratios are "
        "unreliable".format(sorted(loads)[len(loads) // 2])
    ]


READING = [
    "- `closed N`: N clients, each sending its next request when the last one returns (throughput at a "
    "concurrency); `open R/s`: Poisson arrivals at R pairs/s whatever the server does (latency at a given load). "
    "Open-loop latency counts from the scheduled arrival, so queueing is not hidden.",
    "- Latencies are of successful requests, in ms. `errors` counts failed requests by HTTP status or client "
    "label (`timeout`, `client_overflow`: arrivals dropped because too many were unanswered, `abandoned`: "
    "cancelled at the end of the drain).",
    "- `client CPU`, `server CPU`: cores used during the point; `CPU ms/pair`: both together per pair served, "
    "the cost of serving, which other work on the machine disturbs less than throughput.",
    "- `batch`: mean pairs per engine round (from the service's `ko_sts_batch_size` histogram); `queue`: mean "
    "time a request waited for the engine.",
    "- Ratios compare servers at the same mix and load, in this run only; on a shared machine compare runs "
    "by their ratios, not their absolute numbers.",
]


def _rank(point: dict) -> int:
    return ORDER.index(point["server"]) if point["server"] in ORDER else len(ORDER)


def _peaks(results: dict) -> list[str]:
    rows = []
    for mix in _mixes(results):
        peaks = {}
        for name in _servers(results):
            points = _closed(results, name, mix)
            if points:
                peaks[name] = max(points, key=lambda p: p["pairs_per_s"])
        ceiling = peaks.get("in-process", {}).get("pairs_per_s")
        baseline = peaks.get("baseline", {}).get("pairs_per_s")
        for name, peak in peaks.items():
            rows.append(
                [
                    str(mix),
                    name,
                    _num(peak["pairs_per_s"]),
                    str(peak["concurrency"]),
                    _num(peak["p50_ms"], 2),
                    _num(peak["p99_ms"], 2),
                    _ratio(peak["pairs_per_s"], ceiling),
                    _ratio(peak["pairs_per_s"], baseline),
                ]
            )
    header = ["mix", "server", "pairs/s", "at clients", "p50 ms", "p99 ms", "x in-process peak", "x baseline peak"]
    return _table(header, rows)


def _points_table(results: dict, points: list[dict], with_runs: bool) -> list[str]:
    header = ["load", "server", "pairs/s", "p50 ms", "p90 ms", "p99 ms", "errors", "batch", "queue ms"]
    header += ["client CPU", "server CPU", "CPU ms/pair", "x in-process", "x baseline"]
    if with_runs:
        header = ["mix", *header, "runs (pairs/s)"]
    rows = []
    for point in points:
        if point["mode"] == "closed":
            load = f"closed {point['concurrency']}"
            ceiling, baseline = _same_load(results, point, "in-process"), _same_load(results, point, "baseline")
            ratios = [
                _ratio(point["pairs_per_s"], ceiling and ceiling["pairs_per_s"]),
                _ratio(point["pairs_per_s"], baseline and baseline["pairs_per_s"]),
            ]
        else:
            load = f"open {point['rate_pairs_s']:,.0f}/s"
            ratios = ["-", "-"]  # the same offered load: compare latencies instead
        row = [
            load,
            point["server"],
            _num(point["pairs_per_s"]),
            _num(point["p50_ms"], 2),
            _num(point["p90_ms"], 2),
            _num(point["p99_ms"], 2),
            _errors(point["errors"]),
            _num(point.get("mean_batch_pairs")),
            _num(point.get("mean_queue_ms"), 2),
            _num(point.get("client_cpu"), 2),
            _num(point.get("server_cpu"), 2),
            _num(point.get("cpu_ms_per_pair"), 2),
            *ratios,
        ]
        if with_runs:
            row = [str(point["mix"]), *row, ", ".join(_num(run["pairs_per_s"]) for run in point["runs"])]
        rows.append(row)
    return _table(header, rows)


def _probes(results: dict) -> list[str]:
    rows = []
    for probe in sorted(results["probes"], key=_rank):
        before, after, burst = probe["before"], probe["after"], probe["burst"]
        rows.append(
            [
                probe["server"],
                _num(before["p50_ms"], 2),
                _num(before["p90_ms"], 2),
                f"{burst['mix']} pairs x {burst['concurrency']} clients: {_num(burst['pairs_per_s'])} pairs/s, "
                f"errors {_errors(burst['errors'])}",
                _num(after["first_ms"], 2),
                _num(after["first10_max_ms"], 2),
                _num(after["p50_ms"], 2),
                _num(after["p90_ms"], 2),
                _ratio(after["p50_ms"], before["p50_ms"]),
            ]
        )
    count = results["config"]["probe_requests"]
    header = ["server", "before p50", "before p90", "burst", "after: 1st", "after: max of 10 first", "after p50"]
    header += ["after p90", "after/before p50"]
    return [f"{count} sequential single-pair requests each side; ms.", "", *_table(header, rows)]


def _model_only(results: dict) -> list[str]:
    model = results["model_only"]
    lines = [
        f"{_num(model['pairs_per_s'])} pairs/s: the {_num(model['pairs'])} pairs of `{results['config']['data']}` "
        "tokenised, sorted by length, cut into "
        f"{model['passes']} passes by the service's limits ({_num(model['mean_batch_pairs'])} pairs each, "
        f"{model['padding']:.0%} padding) and padded up front; {model['mean_pass_ms']:.2f} ms per pass.",
    ]
    rows = []
    for mix in _mixes(results):
        points = _closed(results, "in-process", mix)
        if points:
            peak = max(p["pairs_per_s"] for p in points)
            rows.append([str(mix), _num(peak), _ratio(peak, model["pairs_per_s"])])
    if rows:
        lines += ["", *_table(["mix", "in-process peak pairs/s", "x model-only"], rows)]
    return lines


def write_plots(results: dict, output: Path) -> dict[int, str]:
    """One PNG per mix: throughput (x) against p50 and p99 latency (y, log), a line per server."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    files = {}
    model = results.get("model_only")
    for mix in _mixes(results):
        figure, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharex=True)
        for axis, key, title in ((axes[0], "p50_ms", "p50"), (axes[1], "p99_ms", "p99")):
            for name in _servers(results):
                color = COLORS.get(name)
                closed = [p for p in _closed(results, name, mix) if p["ok"]]
                if closed:
                    x = [p["pairs_per_s"] for p in closed]
                    y = [p[key] for p in closed]
                    axis.plot(x, y, "o-", color=color, label=f"{SERVERS[name].key} {name}")
                    for p, xi, yi in zip(closed, x, y):
                        axis.annotate(
                            str(p["concurrency"]), (xi, yi), fontsize=7, xytext=(3, 3), textcoords="offset points"
                        )
                opened = [
                    p
                    for p in results["points"]
                    if (p["server"], p["mix"], p["mode"]) == (name, mix, "open") and p["ok"]
                ]
                if opened:
                    axis.plot(
                        [p["pairs_per_s"] for p in opened], [p[key] for p in opened], "x", color=color, markersize=9
                    )
            if model:
                axis.axvline(model["pairs_per_s"], color=COLORS["model-only"], linestyle="--", label="e model-only")
            axis.set_yscale("log")
            axis.yaxis.set_major_formatter(matplotlib.ticker.LogFormatter(labelOnlyBase=False))
            axis.yaxis.set_minor_formatter(
                matplotlib.ticker.LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5))
            )
            axis.set_xlabel("pairs/s")
            axis.set_ylabel(f"{title} latency (ms)")
            axis.set_title(f"{title}, {mix} pair{'s' if mix > 1 else ''} per request")
            axis.grid(True, which="both", alpha=0.3)
        axes[0].legend(fontsize=8)
        figure.text(0.01, 0.01, "o-: closed loop (labels: clients); x: open loop", fontsize=8)
        figure.tight_layout()
        name = f"throughput-latency-mix{mix}.png"
        figure.savefig(output / name, dpi=110)
        plt.close(figure)
        files[mix] = name
    return files
