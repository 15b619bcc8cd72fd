#!/usr/bin/env python3
# Copyright machinist authors. Licensed under the Apache License, Version 2.0.
"""Runs the eDeploy reference (the `hardware` package) on cases for machinist's tests.

Reads one JSON object on stdin and writes one on stdout, so that thousands of cases cost one
process:

  {"match": [{"lines": [[c, t, n, v], ...], "specs": [[c, t, n, v], ...]}, ...],
   "generate": [{"model": {key: str | [str, ...]}}, ...],
   "bench": {"reports": [[[c, t, n, v], ...], ...],
             "profiles": [[name, [[c, t, n, v], ...]], ...],
             "time_budget": seconds}}

Every part is optional. Answers, in the same order:

  match:    {"matched": bool, "variables": {...}, "selectors": {...}}
            `variables` is match_all's `arr` without the `$name` keys the reference leaves
            behind after backtracking; `selectors` is its `arr2`. Or {"error": "Type: msg"}
            when the reference raises, {"timeout": true} past the per-case time limit.
  generate: {"entries": [{...}, ...]} or {"error": ...}
  bench:    {"processed": n, "seconds": s, "timeouts": n,
             "results": [[profile or null, variables] or null, ...]}
            `seconds` covers matching only: JSON decoding and the conversion of items to
            tuples happen before the clock starts. A report taking longer than the per-case
            limit gives null (its time is counted).

Items and rules are given to the reference as tuples of str, which is how machinist sees
them (the Quad type holds strings).
"""

import json
import signal
import sys
import time

from hardware import generate
from hardware import matcher

CASE_SECONDS = 10


class CaseTimeout(Exception):
    pass


def _alarm(_signum, _frame):
    raise CaseTimeout()


def run_match(case):
    lines = [tuple(item) for item in case["lines"]]
    specs = [tuple(rule) for rule in case["specs"]]
    var, var2 = {}, {}
    signal.alarm(CASE_SECONDS)
    try:
        matched = matcher.match_all(lines, specs, var, var2)
    except CaseTimeout:
        return {"timeout": True}
    except Exception as exc:  # the reference raising is an answer too
        return {"error": "%s: %s" % (type(exc).__name__, exc)}
    finally:
        signal.alarm(0)
    if not matched:
        return {"matched": False, "variables": {}, "selectors": {}}
    stale = sorted(k for k in var if k.startswith("$"))
    return {
        "matched": True,
        "variables": {k: v for k, v in var.items() if not k.startswith("$")},
        "selectors": var2,
        "stale": stale,
    }


def run_generate(case):
    model = dict(sorted(case["model"].items()))
    signal.alarm(CASE_SECONDS)
    try:
        entries = generate.generate(model)
    except CaseTimeout:
        return {"timeout": True}
    except Exception as exc:
        return {"error": "%s: %s" % (type(exc).__name__, exc)}
    finally:
        signal.alarm(0)
    return {"entries": entries}


def run_bench(bench):
    reports = [[tuple(item) for item in report] for report in bench["reports"]]
    profiles = [(name, [tuple(rule) for rule in specs]) for name, specs in bench["profiles"]]
    budget = float(bench.get("time_budget", 1e9))
    results = []
    elapsed = 0.0
    timeouts = 0
    for report in reports:
        start = time.perf_counter()
        chosen, variables = None, {}
        signal.alarm(CASE_SECONDS)
        try:
            for name, specs in profiles:
                var, var2 = {}, {}
                if matcher.match_all(report, specs, var, var2):
                    chosen = name
                    variables = {k: v for k, v in var.items() if not k.startswith("$")}
                    break
            result = [chosen, variables]
        except CaseTimeout:
            timeouts += 1
            result = None
        finally:
            signal.alarm(0)
        elapsed += time.perf_counter() - start
        results.append(result)
        if elapsed >= budget:
            break
    return {"processed": len(results), "seconds": elapsed, "timeouts": timeouts, "results": results}


def main():
    signal.signal(signal.SIGALRM, _alarm)
    request = json.load(sys.stdin)
    answer = {}
    if "match" in request:
        answer["match"] = [run_match(case) for case in request["match"]]
    if "generate" in request:
        answer["generate"] = [run_generate(case) for case in request["generate"]]
    if "bench" in request:
        answer["bench"] = run_bench(request["bench"])
    json.dump(answer, sys.stdout)


if __name__ == "__main__":
    main()
