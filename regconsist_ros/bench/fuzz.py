"""`regconsist bench fuzz`: hostile input against the real nodes, CLI, evaluator and learner (issue 18).

Four sections, each its own module (chosen with ``sections``):

- ``messages`` (:mod:`.fuzz_messages`): ~150 kinds of bad message on the camera topics of the
  registration node and on the keyframe / view-pair topics of the learner node;
- ``cli`` (:mod:`.fuzz_cli`): ~120 bad command lines through the ``regconsist`` console script;
- ``checkpoints`` (:mod:`.fuzz_checkpoints`): ~20 kinds of bad checkpoint in the evaluator's watched directory;
- ``kills`` (:mod:`.fuzz_kills`): a SIGKILL loop on the learner node.

The result is one dict (printed as the last line's JSON): ``table`` (per section: inputs tried and
what went wrong), ``totals`` (inputs, crashes, uncounted drops, tracebacks, corrupt checkpoints) and
each section's details, kind by kind. :func:`markdown` renders the table (docs/reliability.md).
"""
from __future__ import annotations

import sys
import time
from datetime import datetime, timezone

SECTIONS = ("messages", "cli", "checkpoints", "kills")


class _Bar:
    """A tqdm bar on stderr for one section (nothing with ``quiet``), its postfix the failures so far."""

    def __init__(self, total: int, desc: str, quiet: bool, bad):
        self.bad, self.failures = bad, 0
        self.bar = None
        if not quiet:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="input", file=sys.stderr, dynamic_ncols=True)

    def __call__(self, row: dict) -> None:
        self.failures += bool(self.bad(row))
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(f"failures {self.failures}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def bench_fuzz(sections=SECTIONS, kills: int = 10, limit: int = 0, jobs: int = 2, seed: int = 0,
               quiet: bool = False) -> dict:
    """Run ``sections``; ``limit`` > 0 runs only the first ``limit`` inputs of each (per node for
    messages), ``kills`` the SIGKILLs of the kills section, ``jobs`` the command lines run at once."""
    from regconsist_ros.bench import machine

    bad = [s for s in sections if s not in SECTIONS]
    if bad or not sections:
        raise ValueError(f"bench fuzz: sections must be among {list(SECTIONS)}, got {list(sections)}")
    if kills < 1 or limit < 0 or jobs < 1:
        raise ValueError(f"bench fuzz: --kills and --jobs must be >= 1 and --limit >= 0, got {kills}, {jobs}, {limit}")
    started = datetime.now(timezone.utc)
    t0 = time.monotonic()
    out: dict = {"bench": "fuzz", "sections": list(sections)}
    table: dict = {}
    seconds: dict = {}
    for s in SECTIONS:
        if s not in sections:
            continue
        ts = time.monotonic()
        if s == "messages":
            from regconsist_ros.bench.fuzz_messages import bench_fuzz_messages, catalog

            nodes = ("registration", "learner")
            n = sum(min(limit, sum(k.node == node for k in catalog())) if limit else sum(k.node == node for k in catalog())
                    for node in nodes)
            bar = _Bar(n, "fuzz messages", quiet, lambda r: r["crashed"] or r["uncounted"] or not r["next_good"])
            try:
                res = bench_fuzz_messages(nodes, limit=limit, seed=seed, progress=bar)
            finally:
                bar.close()
            table[s] = {k: res[k] for k in ("inputs", "crashes", "uncounted_drops", "next_good_failures")} | {
                "accepted": len(res["accepted"]), "controls_clean": res["controls_clean"]}
        elif s == "cli":
            from regconsist_ros.bench.fuzz_cli import ALL_CASES, bench_fuzz_cli

            bar = _Bar(min(limit, len(ALL_CASES)) if limit else len(ALL_CASES), "fuzz cli", quiet, lambda r: not r["ok"])
            try:
                res = bench_fuzz_cli(jobs=jobs, limit=limit, progress=bar)
            finally:
                bar.close()
            table[s] = {k: res[k] for k in ("inputs", "tracebacks", "multi_line_errors", "no_error_line", "zero_exits",
                                            "internal_errors", "missing_needles", "timeouts")} | {"failures": len(res["failures"])}
        elif s == "checkpoints":
            from regconsist_ros.bench.fuzz_checkpoints import KINDS, bench_fuzz_checkpoints

            bar = _Bar(min(limit, len(KINDS)) if limit else len(KINDS), "fuzz checkpoints", quiet,
                       lambda r: r["crashed"] or not r.get("good_after"))
            try:
                res = bench_fuzz_checkpoints(limit=limit, progress=bar)
            finally:
                bar.close()
            table[s] = {k: res[k] for k in ("inputs", "crashes", "quarantined", "ignored", "evaluated", "good_after_failures")}
        else:
            from regconsist_ros.bench.fuzz_kills import bench_fuzz_kills

            bar = _Bar(kills + 1, "fuzz kills", quiet, lambda r: r.get("start_failed") or not r.get("resumed_at_latest", True))
            try:
                res = bench_fuzz_kills(kills=kills, seed=seed, progress=bar)
            finally:
                bar.close()
            table[s] = {"inputs": res["kills"], "checkpoints": res["checkpoints"], "corrupt_checkpoints": res["corrupt"],
                        "resumed_at_latest": f"{res['resumed_at_latest']}/{res['restarts']}",
                        "failed_starts": res["failed_starts"], "kills_inside_a_save": res["kills_inside_a_save"],
                        "temp_dirs_left": len(res["temp_dirs_left"]), "final_exit": res["final_exit"]}
        seconds[s] = round(time.monotonic() - ts, 1)
        out[s] = res
    out["table"] = table
    out["totals"] = {
        "inputs": sum(t["inputs"] for t in table.values()),
        "crashes": sum(t.get("crashes", 0) for t in table.values()) + table.get("kills", {}).get("failed_starts", 0),
        "uncounted_drops": table.get("messages", {}).get("uncounted_drops", 0),
        "next_good_failures": table.get("messages", {}).get("next_good_failures", 0),
        "tracebacks": table.get("cli", {}).get("tracebacks", 0),
        "cli_failures": table.get("cli", {}).get("failures", 0),
        "corrupt_checkpoints": table.get("kills", {}).get("corrupt_checkpoints", 0),
        "checkpoints_not_recovered_from": table.get("checkpoints", {}).get("good_after_failures", 0)}
    out.update({"seconds": seconds, "total_seconds": round(time.monotonic() - t0, 1),
                "date": started.strftime("%Y-%m-%d %H:%M UTC"), "limit": limit, "kills": kills, "jobs": jobs,
                "seed": seed, **machine()})
    return out


def markdown(res: dict) -> str:
    """The table of a :func:`bench_fuzz` result as Markdown, then each section's failures and the inputs
    taken as valid."""
    t, lines = res["table"], []
    lines += ["| section | inputs | crashes | uncounted drops | tracebacks | corrupt checkpoints | other failures |",
              "|---|---:|---:|---:|---:|---:|---|"]
    if "messages" in t:
        m = t["messages"]
        lines.append(f"| messages (registration, learner) | {m['inputs']} | {m['crashes']} | {m['uncounted_drops']} | - | - | "
                     f"next good set not used: {m['next_good_failures']} |")
    if "cli" in t:
        c = t["cli"]
        lines.append(f"| command lines | {c['inputs']} | - | - | {c['tracebacks']} | - | no error line: {c['no_error_line']}, "
                     f"multi-line: {c['multi_line_errors']}, exit 0: {c['zero_exits']}, internal errors: "
                     f"{c['internal_errors']}, timeouts: {c['timeouts']} |")
    if "checkpoints" in t:
        c = t["checkpoints"]
        lines.append(f"| bad checkpoints | {c['inputs']} | {c['crashes']} | - | - | - | quarantined {c['quarantined']}, "
                     f"ignored {c['ignored']}, evaluated {c['evaluated']}; good one after not evaluated: "
                     f"{c['good_after_failures']} |")
    if "kills" in t:
        k = t["kills"]
        lines.append(f"| SIGKILLs of the learner | {k['inputs']} | {k['failed_starts']} | - | - | {k['corrupt_checkpoints']} "
                     f"of {k['checkpoints']} | resumed at the latest step: {k['resumed_at_latest']}; kills inside a save: "
                     f"{k['kills_inside_a_save']}; temp dirs left: {k['temp_dirs_left']} |")
    tot = res["totals"]
    lines.append(f"| **total** | **{tot['inputs']}** | **{tot['crashes']}** | **{tot['uncounted_drops']}** | "
                 f"**{tot['tracebacks']}** | **{tot['corrupt_checkpoints']}** | |")
    if "messages" in res:
        rows = res["messages"]["kinds"]
        bad = [r for r in rows if r["crashed"] or r["uncounted"] or not r["next_good"]]
        lines += ["", "Messages that went wrong:", ""] + [
            f"- `{r['node']}` `{r['kind']}`: " + ", ".join(x for x in (
                "crashed" if r["crashed"] else "", "uncounted" if r["uncounted"] else "",
                "next good set not used" if not r["next_good"] else "") if x)
            + (f" (counted: {r['reasons']})" if r["reasons"] else "") for r in bad] if bad else ["", "Messages: none went wrong."]
    if "cli" in res:
        bad = [r for r in res["cli"]["cases"] if not r["ok"]]
        lines += ["", "Command lines that went wrong:", ""] + [
            f"- `regconsist {r['argv']}`: exit {r['exit']}" + (", traceback" if r["traceback"] else "")
            + (f", {r['error_lines']} error lines" if r["error_lines"] != 1 else f": {r['error'][:160]}")
            for r in bad] if bad else ["", "Command lines: none went wrong."]
    return "\n".join(lines) + "\n"
